//! Batches: the rows of a run of the sync queue, read from the journal, ready for
//! `upsert::write`, which writes them to MySQL in one transaction together with the
//! journal's watermark.
//!
//! Rows are keyed by the hash of the normalized URL, and a page's links are replaced
//! whole, so replaying a batch (after a commit whose outcome was unknown) changes
//! nothing. A body that alone would not fit in the server's `max_allowed_packet` is left
//! out and flagged on its row (`body_omitted`), so it never blocks the batch.

use std::collections::BTreeMap;

use mysql_async::Value;
use xxhash_rust::xxh3::xxh3_128;

use crate::journal::{Field, Journal, JournalError, KeptHeaders, Outcome};
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
    "checked_at",
    "gone_at",
    "http_version",
    "redirect_count",
    "etag",
    "last_modified",
    "fetch_ms",
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
const PACKET_SLACK: usize = 64 * 1024;
/// The positions of `body` and `body_omitted` in [`PAGE_COLUMNS`].
const BODY: usize = PAGE_COLUMNS.len() - 2;
const BODY_OMITTED: usize = PAGE_COLUMNS.len() - 1;

/// The most bytes of rows one statement may carry when the server's
/// `max_allowed_packet` is `packet`.
pub(super) fn statement_budget(packet: usize) -> usize {
    packet.saturating_sub(PACKET_SLACK).max(1)
}

/// A value's size on the wire, roughly: its bytes and a length prefix.
fn wire_size(value: &Value) -> usize {
    match value {
        Value::Bytes(b) => b.len() + 9,
        _ => 9,
    }
}

/// Why a body of `body_len` bytes is left out of its row, if it is: a row goes in one
/// statement (alone if need be), which must fit in the server's `max_allowed_packet`
/// (`packet`), and the row's other values already take `rest` bytes of it.
fn body_omitted(body_len: u64, rest: usize, packet: usize) -> Option<String> {
    let room = statement_budget(packet).saturating_sub(rest + wire_size(&Value::Bytes(Vec::new())));
    (body_len > room as u64).then(|| {
        format!(
            "body of {body_len} bytes is larger than the {room} bytes a row can hold for it \
             within the server's max_allowed_packet of {packet} bytes"
        )
    })
}

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
        let bytes = self.values[before..].iter().map(wire_size).sum();
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
    for item in items {
        if batch.pages > 0 && bytes >= limits.bytes {
            break;
        }
        match page_rows(journal, journal_id, item.id, limits) {
            Ok(page) => {
                bytes += batch.page_rows.push(page.row);
                for link in page.links {
                    bytes += batch.link_rows.push(link);
                }
                batch.hashes.push([Value::Bytes(page.hash)]);
                batch.pages += 1;
            }
            // Never loaded: the row keeps what an earlier sync wrote, if any.
            Err(JournalError::PageDamaged { page, what }) => {
                tracing::warn!(
                    "page {page} is damaged, not synced (run `webspool verify`): {what}"
                );
                journal.record_damage(item.id, &what)?;
            }
            Err(e) => return Err(e),
        }
        batch.last_seq = item.seq;
    }
    Ok(Some(batch))
}

/// One page's row, its links' rows and its key.
struct PageRows {
    row: [Value; PAGE_COLUMNS.len()],
    links: Vec<[Value; LINK_COLUMNS.len()]>,
    hash: Vec<u8>,
}

