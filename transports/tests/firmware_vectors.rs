//! The ESP8266 firmware's portable C++ core (`firmware/lib/fleetbench`) must encode and frame
//! readings byte for byte as this crate does.
//!
//! - `vectors_match_the_rust_codec`: `firmware/vectors/readings.json` holds a fixed list of
//!   readings (zeros, maxima, negative temperatures, every digit length, every tenths rounding
//!   case) with what this crate makes of each: payloads, raw TCP frames, SSE events, HTTP chunks,
//!   long-poll bodies, content types, MQTT names and Socket.IO events. The file must be exactly
//!   what the code below generates; `FLEETBENCH_BLESS_VECTORS=1` rewrites it instead.
//! - `firmware_host_tests_pass_under_gxx`: checks the core is C++11 without exceptions or RTTI
//!   (the ESP8266 toolchain's floor), builds `firmware/test-host` with the core using
//!   `g++ -std=c++17 -Wall -Wextra -Werror -O1`, and runs it over the same file.
//! - `command_vectors_match_the_rust_codec`: `firmware/vectors/commands.json` holds commands as
//!   `transports::command` encodes them (every digit length, the sizes around the padding's
//!   threshold) with their acknowledgements, and byte strings a device may receive (whitespace,
//!   key orders, unknown keys, escapes, numbers out of range, truncations, invalid UTF-8) with
//!   what `Command::parse` makes of each. Generated and checked the same way.
//! - `firmware_host_tests_pass_under_gxx` runs the host tests over both files: the firmware must
//!   parse every command and refuse every input as the Rust codec does, and acknowledge byte for
//!   byte; it also drives each environment's command path (firmware/test-host/test_downlink.cpp).
//! - `esp8266webserver_sketches_write_through_the_library`: the http-stream and long-poll sketches
//!   write nothing on the client themselves; ESP8266WebServer writes their heads and chunks.
//!
//! Byte strings other than the JSON payload and MQTT names are lowercase hex, so the C++ side
//! needs no JSON string escapes beyond the basics.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use transports::command::{Command as DeviceCommand, CommandError, CommandOp};
use transports::mqtt::codec as mqtt;
use transports::served::{http, longpoll};
use transports::socketio::codec as socketio;
use transports::tcp::codec as tcp;
use transports::{Encoding, Reading};

/// Set to `1` to rewrite the vectors file from the Rust codec.
const BLESS_ENV: &str = "FLEETBENCH_BLESS_VECTORS";

/// The whole vectors file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vectors {
    comment: String,
    readings: Vec<ReadingVector>,
    batches: Vec<BatchVector>,
    content_types: Vec<ContentTypeVector>,
    topics: Vec<TopicVector>,
}

/// One reading and every byte string made from it alone.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ReadingVector {
    name: String,
    device_id: u32,
    seq: u32,
    t_us: u64,
    temperature_dc: i16,
    humidity_dpct: u16,
    pressure_pa: u32,
    air_quality_dppm: u16,
    /// The JSON payload, as text.
    json: String,
    /// The binary record.
    binary: String,
    /// Raw TCP frames (`tcp::codec::encode_frame`).
    tcp_json: String,
    tcp_binary: String,
    /// The SSE event of the JSON payload (`http::sse_event`).
    sse: String,
    /// HTTP chunks of each payload (`http::chunk`).
    chunk_json: String,
    chunk_binary: String,
    /// `mqtt::codec::client_id` and the default topic.
    mqtt_client_id: String,
    mqtt_topic: String,
    /// The Socket.IO event of the JSON payload as the sketch hands it to `sendEVENT`
    /// (`socketio::codec::event_args`).
    socketio_event: String,
}

/// A long-poll answer's body (`longpoll::batch_body`) for `readings[from..from + count]`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct BatchVector {
    from: usize,
    count: usize,
    json: String,
    binary: String,
}

