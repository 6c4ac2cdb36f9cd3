//! How a command is written into the journal: the `payload` of an entry is the time the
//! command was applied with, then its request (the canonical `dispatch.v1` encoding).
//! Replaying an entry is executing that request at that time again.
//!
//! ```text
//! payload = b"D2" | time_ms: i64 big-endian | request
//! ```
//!
//! Format `D1` (written by the Python engine before the state machine) also carried the
//! incident id the engine chose: `b"D1" | time_ms | len: u16 BE | chosen id | request`.
//! It is still read; the chosen id is not needed, because the state machine allocates the
//! same ids from its own counter.

use crate::error::{CoreError, CoreResult};

const D2: &[u8; 2] = b"D2";
const D1: &[u8; 2] = b"D1";

/// The payload of a command applied at `time_ms`.
pub fn encode(time_ms: i64, request: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + request.len());
    out.extend_from_slice(D2);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(request);
    out
}

/// (time_ms, request) of a payload.
pub fn decode(payload: &[u8]) -> CoreResult<(i64, &[u8])> {
    let bad = |what: &str| CoreError::invalid("payload", what.to_owned());
    if payload.len() < 10 {
        return Err(bad("too short to hold its header"));
    }
    let time_ms = i64::from_be_bytes(payload[2..10].try_into().expect("8 bytes"));
    match &payload[..2] {
        m if m == D2 => Ok((time_ms, &payload[10..])),
        m if m == D1 => {
            if payload.len() < 12 {
                return Err(bad("too short to hold its D1 header"));
            }
            let id_len = usize::from(u16::from_be_bytes([payload[10], payload[11]]));
            let start = 12 + id_len;
            if payload.len() < start {
                return Err(bad("D1 chosen id runs past the end"));
            }
            Ok((time_ms, &payload[start..]))
        }
        other => Err(bad(&format!("has format {:?}; this build reads D2 and D1", String::from_utf8_lossy(other)))),
    }
}

/// The request inside a payload: what a retry's bytes are compared with.
pub fn request(payload: &[u8]) -> CoreResult<&[u8]> {
    decode(payload).map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_d1() {
        let p = encode(1_700_000_000_123, b"abc");
        assert_eq!(decode(&p).unwrap(), (1_700_000_000_123, &b"abc"[..]));
        let mut d1 = b"D1".to_vec();
        d1.extend_from_slice(&5i64.to_be_bytes());
        d1.extend_from_slice(&3u16.to_be_bytes());
        d1.extend_from_slice(b"INCxyz");
        assert_eq!(decode(&d1).unwrap(), (5, &b"xyz"[..]));
        assert!(decode(b"XX12345678").is_err());
        assert!(decode(b"D2").is_err());
    }
}
