//! Page tokens: where the next page of a listing starts, as an id rather than an offset so
//! that units or incidents added between pages do not shift the pages.
//!
//! A token is self-authenticating, so a token this server did not issue is refused
//! (INVALID_ARGUMENT naming `page_token`) rather than read as a cursor the client chose:
//!
//! ```text
//! base64url, no padding ( version 1 | listing (b'U' units, b'I' incidents, b'P' pending) | last key | tag )
//! tag = SipHash-1-3 under a random 128-bit key of this process, over everything before it
//! ```
//!
//! The listing byte keeps a ListUnits token from being replayed on ListIncidents; the tag
//! (64 bits, keyed: a client cannot compute it) makes a forged, truncated or edited token
//! fail. Checking one costs a hash of under 80 bytes.
//!
//! The key lives only in memory, drawn when the first token is made (the standard
//! library's `RandomState`, seeded from the operating system), so a restart invalidates
//! every outstanding token: a client paging across a restart gets INVALID_ARGUMENT on
//! `page_token` and starts the listing again. That is the price of keeping no secret on
//! disk; a listing is a read, so restarting it loses nothing. Tokens are not state: the
//! state machine stays deterministic, and replay never sees them.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::state::PendingKey;
use crate::wire::limits::MAX_ID_LEN;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// The layout described above; a later layout takes a new number.
const VERSION: u8 = 1;
const TAG_LEN: usize = 8;
/// The longest token this server issues: version, listing, an id of the maximal length,
/// the tag, in base64 (4 characters per 3 bytes, rounded up). Longer is refused unread.
/// A pending-queue key adds its grade and creation time before the id
/// ([`pending_cursor`]).
const MAX_TOKEN_LEN: usize = (2 + MAX_ID_LEN + PENDING_PREFIX_MAX + TAG_LEN).div_ceil(3) * 4;
/// "g:created_ms:" at its longest: one digit, a colon, an i64 with its sign, a colon.
const PENDING_PREFIX_MAX: usize = 1 + 1 + 20 + 1;

/// Which listing a token continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Units,
    Incidents,
    /// The pending queue: the key is a [`PendingKey`], written by [`pending_cursor`].
    Pending,
}

impl Listing {
    fn byte(self) -> u8 {
        match self {
            Listing::Units => b'U',
            Listing::Incidents => b'I',
            Listing::Pending => b'P',
        }
    }
}

fn key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

fn tag(body: &[u8]) -> [u8; TAG_LEN] {
    key().hash_one(body).to_be_bytes()
}

/// The token of the page of `listing` after `after_id`.
pub fn encode(listing: Listing, after_id: &str) -> String {
    let mut raw = Vec::with_capacity(2 + after_id.len() + TAG_LEN);
    raw.extend_from_slice(&[VERSION, listing.byte()]);
    raw.extend_from_slice(after_id.as_bytes());
    let tag = tag(&raw);
    raw.extend_from_slice(&tag);
    base64(&raw)
}

/// The id a token of `listing` stands for; `None` for anything this process did not issue
/// for that listing.
pub fn decode(listing: Listing, token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let raw = unbase64(token)?;
    if raw.len() < 2 + TAG_LEN || raw[0] != VERSION || raw[1] != listing.byte() {
        return None;
    }
    let (body, got) = raw.split_at(raw.len() - TAG_LEN);
    // Not a constant-time comparison: the tag is 64 bits under a key that never leaves the
    // process, and guessing one byte at a time through response timing over gRPC is far
    // below the noise of a network round trip.
    if got != tag(body) {
        return None;
    }
    String::from_utf8(body[2..].to_vec()).ok()
}

/// The cursor text of a place in the pending queue: `grade:created_ms:incident_id`.
pub fn pending_cursor(key: &PendingKey) -> String {
    format!("{}:{}:{}", key.0, key.1, key.2)
}

/// The place in the pending queue a decoded cursor stands for; `None` when malformed
/// (which a signed token never is).
pub fn pending_key(cursor: &str) -> Option<PendingKey> {
    let mut parts = cursor.splitn(3, ':');
    let grade = parts.next()?.parse().ok()?;
    let created = parts.next()?.parse().ok()?;
    Some((grade, created, parts.next()?.to_owned()))
}

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The bytes of unpadded base64url; `None` for any other text (padding, other alphabets,
/// a length no encoding has, nonzero spare bits).
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n_bits = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        n_bits += 6;
        if n_bits >= 8 {
            n_bits -= 8;
            out.push((bits >> n_bits) as u8);
            bits &= (1 << n_bits) - 1;
        }
    }
    if n_bits >= 6 || bits != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for id in ["", "a", "ab", "abc", "MD21", "INC-000123", "é✓", &"\u{1f693}".repeat(16), &"y".repeat(64)] {
            for listing in [Listing::Units, Listing::Incidents] {
                let token = encode(listing, id);
                assert!(token.len() <= MAX_TOKEN_LEN, "{token}");
                assert_eq!(decode(listing, &token).as_deref(), Some(id));
            }
        }
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"\x00\xff\x10\x80"] {
            assert_eq!(unbase64(&base64(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(base64(b"MD21"), "TUQyMQ");
        let key = (3u8, i64::MIN, "y".repeat(64));
        let token = encode(Listing::Pending, &pending_cursor(&key));
        assert!(token.len() <= MAX_TOKEN_LEN, "{token}");
        assert_eq!(decode(Listing::Pending, &token).and_then(|c| pending_key(&c)), Some(key));
        assert_eq!(decode(Listing::Incidents, &token), None);
    }

    #[test]
    fn tokens_the_server_did_not_issue_are_refused() {
        let token = encode(Listing::Units, "MD21");
        // Another listing's token.
        assert_eq!(decode(Listing::Incidents, &token), None);
        // Truncated, extended, edited in any one character.
        for cut in 0..token.len() {
            assert_eq!(decode(Listing::Units, &token[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(Listing::Units, &format!("{token}A")), None);
        for i in 0..token.len() {
            for c in ['A', 'z', '-', '0'] {
                let mut edited = token.clone().into_bytes();
                if edited[i] == c as u8 {
                    continue;
                }
                edited[i] = c as u8;
                let edited = String::from_utf8(edited).unwrap();
                assert_eq!(decode(Listing::Units, &edited), None, "{edited}");
            }
        }
        // The old unauthenticated layout (plain base64 of the id), garbage, padding, and a
        // token naming another id with the tag of this one.
        for bad in ["TUQyMQ", "%%%not-a-token", "!!", "TUQyMQ=", "", &"A".repeat(10_000)] {
            assert_eq!(decode(Listing::Units, bad), None, "{bad}");
        }
        let raw = unbase64(&token).unwrap();
        let mut forged = vec![VERSION, b'U'];
        forged.extend_from_slice(b"MD22");
        forged.extend_from_slice(&raw[raw.len() - TAG_LEN..]);
        assert_eq!(decode(Listing::Units, &base64(&forged)), None);
    }
}
