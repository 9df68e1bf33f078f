//! The journal's on-disk format: a file starts with `MAGIC`; each record is one frame
//! `[payload length u32 LE][CRC-32 of the payload u32 LE][payload: the event as JSON]`.
//! A frame is intact only when it is complete and its checksum matches, so a write torn by a
//! crash is recognised and nothing after it is read. With encryption at rest the payload is
//! the JSON sealed (`SEALED_RECORD`, nonce, ciphertext, tag); plaintext JSON starts with `{`.

use crate::domain::at_rest::Place;
use crate::domain::audit::AuditEvent;
use crate::store::Seal;
use crate::store::error::AuditUnavailable;

pub const MAGIC: &[u8; 8] = b"KWAUDIT1";
/// Where the first frame starts.
pub const HEADER: u64 = MAGIC.len() as u64;
const FRAME_HEADER: usize = 8;
/// Largest record accepted (arguments and states are bounded far below this by the edge).
pub const MAX_RECORD: usize = 8 << 20;
/// Bytes that always hold at least one whole frame.
pub const MAX_FRAME: u64 = (MAX_RECORD + FRAME_HEADER) as u64;

pub fn encode(event: &AuditEvent, seal: &Seal) -> Result<Vec<u8>, AuditUnavailable> {
    let unencodable = |e: serde_json::Error| {
        tracing::error!(error = %e, "audit record could not be encoded");
        AuditUnavailable::Unavailable
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER + 512);
    frame.resize(FRAME_HEADER, 0);
    if seal.is_on() {
        let json = serde_json::to_vec(event).map_err(unencodable)?;
        frame.extend(seal.record(Place::Journal, json));
    } else {
        // Every call writes one: straight into the frame, no copy.
        serde_json::to_writer(&mut frame, event).map_err(unencodable)?;
    }
    let payload = &frame[FRAME_HEADER..];
    if payload.len() > MAX_RECORD {
        tracing::error!(
            bytes = payload.len(),
            "audit record too large for the journal"
        );
        return Err(AuditUnavailable::Unavailable);
    }
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// The intact frames at the start of some bytes.
pub struct Parsed {
    pub events: Vec<AuditEvent>,
    /// Bytes those frames take.
    pub used: u64,
    /// Why reading stopped before the end, when a frame was damaged (rather than merely cut
    /// short by the end of the bytes).
    pub damaged: Option<String>,
}

/// Reads at most `max` frames from the start of `bytes`.
pub fn decode(bytes: &[u8], max: usize, seal: &Seal) -> Parsed {
    let mut out = Parsed {
        events: Vec::new(),
        used: 0,
        damaged: None,
    };
    let mut at = 0usize;
    while out.events.len() < max {
        let Some(head) = bytes.get(at..at + FRAME_HEADER) else {
            break;
        };
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (len, crc) = (word(0) as usize, word(4));
        if len == 0 || len > MAX_RECORD {
            out.damaged = Some(format!("frame length {len} at +{at}"));
            break;
        }
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.damaged = Some(format!("checksum mismatch at +{at}"));
            break;
        }
        // Under a key every record is sealed (rekey moves older journals first): any other
        // was put there by someone else.
        if seal.is_on() && payload.first() != Some(&crate::domain::at_rest::SEALED_RECORD) {
            out.damaged = Some(format!(
                "unsealed record at +{at} in an encrypted database's journal"
            ));
            break;
        }
        let Some(json) = seal.open_record(Place::Journal, payload) else {
            out.damaged = Some(format!(
                "sealed record at +{at} does not open with the configured key"
            ));
            break;
        };
        match serde_json::from_slice::<AuditEvent>(&json) {
            Ok(e) => out.events.push(e),
            Err(e) => {
                out.damaged = Some(format!("undecodable record at +{at}: {e}"));
                break;
            }
        }
        at += FRAME_HEADER + len;
    }
    out.used = at as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::sample_event as event;

    #[test]
    fn frames_round_trip_and_a_torn_or_damaged_tail_stops_the_read() {
        let mut bytes = Vec::new();
        for i in 0..3 {
            bytes.extend(encode(&event(&format!("r{i}")), &Seal::default()).unwrap());
        }
        let p = decode(&bytes, usize::MAX, &Seal::default());
        assert_eq!(p.events.len(), 3);
        assert_eq!(p.used, bytes.len() as u64);
        assert_eq!(
            p.events[2],
            event("r2"),
            "every field survives, to the microsecond"
        );
        assert!(p.damaged.is_none());

        // Torn: the last frame is cut short; the first two are intact, nothing is damaged.
        let p = decode(&bytes[..bytes.len() - 5], usize::MAX, &Seal::default());
        assert_eq!(p.events.len(), 2);
        assert!(p.damaged.is_none());

        // Damaged: one byte of the second payload flipped.
        let first = encode(&event("r0"), &Seal::default()).unwrap().len();
        let mut bad = bytes.clone();
        bad[first + FRAME_HEADER + 3] ^= 0x20;
        let p = decode(&bad, usize::MAX, &Seal::default());
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.used, first as u64);
        assert!(p.damaged.unwrap().contains("checksum"));

        // Zeros (a file extended but never written) are not a frame.
        let p = decode(&[0u8; 64], usize::MAX, &Seal::default());
        assert!(p.events.is_empty() && p.damaged.is_some());

        // A batch limit stops on a frame boundary.
        let p = decode(&bytes, 2, &Seal::default());
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.used, 2 * first as u64);
    }

    #[test]
    fn sealed_frames_hide_the_record_and_open_only_with_their_key() {
        use crate::domain::at_rest::AtRestKey;
        let key = |k: &str| Seal::new(Some(std::sync::Arc::new(AtRestKey::parse(k).unwrap())));
        let (a, b) = (
            key(&("00".to_owned() + &"01".repeat(31))),
            key(&("00".to_owned() + &"02".repeat(31))),
        );
        let mut e = event("r0");
        e.client_ip = Some("198.51.100.23".into());
        let bytes = encode(&e, &a).unwrap();
        assert!(!bytes.windows(13).any(|w| w == b"198.51.100.23"));
        assert!(!bytes.windows(2).any(|w| w == b"r0"));
        assert_eq!(decode(&bytes, usize::MAX, &a).events, vec![e.clone()]);
        // Another key, or none, reads nothing and says why.
        for other in [&b, &Seal::default()] {
            let p = decode(&bytes, usize::MAX, other);
            assert!(p.events.is_empty());
            assert!(p.damaged.unwrap().contains("does not open"));
        }
        // A plaintext frame is never read under a key (rekey moves older journals first).
        let plain = encode(&e, &Seal::default()).unwrap();
        let p = decode(&plain, usize::MAX, &a);
        assert!(p.events.is_empty());
        assert!(p.damaged.unwrap().contains("unsealed record"));
    }
}
