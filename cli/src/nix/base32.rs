//! Nix's own base32 ("nix32"): the bytes are one little-endian number written from its most
//! significant 5-bit digit, with an alphabet that omits `e`, `o`, `t` and `u`.
//! This is not RFC 4648 base32 and it differs from chunked encoders for lengths that are not
//! multiples of 5 bytes (such as 32-byte SHA-256 hashes).

pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid character {0:?} in Nix base32 string")]
    InvalidChar(char),
    #[error("Nix base32 string has length {got}, expected {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("Nix base32 string encodes more bits than fit in {0} bytes")]
    Overflow(usize),
}

/// Number of characters needed to encode `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 { 0 } else { (bytes * 8 - 1) / 5 + 1 }
}

pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = (bytes[i] as u16) >> j;
        let high = bytes.get(i + 1).map_or(0, |b| (*b as u16) << (8 - j));
        out.push(ALPHABET[((low | high) & 0x1f) as usize] as char);
    }
    out
}

fn digit_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|a| *a == c).map(|p| p as u8)
}

/// Decodes a string that must encode exactly `size` bytes.
pub fn decode(s: &str, size: usize) -> Result<Vec<u8>, DecodeError> {
    let expected = encoded_len(size);
    if s.len() != expected {
        return Err(DecodeError::WrongLength { got: s.len(), expected });
    }
    let mut out = vec![0u8; size];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = digit_value(c).ok_or(DecodeError::InvalidChar(c as char))? as u16;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < size {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::Overflow(size));
        }
    }
    Ok(out)
}

/// True when every character is in the Nix base32 alphabet.
pub fn is_nix32(s: &str) -> bool {
    s.bytes().all(|c| digit_value(c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    // Vectors printed by Nix 2.8: `nix-hash --type <t> --flat --base32 hello.txt` for a
    // file containing "hello\n", and the hash part of a store path.
    const HELLO: &[u8] = b"hello\n";

    #[test]
    fn sha256_matches_nix() {
        let digest = sha2::Sha256::digest(HELLO);
        assert_eq!(encode(&digest), "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq");
    }

    #[test]
    fn sha1_md5_sha512_match_nix() {
        let sha1 = hex("f572d396fae9206628714fb2ce00f72e94f2258f");
        assert_eq!(encode(&sha1), "iwjz551fyw0cxcjgf4l6c879zabd6wpm");
        let md5 = hex("b1946ac92492d2347c6235b4d2611184");
        assert_eq!(encode(&md5), "4425hx5d1mc9y39llj4k4nm55i");
        let sha512 = sha2::Sha512::digest(HELLO);
        assert_eq!(
            encode(&sha512),
            "0lrc0dwnvipqviibf7qfm1y492qvjwb1zhkcyi05cndmva1mr5gjcgrnz1x36djmk0sfg8djd2n0qv68vib2jg590mwznar9jcjphp7"
        );
    }

    #[test]
    fn round_trips_every_length() {
        for len in [0usize, 1, 5, 16, 20, 32, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes), len).unwrap(), bytes);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("e", 0).unwrap_err(), DecodeError::WrongLength { got: 1, expected: 0 });
        let bad = "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4ae";
        assert_eq!(decode(bad, 32).unwrap_err(), DecodeError::InvalidChar('e'));
        // The top digit of a 52-char sha256 may only carry 1 bit.
        let overflow = "z0xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq";
        assert_eq!(decode(overflow, 32).unwrap_err(), DecodeError::Overflow(32));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
