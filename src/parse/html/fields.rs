//! Applying extraction [`Rules`](crate::parse::Rules) during the HTML pass.
//!
//! A match's text is the text inside the matched element (descendants included, words
//! separated as in the page's visible text, see [`super`]) up to the start of the next
//! match of the same rule. That is exact for the usual, non-nested matches and keeps
//! sibling matches apart when their end tags are omitted (`<li>a<li>b`); for a match
//! nested inside another match of the same rule, the outer value stops where the inner
//! one starts. Empty values (after trimming) are skipped: a `first` rule takes the first
//! match with a non-empty value.

use lol_html::html_content::Element;

use super::text::{attr_value, attribute, Collapse, Gap};
use crate::parse::MAX_FIELD;

/// Most values kept for one `all` rule on one page; further matches are ignored.
pub(super) const MAX_FIELD_VALUES: usize = 1000;

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

    /// An element matched the rule's selector; `html` is the document being read.
    pub fn element(&mut self, el: &Element<'_, '_>, html: &str) {
        self.close_current();
        if self.done {
            return;
        }
        match &self.attr {
            Some(attr) => {
                if let Some(raw) = attribute(el, html, attr) {
                    self.accept(attr_value(&raw, MAX_FIELD));
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

    /// The field's name and values (empty when nothing matched).
    pub fn finish(mut self) -> (String, Vec<String>) {
        self.close_current();
        (self.name, self.values)
    }
}
