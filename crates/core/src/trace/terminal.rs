//! Text that is safe to print to a terminal: trace text is data from a model or a file, and a
//! stray escape sequence in it could set the clipboard (OSC 52), retitle the window, clear the
//! screen or hide what follows. The explorer never emits such bytes (ratatui skips control
//! characters); the CLI (`stats`, `split`) and `serve`'s log pass text through here.

/// Remove escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL` or `ESC \`, other two-byte
/// `ESC x`), the C1 controls (U+0080–U+009F, which some terminals read as CSI / OSC) and every
/// other control character but newline and tab. Everything else is kept as it is.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            // C1 CSI and OSC start sequences of their own on terminals that honour C1.
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_escape(chars: &mut Chars<'_>) {
    match chars.next() {
        Some('[') => skip_csi(chars),
        // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST.
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars),
        // A two-byte sequence (e.g. ESC c, full reset): dropped with its second byte.
        _ => {}
    }
}

/// Parameters and intermediates (0x20–0x3F), then one final byte (0x40–0x7E).
fn skip_csi(chars: &mut Chars<'_>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
        if !('\u{20}'..='\u{3f}').contains(&c) {
            break;
        }
    }
}

/// Up to BEL, ESC \ or C1 ST.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                break;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_clipboard_title_and_clear_screen() {
        let evil = "a\u{1b}]52;c;ZXZpbA==\u{7}b\u{1b}]0;pwned\u{1b}\\c\u{1b}[2J\u{1b}[Hd\u{1b}ce";
        assert_eq!(terminal_safe(evil), "abcde");
        assert_eq!(terminal_safe("x\u{9b}31my\u{9d}0;t\u{7}z"), "xyz");
        assert_eq!(terminal_safe("bell\u{7} cr\r nul\0"), "bell cr nul");
    }

    #[test]
    fn keeps_text_newlines_tabs_and_unicode() {
        let ok = "Sentence one.\n\tIndented — ünïcode ✓ <OUTPUT>";
        assert_eq!(terminal_safe(ok), ok);
    }
}
