//! On-disk records of the journal and their versions.
//!
//! Every value stored in a tree is one of the `*Record` enums below, serialized with
//! bincode 1.3. The enum variant is the record version: a new version is added as a new
//! variant at the end (never by changing or reordering an existing one), and decoding
//! converts any older variant into the current in-memory type, so journals written by
//! older builds stay readable.

use serde::{Deserialize, Serialize};

use super::segments::{BodyLocation, SegmentsEnd};
use super::JournalError;

mod annotation;
mod annotation_v1;
pub use annotation::{Annotation, DocKind, Field, Link};
use annotation_v1::AnnotationV1;

/// How a URL came into the journal. It decides whether the URL is trusted (fetched
/// even when it points at a private address) and how the links found on it are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// Given by the user (URL list, `--from-mysql`): trusted.
    #[default]
    Given,
    /// A sitemap or sitemap index given with `--sitemap`: trusted; its entries are seeds.
    SitemapSeed,
    /// Listed in a sitemap (or in robots.txt `Sitemap:`): a seed, but not trusted.
    Sitemap,
    /// A link followed from a page (`--follow`): not trusted.
    Link,
}

impl Via {
    /// Whether the user named this URL, so private addresses are allowed for it.
    pub fn trusted(self) -> bool {
        matches!(self, Via::Given | Via::SitemapSeed)
    }
}

/// A URL known to the journal, as it was requested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlEntry {
    /// The normalized URL (fragment dropped), exactly as it will be requested.
    pub url: String,
    /// The caller's key for this URL (for example a primary key it was seeded from).
    pub source_key: Option<String>,
    /// When the URL entered the journal, in milliseconds since the Unix epoch.
    pub added_at_ms: u64,
    /// Links followed from a seed to reach this URL (0 for seeds).
    pub depth: u32,
    pub via: Via,
}

/// The first version of [`UrlEntry`], before link following.
#[derive(Serialize, Deserialize)]
struct UrlEntryV1 {
    url: String,
    source_key: Option<String>,
    added_at_ms: u64,
}

/// Versioned envelope of [`UrlEntry`] in the `urls` tree.
#[derive(Serialize, Deserialize)]
enum UrlRecord {
    V1(UrlEntryV1),
    V2(UrlEntry),
}

/// A URL that still has to be fetched: the value of its key in `frontier` or in
/// `retry_queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    /// [`crate::urls::host_key`] of the URL: its `frontier` key starts with it.
    pub host: String,
    /// Fetch attempts that ended in a transient failure so far.
    pub attempts: u32,
    /// 0 when the URL is in `frontier`; else the time (ms since the epoch) it waits for
    /// in `retry_queue`.
    pub not_before_ms: u64,
    /// The URL's record, which moves into its page record once fetched.
    pub url: UrlEntry,
}

/// The first version of [`PendingEntry`] (formats 2 and 3: the value of the id in the
/// `pending_fetch` tree, the URL's record in `urls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingEntryV1 {
    pub host: String,
    pub attempts: u32,
    pub not_before_ms: u64,
}

/// Versioned envelope of [`PendingEntry`].
#[derive(Serialize, Deserialize)]
enum PendingRecord {
    V1(PendingEntryV1),
    V2(PendingEntry),
}

/// What the crawl keeps about a host across runs, in the `hosts` tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// URLs of this host discovered by following links (the per-host page budget).
    pub discovered: u64,
    /// The host's robots.txt as fetched (`bincode` of [`crate::fetch::robots::RobotsSource`]).
    pub robots: Option<Vec<u8>>,
    /// Nothing is sent to the host before this time (backoff, Retry-After).
    pub not_before_ms: u64,
    /// Set when the host was taken for down: its URLs fail at once until then.
    pub down: Option<HostDown>,
}

/// A host that failed too often in a row without answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDown {
    pub until_ms: u64,
    /// What its URLs are recorded with.
    pub kind: ErrorKind,
    pub message: String,
}

/// Versioned envelope of [`HostEntry`].
#[derive(Serialize, Deserialize)]
enum HostRecord {
    V1(HostEntry),
}

