//! [`Annotation`]s as stored before parser version 3 (`AnnotationRecord::V1`): every
//! extracted field a list of values, whether its rule took the first match or all.
//! Decoded into the current annotation with each field as [`Field::All`], as MySQL
//! showed them then; a `reparse` writes them in the current form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Annotation, DocKind, Field, Link};

#[derive(Serialize, Deserialize)]
pub(super) struct AnnotationV1 {
    parser_version: u32,
    rules_hash: u64,
    kind: Option<DocKind>,
    content_type: Option<String>,
    size: u64,
    charset: Option<String>,
    title: Option<String>,
    description: Option<String>,
    robots_noindex: bool,
    robots_nofollow: bool,
    canonical: Option<String>,
    lang: Option<String>,
    h1: Option<String>,
    links: Vec<Link>,
    links_dropped: u64,
    word_count: u64,
    text: String,
    content_hash: String,
    fields: BTreeMap<String, Vec<String>>,
    error: Option<String>,
}

impl From<AnnotationV1> for Annotation {
    fn from(a: AnnotationV1) -> Self {
        Annotation {
            parser_version: a.parser_version,
            rules_hash: a.rules_hash,
            kind: a.kind,
            content_type: a.content_type,
            size: a.size,
            charset: a.charset,
            title: a.title,
            description: a.description,
            robots_noindex: a.robots_noindex,
            robots_nofollow: a.robots_nofollow,
            canonical: a.canonical,
            lang: a.lang,
            h1: a.h1,
            links: a.links,
            links_dropped: a.links_dropped,
            word_count: a.word_count,
            text: a.text,
            content_hash: a.content_hash,
            fields: a
                .fields
                .into_iter()
                .map(|(name, values)| (name, Field::All(values)))
                .collect(),
            error: a.error,
        }
    }
}

#[cfg(test)]
impl AnnotationV1 {
    /// An old record with one field of one value and a title.
    pub(super) fn sample() -> Self {
        AnnotationV1 {
            parser_version: 2,
            rules_hash: 5,
            kind: Some(DocKind::Html),
            content_type: None,
            size: 3,
            charset: None,
            title: Some("t".into()),
            description: None,
            robots_noindex: false,
            robots_nofollow: false,
            canonical: None,
            lang: None,
            h1: None,
            links: Vec::new(),
            links_dropped: 0,
            word_count: 0,
            text: String::new(),
            content_hash: String::new(),
            fields: BTreeMap::from([("price".to_string(), vec!["10".to_string()])]),
            error: None,
        }
    }
}
