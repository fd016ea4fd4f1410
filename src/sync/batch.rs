//! Batches: the rows of a run of the sync queue, read from the journal, ready for
//! `upsert::write`, which writes them to MySQL in one transaction together with the
//! journal's watermark.
//!
//! Rows are keyed by the hash of the normalized URL, and a page's links are replaced
//! whole, so replaying a batch (after a commit whose outcome was unknown) changes
//! nothing. A body that alone would not fit in the server's `max_allowed_packet` is left
//! out and flagged on its row (`body_omitted`), so it never blocks the batch.

use mysql_async::Value;
use xxhash_rust::xxh3::xxh3_128;

use crate::journal::{Journal, JournalError, Outcome};
use crate::urls::without_userinfo;

pub(super) const PAGE_COLUMNS: &[&str] = &[
    "url_hash",
    "url",
    "journal_id",
    "source_key",
    "status",
    "error",
    "final_url",
    "content_type",
    "fetched_at",
    "title",
    "description",
    "lang",
    "canonical",
    "h1",
    "robots_noindex",
    "robots_nofollow",
    "word_count",
    "content_hash",
    "parse_error",
    "fields",
    "body",
    "body_omitted",
];
pub(super) const LINK_COLUMNS: &[&str] = &[
    "page_hash",
    "position",
    "to_url",
    "anchor",
    "nofollow",
    "lastmod",
];
/// Room kept in a packet for the statement id, headers and the NULL bitmap.
pub(super) const PACKET_SLACK: usize = 64 * 1024;

/// Limits of one batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub rows: usize,
    pub bytes: usize,
    pub bodies: bool,
    /// The server's `max_allowed_packet`.
    pub packet: usize,
}

/// Rows of one statement kind, flattened (`columns` values a row), and each row's size
/// on the wire, roughly. The values move into the statements' parameters.
pub(super) struct Rows {
    pub(super) columns: usize,
    pub(super) values: Vec<Value>,
    pub(super) sizes: Vec<usize>,
}

impl Rows {
    fn new(columns: usize) -> Rows {
        Rows {
            columns,
            values: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// Appends one row of `columns` values; returns its size.
    fn push(&mut self, row: impl IntoIterator<Item = Value>) -> usize {
        let before = self.values.len();
        self.values.extend(row);
        debug_assert_eq!(self.values.len() - before, self.columns);
        let bytes = self.values[before..]
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => b.len() + 9,
                _ => 9,
            })
            .sum();
        self.sizes.push(bytes);
        bytes
    }
}

pub struct Batch {
    pub pages: usize,
    /// The highest sync sequence number in the batch: the watermark once committed.
    pub last_seq: u64,
    pub(super) page_rows: Rows,
    /// The pages' keys, for the DELETE of their old links.
    pub(super) hashes: Rows,
    pub(super) link_rows: Rows,
}

/// The key of a page's row: xxh3-128 of its normalized URL.
pub fn url_hash(url: &str) -> Vec<u8> {
    xxh3_128(url.as_bytes()).to_be_bytes().to_vec()
}

fn text(s: impl Into<String>) -> Value {
    Value::Bytes(s.into().into_bytes())
}

fn opt_text(s: Option<impl Into<String>>) -> Value {
    s.map_or(Value::NULL, text)
}

/// Reads the next batch after `watermark` from the journal, or `None` when the queue is
/// drained. Blocking: run it off the async threads.
pub fn build(
    journal: &Journal,
    journal_id: &str,
    watermark: u64,
    limits: Limits,
) -> Result<Option<Batch>, JournalError> {
    let items = journal.sync_queue_after(watermark, limits.rows.max(1))?;
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let mut batch = Batch {
        pages: 0,
        last_seq: first.seq,
        page_rows: Rows::new(PAGE_COLUMNS.len()),
        hashes: Rows::new(1),
        link_rows: Rows::new(LINK_COLUMNS.len()),
    };
    let mut bytes = 0;
    let max_body = limits.packet.saturating_sub(PACKET_SLACK * 2);
    for item in items {
        if batch.pages > 0 && bytes >= limits.bytes {
            break;
        }
        let (meta, entry) = journal
            .page_with_url(item.id)?
            .ok_or_else(|| damaged(item.id))?;
        let annotation = journal.annotation(item.id)?;
        let hash = url_hash(&entry.url);
        let (status, error, final_url, header_type) = match &meta.outcome {
            Outcome::Response {
                status,
                final_url,
                headers,
                ..
            } => (
                Value::UInt(u64::from(*status)),
                Value::NULL,
                text(final_url.as_str()),
                headers.content_type.clone(),
            ),
            Outcome::Error { kind, message } => (
                Value::NULL,
                text(format!("{kind}: {message}")),
                Value::NULL,
                None,
            ),
        };
        let (body, body_omitted) = match (&meta.outcome, limits.bodies) {
            (Outcome::Response { body_len, .. }, true) if *body_len as usize > max_body => (
                Value::NULL,
                text(format!(
                    "body of {body_len} bytes is larger than the server's max_allowed_packet ({})",
                    limits.packet
                )),
            ),
            (Outcome::Response { .. }, true) => match journal.body(item.id)? {
                Some(body) => (Value::Bytes(body), Value::NULL),
                None => (Value::NULL, Value::NULL),
            },
            _ => (Value::NULL, Value::NULL),
        };
        let a = annotation.as_ref();
        let fields = match a {
            Some(a) => Value::Bytes(
                serde_json::to_vec(&a.fields).map_err(|e| JournalError::Encode(e.to_string()))?,
            ),
            None => Value::NULL,
        };
        bytes += batch.page_rows.push([
            Value::Bytes(hash.clone()),
            // Stored by older versions with its credentials: the row never gets them
            // (the key stays the hash of the URL as stored, so its row stays one).
            text(without_userinfo(&entry.url)),
            text(journal_id),
            opt_text(entry.source_key.clone()),
            status,
            error,
            final_url,
            opt_text(a.and_then(|a| a.content_type.clone()).or(header_type)),
            Value::UInt(meta.fetched_at_ms),
            opt_text(a.and_then(|a| a.title.clone())),
            opt_text(a.and_then(|a| a.description.clone())),
            opt_text(a.and_then(|a| a.lang.clone())),
            opt_text(a.and_then(|a| a.canonical.as_deref().map(without_userinfo))),
            opt_text(a.and_then(|a| a.h1.clone())),
            a.map_or(Value::NULL, |a| Value::from(a.robots_noindex)),
            a.map_or(Value::NULL, |a| Value::from(a.robots_nofollow)),
            a.map_or(Value::NULL, |a| Value::UInt(a.word_count)),
            opt_text(a.map(|a| a.content_hash.clone())),
            opt_text(a.and_then(|a| a.error.clone())),
            fields,
            body,
            body_omitted,
        ]);
        for (position, link) in a
            .map(|a| a.links.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            bytes += batch.link_rows.push([
                Value::Bytes(hash.clone()),
                Value::UInt(position as u64),
                text(without_userinfo(&link.url)),
                text(link.text.as_str()),
                Value::from(link.nofollow),
                opt_text(link.lastmod.clone()),
            ]);
        }
        batch.hashes.push([Value::Bytes(hash)]);
        batch.pages += 1;
        batch.last_seq = item.seq;
    }
    Ok(Some(batch))
}

fn damaged(id: u64) -> JournalError {
    JournalError::Damaged {
        what: format!("id {id} is queued for sync but has no page record"),
    }
}
