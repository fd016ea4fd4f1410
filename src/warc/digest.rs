//! WARC digests: SHA-1 in base32 (RFC 4648), as `WARC-Block-Digest` and
//! `WARC-Payload-Digest` are written by every common tool (`sha1:` then 32 characters).

use sha1::{Digest, Sha1};

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A SHA-1 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sha1Digest(pub [u8; 20]);

impl Sha1Digest {
    pub fn of(bytes: &[u8]) -> Sha1Digest {
        Sha1Digest(Sha1::digest(bytes).into())
    }

    /// A digest field's value: `sha1:` (any case) then base32 or, as some tools write
    /// it, hex. None for another algorithm or a value that is neither.
    pub fn parse(field: &str) -> Option<Sha1Digest> {
        let (algorithm, value) = field.trim().split_once(':')?;
        if !algorithm.eq_ignore_ascii_case("sha1") {
            return None;
        }
        match value.len() {
            32 => from_base32(value),
            40 => from_hex(value),
            _ => None,
        }
    }

    /// The field's value: `sha1:` and base32.
    pub fn field(&self) -> String {
        format!("sha1:{}", sha1_base32(&self.0))
    }
}

/// A SHA-1 digest, incremental (a block written in parts).
#[derive(Default)]
pub struct Sha1Hasher(Sha1);

impl Sha1Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Sha1Digest {
        Sha1Digest(self.0.finalize().into())
    }
}

/// 20 bytes in base32: 32 characters, no padding.
pub fn sha1_base32(bytes: &[u8; 20]) -> String {
    let mut out = String::with_capacity(32);
    for chunk in bytes.chunks(5) {
        let mut n = 0u64;
        for b in chunk {
            n = (n << 8) | u64::from(*b);
        }
        for i in (0..8).rev() {
            out.push(BASE32[((n >> (i * 5)) & 31) as usize] as char);
        }
    }
    out
}

fn from_base32(text: &str) -> Option<Sha1Digest> {
    let mut out = [0u8; 20];
    for (chunk, bytes) in text.as_bytes().chunks(8).zip(out.chunks_mut(5)) {
        let mut n = 0u64;
        for c in chunk {
            let v = BASE32.iter().position(|b| *b == c.to_ascii_uppercase())?;
            n = (n << 5) | v as u64;
        }
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (n >> (32 - 8 * i)) as u8;
        }
    }
    Some(Sha1Digest(out))
}

fn from_hex(text: &str) -> Option<Sha1Digest> {
    let mut out = [0u8; 20];
    for (pair, b) in text.as_bytes().chunks(2).zip(out.iter_mut()) {
        let pair = std::str::from_utf8(pair).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(Sha1Digest(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_of_known_digests() {
        // sha1("") is da39a3ee5e6b4b0d3255bfef95601890afd80709.
        let empty = Sha1Digest::of(b"");
        assert_eq!(empty.field(), "sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
        assert_eq!(Sha1Digest::parse(&empty.field()), Some(empty));
        assert_eq!(
            Sha1Digest::parse("SHA1:da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            Some(empty)
        );
        assert_eq!(Sha1Digest::parse("sha256:abc"), None);
        assert_eq!(Sha1Digest::parse("sha1:not-base32-not-base32-not-ba"), None);
    }

    #[test]
    fn incremental_is_whole() {
        let mut h = Sha1Hasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Sha1Digest::of(b"hello world"));
    }
}
