//! Terminal output → plain text for the pages: escape sequences removed, carriage returns
//! dropped, other control characters dropped (newlines and tabs kept). The result is plain
//! text; the pages HTML-escape it (maud).

/// Strips ANSI/VT escape sequences (CSI, OSC, DCS/SOS/PM/APC strings, two-byte escapes) and
/// control characters other than `\n` and `\t` from terminal output, and decodes it as UTF-8
/// (invalid bytes become U+FFFD). An escape sequence cut off at the end is dropped.
pub fn to_text(bytes: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        let b = bytes[i];
        match b {
            0x1b => {
                i += 1;
                if i >= n {
                    break;
                }
                match bytes[i] {
                    b'[' => {
                        // CSI: parameters and intermediates, then one final byte 0x40..=0x7e.
                        i += 1;
                        while i < n && !(0x40..=0x7e).contains(&bytes[i]) {
                            i += 1;
                        }
                        i += 1;
                    }
                    b']' | b'P' | b'X' | b'^' | b'_' => {
                        // String sequences: up to BEL or ST (ESC \).
                        i += 1;
                        while i < n {
                            if bytes[i] == 0x07 {
                                i += 1;
                                break;
                            }
                            if bytes[i] == 0x1b && i + 1 < n && bytes[i + 1] == b'\\' {
                                i += 2;
                                break;
                            }
                            i += 1;
                        }
                    }
                    b'(' | b')' | b'*' | b'+' | b'#' | b'%' => i += 2, // charset designation etc.
                    _ => i += 1,                                       // two-byte escape
                }
            }
            // C1 CSI in 8-bit form is rare and collides with UTF-8 continuation bytes: leave it.
            b'\n' | b'\t' => {
                out.push(b);
                i += 1;
            }
            0x00..=0x1f | 0x7f => i += 1,
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_and_controls() {
        assert_eq!(to_text(b"\x1b[1;31mred\x1b[0m plain\r\n"), "red plain\n");
        assert_eq!(to_text(b"\x1b]0;title\x07after"), "after");
        assert_eq!(to_text(b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(to_text(b"a\x1b(Bb\x1b=c\x08d"), "abcd");
        assert_eq!(to_text(b"tab\there <b>"), "tab\there <b>");
        assert_eq!(to_text(b"cut \x1b[1"), "cut ");
        assert_eq!(to_text("héllo \u{1F600}".as_bytes()), "héllo \u{1F600}");
        assert_eq!(to_text(b"\xff ok"), "\u{FFFD} ok");
    }
}