/// The Content-Type a device-served answer carries for one encoding (`http::content_type`).
/// The response heads themselves are written by the board's library (ESP8266WebServer), not by
/// the firmware, so they have no vectors here.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ContentTypeVector {
    encoding: String,
    content_type: String,
}

/// `mqtt::codec::topic(template, device_id)`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct TopicVector {
    template: String,
    device_id: u32,
    topic: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("transports/ sits in the workspace root")
        .to_path_buf()
}

fn vectors_path() -> PathBuf {
    repo_root().join("firmware/vectors/readings.json")
}

fn command_vectors_path() -> PathBuf {
    repo_root().join("firmware/vectors/commands.json")
}

/// The whole commands file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CommandVectors {
    comment: String,
    commands: Vec<CommandVector>,
    inputs: Vec<InputVector>,
}

/// One command as the backend encodes it, and the device's acknowledgement of it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CommandVector {
    name: String,
    device_id: u32,
    seq: u32,
    due_us: u64,
    interval_ms: u32,
    /// The size asked (`Command::size`); `text` is that long when padding fits.
    size: u32,
    /// `Command::encode`, as text (ASCII).
    text: String,
    /// `Ack::encode`.
    ack: String,
}

/// Bytes a device may receive, and what `Command::parse` makes of them.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct InputVector {
    name: String,
    /// The bytes, lowercase hex.
    bytes: String,
    /// `ok`, `not-a-command` or `unknown-op`.
    verdict: String,
    /// The command parsed, when `ok`.
    command: Option<ParsedVector>,
}

/// A parsed command's fields.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ParsedVector {
    device_id: u32,
    seq: u32,
    due_us: u64,
    interval_ms: u32,
    size: u32,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn reading(
    device_id: u32,
    seq: u32,
    t_us: u64,
    temperature_dc: i16,
    humidity_dpct: u16,
    pressure_pa: u32,
    air_quality_dppm: u16,
) -> Reading {
    Reading {
        device_id,
        seq,
        scheduled_us: t_us,
        temperature_dc,
        humidity_dpct,
        pressure_pa,
        air_quality_dppm,
        boot: 0,
    }
}

/// The fixed readings, named.
fn readings() -> Vec<(String, Reading)> {
    let mut list: Vec<(String, Reading)> = [
        ("zero", reading(0, 0, 0, 0, 0, 0, 0)),
        (
            "documented sample",
            reading(7, 42, 1_234_567_890, 220, 450, 101_325, 4125),
        ),
        (
            "widest (json::MAX_LEN)",
            reading(
                u32::MAX,
                u32::MAX,
                u64::MAX,
                i16::MIN,
                u16::MAX,
                u32::MAX,
                u16::MAX,
            ),
        ),
        (
            "maxima",
            reading(
                u32::MAX,
                u32::MAX,
                u64::MAX,
                i16::MAX,
                u16::MAX,
                u32::MAX,
                u16::MAX,
            ),
        ),
        (
            "binary byte order",
            reading(
                0x0403_0201,
                0x0807_0605,
                0x100f_0e0d_0c0b_0a09,
                -2,
                0x1413,
                0x1817_1615,
                0x1a19,
            ),
        ),
        (
            "a day of uptime",
            reading(42, 17_280, 86_400_000_123, 230, 470, 100_912, 4031),
        ),
        (
            "fresh boot",
            reading(1, 0, 3_512_345, 210, 550, 101_150, 3977),
        ),
    ]
    .into_iter()
    .map(|(name, r)| (name.to_string(), r))
    .collect();

    // Temperatures: every rounding case of tenths, both signs, and the i16 extremes.
    const TEMPS: [i16; 33] = [
        1, 5, 9, 10, 11, 19, 99, 100, 101, 105, 995, 999, 1000, 1234, 9999, 10_000, 32_767, -1, -5,
        -9, -10, -11, -19, -99, -100, -105, -999, -1000, -1234, -32_767, -32_768, 0, -50,
    ];
    // Unsigned tenths for humidity and air quality.
    const TENTHS: [u16; 20] = [
        0, 1, 5, 9, 10, 11, 99, 100, 101, 105, 995, 999, 1000, 1234, 9999, 10_000, 32_767, 32_768,
        65_534, 65_535,
    ];
    // Pressures at byte boundaries.
    const PRESSURES: [u32; 11] = [
        0,
        255,
        256,
        65_535,
        65_536,
        16_777_215,
        16_777_216,
        (1 << 31) - 1,
        1 << 31,
        101_325,
        30_000,
    ];
    for (i, &temp) in TEMPS.iter().enumerate() {
        // `t` takes every length from 1 to 20 digits, alternately 10^(n-1) and 10^n - 1.
        let t_digits = (i % 20) as u32 + 1;
        let t = if i % 2 == 0 || t_digits == 20 {
            10u64.pow(t_digits - 1)
        } else {
            10u64.pow(t_digits) - 1
        };
        // `id` and `seq` take every length from 1 to 10 digits.
        let u32_digits = (i % 10) as u32 + 1;
        let device_id = 10u32.pow(u32_digits - 1);
        let seq = 10u64
            .pow(u32_digits)
            .saturating_sub(1)
            .min(u64::from(u32::MAX)) as u32;
        let r = reading(
            device_id,
            seq,
            t,
            temp,
            TENTHS[i % TENTHS.len()],
            PRESSURES[i % PRESSURES.len()],
            TENTHS[(i + 7) % TENTHS.len()],
        );
        list.push((format!("edge {i}: temp {temp}, t of {t_digits} digits"), r));
    }
    list
}

