//! How a command is written into the journal: the `payload` of an entry is the time the
//! command was applied with, then its request (the canonical `dispatch.v1` encoding).
//! Replaying an entry is executing that request at that time again.
//!
//! ```text
//! payload = b"D2" | time_ms: i64 big-endian | request
//! ```
//!
//! Every stored entry carries a CRC-32 over all its fields ([`checksum`]); [`verify`] holds
//! the rules that read them back (a bad last entry is a torn write, dropped; anything else
//! missing or bad is corruption). The Python journal backends store and read the rows; the
//! recipe and the rules are here, once, for them and for replay.
//!
//! Format `D1` (written by the Python engine before the state machine) also carried the
//! incident id the engine chose: `b"D1" | time_ms | len: u16 BE | chosen id | request`.
//! It is still read; the chosen id is not needed, because the state machine allocates the
//! same ids from its own counter.

use crate::error::{CoreError, CoreResult};

/// Version of the stored journal layout (tables, columns, checksum recipe): a store of
/// another version is refused rather than guessed at.
pub const JOURNAL_FORMAT: u32 = 1;

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

/// The fields of a stored journal entry, as the checksum covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    pub sequence: i64,
    pub method: &'a str,
    pub request_id: &'a str,
    pub payload: &'a [u8],
    pub result: &'a [u8],
    pub time_ms: i64,
    pub actor: &'a str,
    /// The JSON text of the assignments and releases, as stored.
    pub assign: &'a str,
    pub release: &'a str,
}

/// CRC-32 over every field, each length-prefixed so that field boundaries are covered too.
/// CRC (not a cryptographic hash) because the threat is torn writes and bit rot, not an
/// adversary who can write to the store; it is cheap on the append path.
pub fn checksum(e: &StoredEntry<'_>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&JOURNAL_FORMAT.to_be_bytes());
    h.update(&e.sequence.to_be_bytes());
    h.update(&e.time_ms.to_be_bytes());
    let parts: [&[u8]; 7] = [
        e.method.as_bytes(),
        e.request_id.as_bytes(),
        e.payload,
        e.result,
        e.actor.as_bytes(),
        e.assign.as_bytes(),
        e.release.as_bytes(),
    ];
    for part in parts {
        h.update(&(part.len() as u32).to_be_bytes());
        h.update(part);
    }
    h.finalize()
}

/// What reading stored entries in order found wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The entry at `tail` (the last written) is bad: a write that never completed, so it was
    /// never acknowledged. Reading stops there, without error.
    TornTail { sequence: i64 },
    /// The next stored entry is `found`, not the `expected` one.
    Missing { expected: i64, found: i64 },
    /// The entry at `sequence`, before the tail, fails its checksum (or does not decode).
    Corrupt { sequence: i64 },
}

/// Checks stored entries read in order after `after` (the last good sequence before them);
/// `None` marks a row whose fields did not even decode. Returns how many entries from the
/// start are good, and the problem that stopped the count, if any. `tail` is the last
/// sequence written.
pub fn verify<'a>(
    rows: impl IntoIterator<Item = Option<(StoredEntry<'a>, i64)>>,
    after: i64,
    tail: i64,
) -> (usize, Option<Problem>) {
    let mut good = 0;
    for (expected, row) in (after + 1..).zip(rows) {
        let (sequence, intact) = match row {
            Some((entry, stored)) => (entry.sequence, i64::from(checksum(&entry)) == stored),
            None => (expected, false),
        };
        if sequence != expected {
            return (good, Some(Problem::Missing { expected, found: sequence }));
        }
        if !intact {
            let problem = if sequence == tail { Problem::TornTail { sequence } } else { Problem::Corrupt { sequence } };
            return (good, Some(problem));
        }
        good += 1;
    }
    (good, None)
}

/// The request inside a payload: what a retry's bytes are compared with.
pub fn request(payload: &[u8]) -> CoreResult<&[u8]> {
    decode(payload).map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: i64) -> StoredEntry<'static> {
        StoredEntry {
            sequence,
            method: "AssignUnits",
            request_id: "r",
            payload: b"D2",
            result: b"x",
            time_ms: 7,
            actor: "a",
            assign: "[]",
            release: "[]",
        }
    }

    #[test]
    fn checksum_is_zlibs_crc_of_the_length_prefixed_fields() {
        // The same recipe as the journal's first (Python) writer, byte for byte.
        let e = entry(1);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&1i64.to_be_bytes());
        bytes.extend_from_slice(&7i64.to_be_bytes());
        for part in [&b"AssignUnits"[..], b"r", b"D2", b"x", b"a", b"[]", b"[]"] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        assert_eq!(checksum(&e), crc32fast::hash(&bytes));
    }

    #[test]
    fn verify_tells_a_torn_tail_from_corruption_and_gaps() {
        let good = |s| Some((entry(s), i64::from(checksum(&entry(s)))));
        let bad = |s| Some((entry(s), 0));
        assert_eq!(verify([good(1), good(2)], 0, 2), (2, None));
        assert_eq!(verify([good(1), bad(2)], 0, 2), (1, Some(Problem::TornTail { sequence: 2 })));
        assert_eq!(verify([bad(1), good(2)], 0, 2), (0, Some(Problem::Corrupt { sequence: 1 })));
        assert_eq!(verify([good(1), good(3)], 0, 3), (1, Some(Problem::Missing { expected: 2, found: 3 })));
        assert_eq!(verify([good(5), None], 4, 9), (1, Some(Problem::Corrupt { sequence: 6 })));
    }

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
