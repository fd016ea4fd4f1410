//! Text plumbing shared by the HTML handlers: reassembling lol_html's text chunks into
//! text nodes, decoding entities exactly once, and collapsing whitespace into capped
//! values while counting words.

use std::borrow::Cow;

use html_escape::decode_html_entities;
use lol_html::html_content::{Element, TextChunk, TextType};

/// Reassembles a text node from lol_html's chunks (which may split it anywhere, even
/// inside an entity) and passes it on, entities decoded if its context allows them,
/// with the markup between it and the previous node this buffer saw (see [`Gap`]).
/// Owns one reusable buffer: steady-state parsing allocates nothing per chunk.
pub(super) struct NodeBuffer<'a> {
    /// The whole document lol_html is reading (chunk locations index into it).
    html: &'a [u8],
    buf: String,
    /// End of the last chunk seen.
    prev_end: Option<usize>,
    at_node_start: bool,
    /// The current node's gap, until passed on with its first text.
    gap: Gap<'a>,
}

impl<'a> NodeBuffer<'a> {
    pub fn new(html: &'a [u8]) -> Self {
        NodeBuffer {
            html,
            buf: String::new(),
            prev_end: None,
            at_node_start: true,
            gap: Gap::None,
        }
    }

    /// Feeds one chunk; calls `f(text, gap)` with the node's text: at once for chunks
    /// without `&` when nothing is buffered (they cannot hold part of an entity, and
    /// [`Collapse`] keeps its state across calls), else once the node is complete.
    pub fn feed(&mut self, chunk: &TextChunk<'_>, mut f: impl FnMut(&str, Gap<'a>)) {
        let at = chunk.source_location().bytes();
        if self.at_node_start {
            self.gap = match self.prev_end {
                None => Gap::None,
                Some(end) => self
                    .html
                    .get(end..at.start)
                    .map_or(Gap::Unknown, Gap::Markup),
            };
        }
        self.prev_end = Some(at.end);
        let text = chunk.as_str();
        let last = chunk.last_in_text_node();
        self.at_node_start = last;
        if self.buf.is_empty() && !text.contains('&') {
            if !text.is_empty() {
                f(text, std::mem::take(&mut self.gap));
            }
            return;
        }
        self.buf.push_str(text);
        if last {
            let gap = std::mem::take(&mut self.gap);
            f(&decode_entities(chunk.text_type(), &self.buf), gap);
            self.buf.clear();
        }
    }
}

/// What lies between a text node and the previous one: decides whether the two are
/// separate words. Examined lazily: only when a word would otherwise continue.
#[derive(Clone, Copy, Debug, Default)]
pub(super) enum Gap<'a> {
    /// Nothing before (or the same node continuing).
    #[default]
    None,
    Markup(&'a [u8]),
    /// Locations that do not line up; counts as separating.
    Unknown,
}

impl Gap<'_> {
    pub fn separates(self) -> bool {
        match self {
            Gap::None => false,
            Gap::Markup(markup) => markup_separates(markup),
            Gap::Unknown => true,
        }
    }
}

