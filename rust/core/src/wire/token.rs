//! Page tokens: the last id of a page, base64url without padding. Opaque to clients; ids
//! rather than offsets so that units or incidents added between pages do not shift them.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The token of the page after `after_id`.
pub fn encode(after_id: &str) -> String {
    let bytes = after_id.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The id a token stands for; `None` for anything this server did not issue.
pub fn decode(token: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n_bits = 0;
    let mut out = Vec::with_capacity(token.len() * 3 / 4);
    for c in token.bytes() {
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
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_refusal() {
        for id in ["", "a", "ab", "abc", "MD21", "INC-000123", "é✓"] {
            assert_eq!(super::decode(&super::encode(id)).as_deref(), Some(id));
        }
        assert_eq!(super::encode("MD21"), "TUQyMQ");
        assert_eq!(super::decode("!!"), None);
        assert_eq!(super::decode("TUQyMQ="), None);
    }
}
