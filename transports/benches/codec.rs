//! Encode and decode cost of each payload encoding, over a fixed set of realistic readings.
//!
//! Framing is left out: it adds one byte push or one two-byte copy per reading.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use transports::{Encoding, Reading};

/// Readings shaped like a fleet's: small ids, days of uptime, DHT11 whole degrees and percents,
/// sea-level pressure, MQ-135 tenths.
fn readings() -> Vec<Reading> {
    let mut rng = ChaCha8Rng::seed_from_u64(0xF1EE7);
    (0..1_000)
        .map(|seq| Reading {
            device_id: rng.random_range(0..10_000),
            seq,
            scheduled_us: rng.random_range(1_000_000_000..1_000_000_000_000),
            temperature_dc: rng.random_range(-10..45) * 10,
            humidity_dpct: rng.random_range(20..95) * 10,
            pressure_pa: rng.random_range(95_000..105_000),
            air_quality_dppm: rng.random_range(3_500..20_000),
            boot: 0,
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let readings = readings();
    for encoding in [Encoding::Json, Encoding::Binary] {
        let payloads: Vec<Vec<u8>> = readings
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                encoding.encode(r, &mut out);
                out
            })
            .collect();
        let mut group = c.benchmark_group(encoding.name());
        group.throughput(Throughput::Elements(readings.len() as u64));
        let mut out = Vec::with_capacity(256);
        group.bench_function("encode", |b| {
            b.iter(|| {
                for r in &readings {
                    out.clear();
                    encoding.encode(black_box(r), &mut out);
                    black_box(&out);
                }
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| {
                for p in &payloads {
                    let _ = black_box(encoding.decode(black_box(p)));
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
