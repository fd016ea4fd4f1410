//! On-disk records of the journal and their versions.
//!
//! Every value stored in a tree is one of the `*Record` enums below, serialized with
//! bincode 1.3. The enum variant is the record version: a new version is added as a new
//! variant at the end (never by changing or reordering an existing one), and decoding
//! converts any older variant into the current in-memory type, so journals written by
//! older builds stay readable.

use serde::{Deserialize, Serialize};

use super::JournalError;
use crate::parse::Annotation;

/// A URL known to the journal, as it was requested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlEntry {
    /// The normalized URL (fragment dropped), exactly as it will be requested.
    pub url: String,
    /// The caller's key for this URL (for example a primary key it was seeded from).
    pub source_key: Option<String>,
    /// When the URL entered the journal, in milliseconds since the Unix epoch.
    pub added_at_ms: u64,
}

/// Versioned envelope of [`UrlEntry`] in the `urls` tree.
#[derive(Serialize, Deserialize)]
enum UrlRecord {
    V1(UrlEntry),
}

/// Why a fetch ended without an HTTP response. The names are stable: they appear in
/// `status` output and will be synced to MySQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    TooLarge,
    TooManyRedirects,
    Protocol,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::TooLarge,
        ErrorKind::TooManyRedirects,
        ErrorKind::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::TooManyRedirects => "too_many_redirects",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The response headers worth keeping (values decoded lossily as UTF-8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptHeaders {
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub date: Option<String>,
}

/// One redirect hop: the status that redirected and the absolute URL it pointed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub status: u16,
    pub location: String,
}

/// How a fetch ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An HTTP response of any status; its body is in the `bodies` tree.
    Response {
        status: u16,
        /// "HTTP/1.1", "HTTP/2", ...
        version: String,
        final_url: String,
        headers: KeptHeaders,
        /// Length of the body after content-decoding.
        body_len: u64,
    },
    /// No usable response.
    Error { kind: ErrorKind, message: String },
}

/// The result of fetching one URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    pub fetched_at_ms: u64,
    pub duration_ms: u64,
    pub redirects: Vec<Redirect>,
    pub outcome: Outcome,
}

impl PageMeta {
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self.outcome {
            Outcome::Error { kind, .. } => Some(kind),
            Outcome::Response { .. } => None,
        }
    }
}

/// Versioned envelope of [`PageMeta`] in the `pages` tree.
#[derive(Serialize, Deserialize)]
enum PageRecord {
    V1(PageMeta),
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    bincode::serialize(value).map_err(|e| JournalError::Encode(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(tree: &'static str, bytes: &'a [u8]) -> Result<T, JournalError> {
    bincode::deserialize(bytes).map_err(|e| JournalError::Damaged {
        what: format!("undecodable record in tree `{tree}`: {e}"),
    })
}

pub(crate) fn encode_url(entry: &UrlEntry) -> Result<Vec<u8>, JournalError> {
    encode(&UrlRecord::V1(entry.clone()))
}

pub(crate) fn decode_url(bytes: &[u8]) -> Result<UrlEntry, JournalError> {
    match decode("urls", bytes)? {
        UrlRecord::V1(entry) => Ok(entry),
    }
}

pub(crate) fn encode_page(meta: &PageMeta) -> Result<Vec<u8>, JournalError> {
    encode(&PageRecord::V1(meta.clone()))
}

pub(crate) fn decode_page(bytes: &[u8]) -> Result<PageMeta, JournalError> {
    match decode("pages", bytes)? {
        PageRecord::V1(meta) => Ok(meta),
    }
}

/// Versioned envelope of [`Annotation`] in the `annotations` tree.
#[derive(Serialize, Deserialize)]
enum AnnotationRecord {
    V1(Annotation),
}

/// [`AnnotationRecord`] borrowing its content: the same encoding, without a copy of the
/// annotation (the parse committer encodes every page it records).
#[derive(Serialize)]
enum AnnotationRecordRef<'a> {
    V1(&'a Annotation),
}

pub(crate) fn encode_annotation(annotation: &Annotation) -> Result<Vec<u8>, JournalError> {
    encode(&AnnotationRecordRef::V1(annotation))
}

pub(crate) fn decode_annotation(bytes: &[u8]) -> Result<Annotation, JournalError> {
    match decode("annotations", bytes)? {
        AnnotationRecord::V1(annotation) => Ok(annotation),
    }
}

/// Keys of the id-keyed trees: the id as 8 big-endian bytes, so trees iterate in id order.
pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub(crate) fn key_id(key: &[u8]) -> Result<u64, JournalError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| JournalError::Damaged {
        what: format!("id key of {} bytes, expected 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The V1 encodings are a promise to every journal already on disk: pin them.
    #[test]
    fn v1_url_record_encoding_is_stable() {
        let entry = UrlEntry {
            url: "http://a/".into(),
            source_key: None,
            added_at_ms: 1,
        };
        let bytes = encode_url(&entry).unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 0, 0], "variant tag V1");
        assert_eq!(decode_url(&bytes).unwrap(), entry);
    }

    #[test]
    fn borrowed_annotation_encoding_is_the_v1_record() {
        let annotation = Annotation {
            title: Some("t".into()),
            links: vec![crate::parse::Link {
                url: "http://a/".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = encode_annotation(&annotation).unwrap();
        assert_eq!(
            bytes,
            encode(&AnnotationRecord::V1(annotation.clone())).unwrap()
        );
        assert_eq!(decode_annotation(&bytes).unwrap(), annotation);
    }

    #[test]
    fn garbage_is_a_damage_error_not_a_panic() {
        let err = decode_page(&[9, 9, 9]).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { .. }), "{err}");
    }
}
