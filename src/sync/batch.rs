//! Batches: the rows of a run of the sync queue, read from the journal, and their write
//! to MySQL in one transaction together with the journal's watermark.
//!
//! Writes are idempotent upserts keyed by the hash of the normalized URL, and a page's
//! links are replaced whole, so replaying a batch (after a commit whose outcome was
//! unknown) changes nothing. Rows go in multi-row `INSERT ... ON DUPLICATE KEY UPDATE`
//! statements with bound parameters, sized to stay under the server's
//! `max_allowed_packet`; a body that alone would not fit is left out and flagged on its
//! row (`body_omitted`), so it never blocks the batch.

use mysql_async::prelude::*;
use mysql_async::{Params, TxOpts, Value};
use xxhash_rust::xxh3::xxh3_128;

use crate::journal::{Journal, JournalError, Outcome};

const PAGE_COLUMNS: &[&str] = &[
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
const LINK_COLUMNS: &[&str] = &[
    "page_hash",
    "position",
    "to_url",
    "anchor",
    "nofollow",
    "lastmod",
];
/// MySQL's limit of placeholders in one statement.
const MAX_PLACEHOLDERS: usize = 65_535;
/// Room kept in a packet for the statement id, headers and the NULL bitmap.
const PACKET_SLACK: usize = 64 * 1024;

/// Limits of one batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub rows: usize,
    pub bytes: usize,
    pub bodies: bool,
    /// The server's `max_allowed_packet`.
    pub packet: usize,
}

/// One row of a statement and its size on the wire, roughly.
struct Row {
    values: Vec<Value>,
    bytes: usize,
}

impl Row {
    fn new(values: Vec<Value>) -> Row {
        let bytes = values
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => b.len() + 9,
                _ => 9,
            })
            .sum();
        Row { values, bytes }
    }
}

pub struct Batch {
    pub pages: usize,
    /// The highest sync sequence number in the batch: the watermark once committed.
    pub last_seq: u64,
    page_rows: Vec<Row>,
    hashes: Vec<Vec<u8>>,
    link_rows: Vec<Row>,
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
        page_rows: Vec::new(),
        hashes: Vec::new(),
        link_rows: Vec::new(),
    };
    let mut bytes = 0;
    let max_body = limits.packet.saturating_sub(PACKET_SLACK * 2);
    for item in items {
        if batch.pages > 0 && bytes >= limits.bytes {
            break;
        }
        let entry = journal
            .url(item.id)?
            .ok_or_else(|| damaged(item.id, "url"))?;
        let meta = journal
            .page(item.id)?
            .ok_or_else(|| damaged(item.id, "page"))?;
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
        let row = Row::new(vec![
            Value::Bytes(hash.clone()),
            text(entry.url.as_str()),
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
            opt_text(a.and_then(|a| a.canonical.clone())),
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
        bytes += row.bytes;
        batch.page_rows.push(row);
        for (position, link) in a
            .map(|a| a.links.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let row = Row::new(vec![
                Value::Bytes(hash.clone()),
                Value::UInt(position as u64),
                text(link.url.as_str()),
                text(link.text.as_str()),
                Value::from(link.nofollow),
                opt_text(link.lastmod.clone()),
            ]);
            bytes += row.bytes;
            batch.link_rows.push(row);
        }
        batch.hashes.push(hash);
        batch.pages += 1;
        batch.last_seq = item.seq;
    }
    Ok(Some(batch))
}

fn damaged(id: u64, what: &str) -> JournalError {
    JournalError::Damaged {
        what: format!("id {id} is queued for sync but has no {what} record"),
    }
}

/// Groups rows into statements that respect the placeholder and packet limits.
fn statements(rows: &[Row], columns: usize, packet: usize) -> Vec<&[Row]> {
    let max_rows = MAX_PLACEHOLDERS / columns;
    let budget = packet.saturating_sub(PACKET_SLACK).max(1);
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && (i - start >= max_rows || bytes + row.bytes > budget) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row.bytes;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

fn upsert_sql(
    table: &str,
    columns: &[&str],
    rows: usize,
    values: &str,
    extra_update: &str,
) -> String {
    let mut sql = format!("INSERT INTO {table} ({}", columns.join(", "));
    if table == "pages" {
        sql.push_str(", synced_at");
    }
    sql.push_str(") VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(values);
    }
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    let updates: Vec<String> = columns[1..]
        .iter()
        .map(|c| format!("{c} = VALUES({c})"))
        .collect();
    sql.push_str(&updates.join(", "));
    sql.push_str(extra_update);
    sql
}

fn params(rows: &[Row]) -> Params {
    Params::Positional(rows.iter().flat_map(|r| r.values.iter().cloned()).collect())
}

/// Writes the batch and the new watermark in one transaction.
pub async fn write(
    conn: &mut mysql_async::Conn,
    batch: &Batch,
    journal_id: &str,
    packet: usize,
) -> Result<(), mysql_async::Error> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    // fetched_at is bound as milliseconds since the epoch; the session is in UTC.
    let page_values = format!(
        "({}, FROM_UNIXTIME(? / 1000), {}, NOW(3))",
        ["?"; 8].join(", "),
        vec!["?"; PAGE_COLUMNS.len() - 9].join(", ")
    );
    for rows in statements(&batch.page_rows, PAGE_COLUMNS.len(), packet) {
        let sql = upsert_sql(
            "pages",
            PAGE_COLUMNS,
            rows.len(),
            &page_values,
            ", synced_at = VALUES(synced_at)",
        );
        tx.exec_drop(sql, params(rows)).await?;
    }
    for hashes in batch.hashes.chunks(1000) {
        let sql = format!(
            "DELETE FROM links WHERE page_hash IN ({})",
            vec!["?"; hashes.len()].join(", ")
        );
        let values: Vec<Value> = hashes.iter().map(|h| Value::Bytes(h.clone())).collect();
        tx.exec_drop(sql, Params::Positional(values)).await?;
    }
    let link_values = format!("({})", vec!["?"; LINK_COLUMNS.len()].join(", "));
    for rows in statements(&batch.link_rows, LINK_COLUMNS.len(), packet) {
        let sql = upsert_sql("links", LINK_COLUMNS, rows.len(), &link_values, "");
        tx.exec_drop(sql, params(rows)).await?;
    }
    tx.exec_drop(
        "INSERT INTO webspool_sync_state (journal_id, watermark, synced_at) VALUES (?, ?, NOW(3)) \
         ON DUPLICATE KEY UPDATE watermark = VALUES(watermark), synced_at = VALUES(synced_at)",
        (journal_id, batch.last_seq),
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_respect_placeholders_and_packet() {
        let rows: Vec<Row> = (0..10_000)
            .map(|_| Row::new(vec![Value::Bytes(vec![0; 100]); 6]))
            .collect();
        let groups = statements(&rows, 6, 1 << 30);
        assert!(groups.iter().all(|g| g.len() * 6 <= MAX_PLACEHOLDERS));
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), 10_000);
        let groups = statements(&rows, 6, PACKET_SLACK + 100_000);
        assert!(groups
            .iter()
            .all(|g| g.iter().map(|r| r.bytes).sum::<usize>() <= 100_000));
        // A row bigger than the budget still goes, alone.
        let big = vec![Row::new(vec![Value::Bytes(vec![0; 1_000_000])])];
        assert_eq!(statements(&big, 1, PACKET_SLACK + 10).len(), 1);
    }
}
