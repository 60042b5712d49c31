//! The pure parts of MQTT 3.1.1 as fleetbench uses it: names, exact packet sizes, and where a
//! PUBLISH's payload starts. Packet encoding and decoding themselves are rumqttc's (`mqttbytes`).

/// A device's name in topics: `esp-` and six digits (10 characters below a million devices).
pub fn device_name(device_id: u32) -> String {
    format!("esp-{device_id:06}")
}

/// A device's MQTT client id: `esp8266-` and four digits (12 characters below 10,000 devices).
pub fn client_id(device_id: u32) -> String {
    format!("esp8266-{device_id:04}")
}

/// The topic a device publishes to: `template` with `{device}` replaced by its name.
pub fn topic(template: &str, device_id: u32) -> String {
    template.replace("{device}", &device_name(device_id))
}

/// The filter a collector subscribes with: `template` with `{device}` replaced by `+`.
pub fn filter(template: &str) -> String {
    template.replace("{device}", "+")
}

/// Bytes of the Remaining Length field for a remaining length of `len`.
pub fn remaining_length_bytes(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Bytes of a PUBLISH with a topic of `topic_len` and a payload of `payload_len` at `qos`.
pub fn publish_len(topic_len: usize, payload_len: usize, qos: u8) -> usize {
    let remaining = 2 + topic_len + if qos > 0 { 2 } else { 0 } + payload_len;
    1 + remaining_length_bytes(remaining) + remaining
}

/// Acknowledgement bytes per PUBLISH at `qos`, from the publisher's side:
/// `(sent by it, received by it)`. QoS 1: PUBACK in; QoS 2: PUBREL out, PUBREC and PUBCOMP in.
pub fn ack_bytes(qos: u8) -> (usize, usize) {
    match qos {
        0 => (0, 0),
        1 => (0, 4),
        _ => (4, 8),
    }
}

/// Bytes of a SUBSCRIBE of one filter of `filter_len` bytes: packet id, the filter with its
/// length, and the requested QoS (27 B for a device's 20-character command topic).
pub fn subscribe_len(filter_len: usize) -> usize {
    let remaining = 2 + 2 + filter_len + 1;
    1 + remaining_length_bytes(remaining) + remaining
}

/// Bytes of a SUBACK of one filter: fixed header, packet id, one return code.
pub const SUBACK_LEN: usize = 5;

/// Bytes of a CONNECT without a will: `12 + (2 + id)`, plus `2 + length` for each credential.
pub fn connect_len(client_id_len: usize, username: Option<&str>, password: Option<&str>) -> usize {
    let remaining = 10
        + 2
        + client_id_len
        + username.map_or(0, |u| 2 + u.len())
        + password.map_or(0, |p| 2 + p.len());
    1 + remaining_length_bytes(remaining) + remaining
}

/// Where the payload of the PUBLISH at the start of `buf` begins (after the fixed header, the
/// topic and, at QoS > 0, the packet id), or `None` if `buf` does not start with a whole PUBLISH
/// header. arduino-mqtt writes those two parts with two writes.
pub fn publish_payload_offset(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    if first >> 4 != 3 {
        return None;
    }
    let qos = (first >> 1) & 0b11;
    let mut remaining = 0usize;
    let mut at = 1;
    loop {
        let byte = *buf.get(at)?;
        remaining |= ((byte & 0x7f) as usize) << (7 * (at - 1));
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at > 4 {
            return None;
        }
    }
    let topic_len = u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]) as usize;
    let offset = at + 2 + topic_len + if qos > 0 { 2 } else { 0 };
    (offset <= at + remaining && offset <= buf.len()).then_some(offset)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use rumqttc::{Connect, Publish, QoS, SubAck, Subscribe, SubscribeReasonCode};

    use super::*;

    #[test]
    fn names_have_the_reference_lengths() {
        assert_eq!(
            topic("fleet/{device}/reading", 42),
            "fleet/esp-000042/reading"
        );
        assert_eq!(topic("fleet/{device}/reading", 42).len(), 24);
        assert_eq!(client_id(42).len(), 12);
        assert_eq!(filter("fleet/{device}/reading"), "fleet/+/reading");
    }

    #[test]
    fn command_topics_are_20_characters() {
        use crate::settings::MqttSettings;
        assert_eq!(
            topic(MqttSettings::COMMAND_TOPIC, 42),
            "fleet/esp-000042/cmd"
        );
        assert_eq!(topic(MqttSettings::ACK_TOPIC, 42), "fleet/esp-000042/ack");
        assert_eq!(filter(MqttSettings::ACK_TOPIC), "fleet/+/ack");
        assert_eq!(subscribe_len(20), 27);
        // An acknowledgement of command 3 to device 42, `{"ack":3,"d":42}`: 16 bytes.
        assert_eq!(publish_len(20, 16, 0), 40);
        assert_eq!(publish_len(20, 16, 1), 42);
    }

    #[test]
    fn the_reference_example_is_88_94_102_bytes_per_reading() {
        // shared/reference/wire-formats.md: 60-byte payload, 24-character topic.
        let per_reading = |qos| {
            let (out, back) = ack_bytes(qos);
            publish_len(24, 60, qos) + out + back
        };
        assert_eq!(publish_len(24, 60, 0), 88);
        assert_eq!(publish_len(24, 60, 1), 90);
        assert_eq!(per_reading(0), 88);
        assert_eq!(per_reading(1), 94);
        assert_eq!(per_reading(2), 102);
        assert_eq!(connect_len(12, None, None), 26);
    }

    #[test]
    fn arithmetic_agrees_with_rumqttc_encoder() {
        for (topic_len, payload_len) in [(24, 60), (1, 0), (24, 100), (200, 16_000)] {
            for (qos, q) in [
                (0, QoS::AtMostOnce),
                (1, QoS::AtLeastOnce),
                (2, QoS::ExactlyOnce),
            ] {
                let mut p = Publish::new("t".repeat(topic_len), q, vec![b'x'; payload_len]);
                p.pkid = if qos > 0 { 7 } else { 0 };
                let mut buf = BytesMut::new();
                let n = p.write(&mut buf).unwrap();
                assert_eq!(n, publish_len(topic_len, payload_len, qos));
                assert_eq!(
                    publish_payload_offset(&buf),
                    Some(n - payload_len),
                    "{topic_len}/{payload_len}/{qos}"
                );
            }
        }
        for filter_len in [1, 20, 200] {
            let mut buf = BytesMut::new();
            let subscribe = Subscribe::new("f".repeat(filter_len), QoS::ExactlyOnce);
            assert_eq!(
                subscribe.write(&mut buf).unwrap(),
                subscribe_len(filter_len)
            );
        }
        let suback = SubAck::new(1, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
        assert_eq!(suback.write(&mut BytesMut::new()).unwrap(), SUBACK_LEN);
        let mut c = Connect::new("esp8266-0042");
        c.set_login("user", "secret");
        let mut buf = BytesMut::new();
        assert_eq!(
            c.write(&mut buf).unwrap(),
            connect_len(12, Some("user"), Some("secret"))
        );
    }

    #[test]
    fn payload_offset_needs_a_whole_publish_header() {
        assert_eq!(publish_payload_offset(&[]), None);
        assert_eq!(publish_payload_offset(&[0x40, 0x02, 0, 1]), None, "PUBACK");
        assert_eq!(
            publish_payload_offset(&[0x30, 0x05, 0x00]),
            None,
            "truncated topic length"
        );
        assert_eq!(
            publish_payload_offset(&[0x30, 0x05, 0x00, 0x09, b'a']),
            None
        );
        assert_eq!(
            publish_payload_offset(&[0x30, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
