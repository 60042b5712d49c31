//! A bare rumqttc publish loop, the yardstick fleetbench's MQTT devices are measured against
//! (`just bench-peers`): N clients, each an `AsyncClient` with its own event loop task, publish a
//! JSON reading the size of a fleetbench device's every interval, at QoS 0 or 1, for a time,
//! their phases spread over the interval. Prints `published <n>` at the end.
//!
//! `cargo run --release -p transports --example rumqttc_publish_loop -- 127.0.0.1:1883 500 100 1 30`
//! (broker, clients, interval in ms, QoS, seconds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: rumqttc_publish_loop <host:port> <clients> <interval ms> <qos 0|1> <seconds>";
    let [broker, clients, interval_ms, qos, seconds] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (host, port) = broker.rsplit_once(':').expect(usage);
    let port: u16 = port.parse().expect(usage);
    let clients: u32 = clients.parse().expect(usage);
    let interval = Duration::from_millis(interval_ms.parse().expect(usage));
    let qos = match qos.as_str() {
        "0" => QoS::AtMostOnce,
        "1" => QoS::AtLeastOnce,
        _ => panic!("{usage}"),
    };
    let seconds: u64 = seconds.parse().expect(usage);
    let start = tokio::time::Instant::now() + Duration::from_secs(2);
    let end = start + Duration::from_secs(seconds);
    let published = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for i in 0..clients {
        let mut options = MqttOptions::new(format!("peer-{i:06}"), host, port);
        options.set_keep_alive(Duration::from_secs(60));
        let (client, mut events) = AsyncClient::new(options, 16);
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let published = published.clone();
        publishers.push(tokio::spawn(async move {
            let topic = format!("fleet/esp-{i:06}/reading");
            let phase = interval * i / clients.max(1);
            let mut tick = tokio::time::interval_at(start + phase, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            for seq in 0u64.. {
                let at = tick.tick().await;
                if at >= end {
                    break;
                }
                let payload = format!(
                    r#"{{"id":{i},"seq":{seq},"t":{},"temp":22.5,"humidity":45,"pressure":101325,"ppm":412.5}}"#,
                    (at - start).as_micros()
                );
                if client.publish(topic.as_str(), qos, false, payload).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for p in publishers {
        let _ = p.await;
    }
    println!("published {}", published.load(Ordering::Relaxed));
}