fn encode(encoding: Encoding, r: &Reading) -> Vec<u8> {
    let mut out = Vec::new();
    encoding.encode(r, &mut out);
    out
}

/// What the Rust codec makes of the fixed inputs.
fn generate() -> Vectors {
    let list = readings();
    let readings = list
        .iter()
        .map(|(name, r)| {
            let json = encode(Encoding::Json, r);
            let binary = encode(Encoding::Binary, r);
            let frame = |encoding| {
                let mut out = Vec::new();
                tcp::encode_frame(encoding, r, &mut out);
                hex(&out)
            };
            let chunk = |payload: &[u8]| {
                let mut out = Vec::new();
                http::chunk(payload, &mut out);
                hex(&out)
            };
            let mut sse = Vec::new();
            http::sse_event(r.seq, &json, &mut sse);
            let mut socketio_event = Vec::new();
            socketio::event_args(&json, &mut socketio_event);
            ReadingVector {
                name: name.clone(),
                device_id: r.device_id,
                seq: r.seq,
                t_us: r.scheduled_us,
                temperature_dc: r.temperature_dc,
                humidity_dpct: r.humidity_dpct,
                pressure_pa: r.pressure_pa,
                air_quality_dppm: r.air_quality_dppm,
                json: String::from_utf8(json.clone()).expect("JSON payloads are ASCII"),
                binary: hex(&binary),
                tcp_json: frame(Encoding::Json),
                tcp_binary: frame(Encoding::Binary),
                sse: hex(&sse),
                chunk_json: chunk(&json),
                chunk_binary: chunk(&binary),
                mqtt_client_id: mqtt::client_id(r.device_id),
                mqtt_topic: mqtt::topic(
                    &transports::mqtt::MqttSettings::default().topic,
                    r.device_id,
                ),
                socketio_event: hex(&socketio_event),
            }
        })
        .collect();

    let batches = [(0, 1), (0, 3), (2, 2), (5, 8), (10, 1), (20, 20)]
        .into_iter()
        .map(|(from, count)| {
            let batch: Vec<Reading> = list[from..from + count].iter().map(|(_, r)| *r).collect();
            let body = |encoding| {
                let mut out = Vec::new();
                longpoll::batch_body(encoding, &batch, &mut out);
                hex(&out)
            };
            BatchVector {
                from,
                count,
                json: body(Encoding::Json),
                binary: body(Encoding::Binary),
            }
        })
        .collect();

    let content_types = [Encoding::Json, Encoding::Binary]
        .into_iter()
        .map(|encoding| ContentTypeVector {
            encoding: encoding.name().to_string(),
            content_type: http::content_type(encoding).to_string(),
        })
        .collect();

    let mut topics = Vec::new();
    for template in [
        "fleet/{device}/reading",
        "{device}",
        "plain/topic",
        "a/{device}/b/{device}",
        "x{device",
        "{device}{device}",
    ] {
        for device_id in [0, 42, 999_999, 1_000_000, u32::MAX] {
            topics.push(TopicVector {
                template: template.to_string(),
                device_id,
                topic: mqtt::topic(template, device_id),
            });
        }
    }

    Vectors {
        comment: "Generated by transports/tests/firmware_vectors.rs from the Rust codec; \
                  FLEETBENCH_BLESS_VECTORS=1 rewrites it. Byte strings other than json and the \
                  MQTT names are lowercase hex."
            .to_string(),
        readings,
        batches,
        content_types,
        topics,
    }
}

