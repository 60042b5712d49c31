//! Renders a 10-variant report (the clean fixture's variants, repeated under new names) from a
//! results folder, as `fleetbench run` does at its end.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

fn ten_variant_folder(out: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clean");
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("results.json")).unwrap())
            .unwrap();
    let originals = results["variants"].as_array().unwrap().clone();
    let mut variants = Vec::new();
    for i in 0..10 {
        let mut v = originals[i % originals.len()].clone();
        let source_hlog = v["files"]["hlog"].as_str().unwrap().to_string();
        let name = format!("v{i}-{}", v["name"].as_str().unwrap());
        let hlog = format!("{name}.hlog");
        std::fs::copy(fixture.join(&source_hlog), out.join(&hlog)).unwrap();
        v["name"] = name.into();
        v["files"]["hlog"] = hlog.into();
        variants.push(v);
    }
    results["variants"] = variants.into();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec(&results).unwrap(),
    )
    .unwrap();
}

fn render(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    ten_variant_folder(dir.path());
    c.bench_function("render 10 variants", |b| {
        b.iter(|| reports::render(dir.path()).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = render
}
criterion_main!(benches);
