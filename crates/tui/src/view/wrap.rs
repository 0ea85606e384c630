//! Word wrapping by character count (whitespace collapsed, long words broken).

/// Wrap `text` into lines of at most `width` characters. Always returns at least one line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0usize;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                len = 0;
            }
            let rest = word.split_off(width);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        let wl = word.len();
        if len > 0 && len + 1 + wl > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        line.extend(word);
        len += wl;
    }
    if len > 0 || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Cut `s` to one line of at most `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    anchorscope_core::export::format::one_line_cut(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_on_words_and_breaks_long_ones() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("", 3), [""]);
        assert_eq!(wrap("a\n\nb", 10), ["a b"]);
        assert_eq!(truncate("hello world", 6), "hello…");
        for w in 1..8 {
            for l in wrap("ünïcode wörds ärë wrapped", w) {
                assert!(l.chars().count() <= w);
            }
        }
    }
}
