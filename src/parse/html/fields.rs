//! Applying extraction [`Rules`](crate::parse::Rules) during the HTML pass.
//!
//! A match's text is the text inside the matched element (descendants included, words
//! separated as in the page's visible text, see [`super`]) up to the start of the next
//! match of the same rule. That is exact for the usual, non-nested matches and keeps
//! sibling matches apart when their end tags are omitted (`<li>a<li>b`); for a match
//! nested inside another match of the same rule, the outer value stops where the inner
//! one starts. Empty values (after trimming) are skipped: a `first` rule takes the first
//! match with a non-empty value.
//!
//! A value taken from an attribute that holds a URL (`href`, `src`, `action`, `poster`,
//! `cite`, `data`, ... see [`URL_ATTRS`]; `srcset`, a list of them) is resolved against
//! the document's base URL, the first `<base href>` for matches after it, as links
//! are; a value that does not resolve is kept as written.

use lol_html::html_content::Element;
use url::Url;

use super::text::{attr_value, attribute, floor_char_boundary, Collapse, Gap};
use crate::parse::{Field, MAX_FIELD};

/// Most values kept for one `all` rule on one page; further matches are ignored.
pub(super) const MAX_FIELD_VALUES: usize = 1000;

/// Attributes whose value is one URL (HTML's URL-valued attributes, and SVG's and
/// old HTML's `xlink:href`, `background`, `longdesc`).
const URL_ATTRS: [&str; 12] = [
    "action",
    "background",
    "cite",
    "codebase",
    "data",
    "formaction",
    "href",
    "longdesc",
    "manifest",
    "poster",
    "src",
    "xlink:href",
];

pub(super) struct FieldState {
    name: String,
    attr: Option<String>,
    all: bool,
    values: Vec<String>,
    /// Text of the latest match, for text rules.
    current: Option<Collapse>,
    /// No further value is wanted.
    done: bool,
}

impl FieldState {
    pub fn new(name: &str, attr: Option<&str>, all: bool) -> Self {
        FieldState {
            name: name.to_string(),
            attr: attr.map(str::to_string),
            all,
            values: Vec::new(),
            current: None,
            done: false,
        }
    }

    /// An element matched the rule's selector; `html` is the document being read and
    /// `base` its base URL as of this element.
    pub fn element(&mut self, el: &Element<'_, '_>, html: &str, base: &Url) {
        self.close_current();
        if self.done {
            return;
        }
        match &self.attr {
            Some(attr) => {
                if let Some(raw) = attribute(el, html, attr) {
                    let value = attr_value(&raw, MAX_FIELD);
                    let value = match attr.as_str() {
                        "srcset" => absolute_srcset(&value, base),
                        a if URL_ATTRS.contains(&a) => absolute(&value, base),
                        _ => value,
                    };
                    self.accept(value);
                }
            }
            None => self.current = Some(Collapse::new(MAX_FIELD)),
        }
    }

    /// Text inside a match (entities decoded).
    pub fn text(&mut self, s: &str, gap: Gap<'_>) {
        if let Some(c) = &mut self.current {
            if !c.is_full() {
                c.feed(s, gap);
            }
        }
    }

    fn close_current(&mut self) {
        if let Some(c) = self.current.take() {
            self.accept(c.finish());
        }
    }

    fn accept(&mut self, value: String) {
        if self.done || value.is_empty() {
            return;
        }
        self.values.push(value);
        self.done = !self.all || self.values.len() >= MAX_FIELD_VALUES;
    }

    /// The field's name and what it found.
    pub fn finish(mut self) -> (String, Field) {
        self.close_current();
        let field = match self.all {
            true => Field::All(self.values),
            false => Field::One(self.values.into_iter().next()),
        };
        (self.name, field)
    }
}

/// `value` resolved against `base` (at most [`MAX_FIELD`] bytes), or as written when it
/// is empty or does not resolve.
fn absolute(value: &str, base: &Url) -> String {
    match base.join(value) {
        Ok(url) if !value.is_empty() => {
            let url = url.as_str();
            url[..floor_char_boundary(url, MAX_FIELD)].to_string()
        }
        _ => value.to_string(),
    }
}

/// A `srcset` (`URL [descriptor], URL [descriptor], ...`) with each URL resolved
/// against `base`, candidates joined by `", "`. As HTML parses it: a URL is a run of
/// non-whitespace; commas ending it end its candidate; otherwise its descriptors run
/// to the next comma outside parentheses.
fn absolute_srcset(value: &str, base: &Url) -> String {
    let mut out = String::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (mut url, mut after) = rest.split_at(end);
        let mut descriptor = "";
        if url.ends_with(',') {
            url = url.trim_end_matches(',');
        } else {
            let mut depth = 0u32;
            let end = after
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    c == ',' && depth == 0
                })
                .map_or(after.len(), |(i, _)| i);
            descriptor = after[..end].trim();
            after = &after[end..];
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&absolute(url, base));
        if !descriptor.is_empty() {
            out.push(' ');
            out.push_str(descriptor);
        }
        rest = after;
    }
    out.truncate(floor_char_boundary(&out, MAX_FIELD));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_values_resolve_against_the_base() {
        let base = Url::parse("https://a.example/shop/item?id=1").unwrap();
        let cases = [
            ("img/1.png", "https://a.example/shop/img/1.png"),
            ("/x#top", "https://a.example/x#top"),
            ("//cdn.example/y", "https://cdn.example/y"),
            ("mailto:a@b.example", "mailto:a@b.example"),
            ("", ""),
        ];
        for (value, want) in cases {
            assert_eq!(absolute(value, &base), want, "{value}");
        }
        let long = "a".repeat(MAX_FIELD);
        assert_eq!(absolute(&long, &base).len(), MAX_FIELD);
    }

    #[test]
    fn srcset_candidates_resolve_one_by_one() {
        let base = Url::parse("http://a.example/p/").unwrap();
        let cases = [
            (
                "s.jpg 1x, /l.jpg 2x",
                "http://a.example/p/s.jpg 1x, http://a.example/l.jpg 2x",
            ),
            ("a.jpg,b.jpg", "http://a.example/p/a.jpg,b.jpg"),
            (
                "a.jpg, b.jpg 100w",
                "http://a.example/p/a.jpg, http://a.example/p/b.jpg 100w",
            ),
            (
                "a.jpg,, b.jpg",
                "http://a.example/p/a.jpg, http://a.example/p/b.jpg",
            ),
            (
                " x.jpg (a, b) 2x , y.jpg",
                "http://a.example/p/x.jpg (a, b) 2x, http://a.example/p/y.jpg",
            ),
            ("", ""),
        ];
        for (value, want) in cases {
            assert_eq!(absolute_srcset(value, &base), want, "{value}");
        }
    }
}
