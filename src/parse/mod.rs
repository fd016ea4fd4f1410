//! The parse stage's document side: turns one stored page (its record and body) into an
//! [`Annotation`]. Pure functions of their input: no network, no journal, no clock, so
//! `reparse` over old pages gives the same result as parsing them fresh.
//!
//! Dispatch is by the response's content type (sniffed when missing): HTML goes to
//! [`html`] (lol_html, an HTML5 tokenizer, on text decoded by [`charset`]), XML
//! sitemaps and feeds to [`xml`] (quick-xml), anything else is recorded with its type
//! and size only. A document that fails to parse gets an annotation whose `error` says
//! why; parsing never panics on and never stops at a bad page.
//!
//! The stage itself, [`stage`], runs this over the journal's pages waiting to be
//! parsed and, with [`follow`] (which links are in scope), adds the links found to the
//! frontier.

pub mod charset;
mod document;
pub mod follow;
pub(crate) mod hints;
pub mod html;
mod kept;
pub mod rules;
pub mod stage;
pub mod xml;

pub use document::{annotate, annotate_with_hints};

/// What this stage produces; the journal owns the types, since it stores them.
pub use crate::journal::{Annotation, DocKind, Field, Link};
pub use kept::RulesChoice;
pub use rules::{FieldRule, Rules, RulesError};

/// Bumped whenever a change to the parsers can change an annotation, so `reparse`
/// knows which stored annotations are stale.
pub const PARSER_VERSION: u32 = 3;

/// Longest plain-text extract kept per page, in bytes (cut at a char boundary).
pub const MAX_TEXT_EXTRACT: usize = 2048;
/// Most links kept per page; the rest are counted in `links_dropped`.
pub const MAX_LINKS: usize = 10_000;
/// Longest value kept for a title, description, anchor text or extracted field, in bytes.
pub const MAX_FIELD: usize = 2048;
