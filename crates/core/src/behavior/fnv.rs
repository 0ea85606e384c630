//! FNV-1a (32-bit): a tiny stable hash for classifier versions, so that editing a rule changes
//! the version recorded with its labels. Not for security; stable across builds and platforms.

const OFFSET: u32 = 0x811c_9dc5;
const PRIME: u32 = 0x0100_0193;

/// FNV-1a over `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ b as u32).wrapping_mul(PRIME))
}

/// The hash as 8 lowercase hex digits.
pub fn short_hash(bytes: &[u8]) -> String {
    format!("{:08x}", fnv1a32(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Reference values of FNV-1a 32 (from the FNV authors' test suite).
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
        assert_eq!(short_hash(b"a"), "e40c292c");
    }
}
