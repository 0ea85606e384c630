//! GPT-2's byte ↔ printable-char table: byte-level BPE vocabularies store each byte of a token as
//! one visible char (space → `Ġ`, newline → `Ċ`, …). Knowing it lets us recover the exact bytes a
//! token stands for, hence exact byte offsets into the encoded text.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The chars GPT-2 maps bytes 0..=255 to (the `bytes_to_unicode` table).
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u32 {
        // Printable Latin-1 bytes stand for themselves; the rest are shifted past 255.
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        let code = if printable {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = char::from_u32(code).expect("code points below 0x200 are valid chars");
    }
    table
}

fn char_to_byte() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        byte_chars()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// The bytes a byte-level token string stands for; `None` when a char is outside the table
/// (the token is not a byte-level token).
pub fn token_to_bytes(token: &str) -> Option<Vec<u8>> {
    let map = char_to_byte();
    token.chars().map(|c| map.get(&c).copied()).collect()
}

/// The byte-level token string of raw bytes (inverse of [`token_to_bytes`]).
pub fn bytes_to_token(bytes: &[u8]) -> String {
    let table = byte_chars();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_matches_known_chars() {
        assert_eq!(bytes_to_token(b" "), "\u{120}"); // Ġ
        assert_eq!(bytes_to_token(b"\n"), "\u{10a}"); // Ċ
        assert_eq!(bytes_to_token(b"a!"), "a!");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(token_to_bytes(&bytes_to_token(&all)).unwrap(), all);
        assert_eq!(token_to_bytes("\u{4e2d}"), None);
    }
}
