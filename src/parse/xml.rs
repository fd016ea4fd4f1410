//! Sitemaps and feeds: a streaming quick-xml pass (no DOM) that finds the document
//! kind from its root element and collects the links it lists.
//!
//! | root             | kind           | links from                         | lastmod                     |
//! |------------------|----------------|------------------------------------|-----------------------------|
//! | `urlset`         | `Sitemap`      | `url/loc`                          | `url/lastmod`               |
//! | `sitemapindex`   | `SitemapIndex` | `sitemap/loc`                      | `sitemap/lastmod`           |
//! | `rss`, `rdf:RDF` | `Rss`          | `item/link`, else a URL `guid`     | `pubDate`, else `dc:date`   |
//! | `feed`           | `Atom`         | `entry/link[@href]`, rel alternate | `updated`, else `published` |
//!
//! Elements match by local name, so namespace prefixes do not matter, and only as
//! direct children of the record (`url`, `item`, ...), so `image:image/image:loc` or an
//! Atom entry's `source/title` are not mistaken for the record's own. Feed links carry
//! the item or entry title as text; the channel or feed title becomes
//! [`XmlDoc::title`]. The body is decoded from a BOM, else the `Content-Type` charset,
//! else the XML declaration's encoding, else as UTF-8 (never guessed; bad bytes become
//! U+FFFD). Text has entities and CDATA decoded and whitespace collapsed.
//! URLs resolve against `xml:base` or the page URL, must be http(s), lose their
//! fragment and are deduplicated (first one kept). Memory is bounded: text fields stop
//! at [`MAX_FIELD`] bytes, URLs at [`MAX_URL_LEN`], links at [`MAX_LINKS`], nesting at
//! [`MAX_DEPTH`]. Bad XML stops the pass with an error; links found before are kept.

mod gzip;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashSet;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;
use url::Url;
use xxhash_rust::xxh3::xxh3_128;

pub use gzip::{gunzip_capped, is_gzip};
pub use text::looks_like_xml_doc;

use super::{DocKind, Link, MAX_FIELD, MAX_LINKS};
use crate::urls::MAX_URL_LEN;
use text::{attribute, resolve, TextBuf};

/// Deepest element nesting followed; a deeper document stops with an error.
pub const MAX_DEPTH: usize = 256;

/// What [`parse_xml`] learned about a sitemap or feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlDoc {
    /// From the root element; `Other` if it is not a sitemap or feed root.
    pub kind: DocKind,
    /// RSS channel or Atom feed title.
    pub title: Option<String>,
    pub links: Vec<Link>,
    /// Links past [`MAX_LINKS`].
    pub links_dropped: u64,
    /// Sitemap `changefreq` of the links that have one (a recrawl hint, not part of
    /// the annotation): URL and the value as written.
    pub changefreqs: Vec<(String, String)>,
    /// Why the document was not (fully) parsed: malformed or truncated XML (with the
    /// byte position, counted in the UTF-8 text after charset decoding), too deep, or
    /// not a sitemap or feed.
    pub error: Option<String>,
}

/// Parses a sitemap, sitemap index, RSS (0.9x/2.0 and RDF 1.0) or Atom document.
/// `content_type` is the raw `Content-Type` header, for its charset. Never panics; see
/// the module docs for what is extracted.
pub fn parse_xml(body: &[u8], content_type: Option<&str>, page_url: &Url) -> XmlDoc {
    let (text, offset) = text::decode_body(body, content_type);
    let mut reader = Reader::from_str(&text);
    // A raw `&` in a URL (`?a=1&b=2`) is a common sitemap mistake: keep it as text.
    reader.config_mut().allow_dangling_amp = true;
    let mut parser = Parser::new(page_url);
    loop {
        let keep_going = match reader.read_event() {
            Err(e) => {
                let at = offset + reader.error_position();
                parser.fail(format!("malformed XML at byte {at}: {e}"));
                false
            }
            Ok(Event::Eof) => {
                parser.end_of_input(offset + reader.buffer_position());
                false
            }
            Ok(Event::Start(e)) => parser.open(&e, false),
            Ok(Event::Empty(e)) => parser.open(&e, true),
            Ok(Event::End(_)) => parser.close_top(),
            Ok(Event::Text(t)) => parser.text(t.decode().ok().as_deref()),
            Ok(Event::CData(t)) => parser.text(t.decode().ok().as_deref()),
            Ok(Event::GeneralRef(r)) => parser.reference(&r),
            Ok(_) => true,
        };
        if !keep_going {
            break;
        }
        if parser.stack.len() > MAX_DEPTH {
            let at = offset + reader.buffer_position();
            parser.fail(format!(
                "XML nested deeper than {MAX_DEPTH} elements at byte {at}"
            ));
            break;
        }
    }
    parser.doc
}

