//! HTML pages: one streaming pass of lol_html (an HTML5 tokenizer, no tree) over the
//! body decoded to UTF-8 by [`super::charset`], filling an [`Annotation`].
//!
//! What is taken, and how:
//! - `title`: the first `<title>`; `h1`: the text of the first `<h1>`;
//!   `description`: the first `<meta name=description>`; `lang`: `<html lang>`;
//!   `robots_noindex`/`robots_nofollow`: any `<meta name=robots|googlebot>` saying
//!   `noindex`/`nofollow`/`none`; `canonical`: the first `<link rel=canonical>`,
//!   resolved like links.
//! - `links`: `<a href>` and `<area href>` resolved against the first `<base href>` (for
//!   links after it) or the page URL, http(s) only, fragment dropped, first occurrence
//!   of each URL kept with its text (words separated as below; an area's `alt`),
//!   `nofollow` from `rel` tokens `nofollow`/`ugc`/`sponsored`; see `links.rs`.
//! - visible text (`word_count`, `text`): character data outside `<script>`, `<style>`,
//!   `<title>`, `<textarea>`, `<noscript>`, `<template>` and the other raw-text elements
//!   (`<iframe>`, `<xmp>`, `<noembed>`, `<noframes>`), i.e. what lol_html reports as
//!   data text outside templates. Text on either side of a block-level or line-breaking
//!   tag (`<p>`, `</div>`, `<br>`, `<td>`, ... see `text::markup_separates`) is
//!   separate words; inline tags join text as rendered (`Hel<b>lo</b>` is one word,
//!   `<td>a</td><td>b</td>` two). A word is a maximal run of non-whitespace, so
//!   unspaced CJK text counts one word per run. The same rule separates words in
//!   titles, headings, anchor texts and extracted fields.
//! - `fields`: per extraction rule, see `fields.rs`; every rule's name is present: one
//!   value or none for a rule without `all`, a list for one with it. Values of
//!   URL-valued attributes are resolved like links.
//!
//! Entities are decoded exactly once, by us: lol_html hands over text and attribute
//! values as written. Only `;`-terminated references are decoded (so `?a=1&copy=2` in a
//! URL survives). Markup inside script strings, comments and raw text never becomes an
//! element. The parser never panics; if lol_html stops (its memory limit, e.g. on
//! millions of unclosed elements), `error` says so and everything gathered up to there
//! is kept. lol_html runs non-strict, so markup it finds ambiguous does not stop it.

mod fields;
mod links;
#[cfg(test)]
mod tests;
mod text;

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use lol_html::html_content::{Element, TextChunk, TextType};
use lol_html::{
    DocumentContentHandlers, ElementContentHandlers, HtmlRewriter, MemorySettings, Selector,
    Settings,
};
use url::Url;

use self::fields::FieldState;
use self::links::Links;
use self::text::{attr_text, attr_value, attribute, Collapse, Gap, NodeBuffer};
use super::charset::decode_html;
use super::{Annotation, Rules, MAX_FIELD, MAX_TEXT_EXTRACT};

/// lol_html's memory limit per document (its buffers and open-element stack).
const MAX_PARSER_MEMORY: usize = 64 * 1024 * 1024;

/// Parses an HTML body and fills the HTML parts of `out` (see the module doc).
/// `content_type` is the raw `Content-Type` header, for its charset.
pub fn parse_html(
    body: &[u8],
    content_type: Option<&str>,
    page_url: &Url,
    rules: &Rules,
    out: &mut Annotation,
) {
    let tld = page_url
        .domain()
        .and_then(|d| d.rsplit('.').find(|label| !label.is_empty()))
        .map(str::to_ascii_lowercase);
    let decoded = decode_html(body, content_type, tld.as_deref().map(str::as_bytes));
    out.charset = Some(decoded.encoding.name().to_string());
    let state = RefCell::new(State::new(&decoded.text, page_url, rules));
    let result = rewrite(&decoded.text, usize::MAX, &state, rules);
    state.into_inner().finish(out);
    if let Err(e) = result {
        out.error = Some(format!("HTML parsing stopped early: {e}"));
    }
}

/// Everything gathered during the pass; shared by the handlers through a `RefCell`
/// (lol_html calls them one at a time).
struct State<'h> {
    /// The document lol_html is reading: attribute values are read from it.
    html: &'h str,
    links: Links,
    titles: u32,
    title: Collapse,
    h1s: u32,
    h1: Collapse,
    description: Option<String>,
    canonical: Option<String>,
    lang: Option<String>,
    noindex: bool,
    nofollow: bool,
    visible: Collapse,
    /// Set by the `<template>` text handler for the chunk being dispatched, so the
    /// document text handler (which lol_html calls after element handlers) skips it.
    in_template: bool,
    fields: Vec<FieldState>,
}