/// Why a fetch ended without an HTTP response. The names are stable: they appear in
/// `status` output and will be synced to MySQL. The variant index is stored (bincode):
/// new kinds go at the end, existing ones are never reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    TooLarge,
    TooManyRedirects,
    Protocol,
    /// A discovered link (or a redirect from one) to a private, loopback or otherwise
    /// non-public address, refused without `--allow-private`.
    Blocked,
    /// Disallowed by the host's robots.txt, or robots.txt kept answering 5xx.
    Robots,
    /// The proxy (`--proxy`, or the environment's) could not be reached, refused the
    /// connection or the tunnel, or asked for credentials (407, SOCKS5 authentication).
    Proxy,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::TooLarge,
        ErrorKind::TooManyRedirects,
        ErrorKind::Protocol,
        ErrorKind::Blocked,
        ErrorKind::Robots,
        ErrorKind::Proxy,
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
            ErrorKind::Blocked => "blocked",
            ErrorKind::Robots => "robots",
            ErrorKind::Proxy => "proxy",
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
        /// "HTTP/1.1", "HTTP/2.0", ...
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

/// A body stored in a segment entry (format 5 on): where its bytes are, their
/// checksum, and the hash of the decoded body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBody {
    pub at: BodyLocation,
    /// [`super::segments::checksum`] of the stored bytes.
    pub checksum: u64,
    /// [`super::content_hash`] of the decoded body.
    pub content_hash: u128,
}

/// Where a page record says its body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyRef {
    /// Formats 3 and 4: a bare body in a segment, without a checksum.
    Unchecked(BodyLocation),
    /// Format 5 on: the body of a segment entry.
    Checked(StoredBody),
}

/// Versioned envelope of [`PageMeta`] in the `pages` tree. `V2` (journal format 3)
/// adds where the body is in the segment files; a `V1` page's body, if any, is in the
/// `bodies` tree. `V3` (format 4) adds the URL's record, which older formats kept in
/// the `urls` tree. `V4` (format 5) points at the body of a segment entry, with its
/// checksum and content hash.
#[derive(Serialize, Deserialize)]
pub(crate) enum PageRecord {
    V1(PageMeta),
    V2 {
        meta: PageMeta,
        body: Option<BodyLocation>,
    },
    V3 {
        meta: PageMeta,
        body: Option<BodyLocation>,
        url: UrlEntry,
    },
    V4 {
        meta: PageMeta,
        body: Option<StoredBody>,
        url: UrlEntry,
    },
}

/// The header of a page's entry in a segment file (format 5 on): everything needed to
/// record the page again from the segments alone (`webspool recover`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    pub id: u64,
    pub url: UrlEntry,
    pub meta: PageMeta,
    /// [`super::content_hash`] of the decoded body.
    pub content_hash: u128,
}

/// Versioned envelope of [`EntryHeader`].
#[derive(Serialize, Deserialize)]
enum EntryRecord {
    V1(EntryHeader),
}

/// [`EntryRecord::V1`] borrowing its content.
#[derive(Serialize)]
enum EntryRecordRef<'a> {
    V1 {
        id: u64,
        url: &'a UrlEntry,
        meta: &'a PageMeta,
        content_hash: u128,
    },
}

pub(crate) fn encode_entry_header(
    id: u64,
    url: &UrlEntry,
    meta: &PageMeta,
    content_hash: u128,
) -> Result<Vec<u8>, JournalError> {
    encode(&EntryRecordRef::V1 {
        id,
        url,
        meta,
        content_hash,
    })
}

pub(crate) fn decode_entry_header(bytes: &[u8]) -> Result<EntryHeader, JournalError> {
    match decode("segment entry", bytes)? {
        EntryRecord::V1(header) => Ok(header),
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    bincode::serialize(value).map_err(|e| JournalError::Encode(e.to_string()))
}

pub(super) fn decode<'a, T: Deserialize<'a>>(
    tree: &'static str,
    bytes: &'a [u8],
) -> Result<T, JournalError> {
    bincode::deserialize(bytes).map_err(|e| JournalError::Damaged {
        what: format!("undecodable record in tree `{tree}`: {}", reason(&e)),
    })
}

/// bincode's reason, but for a record cut short, which it shows as `io error: `.
fn reason(error: &bincode::Error) -> String {
    match &**error {
        bincode::ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "it is cut short (a field or a length runs past its end)".into()
        }
        other => other.to_string(),
    }
}

pub(crate) fn decode_url(bytes: &[u8]) -> Result<UrlEntry, JournalError> {
    match decode("urls", bytes)? {
        UrlRecord::V1(old) => Ok(UrlEntry {
            url: old.url,
            source_key: old.source_key,
            added_at_ms: old.added_at_ms,
            depth: 0,
            via: Via::Given,
        }),
        UrlRecord::V2(entry) => Ok(entry),
    }
}

