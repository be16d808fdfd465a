//! A session's output as a terminal would show it (SPEC A11, issue 8 item 7): a screen
//! emulator ([`vt100`]) fed the session's frames in order — output bytes, and resize frames
//! that size the screen — so carriage returns overwrite, cursor moves and clears apply,
//! colours show, and an escape sequence or a UTF-8 character split across two frames (or two
//! polls) is still one. The pages get styled [`Line`]s (text plus CSS classes, escaped by
//! maud or set with `textContent`); the admin CLI gets plain text.
//!
//! Nothing stored is ever written to a page or a terminal as is: what comes out is the
//! emulator's cells, which hold printable characters only.

use serde::Serialize;
use std::collections::HashMap;
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The size before the first resize frame (what `vpd session start` without a pty implies).
const DEFAULT_COLS: u16 = 80;
const DEFAULT_ROWS: u16 = 24;
/// Largest screen a resize frame may ask for; larger ones are clamped.
const MAX_COLS: u16 = 1000;
const MAX_ROWS: u16 = 500;
/// Scrollback the session page keeps (lines above the screen).
const PAGE_SCROLLBACK: usize = 2000;

/// One styled run of text in a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub text: String,
    /// Space-separated CSS classes (`f1`, `b4`, `tb`, …); empty for the default style.
    #[serde(rename = "c", skip_serializing_if = "String::is_empty")]
    pub class: String,
}

pub type Line = Vec<Run>;

/// A terminal screen fed frame by frame.
pub struct Screen {
    parser: vt100::Parser,
    /// The last seq fed (frames after it come next).
    next: u64,
}

fn dim(v: u32, max: u16) -> NonZeroU16 {
    NonZeroU16::new(v.clamp(1, max as u32) as u16).unwrap_or(NonZeroU16::MIN)
}

/// `COLSxROWS` of a resize frame.
pub fn parse_resize(data: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(data).ok()?;
    let (c, r) = s.trim().split_once(['x', 'X'])?;
    Some((c.parse().ok()?, r.parse().ok()?))
}

