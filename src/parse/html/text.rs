//! Text plumbing shared by the HTML handlers: reassembling lol_html's text chunks into
//! text nodes, decoding entities exactly once, and collapsing whitespace into capped
//! values while counting words.

use std::borrow::Cow;

use html_escape::decode_html_entities;
use lol_html::html_content::{TextChunk, TextType};

/// Reassembles a text node from lol_html's chunks (which may split it anywhere, even
/// inside an entity) and hands the whole node, entities decoded if its context allows
/// them, to a callback. Owns one reusable buffer, so steady-state parsing allocates
/// nothing per chunk.
#[derive(Default)]
pub(super) struct NodeBuffer {
    buf: String,
}

impl NodeBuffer {
    /// Feeds one chunk; calls `f` with the decoded node once the node is complete.
    /// Chunks without `&` are passed on at once when nothing is buffered: they cannot
    /// hold part of an entity, and [`Collapse`] keeps its state across calls.
    pub fn feed(&mut self, chunk: &TextChunk<'_>, mut f: impl FnMut(&str, bool)) {
        let text = chunk.as_str();
        let last = chunk.last_in_text_node();
        if self.buf.is_empty() && !text.contains('&') {
            f(text, last);
            return;
        }
        self.buf.push_str(text);
        if last {
            f(&decode_entities(chunk.text_type(), &self.buf), true);
            self.buf.clear();
        }
    }
}

/// Decodes character references where the HTML context has them (data and RCDATA,
/// i.e. not in script, style or other raw text).
pub(super) fn decode_entities(text_type: TextType, text: &str) -> Cow<'_, str> {
    if text_type.allows_html_entities() && text.contains('&') {
        decode_html_entities(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whitespace-collapsing, length-capped text: runs of whitespace (Unicode White_Space,
/// including no-break space) become one space, leading and trailing whitespace go, NUL
/// characters are dropped (as the HTML tree builder drops them). Words (maximal runs of
/// non-whitespace) are counted even after the cap is reached.
#[derive(Debug)]
pub(super) struct Collapse {
    pub text: String,
    cap: usize,
    full: bool,
    in_word: bool,
    pub words: u64,
}

impl Collapse {
    pub fn new(cap: usize) -> Self {
        Collapse {
            text: String::new(),
            cap,
            full: false,
            in_word: false,
            words: 0,
        }
    }

    /// Whether more text could still change the value (for callers that do not need
    /// word counts).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Ends the current word: what follows starts a new one.
    pub fn boundary(&mut self) {
        self.in_word = false;
    }

    /// Appends text; a word continues across calls unless [`Collapse::boundary`] was
    /// called in between.
    pub fn push(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut start = None;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            // ASCII fast path; other characters are decoded for Unicode White_Space.
            let (space, nul, len) = if b < 0x80 {
                (matches!(b, b'\t'..=b'\r' | b' '), b == 0, 1)
            } else {
                let c = s[i..].chars().next().unwrap_or_default();
                (c.is_whitespace(), false, c.len_utf8())
            };
            if space || nul {
                if let Some(st) = start.take() {
                    self.word_part(&s[st..i]);
                }
                self.in_word &= nul;
            } else if start.is_none() {
                start = Some(i);
            }
            i += len;
        }
        if let Some(st) = start {
            self.word_part(&s[st..]);
        }
    }

    fn word_part(&mut self, part: &str) {
        if !self.in_word {
            self.in_word = true;
            self.words += 1;
            if !self.text.is_empty() {
                self.append(" ");
            }
        }
        self.append(part);
    }

    fn append(&mut self, part: &str) {
        if self.full {
            return;
        }
        let room = self.cap - self.text.len();
        if part.len() <= room {
            self.text.push_str(part);
        } else {
            self.text.push_str(&part[..floor_char_boundary(part, room)]);
            self.full = true;
        }
    }

    /// The collapsed text (without a trailing space: spaces are only ever written
    /// before a word).
    pub fn finish(self) -> String {
        let mut text = self.text;
        if text.ends_with(' ') {
            text.pop();
        }
        text
    }
}

/// Decodes entities, trims, and caps an attribute value (whitespace inside is kept).
pub(super) fn attr_value(raw: &str, cap: usize) -> String {
    let decoded = decode_html_entities(raw);
    let trimmed = decoded.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    trimmed[..floor_char_boundary(trimmed, cap)].to_string()
}

/// Decodes entities and collapses whitespace in an attribute value (for prose such as
/// descriptions and image alt text).
pub(super) fn attr_text(raw: &str, cap: usize) -> String {
    let mut c = Collapse::new(cap);
    c.push(&decode_html_entities(raw));
    c.finish()
}

/// The largest char boundary of `s` at or below `at`.
pub(super) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collapse(parts: &[&str], cap: usize) -> (String, u64) {
        let mut c = Collapse::new(cap);
        for p in parts {
            c.push(p);
        }
        let words = c.words;
        (c.finish(), words)
    }

    #[test]
    fn collapses_whitespace_and_counts_words() {
        assert_eq!(collapse(&["  a \n\t b  "], 100), ("a b".into(), 2));
        assert_eq!(
            collapse(&["Hel", "lo", " world"], 100),
            ("Hello world".into(), 2)
        );
        assert_eq!(collapse(&["a\u{a0}b\u{3000}c"], 100), ("a b c".into(), 3));
        assert_eq!(collapse(&["nul\0byte \0 x"], 100), ("nulbyte x".into(), 2));
        assert_eq!(collapse(&["", " ", "\0"], 100), (String::new(), 0));
    }

    #[test]
    fn boundary_splits_words() {
        let mut c = Collapse::new(100);
        c.push("one");
        c.boundary();
        c.push("two");
        c.push("three");
        assert_eq!((c.words, c.finish()), (2, "one twothree".to_string()));
    }

    #[test]
    fn caps_at_a_char_boundary_but_keeps_counting() {
        assert_eq!(collapse(&["ab cd"], 3), ("ab".into(), 2));
        assert_eq!(collapse(&["ab cd"], 4), ("ab c".into(), 2));
        assert_eq!(collapse(&["é", "é", " x y"], 3), ("é".into(), 3));
        assert_eq!(collapse(&["€€"], 5), ("€".into(), 1));
        let (text, words) = collapse(&["w "; 10_000], 2048);
        assert_eq!((text.len(), words), (2047, 10_000));
    }

    #[test]
    fn attribute_values() {
        assert_eq!(attr_value("  a &amp;  b&copy=1 ", 100), "a &  b&copy=1");
        assert_eq!(attr_value("&eacute;&eacute;", 3), "é");
        assert_eq!(attr_text(" A &quot;x&quot;\n  y ", 100), "A \"x\" y");
        assert_eq!(floor_char_boundary("aé", 2), 1);
        assert_eq!(floor_char_boundary("aé", 9), 3);
    }
}