/// Element local names the parser cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Root,
    Url,
    Sitemap,
    Channel,
    Item,
    Entry,
    Loc,
    Lastmod,
    Changefreq,
    Title,
    Link,
    Guid,
    PubDate,
    Date,
    Updated,
    Published,
    Other,
}

impl Tag {
    fn of(local_name: &[u8]) -> Tag {
        match local_name {
            b"url" => Tag::Url,
            b"sitemap" => Tag::Sitemap,
            b"channel" => Tag::Channel,
            b"item" => Tag::Item,
            b"entry" => Tag::Entry,
            b"loc" => Tag::Loc,
            b"lastmod" => Tag::Lastmod,
            b"changefreq" => Tag::Changefreq,
            b"title" => Tag::Title,
            b"link" => Tag::Link,
            b"guid" => Tag::Guid,
            b"pubDate" => Tag::PubDate,
            b"date" => Tag::Date,
            b"updated" => Tag::Updated,
            b"published" => Tag::Published,
            _ => Tag::Other,
        }
    }
}

/// Which value a captured element's text becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    FeedTitle,
    Title,
    /// Sitemap `loc`, RSS `link`.
    Url,
    /// RSS `guid`, used when an item has no `link` and the guid is an absolute URL.
    Guid,
    /// `lastmod`, `pubDate`, Atom `updated`.
    Lastmod,
    /// `dc:date`, Atom `published`: used when the first is missing.
    LastmodFallback,
    /// Sitemap `changefreq`.
    Changefreq,
}

/// The text of one element being collected (including its descendants' text).
struct Capture {
    field: Field,
    depth: usize,
    buf: TextBuf,
}

/// One `url`, `sitemap`, `item` or `entry` being read.
#[derive(Default)]
struct Record {
    depth: usize,
    url: Option<String>,
    guid: Option<String>,
    title: Option<String>,
    lastmod: Option<String>,
    lastmod_fallback: Option<String>,
    changefreq: Option<String>,
    /// Atom alternate links, resolved.
    hrefs: Vec<String>,
}

struct Parser<'u> {
    page_url: &'u Url,
    doc: XmlDoc,
    /// Open elements; the root is at depth 0.
    stack: Vec<Tag>,
    /// `xml:base` in effect: (depth of the element declaring it, resolved base).
    bases: Vec<(usize, Url)>,
    record: Option<Record>,
    capture: Option<Capture>,
    /// xxh3-128 of the URLs kept, for deduplication.
    seen: HashSet<u128>,
}

impl<'u> Parser<'u> {
    fn new(page_url: &'u Url) -> Self {
        Parser {
            page_url,
            doc: XmlDoc {
                kind: DocKind::Other,
                title: None,
                links: Vec::new(),
                links_dropped: 0,
                changefreqs: Vec::new(),
                error: None,
            },
            stack: Vec::new(),
            bases: Vec::new(),
            record: None,
            capture: None,
            seen: HashSet::new(),
        }
    }

    fn fail(&mut self, message: String) {
        self.doc.error = Some(message);
    }

    fn end_of_input(&mut self, at: u64) {
        if self.stack.is_empty() {
            self.fail("not a sitemap or feed: no root element".into());
        } else {
            let open = self.stack.len();
            self.fail(format!(
                "truncated XML: {open} element(s) not closed at end of input (byte {at})"
            ));
        }
    }

