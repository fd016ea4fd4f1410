//! What the parse stage learns about a page, as the journal stores it: the
//! [`Annotation`] with its [`Link`]s and extracted [`Field`]s. The parse stage produces
//! these; the journal stores them (`AnnotationRecord`, bincode: field order, types and
//! variant order are the on-disk format) and sync loads them into MySQL. Defined here,
//! in the storage layer, so the journal depends on no stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of document a page was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocKind {
    Html,
    Sitemap,
    SitemapIndex,
    Rss,
    Atom,
    /// Not parsed: recorded with its type and size only (PDF, images, JSON, ...).
    Other,
}

/// A link found on a page, resolved to an absolute URL without fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    /// Anchor text (HTML) or entry title (feeds), whitespace collapsed.
    pub text: String,
    /// `rel="nofollow"` on the link (or `ugc`/`sponsored`, which imply it).
    pub nofollow: bool,
    /// Sitemap `<lastmod>` or feed updated/pubDate, as written.
    pub lastmod: Option<String>,
}

/// What one extraction rule found on a page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    /// A rule without `all = true`: its first non-empty match, if any (a JSON string or
    /// `null` in MySQL's `fields`).
    One(Option<String>),
    /// An `all = true` rule: every match, in document order (a JSON array). Annotations
    /// stored before parser version 3 hold every field in this form.
    All(Vec<String>),
}

impl Field {
    /// The field as MySQL's `fields` column shows it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Field::One(value) => value.clone().map_or(serde_json::Value::Null, Into::into),
            Field::All(values) => values.clone().into(),
        }
    }
}

/// Everything the parse stage learns about one page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub parser_version: u32,
    /// `parse::Rules::hash` of the rules applied.
    pub rules_hash: u64,
    pub kind: Option<DocKind>,
    /// MIME type essence, lowercased (`text/html`), from the header or sniffed.
    pub content_type: Option<String>,
    pub size: u64,
    /// The encoding the text was decoded from (WHATWG name, e.g. `windows-1252`).
    pub charset: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub robots_noindex: bool,
    pub robots_nofollow: bool,
    pub canonical: Option<String>,
    pub lang: Option<String>,
    pub h1: Option<String>,
    pub links: Vec<Link>,
    pub links_dropped: u64,
    /// Words of visible text (not script, style, or markup).
    pub word_count: u64,
    /// The start of the visible text, whitespace collapsed, at most MAX_TEXT_EXTRACT bytes.
    pub text: String,
    /// xxh3-128 of the body bytes, hex.
    pub content_hash: String,
    /// Extracted fields by rule name, every rule's name present.
    pub fields: BTreeMap<String, Field>,
    /// Why the document could not be (fully) parsed, if it could not.
    pub error: Option<String>,
}

impl Annotation {
    /// Whether two annotations say the same about a page, whatever parser version and
    /// rules produced them: only a change here makes a page pending for sync again.
    pub fn same_content(&self, other: &Annotation) -> bool {
        let unversioned = |a: &Annotation| Annotation {
            parser_version: 0,
            rules_hash: 0,
            ..a.clone()
        };
        unversioned(self) == unversioned(other)
    }
}
