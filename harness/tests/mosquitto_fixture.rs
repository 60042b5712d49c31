//! Proves the mosquitto fixture (tests/support/mosquitto.rs): the broker it starts answers a raw
//! MQTT 3.1.1 CONNECT, and the password and connection-limit settings it writes take effect.

#[path = "support/mosquitto.rs"]
mod mosquitto;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mosquitto::{Mosquitto, MosquittoConfig};

/// CONNECT for client id "ab", clean session, keep-alive 15 s, written out by hand.
const CONNECT_AB: [u8; 16] = [
    0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0f, 0x00, 0x02, 0x61, 0x62,
];

/// CONNACK, session not present, with return code `code`.
fn connack(code: u8) -> [u8; 4] {
    [0x20, 0x02, 0x00, code]
}

/// An MQTT 3.1.1 CONNECT (clean session, keep-alive 15 s), with a username and password if
/// given.
fn connect_packet(client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    // Clean session; 0x80 username and 0x40 password when logging in.
    let flags = if login.is_some() { 0xc2 } else { 0x02 };
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x0f];
    string(&mut body, client_id);
    if let Some((user, password)) = login {
        string(&mut body, user);
        string(&mut body, password);
    }
    let mut packet = vec![0x10];
    // Remaining length: seven bits a byte, low bits first, high bit set while more follow.
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

/// Sends `packet` on a new connection and returns the connection and the first 4 bytes back.
fn exchange(addr: SocketAddr, packet: &[u8]) -> (TcpStream, io::Result<[u8; 4]>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(packet).unwrap();
    let mut reply = [0u8; 4];
    let result = stream.read_exact(&mut reply).map(|()| reply);
    (stream, result)
}

#[test]
fn connect_packet_matches_hand_written_bytes() {
    assert_eq!(connect_packet("ab", None), CONNECT_AB);
    let login = connect_packet("ab", Some(("u", "pw")));
    // 10 + (2 + 2) + (2 + 1) + (2 + 2) bytes after the fixed header.
    assert_eq!(&login[..2], &[0x10, 21]);
    assert_eq!(login.len(), 2 + 21);
    // A remaining length over 127 takes two bytes.
    let long = connect_packet(&"x".repeat(200), None);
    assert_eq!(&long[..3], &[0x10, 0xd4, 0x01]);
    assert_eq!(long.len(), 3 + 212);
}

#[test]
fn mosquitto_answers_an_anonymous_connect() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    let (_stream, reply) = exchange(broker.addr, &CONNECT_AB);
    assert_eq!(reply.unwrap(), connack(0), "log:\n{}", broker.log());
}

#[test]
fn mosquitto_requires_and_accepts_the_password() {
    let broker = Mosquitto::start(&MosquittoConfig::with_password("fleet", "s3cret pass"));
    let (_stream, reply) = exchange(broker.addr, &CONNECT_AB);
    assert_eq!(reply.unwrap(), connack(5), "no login: not authorized");
    let (_stream, reply) = exchange(broker.addr, &connect_packet("ab", Some(("fleet", "wrong"))));
    assert_eq!(reply.unwrap(), connack(5), "wrong password: not authorized");
    let login = connect_packet("ab", Some(("fleet", "s3cret pass")));
    let (_stream, reply) = exchange(broker.addr, &login);
    assert_eq!(reply.unwrap(), connack(0), "log:\n{}", broker.log());
    // mosquitto 2.x warns about password files others can read or it does not own.
    let log = broker.log();
    assert!(!log.contains("Warning"), "log:\n{log}");
}

#[test]
fn mosquitto_max_connections_refuses_the_next_client() {
    let broker = Mosquitto::start(&MosquittoConfig::with_max_connections(1));
    // Nothing connected before (the fixture does not probe the port), so the count is exact:
    // mosquitto 2.0.11 lets one more client in for every connection that has closed.
    let (_first, reply) = exchange(broker.addr, &connect_packet("first", None));
    assert_eq!(reply.unwrap(), connack(0), "log:\n{}", broker.log());
    // Refused at accept: the socket is closed (often reset) without a CONNACK.
    let (_second, reply) = exchange(broker.addr, &connect_packet("second", None));
    assert!(reply.is_err(), "second client got {reply:02x?}");
    let log = broker.log();
    assert!(log.contains("max_connections exceeded"), "log:\n{log}");
}