/// The rows of page `id`; [`JournalError::PageDamaged`] if its record, annotation or
/// body is damaged.
fn page_rows(
    journal: &Journal,
    journal_id: &str,
    id: u64,
    limits: Limits,
) -> Result<PageRows, JournalError> {
    let (meta, entry) = journal.page_with_url(id)?.ok_or_else(|| damaged(id))?;
    let annotation = journal.annotation(id)?;
    let hash = url_hash(&entry.url);
    let schedule = journal.schedule_of(id, &meta)?;
    let (status, error, final_url, version, headers) = match &meta.outcome {
        Outcome::Response {
            status,
            version,
            final_url,
            headers,
            ..
        } => (
            Value::UInt(u64::from(*status)),
            Value::NULL,
            text(final_url.as_str()),
            text(version.as_str()),
            Some(headers),
        ),
        Outcome::Error { kind, message } => (
            Value::NULL,
            text(format!("{kind}: {message}")),
            Value::NULL,
            Value::NULL,
            None,
        ),
    };
    let header =
        |f: fn(&KeptHeaders) -> &Option<String>| opt_text(headers.and_then(|h| f(h).clone()));
    let a = annotation.as_ref();
    let fields = match a {
        Some(a) => Value::Bytes(
            serde_json::to_vec(&fields_json(&a.fields))
                .map_err(|e| JournalError::Encode(e.to_string()))?,
        ),
        None => Value::NULL,
    };
    let mut row = [
        Value::Bytes(hash.clone()),
        // Stored by older versions with its credentials: the row never gets them
        // (the key stays the hash of the URL as stored, so its row stays one).
        text(without_userinfo(&entry.url)),
        text(journal_id),
        opt_text(entry.source_key.clone()),
        status,
        error,
        final_url,
        opt_text(
            a.and_then(|a| a.content_type.clone())
                .or_else(|| headers.and_then(|h| h.content_type.clone())),
        ),
        Value::UInt(meta.fetched_at_ms),
        Value::UInt(schedule.checked_at_ms),
        // Since when, MySQL keeps (see `upsert`): here the latest check that found it.
        match schedule.gone {
            true => Value::UInt(schedule.checked_at_ms),
            false => Value::NULL,
        },
        version,
        Value::UInt(meta.redirects.len() as u64),
        header(|h| &h.etag),
        header(|h| &h.last_modified),
        Value::UInt(meta.duration_ms),
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
        Value::NULL,
        Value::NULL,
    ];
    if let (Outcome::Response { body_len, .. }, true) = (&meta.outcome, limits.bodies) {
        let rest = row.iter().map(wire_size).sum::<usize>() - wire_size(&row[BODY]);
        match body_omitted(*body_len, rest, limits.packet) {
            Some(why) => row[BODY_OMITTED] = text(why),
            None => {
                if let Some(body) = journal.body(id)? {
                    row[BODY] = Value::Bytes(body);
                }
            }
        }
    }
    let links = a
        .map(|a| a.links.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(position, link)| {
            [
                Value::Bytes(hash.clone()),
                Value::UInt(position as u64),
                text(without_userinfo(&link.url)),
                text(link.text.as_str()),
                Value::from(link.nofollow),
                opt_text(link.lastmod.clone()),
            ]
        })
        .collect();
    Ok(PageRows { row, links, hash })
}

/// The `fields` column: each field as [`Field::to_json`] shows it.
pub(crate) fn fields_json(
    fields: &BTreeMap<String, Field>,
) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|(name, field)| (name.clone(), field.to_json()))
        .collect()
}

fn damaged(id: u64) -> JournalError {
    JournalError::Damaged {
        what: format!("id {id} is queued for sync but has no page record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_body_omitted_are_the_last_page_columns() {
        assert_eq!(PAGE_COLUMNS[BODY], "body");
        assert_eq!(PAGE_COLUMNS[BODY_OMITTED], "body_omitted");
    }

    /// Regression: a body of 16,777,000 bytes was left out with a message saying it was
    /// larger than the 16,777,216-byte packet: the limit was the packet minus room for
    /// the statement and the rest of the row, the message showed the packet.
    #[test]
    fn a_body_left_out_is_said_to_be_larger_than_the_room_it_had() {
        let packet = 16_777_216;
        let rest = 2_000;
        let why = body_omitted(16_777_000, rest, packet).expect("too large for the packet");
        let numbers: Vec<u64> = why
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [body, room, shown_packet] = numbers[..] else {
            panic!("{why}")
        };
        assert_eq!((body, shown_packet), (16_777_000, packet as u64), "{why}");
        assert!(body > room, "{why}");
        // The room is exact: a body of that size is kept, one byte more is not.
        assert_eq!(body_omitted(room, rest, packet), None);
        assert!(body_omitted(room + 1, rest, packet).is_some());
        // The whole row, body included, fits in one statement.
        assert_eq!(
            rest + wire_size(&Value::Bytes(vec![0; room as usize])),
            statement_budget(packet)
        );
    }

    /// The rest of the row counts: a body that fits beside a small row can be too large
    /// beside large fields.
    #[test]
    fn the_rest_of_the_row_takes_room_from_the_body() {
        let packet = 1 << 20;
        assert_eq!(body_omitted(900_000, 1_000, packet), None);
        assert!(body_omitted(900_000, 100_000, packet).is_some());
    }
}
