//! What TLS cost one variant, from its devices' connection records: each handshake they made
//! (full or resumed: time, bytes and segments each way, from TCP_INFO before and after it),
//! the bytes TLS added to the steady state beyond the application's, and the board's modelled
//! heap. Pure.

use device_emulator::fleet::ConnectionRecord;
use transports::tls::settings::HandshakeKind;
use transports::tls::{bearssl, records, TlsHandshake, TlsSettings};

use super::{new_histogram, percentiles};
use transports::transport::ConnectionReport;

use crate::results::{BackendHandshakeCpu, HandshakeFigures, TlsSummary};

/// The figures of `connections` (every connection record of the variant's fleet, pooled
/// repetitions included) whose devices ran `settings`.
pub fn summary(
    connections: &[ConnectionRecord],
    sink_reports: &[ConnectionReport],
    settings: &TlsSettings,
) -> TlsSummary {
    let handshakes: Vec<&TlsHandshake> = connections.iter().flat_map(|c| &c.tls).collect();
    let mut suites = std::collections::BTreeMap::<u16, u64>::new();
    for h in &handshakes {
        *suites.entry(h.suite).or_default() += 1;
    }
    let suite = suites
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| *id)
        .unwrap_or(0);
    let failed_handshakes = connections
        .iter()
        .filter(|c| c.setup.is_none() && c.end.contains("handshake failed: TLS"))
        .count() as u64;

    // The steady state, as the overhead counts it: after each connection's set-up, TCP
    // payload sent once beyond what the application wrote.
    let (mut readings, mut tcp_up, mut app_up, mut tcp_down, mut app_down) = (0u64, 0, 0, 0, 0);
    let mut steady_handshakes = 0u64;
    for c in connections {
        let (Some(setup), Some(end)) = (&c.setup, &c.final_stats) else {
            continue;
        };
        let (Some(before), Some(after)) = (setup.stats.counters, end.counters) else {
            continue;
        };
        let d = after.since(&before);
        readings += c.readings_sent;
        tcp_up += d.bytes_sent - d.bytes_retransmitted;
        tcp_down += d.bytes_received;
        app_up += end.app_bytes_sent - setup.stats.app_bytes_sent;
        app_down += end.app_bytes_received - setup.stats.app_bytes_received;
        steady_handshakes += c.tls.len().saturating_sub(1) as u64;
    }
    let per_reading = |v: u64| match readings {
        0 => 0.0,
        n => round3(v as f64 / n as f64),
    };
    // The buffers most connections had: shrunk where the server accepted the probe.
    let shrunk = handshakes
        .iter()
        .filter(|h| h.fragment_length.is_some())
        .count();
    let fragment_length_accepted = match shrunk * 2 > handshakes.len() {
        true => handshakes.iter().find_map(|h| h.fragment_length),
        false => None,
    };
    let buffers = transports::tls::client::device_buffers(fragment_length_accepted);
    let heap = bearssl::connection_heap(buffers, settings.verify);
    let cpu = settings.handshake_cpu;
    TlsSummary {
        verify: settings.verify.name().to_string(),
        resumption: settings.resumption,
        max_fragment_length: settings.max_fragment_length,
        fragment_length_accepted,
        board_cpu_model_ms: [
            cpu.full_ca.as_millis() as u64,
            cpu.full_unverified.as_millis() as u64,
            cpu.resumed.as_millis() as u64,
        ],
        suite: suite_name(suite),
        record_overhead_bytes: records::aead_record_overhead(suite).map(|o| o.total() as u64),
        full: figures(&handshakes, HandshakeKind::Full),
        resumed: figures(&handshakes, HandshakeKind::Resumed),
        failed_handshakes,
        handshakes_per_reading: per_reading(steady_handshakes),
        tls_bytes_up_per_reading: per_reading(tcp_up.saturating_sub(app_up)),
        tls_bytes_down_per_reading: per_reading(tcp_down.saturating_sub(app_down)),
        device_heap_modelled_bytes: heap.steady() as u64,
        device_heap_handshake_modelled_bytes: heap.handshake_peak() as u64,
        backend_cpu_us_per_handshake: backend_cpu(sink_reports),
    }
}

/// The sink's CPU per handshake, from its connection reports; `None` when no report carries a
/// handshake (the TLS server is not fleetbench's).
fn backend_cpu(reports: &[ConnectionReport]) -> Option<BackendHandshakeCpu> {
    let mut cpu = BackendHandshakeCpu::default();
    let (mut full_ns, mut resumed_ns) = (0u64, 0u64);
    for h in reports.iter().filter_map(|r| r.tls.as_ref()) {
        match h.kind {
            HandshakeKind::Full => {
                cpu.full_count += 1;
                full_ns += h.cpu_ns;
            }
            HandshakeKind::Resumed => {
                cpu.resumed_count += 1;
                resumed_ns += h.cpu_ns;
            }
        }
    }
    if cpu.full_count + cpu.resumed_count == 0 {
        return None;
    }
    let us = |ns: u64, n: u64| match n {
        0 => 0.0,
        n => round3(ns as f64 / n as f64 / 1e3),
    };
    cpu.full_us = us(full_ns, cpu.full_count);
    cpu.resumed_us = us(resumed_ns, cpu.resumed_count);
    Some(cpu)
}

fn figures(handshakes: &[&TlsHandshake], kind: HandshakeKind) -> HandshakeFigures {
    let of_kind: Vec<_> = handshakes.iter().filter(|h| h.kind == kind).collect();
    let mut time = new_histogram();
    let (mut cpu, mut up, mut down, mut segs_up, mut segs_down) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for h in &of_kind {
        time.saturating_record(h.done_ns.saturating_sub(h.started_ns) / 1_000);
        cpu += h.board_cpu_ns;
        up += h.counters.bytes_sent;
        down += h.counters.bytes_received;
        segs_up += h.counters.segs_out;
        segs_down += h.counters.segs_in;
    }
    let n = of_kind.len() as u64;
    let per = |v: u64| match n {
        0 => 0.0,
        n => round3(v as f64 / n as f64),
    };
    HandshakeFigures {
        count: n,
        time_us: percentiles(&time),
        board_cpu_ms: per(cpu) / 1e6,
        bytes_up: per(up),
        bytes_down: per(down),
        segments_up: per(segs_up),
        segments_down: per(segs_down),
    }
}

/// A suite's IANA name, from BearSSL's list (which holds every suite a device offers).
pub fn suite_name(id: u16) -> String {
    bearssl::DEFAULT_CLIENT_SUITES
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.name.to_string())
        .unwrap_or_else(|| format!("0x{id:04X}"))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