impl<'h> State<'h> {
    fn new(html: &'h str, page_url: &Url, rules: &Rules) -> Self {
        State {
            html,
            links: Links::new(page_url),
            titles: 0,
            title: Collapse::new(MAX_FIELD),
            h1s: 0,
            h1: Collapse::new(MAX_FIELD),
            description: None,
            canonical: None,
            lang: None,
            noindex: false,
            nofollow: false,
            visible: Collapse::new(MAX_TEXT_EXTRACT),
            in_template: false,
            fields: rules
                .fields()
                .iter()
                .map(|f| FieldState::new(&f.name, f.attr.as_deref(), f.all))
                .collect(),
        }
    }

    fn meta(&mut self, el: &Element<'_, '_>) {
        let (Some(name), Some(content)) = (
            attribute(el, self.html, "name"),
            attribute(el, self.html, "content"),
        ) else {
            return;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("description") {
            if self.description.is_none() {
                self.description = Some(attr_text(&content, MAX_FIELD)).filter(|d| !d.is_empty());
            }
        } else if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case("googlebot") {
            let content = html_escape::decode_html_entities(&content);
            for token in content.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                let none = token.eq_ignore_ascii_case("none");
                self.noindex |= none || token.eq_ignore_ascii_case("noindex");
                self.nofollow |= none || token.eq_ignore_ascii_case("nofollow");
            }
        }
    }

    fn link(&mut self, el: &Element<'_, '_>) {
        if self.canonical.is_some() {
            return;
        }
        let (Some(rel), Some(href)) = (
            attribute(el, self.html, "rel"),
            attribute(el, self.html, "href"),
        ) else {
            return;
        };
        if rel
            .split_ascii_whitespace()
            .any(|t| t.eq_ignore_ascii_case("canonical"))
        {
            let href = html_escape::decode_html_entities(&href);
            self.canonical = self.links.resolve(&href).map(String::from);
        }
    }

    fn anchor(&mut self, el: &Element<'_, '_>, area: bool) {
        let Some(href) = attribute(el, self.html, "href") else {
            return;
        };
        let href = html_escape::decode_html_entities(&href);
        let rel = attribute(el, self.html, "rel");
        let alt = area.then(|| {
            attribute(el, self.html, "alt").map_or_else(String::new, |a| attr_text(&a, MAX_FIELD))
        });
        self.links.start(&href, rel.as_deref(), alt);
    }

    fn finish(self, out: &mut Annotation) {
        let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
        let (links, dropped) = self.links.finish();
        out.links = links;
        out.links_dropped = dropped;
        out.title = non_empty(self.title.finish());
        out.h1 = non_empty(self.h1.finish());
        out.description = self.description;
        out.canonical = self.canonical;
        out.lang = self.lang;
        out.robots_noindex = self.noindex;
        out.robots_nofollow = self.nofollow;
        out.word_count = self.visible.words;
        out.text = self.visible.finish();
        out.fields = self.fields.into_iter().map(FieldState::finish).collect();
    }
}

/// The selectors every page needs, compiled once per process.
struct Builtin {
    title: Selector,
    h1: Selector,
    meta: Selector,
    link: Selector,
    base: Selector,
    html: Selector,
    a: Selector,
    area: Selector,
    template: Selector,
}

fn builtin() -> &'static Builtin {
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let s = |css: &str| {
            css.parse::<Selector>()
                .expect("built-in selectors are valid")
        };
        Builtin {
            title: s("title"),
            h1: s("h1"),
            meta: s("meta[name][content]"),
            link: s("link[rel][href]"),
            base: s("base[href]"),
            html: s("html"),
            a: s("a[href]"),
            area: s("area[href]"),
            template: s("template"),
        }
    })
}

type Handlers<'h> = ElementContentHandlers<'h>;

fn on<'h, 's>(sel: &'s Selector, h: Handlers<'h>) -> (Cow<'s, Selector>, Handlers<'h>) {
    (Cow::Borrowed(sel), h)
}

