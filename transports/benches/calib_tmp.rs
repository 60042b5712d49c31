use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct R {
    id: u32,
    seq: u32,
    t: u64,
    temp: f32,
    humidity: f32,
    pressure: u32,
    ppm: f32,
}
fn calib(c: &mut Criterion) {
    let p = br#"{"id":4123,"seq":421,"t":123456789012,"temp":22,"humidity":45,"pressure":101325,"ppm":412.5}"#;
    c.bench_function("serde_json", |b| {
        b.iter(|| {
            let r: R = serde_json::from_slice(black_box(p)).unwrap();
            black_box(r);
        })
    });
    c.bench_function("ours", |b| {
        b.iter(|| black_box(transports::Encoding::Json.decode(black_box(p))))
    });
    let s = transports::Encoding::Json.decode(p).unwrap();
    c.bench_function("ours_encode", |b| {
        b.iter(|| {
            let mut v = Vec::with_capacity(128);
            transports::Encoding::Json.encode(black_box(&s), &mut v);
            black_box(v);
        })
    });
}
criterion_group!(benches, calib);
criterion_main!(benches);