/// Whether markup holds a start or end tag of an element that starts a new line or
/// cell when rendered (`<p>`, `</div>`, `<br>`, `<td>`, `<img>`, ...): text on either
/// side is separate words. Other tags (`<b>`, `<span>`, `<a>`) and comments join text
/// as rendered, so `Hel<b>lo</b>` is one word. A plain scan: a tag inside a comment
/// counts too.
pub(super) fn markup_separates(markup: &[u8]) -> bool {
    let mut rest = markup;
    while let Some(lt) = rest.iter().position(|&b| b == b'<') {
        rest = &rest[lt + 1..];
        let name = rest.strip_prefix(b"/").unwrap_or(rest);
        let len = name
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let mut lower = [0u8; 10];
        let Some(lower) = lower.get_mut(..len) else {
            continue; // longer than any separating name
        };
        lower.copy_from_slice(&name[..len]);
        lower.make_ascii_lowercase();
        let separating = matches!(
            &*lower,
            b"address"
                | b"article"
                | b"aside"
                | b"blockquote"
                | b"body"
                | b"br"
                | b"button"
                | b"caption"
                | b"dd"
                | b"details"
                | b"dialog"
                | b"div"
                | b"dl"
                | b"dt"
                | b"fieldset"
                | b"figcaption"
                | b"figure"
                | b"footer"
                | b"form"
                | b"h1"
                | b"h2"
                | b"h3"
                | b"h4"
                | b"h5"
                | b"h6"
                | b"head"
                | b"header"
                | b"hgroup"
                | b"hr"
                | b"html"
                | b"iframe"
                | b"img"
                | b"input"
                | b"li"
                | b"main"
                | b"nav"
                | b"noscript"
                | b"ol"
                | b"option"
                | b"p"
                | b"pre"
                | b"section"
                | b"select"
                | b"summary"
                | b"table"
                | b"tbody"
                | b"td"
                | b"template"
                | b"textarea"
                | b"tfoot"
                | b"th"
                | b"thead"
                | b"title"
                | b"tr"
                | b"ul"
                | b"video"
        );
        if separating {
            return true;
        }
    }
    false
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

    /// Appends a piece of a text node from [`NodeBuffer`], starting a new word if the
    /// markup before it separates words (looked at only when a word would otherwise
    /// continue: the last text ended and this one starts with a non-space).
    pub fn feed(&mut self, s: &str, gap: Gap<'_>) {
        if self.in_word && s.starts_with(|c: char| !c.is_whitespace()) && gap.separates() {
            self.boundary();
        }
        self.push(s);
    }

    /// Appends text; a word continues across calls unless [`Collapse::boundary`] was
    /// called in between.
    pub fn push(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // A run of word characters, scanned a byte at a time: only bytes that may
            // start whitespace or are NUL end it (see `MAY_SEPARATE`).
            let start = i;
            while let Some(&b) = bytes.get(i) {
                if MAY_SEPARATE[usize::from(b)] && separator_len(s, i).is_some() {
                    break;
                }
                i += 1;
            }
            if i > start {
                self.word_part(&s[start..i]);
            }
            // Then whitespace ends the word; NUL is dropped without ending it.
            while let Some(len) = separator_len(s, i) {
                self.in_word &= bytes[i] == 0;
                i += len;
            }
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

/// Bytes that are NUL or whitespace, or may start a whitespace character: ASCII
/// whitespace and the lead bytes of U+0085, U+00A0 (0xC2), U+1680 (0xE1), U+2000 to
/// U+205F (0xE2) and U+3000 (0xE3). Every other byte is part of a word.
static MAY_SEPARATE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(
            b as u8,
            0 | b'\t'..=b'\r' | b' ' | 0xC2 | 0xE1 | 0xE2 | 0xE3
        );
        b += 1;
    }
    table
};

/// The length of the NUL or whitespace (Unicode White_Space) character at byte `i` of
/// `s`, if there is one.
fn separator_len(s: &str, i: usize) -> Option<usize> {
    let b = *s.as_bytes().get(i)?;
    if !MAY_SEPARATE[usize::from(b)] {
        return None;
    }
    if b < 0x80 {
        return Some(1);
    }
    let c = s.get(i..)?.chars().next()?;
    c.is_whitespace().then(|| c.len_utf8())
}

/// The first attribute of `el` named `name` (ASCII case-insensitively), as written:
/// entities not decoded, `""` when it has no value. Read from `html`, the document
/// lol_html is reading, where lol_html located it: unlike `Element::get_attribute`,
/// which allocates the lowercased name and the value on every call. Falls back to
/// lol_html's own copy should a location not line up.
pub(super) fn attribute<'h>(
    el: &Element<'_, '_>,
    html: &'h str,
    name: &str,
) -> Option<Cow<'h, str>> {
    let attr = el.attributes().iter().find(|a| {
        a.name_source_location()
            .and_then(|at| html.as_bytes().get(at.bytes()))
            .map_or_else(
                || a.name().eq_ignore_ascii_case(name),
                |raw| raw.eq_ignore_ascii_case(name.as_bytes()),
            )
    })?;
    Some(
        attr.value_source_location()
            .and_then(|at| html.get(at.bytes()))
            .map_or_else(|| Cow::Owned(attr.value()), Cow::Borrowed),
    )
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
mod tests;