impl Screen {
    /// A screen whose first frame is `from + 1`, keeping `scrollback` lines above it.
    pub fn new(from: u64, scrollback: usize) -> Screen {
        Screen { parser: vt100::Parser::new(dim(DEFAULT_ROWS.into(), MAX_ROWS), dim(DEFAULT_COLS.into(), MAX_COLS), scrollback), next: from }
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether lines scrolled out of the kept scrollback (the oldest are not shown).
    pub fn scrolled_out(&self) -> bool {
        let screen = self.parser.screen();
        screen.scrollback_len() >= screen.scrollback_capacity()
    }

    /// Feeds one frame (`kind` as stored: `output`, `resize`, `input`, `gap`, …). Frames at or
    /// before [`Screen::next`] were fed already and are skipped.
    pub fn feed(&mut self, seq: u64, kind: &str, data: &[u8]) {
        if seq <= self.next {
            return;
        }
        self.next = seq;
        match kind {
            "output" => self.parser.process(data),
            "resize" => {
                if let Some((cols, rows)) = parse_resize(data) {
                    self.parser.screen_mut().set_size(dim(rows, MAX_ROWS), dim(cols, MAX_COLS));
                }
            }
            _ => {}
        }
    }

    /// Every line: the scrollback, then the screen, with trailing empty lines left out.
    pub fn lines(&mut self) -> Vec<Line> {
        let mut lines = Vec::new();
        self.for_each_row(|screen, row, cols| lines.push(styled_row(screen, row, cols)));
        while lines.last().is_some_and(|l: &Line| l.iter().all(|r| r.text.trim_end().is_empty())) {
            lines.pop();
        }
        lines
    }

    /// The same lines as plain text (trailing spaces trimmed), one `\n` after each.
    pub fn text(&mut self) -> String {
        let mut rows = Vec::new();
        self.for_each_row(|screen, row, cols| {
            let mut s = String::new();
            for col in 0..cols {
                if let Some(cell) = screen.cell(row, col) {
                    if !cell.is_wide_continuation() {
                        s.push_str(if cell.has_contents() { cell.contents() } else { " " });
                    }
                }
            }
            rows.push(s.trim_end().to_string());
        });
        while rows.last().is_some_and(|l| l.is_empty()) {
            rows.pop();
        }
        rows.into_iter().map(|r| r + "\n").collect()
    }

    /// Visits the scrollback rows oldest first, then the screen's rows. The scrollback is read
    /// through vt100's view offset: at offset `o`, the view's first row is scrollback line
    /// `len - o`.
    fn for_each_row(&mut self, mut f: impl FnMut(&vt100::Screen, u16, u16)) {
        let screen = self.parser.screen_mut();
        let (rows, cols) = screen.size();
        let (rows, cols) = (rows.get(), cols.get());
        let mut offset = screen.scrollback_len();
        while offset > 0 {
            screen.set_scrollback(offset);
            let take = offset.min(rows as usize);
            for row in 0..take as u16 {
                f(screen, row, cols);
            }
            offset -= take;
        }
        screen.set_scrollback(0);
        for row in 0..rows {
            f(screen, row, cols);
        }
    }
}

/// The CSS classes of a cell (see [`palette_css`]).
fn classes(cell: &vt100::Cell) -> String {
    let (mut fg, mut bg) = (color_class(cell.fgcolor(), 'f'), color_class(cell.bgcolor(), 'b'));
    if cell.inverse() {
        // Swap, with the terminal's own colours standing in for "default".
        let f = bg.map(|b| format!("f{}", &b[1..])).unwrap_or_else(|| "fbg".into());
        let b = fg.map(|f| format!("b{}", &f[1..])).unwrap_or_else(|| "bfg".into());
        (fg, bg) = (Some(f), Some(b));
    }
    let mut out: Vec<String> = fg.into_iter().chain(bg).collect();
    for (on, class) in [(cell.bold(), "tb"), (cell.dim(), "td"), (cell.italic(), "ti"), (cell.underline(), "tu")] {
        if on {
            out.push(class.into());
        }
    }
    out.join(" ")
}

fn color_class(c: vt100::Color, prefix: char) -> Option<String> {
    match c {
        vt100::Color::Default => None,
        vt100::Color::Idx(i) => Some(format!("{prefix}{i}")),
        vt100::Color::Rgb(r, g, b) => Some(format!("{prefix}{}", nearest_index(r, g, b))),
    }
}

fn styled_row(screen: &vt100::Screen, row: u16, cols: u16) -> Line {
    let mut runs: Line = Vec::new();
    for col in 0..cols {
        let Some(cell) = screen.cell(row, col) else { continue };
        if cell.is_wide_continuation() {
            continue;
        }
        let text = if cell.has_contents() { cell.contents() } else { " " };
        let class = classes(cell);
        match runs.last_mut() {
            Some(last) if last.class == class => last.text.push_str(text),
            _ => runs.push(Run { text: text.to_string(), class }),
        }
    }
    // Trailing default-styled blanks carry nothing.
    if let Some(last) = runs.last_mut() {
        if last.class.is_empty() {
            let t = last.text.trim_end().len();
            last.text.truncate(t);
        }
    }
    runs.retain(|r| !r.text.is_empty());
    runs
}

/// The 16 base colours, chosen to be readable on the page's dark terminal background.
const BASE: [(u8, u8, u8); 16] = [
    (0x6e, 0x76, 0x81),
    (0xff, 0x6b, 0x6b),
    (0x5f, 0xd7, 0x5f),
    (0xe5, 0xc0, 0x7b),
    (0x6c, 0xa8, 0xff),
    (0xd1, 0x8c, 0xff),
    (0x56, 0xd4, 0xdd),
    (0xd0, 0xd4, 0xda),
    (0x8b, 0x93, 0x9e),
    (0xff, 0x8f, 0x8f),
    (0x8a, 0xf0, 0x8a),
    (0xff, 0xe0, 0x8a),
    (0x9c, 0xc5, 0xff),
    (0xe5, 0xb3, 0xff),
    (0x8a, 0xee, 0xf5),
    (0xff, 0xff, 0xff),
];
const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

/// The xterm 256-colour palette.
fn palette(i: u8) -> (u8, u8, u8) {
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let n = i - 16;
            (CUBE[(n / 36) as usize], CUBE[((n / 6) % 6) as usize], CUBE[(n % 6) as usize])
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
    }
}

/// The palette index closest to an RGB colour (truecolour output is shown in 256 colours, as
/// classes: the pages' CSP allows no inline styles).
fn nearest_index(r: u8, g: u8, b: u8) -> u8 {
    let d = |(x, y, z): (u8, u8, u8)| {
        let (dx, dy, dz) = (x as i32 - r as i32, y as i32 - g as i32, z as i32 - b as i32);
        dx * dx + dy * dy + dz * dz
    };
    (16..=255u8).min_by_key(|i| d(palette(*i))).unwrap_or(7)
}

/// CSS for the classes [`Screen::lines`] uses, scoped to `pre.terminal`.
pub fn palette_css() -> String {
    let mut css = String::from(
        "pre.terminal .tb { font-weight:700; } pre.terminal .td { opacity:.7; } pre.terminal .ti { font-style:italic; } \
         pre.terminal .tu { text-decoration:underline; } pre.terminal .fbg { color:#111418; } pre.terminal .bfg { background:#e6e6e6; }\n",
    );
    for i in 0..=255u8 {
        let (r, g, b) = palette(i);
        css.push_str(&format!("pre.terminal .f{i}{{color:#{r:02x}{g:02x}{b:02x}}}pre.terminal .b{i}{{background:#{r:02x}{g:02x}{b:02x}}}\n"));
    }
    css
}

/// Screens of sessions being watched, so a poll feeds only the frames that are new. Bounded:
/// the least recently used screen goes first.
#[derive(Default)]
pub struct Screens {
    map: Mutex<HashMap<(String, u64), Kept>>,
}

/// A kept screen and when it was last asked for.
type Kept = (Instant, Arc<Mutex<Screen>>);

