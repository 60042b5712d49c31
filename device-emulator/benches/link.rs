//! Cost of one `DeviceLink::packet` call: what the link process spends deciding a packet.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use device_emulator::link::{Direction, LinkPlan, Preset};

fn packet(c: &mut Criterion) {
    for preset in Preset::ALL {
        let plan = LinkPlan::new(&preset.model()).expect("preset checks");
        let mut air = plan.airtime();
        let mut devices: Vec<_> = (0..100).map(|i| plan.device(1, i)).collect();
        let mut now = 0u64;
        let mut i = 0usize;
        c.bench_function(&format!("link packet {}", preset.name()), |b| {
            b.iter(|| {
                now += 20_000;
                i = (i + 1) % devices.len();
                let dir = if i.is_multiple_of(2) {
                    Direction::Up
                } else {
                    Direction::Down
                };
                black_box(devices[i].packet(dir, now, black_box(200), &mut air))
            })
        });
    }
}

criterion_group!(benches, packet);
criterion_main!(benches);
