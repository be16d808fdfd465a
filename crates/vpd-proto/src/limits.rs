//! The relay protocol's limits, in bytes, and the characters its text fields may hold (SPEC
//! amendments A2 and A11). Both ends use these: the daemon cleans and cuts before sending
//! ([`clean`]), the relay checks ([`check_text`]) and refuses a message that breaks them
//! for that session alone (`refused`), never by closing the connection.

/// A session's `agent` (the coding agent's name), in bytes.
pub const AGENT: usize = 256;
/// A session's `directory` (the bound directory's name and the path below it), in bytes.
pub const DIRECTORY: usize = 4096;
/// A `session_end`'s `reason`, in bytes.
pub const REASON: usize = 256;
/// A frame's `ts`, in bytes.
pub const TS: usize = 64;
/// A frame's data, decoded, in bytes (larger output is split into several frames).
pub const FRAME_DATA: usize = 256 * 1024;

/// Whether `c` may appear in a text field: no C0 or C1 control character (so no escape
/// sequence can start), no DEL, and none of the invisible characters that reorder or hide
/// text (bidirectional overrides and isolates, zero-width joiners and marks, the BOM).
pub fn allowed(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'))
}

/// Why a text field is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    TooLong { bytes: usize, max: usize },
    Character { at: usize },
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextError::TooLong { bytes, max } => write!(f, "is {bytes} bytes, more than the {max} allowed"),
            TextError::Character { at } => write!(f, "holds a control or invisible character at byte {at}"),
        }
    }
}

/// Checks a text field as the relay does.
pub fn check_text(s: &str, max: usize) -> Result<(), TextError> {
    if s.len() > max {
        return Err(TextError::TooLong { bytes: s.len(), max });
    }
    match s.char_indices().find(|(_, c)| !allowed(*c)) {
        Some((at, _)) => Err(TextError::Character { at }),
        None => Ok(()),
    }
}

/// `s` without the characters [`allowed`] refuses, cut to at most `max` bytes on a
/// character boundary: what the daemon sends, so the relay never has a reason to refuse it.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|c| allowed(*c)) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_text_is_cut_in_bytes_on_a_character_boundary() {
        let agent = "€".repeat(100);
        assert_eq!(agent.len(), 300);
        let c = clean(&agent, AGENT);
        assert_eq!(c, "€".repeat(85));
        assert!(check_text(&c, AGENT).is_ok());
        assert_eq!(check_text(&agent, AGENT), Err(TextError::TooLong { bytes: 300, max: 256 }));
        let reason = "é".repeat(150);
        assert_eq!(clean(&reason, REASON).len(), 256);
    }

    #[test]
    fn controls_escapes_and_invisible_characters_are_removed() {
        assert_eq!(clean("cl\0au\x1b[31mde\u{7f}\u{9b}1m\u{202e}x\u{200b}\n", AGENT), "clau[31mde1mx");
        assert_eq!(check_text("a\x1bb", AGENT), Err(TextError::Character { at: 1 }));
        assert_eq!(check_text("api/src — ünïcødé ✓", DIRECTORY), Ok(()));
    }
}
