//! Helpers for [`super`]: charset decoding of the whole body, sniffing, the bounded,
//! whitespace-collapsing text buffer fields are collected in, attribute values and
//! URL resolution.

use std::borrow::Cow;

use encoding_rs::{Encoding, REPLACEMENT, UTF_8};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::BytesStart;
use url::Url;

use crate::parse::charset::header_charset;
use crate::urls::MAX_URL_LEN;

/// How far into the body the XML declaration (and sniffing) is looked for.
const SNIFF_LEN: usize = 512;

/// The body as UTF-8 text, and how many bytes of BOM were dropped from its start
/// (added to error positions).
///
/// A BOM wins; then the `charset` of the `Content-Type` header value `content_type`
/// (RFC 7303, and what browsers do; read as for HTML); then an ASCII-compatible
/// encoding named by the XML declaration (`ISO-8859-1`, `windows-1252`, `Shift_JIS`,
/// ...: a declaration readable as ASCII cannot be in UTF-16); anything else is read
/// as UTF-8. Nothing is guessed, and invalid sequences become U+FFFD where they are
/// rather than errors. Borrows the body when it is already valid UTF-8.
pub(super) fn decode_body<'b>(body: &'b [u8], content_type: Option<&str>) -> (Cow<'b, str>, u64) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(body) {
        let rest = body.get(bom_len..).unwrap_or_default();
        return (encoding.decode_without_bom_handling(rest).0, bom_len as u64);
    }
    let encoding = content_type
        .and_then(header_charset)
        .or_else(|| {
            declared_encoding(body).filter(|e| *e != REPLACEMENT && e.is_ascii_compatible())
        })
        .unwrap_or(UTF_8);
    (encoding.decode_without_bom_handling(body).0, 0)
}

/// The encoding named by `<?xml ... encoding="..."?>` at the start of the body, if
/// encoding_rs knows the label.
fn declared_encoding(body: &[u8]) -> Option<&'static Encoding> {
    let head = body.get(..body.len().min(SNIFF_LEN)).unwrap_or(body);
    let decl = head.trim_ascii_start().strip_prefix(b"<?xml")?;
    let decl = decl.get(..find(decl, b"?>")?)?;
    let after = decl.get(find(decl, b"encoding")? + b"encoding".len()..)?;
    let after = after
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let (&quote, value) = after.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let end = value.iter().position(|&b| b == quote)?;
    Encoding::for_label(value.get(..end)?)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sniffing for bodies without a content type: true if, after an optional UTF-8 BOM,
/// whitespace and comments, the first few hundred bytes start with an XML declaration
/// or a sitemap or feed root element (`<urlset`, `<sitemapindex`, `<rss`, `<feed`,
/// `<rdf:RDF`).
pub fn looks_like_xml_doc(body: &[u8]) -> bool {
    let head = body.get(..body.len().min(SNIFF_LEN)).unwrap_or(body);
    let mut rest = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    loop {
        rest = rest.trim_ascii_start();
        let Some(comment) = rest.strip_prefix(b"<!--") else {
            break;
        };
        let Some(end) = find(comment, b"-->") else {
            return false;
        };
        rest = comment.get(end + 3..).unwrap_or_default();
    }
    if rest.starts_with(b"<?xml") {
        return true;
    }
    let Some(rest) = rest.strip_prefix(b"<") else {
        return false;
    };
    ["urlset", "sitemapindex", "rss", "feed", "rdf:RDF"]
        .iter()
        .filter_map(|root| rest.strip_prefix(root.as_bytes()))
        .any(|after| {
            matches!(
                after.first(),
                Some(b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/')
            )
        })
}

/// Collects text with whitespace trimmed and runs of whitespace (and control
/// characters) collapsed to one space, keeping at most `cap` bytes (cut at a char
/// boundary). Never holds more than `cap` bytes whatever it is fed.
pub(super) struct TextBuf {
    text: String,
    cap: usize,
    space: bool,
    /// Some text did not fit in `cap` bytes.
    pub(super) truncated: bool,
}

impl TextBuf {
    pub(super) fn new(cap: usize) -> Self {
        TextBuf {
            text: String::new(),
            cap,
            space: false,
            truncated: false,
        }
    }

    pub(super) fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            if self.truncated {
                return;
            }
            self.push(c);
        }
    }

    pub(super) fn push(&mut self, c: char) {
        if self.truncated {
            return;
        }
        if c.is_whitespace() || c.is_control() {
            self.space = !self.text.is_empty();
            return;
        }
        let space = usize::from(self.space);
        if self.text.len() + space + c.len_utf8() > self.cap {
            self.truncated = true;
            return;
        }
        if self.space {
            self.text.push(' ');
            self.space = false;
        }
        self.text.push(c);
    }

    pub(super) fn into_string(self) -> String {
        self.text
    }
}

/// The (unescaped) value of the first attribute whose qualified name matches.
/// Attributes after a malformed one are not looked at. No duplicate check (it is
/// quadratic in the number of attributes).
pub(super) fn attribute(e: &BytesStart, matches: impl Fn(&[u8]) -> bool) -> Option<String> {
    for attr in e.attributes().with_checks(false) {
        let attr: Attribute = attr.ok()?;
        if matches(attr.key.as_ref()) {
            return Some(match attr.unescape_value() {
                Ok(value) => value.into_owned(),
                Err(_) => String::from_utf8_lossy(&attr.value).into_owned(),
            });
        }
    }
    None
}

/// `text` as an absolute http(s) URL without fragment, resolved against `base`
/// (or only if already absolute when `base` is None).
pub(super) fn resolve(base: Option<&Url>, text: &str) -> Option<String> {
    let mut url = Url::options().base_url(base).parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_fragment(None);
    let url = String::from(url);
    (url.len() <= MAX_URL_LEN).then_some(url)
}
