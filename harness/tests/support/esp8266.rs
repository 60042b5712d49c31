//! An ESP8266's socket and link options as the device emulator models them
//! ([`DeviceProfile::default`]: lwIP's 536-byte MSS, send and receive buffers of 2 and 4 x MSS),
//! for tests that play a board by hand.

#![allow(dead_code)]

use device_emulator::DeviceProfile;
use transports::socket::SocketOptions;
use transports::transport::LinkOptions;
use transports::Encoding;

/// The default profile's socket, Nagle's algorithm on or off as `nagle` says.
pub fn esp8266_socket(nagle: bool) -> SocketOptions {
    let profile = DeviceProfile::default();
    SocketOptions {
        mss: Some(profile.mss),
        nagle,
        send_buffer: Some(profile.send_buffer),
        recv_buffer: Some(profile.recv_buffer),
    }
}

/// Device `device_id`'s link over [`esp8266_socket`]: JSON readings, the default profile's
/// connect and write timeouts, default MQTT and HTTP settings, no fixed source address.
pub fn esp8266_link_options(device_id: u32, nagle: bool) -> LinkOptions {
    let profile = DeviceProfile::default();
    LinkOptions {
        tls: None,
        commands: None,
        encoding: Encoding::Json,
        socket: esp8266_socket(nagle),
        source: None,
        connect_timeout: profile.connect_timeout,
        write_timeout: profile.write_timeout,
        device_id,
        mqtt: Default::default(),
        http_connections: Default::default(),
        serial: None,
    }
}