    /// A start tag, or an empty-element tag (`empty`), which is also closed at once.
    fn open(&mut self, e: &BytesStart, empty: bool) -> bool {
        let depth = self.stack.len();
        let tag = if depth == 0 {
            let kind = match e.local_name().as_ref() {
                b"urlset" => DocKind::Sitemap,
                b"sitemapindex" => DocKind::SitemapIndex,
                b"rss" | b"RDF" => DocKind::Rss,
                b"feed" => DocKind::Atom,
                _ => {
                    let mut name = TextBuf::new(MAX_FIELD);
                    name.push_str(&String::from_utf8_lossy(e.name().as_ref()));
                    let name = name.into_string();
                    self.fail(format!("not a sitemap or feed: root <{name}>"));
                    return false;
                }
            };
            self.doc.kind = kind;
            Tag::Root
        } else {
            Tag::of(e.local_name().as_ref())
        };
        if let Some(base) = attribute(e, |key| key == b"xml:base") {
            if let Ok(url) = Url::options().base_url(Some(self.base())).parse(&base) {
                self.bases.push((depth, url));
            }
        }
        if depth > 0 && self.capture.is_none() {
            self.dispatch(tag, e, depth);
        }
        if empty {
            self.close(depth)
        } else {
            self.stack.push(tag);
            true
        }
    }

    /// Decides what a new element at `depth` (below the root) means.
    fn dispatch(&mut self, tag: Tag, e: &BytesStart, depth: usize) {
        use DocKind::{Atom, Rss, Sitemap, SitemapIndex};
        let parent = self.stack.last().copied().unwrap_or(Tag::Root);
        let kind = self.doc.kind;
        let in_record = self.record.as_ref().is_some_and(|r| r.depth + 1 == depth);
        let field = match (kind, parent, tag) {
            (Sitemap, Tag::Root, Tag::Url)
            | (SitemapIndex, Tag::Root, Tag::Sitemap)
            | (Rss, Tag::Root | Tag::Channel, Tag::Item)
            | (Atom, Tag::Root, Tag::Entry)
                if self.record.is_none() =>
            {
                self.record = Some(Record {
                    depth,
                    ..Record::default()
                });
                None
            }
            (Rss, Tag::Channel, Tag::Title) if depth == 2 => Some(Field::FeedTitle),
            (Atom, Tag::Root, Tag::Title) => Some(Field::FeedTitle),
            _ if !in_record => None,
            (Sitemap | SitemapIndex, _, Tag::Loc) | (Rss, _, Tag::Link) => Some(Field::Url),
            (Sitemap | SitemapIndex, _, Tag::Lastmod)
            | (Rss, _, Tag::PubDate)
            | (Atom, _, Tag::Updated) => Some(Field::Lastmod),
            (Rss, _, Tag::Date) | (Atom, _, Tag::Published) => Some(Field::LastmodFallback),
            (Sitemap, _, Tag::Changefreq) => Some(Field::Changefreq),
            (Rss | Atom, _, Tag::Title) => Some(Field::Title),
            (Rss, _, Tag::Guid) => {
                let permalink = attribute(e, |key| key == b"isPermaLink");
                let permalink = permalink.is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
                permalink.then_some(Field::Guid)
            }
            (Atom, _, Tag::Link) => {
                self.atom_link(e);
                None
            }
            _ => None,
        };
        if let Some(field) = field {
            let cap = match field {
                Field::Url | Field::Guid => MAX_URL_LEN,
                _ => MAX_FIELD,
            };
            let buf = TextBuf::new(cap);
            self.capture = Some(Capture { field, depth, buf });
        }
    }

    fn atom_link(&mut self, e: &BytesStart) {
        let alternate = attribute(e, |key| key == b"rel").is_none_or(|rel| {
            let rel = rel.trim();
            rel.is_empty()
                || rel.eq_ignore_ascii_case("alternate")
                || rel == "http://www.iana.org/assignments/relation/alternate"
        });
        let Some(href) = attribute(e, |key| key == b"href").filter(|_| alternate) else {
            return;
        };
        let Some(url) = resolve(Some(self.base()), &href) else {
            return;
        };
        match &mut self.record {
            Some(record) if record.hrefs.len() < MAX_LINKS => record.hrefs.push(url),
            Some(_) => self.doc.links_dropped += 1,
            None => {}
        }
    }

