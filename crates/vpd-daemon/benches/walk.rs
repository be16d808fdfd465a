//! Binding resolution at session start with the file system (SPEC section 13): canonicalise
//! the working directory, walk 12 levels up reading what is there, decide. Warm caches.
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
    let records = vec![BindingRecord { directory: code.clone(), org_id: org.into(), file_hash: file_hash(text.as_bytes()) }];
    let pairings = [PairingRef { org_id: org, name: "Acme", slug: "acme" }];
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