/// Runs lol_html over `html`, written `chunk` bytes at a time (all at once in
/// production; tests use small chunks to split text nodes and tags).
fn rewrite(
    html: &str,
    chunk: usize,
    state: &RefCell<State<'_>>,
    rules: &Rules,
) -> Result<(), lol_html::errors::RewritingError> {
    let b = builtin();
    let element = |f: fn(&mut State, &Element<'_, '_>)| {
        Handlers::default().element(move |el: &mut Element<'_, '_>| {
            f(&mut state.borrow_mut(), el);
            Ok(())
        })
    };
    // Text collected into one of the state's values while a condition holds.
    let text_into = |f: fn(&mut State, &str, Gap<'_>), when: fn(&State) -> bool| {
        let mut node = NodeBuffer::new(html.as_bytes());
        move |t: &mut TextChunk<'_>| {
            let mut st = state.borrow_mut();
            if when(&st) {
                node.feed(t, |s, sep| f(&mut st, s, sep));
            }
            Ok(())
        }
    };
    let mut settings = Settings::new()
        .with_strict(false)
        .with_memory_settings(
            MemorySettings::new().with_max_allowed_memory_usage(MAX_PARSER_MEMORY),
        )
        .append_element_content_handler(on(
            &b.title,
            element(|st, _| st.titles = st.titles.saturating_add(1)).text(text_into(
                |st, s, sep| st.title.feed(s, sep),
                |st| st.titles == 1 && !st.title.is_full(),
            )),
        ))
        .append_element_content_handler(on(
            &b.h1,
            element(|st, _| st.h1s = st.h1s.saturating_add(1)).text(text_into(
                |st, s, sep| st.h1.feed(s, sep),
                |st| st.h1s == 1 && !st.h1.is_full(),
            )),
        ))
        .append_element_content_handler(on(&b.meta, element(|st, el| st.meta(el))))
        .append_element_content_handler(on(&b.link, element(|st, el| st.link(el))))
        .append_element_content_handler(on(
            &b.base,
            element(|st, el| {
                if let Some(href) = attribute(el, st.html, "href") {
                    st.links.set_base(&html_escape::decode_html_entities(&href));
                }
            }),
        ))
        .append_element_content_handler(on(
            &b.html,
            Handlers::default().element(|el: &mut Element<'_, '_>| {
                let mut st = state.borrow_mut();
                if st.lang.is_none() {
                    st.lang = attribute(el, st.html, "lang")
                        .map(|l| attr_value(&l, MAX_FIELD))
                        .filter(|l| !l.is_empty());
                }
                // The rewritten output is thrown away. Inside a removed element lol_html
                // still calls every handler but no longer serializes what it parsed.
                el.remove();
                Ok(())
            }),
        ))
        .append_element_content_handler(on(
            &b.a,
            element(|st, el| st.anchor(el, false))
                .text(text_into(|st, s, sep| st.links.text(s, sep), |_| true)),
        ))
        .append_element_content_handler(on(&b.area, element(|st, el| st.anchor(el, true))))
        .append_element_content_handler(on(
            &b.template,
            Handlers::default().text(|_: &mut TextChunk<'_>| {
                state.borrow_mut().in_template = true;
                Ok(())
            }),
        ));
    for (i, (rule, selector)) in rules.compiled().enumerate() {
        let mut h = Handlers::default().element(move |el: &mut Element<'_, '_>| {
            let st = &mut *state.borrow_mut();
            if let Some(f) = st.fields.get_mut(i) {
                f.element(el, html, st.links.base());
            }
            Ok(())
        });
        if rule.attr.is_none() {
            let mut node = NodeBuffer::new(html.as_bytes());
            h = h.text(move |t: &mut TextChunk<'_>| {
                if let Some(f) = state.borrow_mut().fields.get_mut(i) {
                    node.feed(t, |s, sep| f.text(s, sep));
                }
                Ok(())
            });
        }
        settings = settings.append_element_content_handler(on(selector, h));
    }
    let mut node = NodeBuffer::new(html.as_bytes());
    settings = settings.append_document_content_handler(DocumentContentHandlers::default().text(
        move |t: &mut TextChunk<'_>| {
            let mut st = state.borrow_mut();
            let visible = matches!(
                t.text_type(),
                TextType::Data | TextType::PlainText | TextType::CDataSection
            );
            if !std::mem::take(&mut st.in_template) && visible {
                node.feed(t, |s, sep| st.visible.feed(s, sep));
            }
            Ok(())
        },
    ));
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    // After a failed write lol_html must not be used again (`end` would panic).
    for piece in html.as_bytes().chunks(chunk.max(1)) {
        rewriter.write(piece)?;
    }
    rewriter.end()
}