/// Screens kept at once (each holds at most [`PAGE_SCROLLBACK`] lines).
const KEPT: usize = 16;

impl Screens {
    /// The screen of `session_id` that started at `from` (a new one when none is kept, or the
    /// kept one started elsewhere).
    /// Never waits for a screen's own lock (a poll may be feeding it).
    pub fn get(&self, session_id: &str, from: u64) -> Arc<Mutex<Screen>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let key = (session_id.to_string(), from);
        if let Some((used, s)) = map.get_mut(&key) {
            *used = now;
            return s.clone();
        }
        if map.len() >= KEPT {
            if let Some(oldest) = map.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let s = Arc::new(Mutex::new(Screen::new(from, PAGE_SCROLLBACK)));
        map.insert(key, (now, s.clone()));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(frames: &[(&str, &[u8])]) -> Screen {
        let mut s = Screen::new(0, 100);
        for (i, (kind, data)) in frames.iter().enumerate() {
            s.feed(i as u64 + 1, kind, data);
        }
        s
    }

    #[test]
    fn carriage_returns_overwrite_and_clears_apply() {
        let mut s = screen(&[("output", b"progress 10%\rprogress 20%\rprogress 100%\r\n"), ("output", b"gone\x1b[2K\rkept\r\n")]);
        assert_eq!(s.text(), "progress 100%\nkept\n");
    }

    #[test]
    fn escapes_and_utf8_split_across_frames_are_whole() {
        let euro = "€".as_bytes();
        let mut s = screen(&[("output", b"a\x1b[3"), ("output", b"1mred\x1b[0"), ("output", b"m "), ("output", &euro[..1]), ("output", &euro[1..])]);
        assert_eq!(s.text(), "ared €\n");
        let lines = s.lines();
        assert_eq!(
            lines[0],
            vec![
                Run { text: "a".into(), class: String::new() },
                Run { text: "red".into(), class: "f1".into() },
                Run { text: " €".into(), class: String::new() }
            ]
        );
    }

    #[test]
    fn resize_frames_size_the_screen() {
        let long = "x".repeat(100);
        // At 80 columns the line wraps; after a resize to 120 it does not.
        assert_eq!(screen(&[("output", long.as_bytes())]).text().lines().count(), 2);
        assert_eq!(screen(&[("resize", b"120x40"), ("output", long.as_bytes())]).text().lines().count(), 1);
        // Nonsense and huge sizes neither panic nor allocate without bound.
        let mut s = screen(&[("resize", b"0x0"), ("resize", b"99999999x99999999"), ("resize", b"junk"), ("output", b"ok")]);
        assert_eq!(s.text(), "ok\n");
        assert_eq!(parse_resize(b"132x43"), Some((132, 43)));
    }

    #[test]
    fn colours_bold_and_inverse_become_classes() {
        let mut s = screen(&[("output", b"\x1b[1;38;5;208mhot\x1b[0m \x1b[7minv\x1b[0m \x1b[38;2;255;0;0mrgb\x1b[0m \x1b[44mbg\x1b[0m")]);
        let l = &s.lines()[0];
        let class_of = |t: &str| l.iter().find(|r| r.text == t).map(|r| r.class.clone()).unwrap();
        assert_eq!(class_of("hot"), "f208 tb");
        assert_eq!(class_of("inv"), "fbg bfg");
        assert_eq!(class_of("rgb"), "f196");
        assert_eq!(class_of("bg"), "b4");
        assert!(palette_css().contains("pre.terminal .f208{color:#ff8700}"));
    }

    #[test]
    fn scrollback_comes_first_and_nothing_is_fed_twice() {
        let mut s = Screen::new(0, 100);
        let out: String = (1..=30).map(|i| format!("line {i}\r\n")).collect();
        s.feed(1, "output", out.as_bytes());
        s.feed(1, "output", b"fed twice\r\n");
        s.feed(2, "gap", b"3-9");
        let text = s.text();
        assert_eq!(text.lines().count(), 30);
        assert!(text.starts_with("line 1\nline 2\n") && text.ends_with("line 30\n"), "{text}");
        assert_eq!(s.next(), 2);
    }

    #[test]
    fn control_characters_never_come_out() {
        let mut s = screen(&[("output", b"\x1b]0;title\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x07\x08\x00<b>&\x1bP1$r\x1b\\")]);
        let text = s.text();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.starts_with("link"), "{text:?}");
        assert!(text.contains("<b>&"), "HTML is text; the page escapes it: {text:?}");
    }

    #[test]
    fn screens_are_kept_per_session_and_start() {
        let screens = Screens::default();
        let a = screens.get("A", 0);
        a.lock().unwrap().feed(1, "output", b"x");
        assert_eq!(screens.get("A", 0).lock().unwrap().next(), 1);
        assert_eq!(screens.get("A", 5).lock().unwrap().next(), 5, "another start is another screen");
        for i in 0..KEPT + 3 {
            screens.get(&format!("S{i}"), 0);
        }
        assert!(screens.map.lock().unwrap().len() <= KEPT);
    }
}