pub(crate) fn encode_pending(entry: &PendingEntry) -> Result<Vec<u8>, JournalError> {
    encode(&PendingRecord::V2(entry.clone()))
}

pub(crate) fn decode_pending(bytes: &[u8]) -> Result<PendingEntry, JournalError> {
    match decode("frontier` or `retry_queue", bytes)? {
        PendingRecord::V2(entry) => Ok(entry),
        PendingRecord::V1(_) => Err(JournalError::Damaged {
            what: "a pending entry of format 3 outside `pending_fetch`".into(),
        }),
    }
}

/// A `pending_fetch` value of formats 2 and 3.
pub(crate) fn decode_pending_v1(bytes: &[u8]) -> Result<PendingEntryV1, JournalError> {
    match decode("pending_fetch", bytes)? {
        PendingRecord::V1(entry) => Ok(entry),
        PendingRecord::V2(entry) => Ok(PendingEntryV1 {
            host: entry.host,
            attempts: entry.attempts,
            not_before_ms: entry.not_before_ms,
        }),
    }
}

pub(crate) fn encode_host(entry: &HostEntry) -> Result<Vec<u8>, JournalError> {
    encode(&HostRecord::V1(entry.clone()))
}

pub(crate) fn decode_host(bytes: &[u8]) -> Result<HostEntry, JournalError> {
    match decode("hosts", bytes)? {
        HostRecord::V1(entry) => Ok(entry),
    }
}

/// Versioned envelope of [`SegmentsEnd`] under `segments_end` in the default tree.
#[derive(Serialize, Deserialize)]
enum SegmentsEndRecord {
    V1(SegmentsEnd),
}

pub(crate) fn encode_segments_end(end: SegmentsEnd) -> Result<Vec<u8>, JournalError> {
    encode(&SegmentsEndRecord::V1(end))
}

pub(crate) fn decode_segments_end(bytes: &[u8]) -> Result<SegmentsEnd, JournalError> {
    match decode("default (segments_end)", bytes)? {
        SegmentsEndRecord::V1(end) => Ok(end),
    }
}

pub(crate) fn encode_page(
    meta: &PageMeta,
    body: Option<StoredBody>,
    url: &UrlEntry,
) -> Result<Vec<u8>, JournalError> {
    encode(&PageRecord::V4 {
        meta: meta.clone(),
        body,
        url: url.clone(),
    })
}

pub(crate) fn decode_page(bytes: &[u8]) -> Result<PageMeta, JournalError> {
    decode_page_and_body(bytes).map(|(meta, _)| meta)
}

/// The page record and, from format 3 on, where its body is.
pub(crate) fn decode_page_and_body(
    bytes: &[u8],
) -> Result<(PageMeta, Option<BodyRef>), JournalError> {
    match decode("pages", bytes)? {
        PageRecord::V1(meta) => Ok((meta, None)),
        PageRecord::V2 { meta, body } | PageRecord::V3 { meta, body, .. } => {
            Ok((meta, body.map(BodyRef::Unchecked)))
        }
        PageRecord::V4 { meta, body, .. } => Ok((meta, body.map(BodyRef::Checked))),
    }
}

/// The page record and the URL's record it keeps (format 4 on; older pages have theirs
/// in `urls`).
pub(crate) fn decode_page_with_url(
    bytes: &[u8],
) -> Result<(PageMeta, Option<UrlEntry>), JournalError> {
    match decode("pages", bytes)? {
        PageRecord::V1(meta) | PageRecord::V2 { meta, .. } => Ok((meta, None)),
        PageRecord::V3 { meta, url, .. } | PageRecord::V4 { meta, url, .. } => {
            Ok((meta, Some(url)))
        }
    }
}

/// The page record, where its body is (format 3 on) and the URL's record it keeps
/// (format 4 on): everything a compaction copies into the body's entry.
pub(crate) fn decode_page_parts(
    bytes: &[u8],
) -> Result<(PageMeta, Option<BodyRef>, Option<UrlEntry>), JournalError> {
    match decode("pages", bytes)? {
        PageRecord::V1(meta) => Ok((meta, None, None)),
        PageRecord::V2 { meta, body } => Ok((meta, body.map(BodyRef::Unchecked), None)),
        PageRecord::V3 { meta, body, url } => Ok((meta, body.map(BodyRef::Unchecked), Some(url))),
        PageRecord::V4 { meta, body, url } => Ok((meta, body.map(BodyRef::Checked), Some(url))),
    }
}