fn set_interval(device_id: u32, seq: u32, due_us: u64, ms: u32, size: u32) -> DeviceCommand {
    DeviceCommand {
        device_id,
        seq,
        due_us,
        op: CommandOp::SetInterval { ms },
        size,
    }
}

fn encoded(command: &DeviceCommand) -> Vec<u8> {
    let mut out = Vec::new();
    command.encode(&mut out);
    out
}

/// The fixed commands, named.
fn commands() -> Vec<(String, DeviceCommand)> {
    let mut list = Vec::new();
    let sample = set_interval(7, 12, 15_000_000, 1000, 0);
    let unpadded = sample.unpadded_len() as u32;
    for size in [0, 64, 256, 1000] {
        list.push((
            format!("documented sample, size {size}"),
            DeviceCommand { size, ..sample },
        ));
    }
    // Around the padding's threshold: `,"p":""` needs 7 bytes.
    for extra in [0u32, 1, 6, 7, 8, 9] {
        list.push((
            format!("documented sample, unpadded + {extra}"),
            DeviceCommand {
                size: unpadded + extra,
                ..sample
            },
        ));
    }
    list.push((
        "unpadded - 1".to_string(),
        DeviceCommand {
            size: unpadded - 1,
            ..sample
        },
    ));
    list.push(("zero".to_string(), set_interval(0, 0, 0, 0, 0)));
    let maxima = set_interval(u32::MAX, u32::MAX, u64::MAX, u32::MAX, 0);
    list.push(("maxima".to_string(), maxima));
    list.push((
        "maxima, padded".to_string(),
        DeviceCommand {
            size: maxima.unpadded_len() as u32 + 7,
            ..maxima
        },
    ));
    // Every digit length: `d`, `c` and `v` 1 to 10 digits, `t` 1 to 20.
    for i in 0..20u32 {
        let u32_digits = i % 10 + 1;
        let small = 10u32.pow(u32_digits - 1);
        let large = (10u64.pow(u32_digits) - 1).min(u64::from(u32::MAX)) as u32;
        let t = if i % 2 == 0 || i == 19 {
            10u64.pow(i)
        } else {
            10u64.pow(i + 1) - 1
        };
        let (d, c, v) = if i % 2 == 0 {
            (small, large, small)
        } else {
            (large, small, large)
        };
        list.push((format!("digits {i}"), set_interval(d, c, t, v, 40 + 13 * i)));
    }
    list
}

