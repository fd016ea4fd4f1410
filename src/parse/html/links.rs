//! Link collection: resolution against the document base URL, http(s) only, no
//! fragments, deduplicated (first occurrence wins), capped at [`MAX_LINKS`].

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use url::Url;
use xxhash_rust::xxh3::xxh3_64;

use super::text::{Collapse, Gap};
use crate::parse::{Link, MAX_FIELD, MAX_LINKS};

/// Longer `href`s are ignored: no crawler wants them, and parsing them costs.
const MAX_HREF: usize = 8192;

pub(super) struct Links {
    /// The document base URL: the page URL, or the first `<base href>` once seen.
    base: Url,
    /// What a fragment-only `href` (`#top`) resolves to: the base without its fragment,
    /// if that is http(s). Such hrefs are common, and need no URL parsing.
    base_for_fragment: Option<String>,
    base_seen: bool,
    links: Vec<Link>,
    /// xxh3 of a kept URL -> its index in `links` (strings compared on a hit).
    kept: U64Map<usize>,
    /// xxh3 of URLs beyond the cap, so each distinct one is counted once.
    dropped: U64Set,
    /// xxh3 of every raw `href` already handled under the current base: a repeat
    /// resolves to the same URL, so it is skipped without parsing (link-dense pages
    /// repeat most of their hrefs). 64-bit hashes: a collision is not a concern.
    seen_raw: U64Set,
    /// The anchor whose text is being collected: index into `links` and its text.
    current: Option<(usize, Collapse)>,
}

impl Links {
    pub fn new(page_url: &Url) -> Self {
        Links {
            base: page_url.clone(),
            base_for_fragment: without_fragment(page_url),
            base_seen: false,
            links: Vec::new(),
            kept: U64Map::default(),
            dropped: U64Set::default(),
            seen_raw: U64Set::default(),
            current: None,
        }
    }

    /// `<base href>`: only the first one counts (as in browsers), and only when it
    /// resolves to an http(s) URL. Links seen before it keep their page-URL resolution.
    pub fn set_base(&mut self, href: &str) {
        if std::mem::replace(&mut self.base_seen, true) {
            return;
        }
        if let Some(url) = self.resolve(href) {
            self.base_for_fragment = without_fragment(&url);
            self.base = url;
            self.seen_raw.clear();
        }
    }

    /// The document base URL as of the element being read.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Resolves an `href` (entities already decoded) to an absolute http(s) URL
    /// without fragment.
    pub fn resolve(&self, href: &str) -> Option<Url> {
        if href.len() > MAX_HREF {
            return None;
        }
        let mut url = self.base.join(href).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        url.set_fragment(None);
        Some(url)
    }

    /// A link starts (`<a href>` or `<area href>`), ending collection of the previous
    /// anchor's text. `area_alt` is `Some` (the `alt` text) for an `<area>`; an `<a>`'s
    /// text arrives through [`Links::text`].
    pub fn start(&mut self, href: &str, rel: Option<&str>, area_alt: Option<String>) {
        self.finish_current();
        if !self.seen_raw.insert(xxh3_64(href.as_bytes())) {
            return;
        }
        let url = if href.starts_with('#') && href.len() <= MAX_HREF {
            self.base_for_fragment.clone()
        } else {
            self.resolve(href).map(String::from)
        };
        let Some(url) = url else {
            return;
        };
        let hash = xxh3_64(url.as_bytes());
        if let Some(&i) = self.kept.get(&hash) {
            if self.links[i].url == url {
                return;
            }
        }
        if self.links.len() >= MAX_LINKS {
            self.dropped.insert(hash);
            return;
        }
        self.kept.entry(hash).or_insert(self.links.len());
        let nofollow = rel.is_some_and(|rel| {
            rel.split_ascii_whitespace().any(|token| {
                ["nofollow", "ugc", "sponsored"]
                    .iter()
                    .any(|t| token.eq_ignore_ascii_case(t))
            })
        });
        let is_anchor = area_alt.is_none();
        self.links.push(Link {
            url,
            text: area_alt.unwrap_or_default(),
            nofollow,
            lastmod: None,
        });
        if is_anchor {
            self.current = Some((self.links.len() - 1, Collapse::new(MAX_FIELD)));
        }
    }

    /// Text inside the current `<a href>`, entities decoded, with the markup before it.
    pub fn text(&mut self, s: &str, gap: Gap<'_>) {
        if let Some((_, c)) = &mut self.current {
            if !c.is_full() {
                c.feed(s, gap);
            }
        }
    }

    fn finish_current(&mut self) {
        if let Some((i, c)) = self.current.take() {
            if let Some(link) = self.links.get_mut(i) {
                link.text = c.finish();
            }
        }
    }

    /// The links, and how many distinct links were dropped beyond the cap.
    pub fn finish(mut self) -> (Vec<Link>, u64) {
        self.finish_current();
        (self.links, self.dropped.len() as u64)
    }
}

/// `url` without its fragment, if it is http(s): what [`Links::resolve`] gives for a
/// fragment-only `href` against it.
fn without_fragment(url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let mut url = url.clone();
    url.set_fragment(None);
    Some(url.into())
}

/// A map keyed by xxh3 hashes, which need no hashing again.
type U64Map<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;
/// A set of xxh3 hashes.
type U64Set = HashSet<u64, BuildHasherDefault<PreHashed>>;

/// The hasher of [`U64Map`] and [`U64Set`]: a `u64` key is its own hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; anything else still hashes.
        self.0 = xxh3_64(bytes) ^ self.0.rotate_left(5);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