/// Versioned envelope of [`Annotation`] in the `annotations` tree.
#[derive(Serialize, Deserialize)]
enum AnnotationRecord {
    /// Before parser version 3: every field a list.
    V1(AnnotationV1),
    V2(Annotation),
}

/// [`AnnotationRecord`] borrowing its content: the same encoding, without a copy of the
/// annotation (the parse committer encodes every page it records).
#[derive(Serialize)]
enum AnnotationRecordRef<'a> {
    #[allow(dead_code)] // Never written again; here so that V2 keeps its tag.
    V1(&'a AnnotationV1),
    V2(&'a Annotation),
}

pub(crate) fn encode_annotation(annotation: &Annotation) -> Result<Vec<u8>, JournalError> {
    encode(&AnnotationRecordRef::V2(annotation))
}

pub(crate) fn decode_annotation(bytes: &[u8]) -> Result<Annotation, JournalError> {
    match decode("annotations", bytes)? {
        AnnotationRecord::V1(annotation) => Ok(annotation.into()),
        AnnotationRecord::V2(annotation) => Ok(annotation),
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
    fn v1_url_records_still_decode() {
        let old = UrlEntryV1 {
            url: "http://a/".into(),
            source_key: Some("k".into()),
            added_at_ms: 1,
        };
        let bytes = encode(&UrlRecord::V1(old)).unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 0, 0], "variant tag V1");
        let entry = decode_url(&bytes).unwrap();
        assert_eq!(
            (
                entry.url.as_str(),
                entry.source_key.as_deref(),
                entry.depth,
                entry.via
            ),
            ("http://a/", Some("k"), 0, Via::Given)
        );
        let v2 = encode(&UrlRecord::V2(entry.clone())).unwrap();
        assert_eq!(&v2[..4], &[1, 0, 0, 0], "variant tag V2");
        assert_eq!(decode_url(&v2).unwrap(), entry);
    }

    /// Error kinds are stored by variant index: appending is fine, reordering is not.
    #[test]
    fn error_kind_indexes_are_stable() {
        for (index, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(
                bincode::serialize(&kind).unwrap(),
                (index as u32).to_le_bytes()
            );
        }
        assert_eq!(ErrorKind::ALL[7].as_str(), "blocked");
        assert_eq!(ErrorKind::ALL[9].as_str(), "proxy");
    }

    /// An annotation stored before parser version 3 reads with its fields as lists,
    /// as they were shown then.
    #[test]
    fn v1_annotations_decode_with_list_fields() {
        let bytes = encode(&AnnotationRecord::V1(AnnotationV1::sample())).unwrap();
        assert_eq!(bytes[..4], [0, 0, 0, 0]);
        let a = decode_annotation(&bytes).unwrap();
        assert_eq!(a.title.as_deref(), Some("t"));
        assert_eq!(a.rules_hash, 5);
        assert_eq!(a.fields.get("price"), Some(&Field::All(vec!["10".into()])));
        // A reparse finds the single value: a change, so the page is synced again.
        let mut now = a.clone();
        now.fields
            .insert("price".into(), Field::One(Some("10".into())));
        assert!(!a.same_content(&now));
    }

    #[test]
    fn borrowed_annotation_encoding_is_the_v2_record() {
        let annotation = Annotation {
            title: Some("t".into()),
            links: vec![Link {
                url: "http://a/".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = encode_annotation(&annotation).unwrap();
        assert_eq!(
            bytes,
            encode(&AnnotationRecord::V2(annotation.clone())).unwrap()
        );
        assert_eq!(decode_annotation(&bytes).unwrap(), annotation);
    }

    #[test]
    fn garbage_is_a_damage_error_not_a_panic() {
        let err = decode_page(&[9, 9, 9]).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { .. }), "{err}");
    }

    /// Regression: a record cut short, or whose length prefix runs past its end, was
    /// `undecodable record in tree `pages`: io error: ` (bincode's text for it).
    #[test]
    fn a_record_cut_short_says_so() {
        let url = UrlEntry {
            url: "http://a/".into(),
            source_key: None,
            added_at_ms: 0,
            depth: 0,
            via: Via::Given,
        };
        let bytes = encode(&UrlRecord::V2(url)).unwrap();
        let mut huge = bytes.clone();
        huge[4..12].copy_from_slice(&(1u64 << 60).to_le_bytes());
        for damaged in [&bytes[..bytes.len() - 1], &huge[..]] {
            let err = decode_url(damaged).unwrap_err().to_string();
            assert!(
                err.ends_with("`urls`: it is cut short (a field or a length runs past its end)"),
                "{err}"
            );
        }
    }
}