    fn close_top(&mut self) -> bool {
        // quick-xml checks that end tags match, so this is the element being closed.
        if self.stack.pop().is_none() {
            return false;
        }
        self.close(self.stack.len())
    }

    /// The element at `depth` ended (already popped, or never pushed if empty).
    fn close(&mut self, depth: usize) -> bool {
        if let Some(capture) = self.capture.take_if(|c| c.depth == depth) {
            self.finish(capture);
        }
        if let Some(record) = self.record.take_if(|r| r.depth == depth) {
            self.emit(record);
        }
        while self.bases.last().is_some_and(|(d, _)| *d >= depth) {
            self.bases.pop();
        }
        // Nothing after the root element is read.
        depth > 0
    }

    fn text(&mut self, text: Option<&str>) -> bool {
        if let (Some(capture), Some(text)) = (&mut self.capture, text) {
            capture.buf.push_str(text);
        }
        true
    }

    /// `&name;` or `&#nn;` in text: predefined XML entities and character references
    /// are decoded; anything else (undeclared entities) is kept as written.
    fn reference(&mut self, r: &BytesRef) -> bool {
        let Some(capture) = &mut self.capture else {
            return true;
        };
        let Ok(name) = r.decode() else {
            return true;
        };
        if let Ok(Some(c)) = r.resolve_char_ref() {
            capture.buf.push(c);
        } else if let Some(value) = resolve_xml_entity(&name) {
            capture.buf.push_str(value);
        } else if name == "nbsp" {
            capture.buf.push(' ');
        } else {
            capture.buf.push('&');
            capture.buf.push_str(&name);
            capture.buf.push(';');
        }
        true
    }

    fn finish(&mut self, capture: Capture) {
        let is_url = matches!(capture.field, Field::Url | Field::Guid);
        if is_url && capture.buf.truncated {
            return; // longer than MAX_URL_LEN: not kept
        }
        let text = capture.buf.into_string();
        if text.is_empty() {
            return;
        }
        if capture.field == Field::FeedTitle {
            self.doc.title.get_or_insert(text);
            return;
        }
        let base = self.base().clone();
        let Some(record) = &mut self.record else {
            return;
        };
        let slot = match capture.field {
            Field::Url => &mut record.url,
            Field::Guid => &mut record.guid,
            Field::Title => &mut record.title,
            Field::Lastmod => &mut record.lastmod,
            Field::LastmodFallback => &mut record.lastmod_fallback,
            Field::Changefreq => &mut record.changefreq,
            Field::FeedTitle => return,
        };
        if slot.is_some() {
            return;
        }
        *slot = match capture.field {
            Field::Url => resolve(Some(&base), &text),
            // A guid is only a link if it is an absolute URL.
            Field::Guid => resolve(None, &text),
            _ => Some(text),
        };
    }

    fn emit(&mut self, record: Record) {
        let lastmod = record.lastmod.or(record.lastmod_fallback);
        let text = record.title.unwrap_or_default();
        let urls = match self.doc.kind {
            DocKind::Atom => record.hrefs,
            _ => record.url.or(record.guid).into_iter().collect(),
        };
        for url in urls {
            let key = xxh3_128(url.as_bytes());
            if self.seen.contains(&key) {
                continue;
            }
            if self.doc.links.len() >= MAX_LINKS {
                self.doc.links_dropped += 1;
                continue;
            }
            self.seen.insert(key);
            if let Some(changefreq) = &record.changefreq {
                self.doc.changefreqs.push((url.clone(), changefreq.clone()));
            }
            self.doc.links.push(Link {
                url,
                text: text.clone(),
                nofollow: false,
                lastmod: lastmod.clone(),
            });
        }
    }

    fn base(&self) -> &Url {
        self.bases.last().map_or(self.page_url, |(_, url)| url)
    }
}
