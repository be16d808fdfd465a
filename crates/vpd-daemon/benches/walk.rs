//! Binding resolution at session start with the file system (SPEC section 13): canonicalise
//! the working directory, walk 12 levels up reading what is there, decide. Warm caches; and
//! the daemon's way, through its cache of directory facts (`FactsCache`).
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vpd_core::files::render_local;
use vpd_core::{file_hash, BindingRecord, PairingRef};

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let org = "01J7M8N9P0Q1R2S3T4V5V6W7X8";
    let code = root.join("code");
    let mut deep = code.join("repo");
    for i in 0..10 {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(code.join("repo/.git")).unwrap();
    std::fs::create_dir_all(code.join(".viewport")).unwrap();
    let text = render_local(org, "2026-05-11T14:42:00Z", true);
    std::fs::write(code.join(".viewport/local.yaml"), &text).unwrap();
    let records = vec![BindingRecord {
        directory: code.clone(),
        org_id: org.into(),
        file_hash: file_hash(text.as_bytes()),
        pairing_id: Some("p-acme".into()),
        suspended: false,
    }];
    let pairings = [PairingRef { id: "p-acme", org_id: org, name: "Acme", slug: "acme", server: "http://127.0.0.1:1" }];
    let depth = deep.strip_prefix(&code).unwrap().components().count();
    assert_eq!(depth, 11, "12 levels from the session directory up to the binding");
    let r = vpd_core::resolve(&vpd_daemon::walk::gather(&deep), &records, &pairings);
    assert!(matches!(r, vpd_core::Resolution::Pinned { .. }), "{r:?}");
    c.bench_function("resolve_depth12_with_fs_walk", |b| {
        b.iter(|| vpd_core::resolve(&vpd_daemon::walk::gather(black_box(&deep)), &records, &pairings))
    });
    c.bench_function("resolve_depth12_canonicalize_walk", |b| {
        b.iter(|| {
            let dir = vpd_daemon::walk::canonical(black_box(&deep)).unwrap();
            vpd_core::resolve(&vpd_daemon::walk::gather(&dir), &records, &pairings)
        })
    });
    // The daemon's way: a home with the pairing and the binding made by `vpd bind`.
    let home = vpd_daemon::Home::at(root.join("home"));
    home.ensure().unwrap();
    vpd_daemon::config::update(&home, |c| {
        c.pairings.push(vpd_daemon::config::Pairing {
            org: vpd_daemon::config::PairedOrg {
                pairing_id: vpd_core::origin::pairing_id("http://127.0.0.1:1", org),
                server: "http://127.0.0.1:1".into(),
                workspace_id: org.into(),
                workspace_name: "Acme".into(),
                workspace_slug: "acme".into(),
                install_id: "01J7M8N9P0Q1R2S3T4V5V6W7X1".into(),
                runtime_target_id: "01J7M8N9P0Q1R2S3T4V5V6W7X2".into(),
                machine_id: "01J7M8N9P0Q1R2S3T4V5V6W7X3".into(),
                machine_name: "bench".into(),
                server_url: "http://127.0.0.1:1".into(),
                relay_endpoint: "ws://127.0.0.1:1/ws".into(),
                paired_at: "2026-01-01T00:00:00Z".into(),
            },
            credential: vpd_daemon::config::Credential::Keyring,
            ca_pem: None,
            insecure_http: false,
        });
        Ok(())
    })
    .unwrap();
    std::fs::remove_file(code.join(".viewport/local.yaml")).unwrap();
    vpd_daemon::binding::bind(&home, &code, org, true, false).unwrap();
    let cache = vpd_daemon::facts_cache::FactsCache::new();
    let r = cache.resolve(&home, &deep).unwrap();
    assert!(matches!(r.resolution, vpd_core::Resolution::Pinned { .. }), "{:?}", r.resolution);
    c.bench_function("resolve_depth12_daemon_cached", |b| b.iter(|| cache.resolve(&home, black_box(&deep)).unwrap()));
    c.bench_function("resolve_depth12_daemon_uncached", |b| b.iter(|| vpd_daemon::binding::resolve(&home, black_box(&deep)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