/// Byte strings a device may receive: commands around the shape `Command::encode` gives, and
/// everything around them that is not one.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let sample = encoded(&set_interval(7, 12, 15_000_000, 1000, 0));
    let padded = encoded(&set_interval(7, 12, 15_000_000, 1000, 100));
    let text = |s: &str| s.as_bytes().to_vec();
    let with = |before: &[u8], body: &[u8], after: &[u8]| [before, body, after].concat();
    let mut list: Vec<(String, Vec<u8>)> = vec![
        ("sample".into(), sample.clone()),
        ("padded".into(), padded.clone()),
        ("a line".into(), with(b"", &sample, b"\n")),
        ("a CRLF line".into(), with(b"", &padded, b"\r\n")),
        ("surrounding blanks".into(), with(b" \t\x0c\r\n", &sample, b" \x0c\t")),
        (
            "keys reordered".into(),
            text(r#"{"p":"xx","v":1000,"t":15000000,"c":12,"d":7,"cmd":"set-interval"}"#),
        ),
        (
            "whitespace between tokens".into(),
            text("{ \"cmd\" :\t\"set-interval\" ,\r\n\"d\": 7 ,\"c\":12,\"t\":15000000,\"v\":1000 }"),
        ),
        (
            "form feed between tokens".into(),
            text("{\"cmd\":\"set-interval\",\x0c\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000}"),
        ),
        (
            "empty padding".into(),
            text(r#"{"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000,"p":""}"#),
        ),
        (
            "padding of other characters".into(),
            text("{\"cmd\":\"set-interval\",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000,\"p\":\"a b\u{e9}\u{1f600}{}[]:,\"}"),
        ),
        (
            "unknown keys of every kind".into(),
            text(r#"{"x":1,"cmd":"set-interval","y":[1,{"a":null,"b":[true,false]}],"d":7,"z":"q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","c":12,"w":-1.5e+3,"t":15000000,"u":{},"v":1000,"s":[],"long key name":0.25E-2}"#),
        ),
        (
            "an unknown key repeated".into(),
            text(r#"{"x":1,"x":2,"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "escaped key names".into(),
            text(r#"{"\u0063md":"set-interval","\u0064":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "nested 10 deep".into(),
            text(&format!(
                r#"{{"x":{}1{},"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}}"#,
                "[".repeat(10),
                "]".repeat(10)
            )),
        ),
        (
            "nested 200 deep".into(),
            text(&format!(
                r#"{{"x":{}1{},"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )),
        ),
        (
            "widest numbers".into(),
            text(r#"{"cmd":"set-interval","d":4294967295,"c":4294967295,"t":18446744073709551615,"v":4294967295}"#),
        ),
        (
            "zeros".into(),
            text(r#"{"cmd":"set-interval","d":0,"c":0,"t":0,"v":0}"#),
        ),
    ];
    let field_cases: [(&str, &str); 22] = [
        ("d", "-1"),
        ("d", "-0"),
        ("d", "1.0"),
        ("d", "1e2"),
        ("d", "07"),
        ("d", "+7"),
        ("d", "4294967296"),
        ("d", "\"7\""),
        ("d", "null"),
        ("d", "true"),
        ("c", "99999999999"),
        ("t", "18446744073709551616"),
        ("t", "1.5"),
        ("v", "4294967296"),
        ("v", "-1000"),
        ("p", "null"),
        ("p", "1"),
        ("p", "\"x\\\"x\""),
        ("p", "\"x\\nx\""),
        ("p", "\"x\u{1}x\""),
        ("cmd", "\"set\\u002dinterval\""),
        ("cmd", "[]"),
    ];
    for (field, value) in field_cases {
        let mut fields = vec![
            ("cmd", "\"set-interval\"".to_string()),
            ("d", "7".to_string()),
            ("c", "12".to_string()),
            ("t", "15000000".to_string()),
            ("v", "1000".to_string()),
        ];
        match fields.iter_mut().find(|(name, _)| *name == field) {
            Some(slot) => slot.1 = value.to_string(),
            None => fields.push((field, value.to_string())),
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(name, v)| format!("\"{name}\":{v}"))
            .collect();
        list.push((
            format!("{field} = {value}"),
            text(&format!("{{{}}}", body.join(","))),
        ));
    }
    for missing in ["cmd", "d", "c", "t", "v"] {
        let body: Vec<String> = [
            ("cmd", "\"set-interval\""),
            ("d", "7"),
            ("c", "12"),
            ("t", "15000000"),
            ("v", "1000"),
        ]
        .iter()
        .filter(|(name, _)| *name != missing)
        .map(|(name, v)| format!("\"{name}\":{v}"))
        .collect();
        list.push((
            format!("without {missing}"),
            text(&format!("{{{}}}", body.join(","))),
        ));
    }
    for (name, bytes) in [
        (
            "d twice",
            text(r#"{"cmd":"set-interval","d":7,"d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "p twice",
            text(r#"{"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000,"p":"","p":""}"#),
        ),
        (
            "another command",
            text(r#"{"cmd":"reboot","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "another command, v too large",
            text(r#"{"cmd":"reboot","d":7,"c":12,"t":15000000,"v":4294967296}"#),
        ),
        ("another command, no fields", text(r#"{"cmd":"reboot"}"#)),
        (
            "the name in capitals",
            text(r#"{"cmd":"SET-INTERVAL","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "the name with a space",
            text(r#"{"cmd":"set-interval ","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "the name in other letters",
            text("{\"cmd\":\"s\u{e9}t\",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000}"),
        ),
        (
            "the name in invalid UTF-8",
            [
                &b"{\"cmd\":\"set-\xffinterval\""[..],
                b",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000}",
            ]
            .concat(),
        ),
        (
            "padding in invalid UTF-8",
            [
                &b"{\"cmd\":\"set-interval\",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000,"[..],
                b"\"p\":\"x\xc3x\"}",
            ]
            .concat(),
        ),
        (
            "padding with an overlong encoding",
            [
                &b"{\"cmd\":\"set-interval\",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000,"[..],
                b"\"p\":\"\xc0\xaf\"}",
            ]
            .concat(),
        ),
        (
            "a lone surrogate in a key",
            text(r#"{"\ud800":1,"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "a bad escape in an unknown value",
            text(r#"{"x":"\q","cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}"#),
        ),
        (
            "a NUL between tokens",
            text("{\"cmd\":\"set-interval\"\u{0},\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000}"),
        ),
        (
            "a trailing comma",
            text(r#"{"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000,}"#),
        ),
        ("trailing bytes", with(b"", &sample, b"x")),
        ("two commands", with(&sample, &sample, b"")),
        ("two lines", with(&sample, b"\n", &sample)),
        ("empty", Vec::new()),
        ("blanks", text(" \r\n")),
        ("an empty object", text("{}")),
        ("an array", with(b"[", &sample, b"]")),
        ("a string", text("\"set-interval\"")),
        ("bytes", b"\xff\xfe\x00\x01".to_vec()),
    ] {
        list.push((name.to_string(), bytes));
    }
    // Every truncation of the sample and of the padded command.
    for (which, whole) in [("sample", &sample), ("padded", &padded)] {
        for len in 0..whole.len() {
            list.push((format!("{which} cut to {len} bytes"), whole[..len].to_vec()));
        }
    }
    list
}

/// What the Rust codec makes of the fixed commands and inputs.
fn generate_commands() -> CommandVectors {
    let commands = commands()
        .into_iter()
        .map(|(name, command)| {
            let mut ack = Vec::new();
            command.ack().encode(&mut ack);
            let CommandOp::SetInterval { ms } = command.op;
            CommandVector {
                name,
                device_id: command.device_id,
                seq: command.seq,
                due_us: command.due_us,
                interval_ms: ms,
                size: command.size,
                text: String::from_utf8(encoded(&command)).expect("commands are ASCII"),
                ack: String::from_utf8(ack).expect("acknowledgements are ASCII"),
            }
        })
        .collect();
    let inputs = inputs()
        .into_iter()
        .map(|(name, bytes)| {
            let (verdict, command) = match DeviceCommand::parse(&bytes) {
                Ok(c) => {
                    let CommandOp::SetInterval { ms } = c.op;
                    (
                        "ok",
                        Some(ParsedVector {
                            device_id: c.device_id,
                            seq: c.seq,
                            due_us: c.due_us,
                            interval_ms: ms,
                            size: c.size,
                        }),
                    )
                }
                Err(CommandError::UnknownOp(_)) => ("unknown-op", None),
                Err(_) => ("not-a-command", None),
            };
            InputVector {
                name,
                bytes: hex(&bytes),
                verdict: verdict.to_string(),
                command,
            }
        })
        .collect();
    CommandVectors {
        comment: "Generated by transports/tests/firmware_vectors.rs from transports::command; \
                  FLEETBENCH_BLESS_VECTORS=1 rewrites it. Input bytes are lowercase hex."
            .to_string(),
        commands,
        inputs,
    }
}

/// Where `found` first differs from `want` (a JSON path, with both values), or `None`.
fn first_difference<T: Serialize>(want: &T, found: &T) -> Option<String> {
    fn walk(path: &str, want: &serde_json::Value, found: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match (want, found) {
            (Value::Object(w), Value::Object(f)) if w.len() == f.len() => w
                .iter()
                .find_map(|(key, wv)| walk(&format!("{path}.{key}"), wv, f.get(key)?)),
            (Value::Array(w), Value::Array(f)) if w.len() == f.len() => w
                .iter()
                .zip(f)
                .enumerate()
                .find_map(|(i, (wv, fv))| walk(&format!("{path}[{i}]"), wv, fv)),
            _ if want == found => None,
            _ => Some(format!(
                "{} is {found} in the file, the Rust codec gives {want}",
                if path.is_empty() { "the value" } else { path }
            )),
        }
    }
    let want = serde_json::to_value(want).expect("vectors serialize");
    let found = serde_json::to_value(found).expect("vectors serialize");
    walk("", &want, &found)
}

fn render<T: Serialize>(vectors: &T) -> String {
    let mut text = serde_json::to_string_pretty(vectors).expect("vectors serialize");
    text.push('\n');
    text
}

#[test]
fn vectors_match_the_rust_codec() {
    let expected = generate();
    let path = vectors_path();
    if std::env::var(BLESS_ENV).as_deref() == Ok("1") {
        std::fs::write(&path, render(&expected)).expect("write the vectors file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let bless = format!(
        "to regenerate it: {BLESS_ENV}=1 cargo nextest run -p transports --test firmware_vectors"
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {bless}", path.display()));
    let found: Vectors = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}; {bless}", path.display()));

    assert!(
        expected.readings.len() >= 40,
        "keep at least 40 reading vectors"
    );
    assert_eq!(
        found.readings.len(),
        expected.readings.len(),
        "reading count differs; {bless}"
    );
    for (i, (want, got)) in expected.readings.iter().zip(&found.readings).enumerate() {
        if let Some(diff) = first_difference(want, got) {
            panic!(
                "reading vector {i} ({}) differs from the Rust codec: {diff}; {bless}",
                want.name
            );
        }
    }
    let sections = [
        (
            "batches",
            first_difference(&expected.batches, &found.batches),
        ),
        (
            "content_types",
            first_difference(&expected.content_types, &found.content_types),
        ),
        ("topics", first_difference(&expected.topics, &found.topics)),
    ];
    for (section, diff) in sections {
        if let Some(diff) = diff {
            panic!("\"{section}\" differs from the Rust codec: {diff}; {bless}");
        }
    }
    assert_eq!(found, expected, "vectors file differs; {bless}");
    assert!(
        text == render(&expected),
        "{} holds the right values but not as the generator writes them; {bless}",
        path.display()
    );
}

#[test]
fn command_vectors_match_the_rust_codec() {
    let expected = generate_commands();
    let path = command_vectors_path();
    if std::env::var(BLESS_ENV).as_deref() == Ok("1") {
        std::fs::write(&path, render(&expected)).expect("write the commands file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let bless = format!(
        "to regenerate it: {BLESS_ENV}=1 cargo nextest run -p transports --test firmware_vectors"
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {bless}", path.display()));
    let found: CommandVectors = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}; {bless}", path.display()));
    for (section, diff) in [
        (
            "commands",
            first_difference(&expected.commands, &found.commands),
        ),
        ("inputs", first_difference(&expected.inputs, &found.inputs)),
    ] {
        if let Some(diff) = diff {
            panic!("\"{section}\" differs from the Rust codec: {diff}; {bless}");
        }
    }
    assert_eq!(found, expected, "commands file differs; {bless}");
    assert!(
        text == render(&expected),
        "{} holds the right values but not as the generator writes them; {bless}",
        path.display()
    );
    // The inputs cover each verdict, and the commands each side of the padding's threshold.
    for verdict in ["ok", "not-a-command", "unknown-op"] {
        assert!(
            expected.inputs.iter().any(|i| i.verdict == verdict),
            "no input is {verdict}"
        );
    }
    assert!(expected
        .commands
        .iter()
        .any(|c| c.text.len() == c.size as usize && c.text.contains(r#""p":"""#)));
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{cmd:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}

/// The `.cpp` files directly in `dir`, sorted.
fn cpp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .cpp files in {}", dir.display());
    files
}

#[test]
fn firmware_host_tests_pass_under_gxx() {
    let gxx = "g++";
    match Command::new(gxx).arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`{gxx} --version` failed ({}): the firmware host tests need a working g++",
            output.status
        ),
        Err(e) => panic!(
            "g++ not found ({e}): the firmware host tests (firmware/test-host) need it; \
             install the test prerequisites with `apt-get install -y mosquitto chromium g++`, \
             or skip the tests that need them: `NEXTEST_PROFILE=without-tools cargo nextest \
             run --workspace` (README, Quick start)"
        ),
    }
    let root = repo_root();
    let core = root.join("firmware/lib/fleetbench/src");
    let tests = root.join("firmware/test-host");
    let core_sources = cpp_files(&core);

    // The core must build for the ESP8266 toolchain too: C++11, no exceptions, no RTTI.
    run(
        Command::new(gxx)
            .args([
                "-std=c++11",
                "-pedantic",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fno-exceptions",
                "-fno-rtti",
                "-fsyntax-only",
            ])
            .args(&core_sources),
        "checking the core as C++11",
    );

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("firmware-host-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("create the build directory");
    let binary = out_dir.join("host-tests");
    run(
        Command::new(gxx)
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(&core)
            .args(cpp_files(&tests))
            .args(&core_sources)
            .arg("-o")
            .arg(&binary),
        "building firmware/test-host",
    );
    let stdout = run(
        Command::new(&binary)
            .arg(vectors_path())
            .arg(command_vectors_path()),
        "running firmware/test-host",
    );
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The ESP8266WebServer sketches leave every byte on the wire to the library (`send`,
/// `chunkedResponseModeStart`, `sendContent`), as a typical sketch does: a head or chunk written
/// by hand on the client would be the firmware's bytes, not ESP8266WebServer's. (The sketches
/// need the ESP8266 toolchain, so this reads their source; their bytes under core 3.1.2 are
/// listed in each file's header.)
#[test]
fn esp8266webserver_sketches_write_through_the_library() {
    for sketch in ["http_stream.cpp", "long_poll.cpp"] {
        let path = repo_root().join("firmware/src/variants").join(sketch);
        let source = std::fs::read_to_string(&path).expect("read the sketch");
        let code: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for by_hand in [".write(", ".print(", ".printf(", "HTTP/1.1"] {
            assert!(
                !code.contains(by_hand),
                "{sketch} writes `{by_hand}` on the client itself"
            );
        }
        assert!(code.contains("g_server.send"), "{sketch} answers with send");
    }
}
