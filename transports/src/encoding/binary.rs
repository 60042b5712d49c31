//! The `binary` encoding: one fixed-size little-endian record per reading.
//!
//! | offset | size | field            |
//! |-------:|-----:|------------------|
//! |      0 |    4 | `device_id` u32  |
//! |      4 |    4 | `seq` u32        |
//! |      8 |    8 | `scheduled_us` u64 |
//! |     16 |    2 | `temperature_dc` i16 |
//! |     18 |    2 | `humidity_dpct` u16 |
//! |     20 |    4 | `pressure_pa` u32 |
//! |     24 |    2 | `air_quality_dppm` u16 |
//! |     26 |    4 | `boot` u32, only when above 0 |
//!
//! A reading of a device's first boot is the 26-byte record ([`RECORD_LEN`]); after a reboot the
//! boot follows, a 30-byte record ([`BOOT_RECORD_LEN`]). Decoding takes either length (a 26-byte
//! record is boot 0). No header, version or checksum: the length is the only check, and framing
//! is the transport's. (The firmware's C++ encoder writes the 26-byte record only: a board's
//! boot is not on its wire.)
use super::DecodeError;
use crate::Reading;

/// Length of a binary record in bytes, for a reading of boot 0.
pub const RECORD_LEN: usize = 26;

/// Length of a binary record of a reading after a reboot (boot above 0): the boot appended.
pub const BOOT_RECORD_LEN: usize = RECORD_LEN + 4;

/// The length of `reading`'s record.
pub fn record_len(reading: &Reading) -> usize {
    if reading.boot == 0 {
        RECORD_LEN
    } else {
        BOOT_RECORD_LEN
    }
}

pub(crate) fn encode(r: &Reading, out: &mut Vec<u8>) {
    let mut rec = [0u8; BOOT_RECORD_LEN];
    rec[0..4].copy_from_slice(&r.device_id.to_le_bytes());
    rec[4..8].copy_from_slice(&r.seq.to_le_bytes());
    rec[8..16].copy_from_slice(&r.scheduled_us.to_le_bytes());
    rec[16..18].copy_from_slice(&r.temperature_dc.to_le_bytes());
    rec[18..20].copy_from_slice(&r.humidity_dpct.to_le_bytes());
    rec[20..24].copy_from_slice(&r.pressure_pa.to_le_bytes());
    rec[24..26].copy_from_slice(&r.air_quality_dppm.to_le_bytes());
    rec[26..30].copy_from_slice(&r.boot.to_le_bytes());
    out.extend_from_slice(&rec[..record_len(r)]);
}

pub(crate) fn decode(payload: &[u8]) -> Result<Reading, DecodeError> {
    let (rec, boot) = match payload.len() {
        RECORD_LEN => (payload, 0),
        BOOT_RECORD_LEN => (
            &payload[..RECORD_LEN],
            u32::from_le_bytes(payload[RECORD_LEN..].try_into().expect("4 bytes")),
        ),
        len => return Err(DecodeError::WrongLength { len }),
    };
    let rec: &[u8; RECORD_LEN] = rec.try_into().expect("checked above");
    Ok(Reading {
        device_id: u32::from_le_bytes(take(rec, 0)),
        seq: u32::from_le_bytes(take(rec, 4)),
        scheduled_us: u64::from_le_bytes(take(rec, 8)),
        temperature_dc: i16::from_le_bytes(take(rec, 16)),
        humidity_dpct: u16::from_le_bytes(take(rec, 18)),
        pressure_pa: u32::from_le_bytes(take(rec, 20)),
        air_quality_dppm: u16::from_le_bytes(take(rec, 24)),
        boot,
    })
}

/// The `N` bytes of `rec` at `at`; the offsets above are constants well inside the record.
fn take<const N: usize>(rec: &[u8; RECORD_LEN], at: usize) -> [u8; N] {
    let mut field = [0u8; N];
    field.copy_from_slice(&rec[at..at + N]);
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Reading {
        Reading {
            device_id: 0x0403_0201,
            seq: 0x0807_0605,
            scheduled_us: 0x100f_0e0d_0c0b_0a09,
            temperature_dc: -2, // 0xfffe
            humidity_dpct: 0x1413,
            pressure_pa: 0x1817_1615,
            air_quality_dppm: 0x1a19,
            boot: 0,
        }
    }

    #[test]
    fn layout_is_little_endian_in_field_order() {
        let mut out = Vec::new();
        encode(&sample(), &mut out);
        let expected: [u8; RECORD_LEN] = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xfe, 0xff, 0x13, 0x14, 0x15,
            0x16, 0x17, 0x18, 0x19, 0x1a,
        ];
        assert_eq!(out, expected);
        assert_eq!(decode(&out), Ok(sample()));
    }

    #[test]
    fn after_a_reboot_the_boot_follows_the_record_of_boot_0() {
        let first = sample();
        let rebooted = Reading {
            boot: 0x1e1d_1c1b,
            ..first
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(&first, &mut a);
        encode(&rebooted, &mut b);
        assert_eq!(a.len(), RECORD_LEN);
        assert_eq!(b.len(), BOOT_RECORD_LEN);
        assert_eq!(b[..RECORD_LEN], a[..], "the first 26 bytes are the same");
        assert_eq!(b[RECORD_LEN..], [0x1b, 0x1c, 0x1d, 0x1e]);
        assert_eq!(decode(&b), Ok(rebooted));
    }

    #[test]
    fn any_other_length_is_rejected() {
        let mut out = Vec::new();
        encode(
            &Reading {
                boot: 1,
                ..sample()
            },
            &mut out,
        );
        out.push(0);
        for len in 0..out.len() {
            if len != RECORD_LEN && len != BOOT_RECORD_LEN {
                assert_eq!(decode(&out[..len]), Err(DecodeError::WrongLength { len }));
            }
        }
    }
}
