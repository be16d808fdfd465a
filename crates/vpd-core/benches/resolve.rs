//! In-process binding resolution at depth 12 (SPEC section 13: ≤ 10 µs median): the pure
//! policy over facts already gathered. The walk that gathers them from the file system is
//! measured by `vpd-daemon`'s `walk` bench.
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use vpd_core::files::render_local;
use vpd_core::{file_hash, resolve, BindingRecord, DirFacts, FileRead, PairingRef};

fn bench(c: &mut Criterion) {
    let org = "01J7M8N9P0Q1R2S3T4V5V6W7X8";
    let text = render_local(org, "2026-05-11T14:42:00Z", true);
    let mut dir = PathBuf::from("/home/dev");
    let mut facts = Vec::new();
    // /home/dev/code (bound, recursive) / repo (git) / d3 … d12
    let mut chain = vec![PathBuf::from("/"), PathBuf::from("/home"), dir.clone()];
    for i in 0..12 {
        dir = dir.join(if i == 0 {
            "code".to_string()
        } else if i == 1 {
            "repo".to_string()
        } else {
            format!("d{i}")
        });
        chain.push(dir.clone());
    }
    for d in chain.iter().rev() {
        let is_code = d.ends_with("code");
        facts.push(DirFacts {
            dir: d.clone(),
            is_repo_root: d.ends_with("repo"),
            local: if is_code { FileRead::Bytes(text.clone().into_bytes()) } else { FileRead::Missing },
            hint: FileRead::Missing,
        });
    }
    let records = vec![BindingRecord {
        directory: "/home/dev/code".into(),
        org_id: org.into(),
        file_hash: file_hash(text.as_bytes()),
        pairing_id: Some("p-acme".into()),
        suspended: false,
    }];
    let pairings = [PairingRef { id: "p-acme", org_id: org, name: "Acme", slug: "acme", server: "https://viewport.example" }];
    c.bench_function("resolve_depth12_pure", |b| b.iter(|| resolve(black_box(&facts), &records, &pairings)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
