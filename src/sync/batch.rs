//! Batches: the rows of a run of the sync queue, read from the journal, and their write
//! to MySQL in one transaction together with the journal's watermark.
//!
//! Writes are idempotent upserts keyed by the hash of the normalized URL, and a page's
//! links are replaced whole, so replaying a batch (after a commit whose outcome was
//! unknown) changes nothing. Rows go in multi-row `INSERT ... ON DUPLICATE KEY UPDATE`
//! statements with bound parameters, sized to stay under the server's
//! `max_allowed_packet`; a body that alone would not fit is left out and flagged on its
//! row (`body_omitted`), so it never blocks the batch.
//!
//! Statements hold a power-of-two number of rows (at most `PAGE_STATEMENT_ROWS` pages,
//! `LINK_STATEMENT_ROWS` links or hashes), so only a few statement shapes exist: each is
//! prepared once per connection and found in mysql_async's statement cache after that.
//! A statement with a new shape costs a prepare round trip, and the server sends back
//! one column definition per placeholder, which for tens of thousands of placeholders
//! costs more than the rows themselves.

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
/// The most rows in one statement, per kind: powers of two, so that the few statement
/// shapes stay in the statement cache (64 statements a connection; see
/// `Target::parse`). 128 pages of the Rust docs are ~1.5 MB; 1024 links ~150 kB.
const PAGE_STATEMENT_ROWS: usize = 128;
const LINK_STATEMENT_ROWS: usize = 1024;

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
struct Rows {
    columns: usize,
    values: Vec<Value>,
    sizes: Vec<usize>,
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
    page_rows: Rows,
    /// The pages' keys, for the DELETE of their old links.
    hashes: Rows,
    link_rows: Rows,
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
        bytes += batch.page_rows.push([
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
        for (position, link) in a
            .map(|a| a.links.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            bytes += batch.link_rows.push([
                Value::Bytes(hash.clone()),
                Value::UInt(position as u64),
                text(link.url.as_str()),
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

fn damaged(id: u64, what: &str) -> JournalError {
    JournalError::Damaged {
        what: format!("id {id} is queued for sync but has no {what} record"),
    }
}

/// How many rows each statement takes, in order: the largest power of two that the rows
/// left, `most`, the placeholder limit and the packet `budget` allow. A row bigger than
/// the budget still goes, alone.
fn statement_rows(sizes: &[usize], columns: usize, most: usize, budget: usize) -> Vec<usize> {
    let most = floor_power_of_two(most.min(MAX_PLACEHOLDERS / columns));
    let mut out = Vec::new();
    let mut rest = sizes;
    while !rest.is_empty() {
        let mut n = floor_power_of_two(most.min(rest.len()));
        while n > 1 && rest[..n].iter().sum::<usize>() > budget {
            n /= 2;
        }
        out.push(n);
        rest = &rest[n..];
    }
    out
}

/// The largest power of two not above `n` (`n` >= 1).
fn floor_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.max(1).leading_zeros())
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

/// Runs `sql(n)` for each group of `n` rows that [`statement_rows`] makes, the rows'
/// values moved into its parameters.
async fn exec_rows(
    tx: &mut mysql_async::Transaction<'_>,
    rows: Rows,
    most: usize,
    packet: usize,
    sql: impl Fn(usize) -> String,
) -> Result<(), mysql_async::Error> {
    let budget = packet.saturating_sub(PACKET_SLACK).max(1);
    let counts = statement_rows(&rows.sizes, rows.columns, most, budget);
    let mut values = rows.values.into_iter();
    for n in counts {
        let params: Vec<Value> = values.by_ref().take(n * rows.columns).collect();
        tx.exec_drop(sql(n), Params::Positional(params)).await?;
    }
    Ok(())
}

/// Writes the batch and the new watermark in one transaction. Consumes the batch: its
/// values go into the statements without a copy (after a failed write the batch is read
/// from the journal again).
pub async fn write(
    conn: &mut mysql_async::Conn,
    batch: Batch,
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
    exec_rows(&mut tx, batch.page_rows, PAGE_STATEMENT_ROWS, packet, |n| {
        upsert_sql(
            "pages",
            PAGE_COLUMNS,
            n,
            &page_values,
            ", synced_at = VALUES(synced_at)",
        )
    })
    .await?;
    exec_rows(&mut tx, batch.hashes, LINK_STATEMENT_ROWS, packet, |n| {
        format!(
            "DELETE FROM links WHERE page_hash IN ({})",
            vec!["?"; n].join(", ")
        )
    })
    .await?;
    let link_values = format!("({})", vec!["?"; LINK_COLUMNS.len()].join(", "));
    exec_rows(&mut tx, batch.link_rows, LINK_STATEMENT_ROWS, packet, |n| {
        upsert_sql("links", LINK_COLUMNS, n, &link_values, "")
    })
    .await?;
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
    fn statements_have_power_of_two_rows_within_placeholders_and_packet() {
        let sizes = vec![109; 10_000];
        let counts = statement_rows(&sizes, 6, LINK_STATEMENT_ROWS, 1 << 30);
        assert_eq!(counts.iter().sum::<usize>(), 10_000);
        assert!(counts.iter().all(|n| n.is_power_of_two()));
        // 9 full statements, then 784 = 512 + 256 + 16.
        assert_eq!(counts[..9], [1024; 9]);
        assert_eq!(counts[9..], [512, 256, 16]);
        // The placeholder limit: 65,535 / 22 columns allows 2,978 rows, so 2,048.
        assert_eq!(statement_rows(&sizes, 22, 1 << 20, 1 << 30)[0], 2048);

        // The packet: groups are halved until they fit.
        let counts = statement_rows(&sizes, 6, LINK_STATEMENT_ROWS, 100_000);
        let mut start = 0;
        for n in &counts {
            assert!(n.is_power_of_two());
            assert!(sizes[start..start + n].iter().sum::<usize>() <= 100_000);
            start += n;
        }
        assert_eq!(start, 10_000);
        assert_eq!(counts[0], 512);

        // A row bigger than the budget still goes, alone; the next ones are grouped.
        let counts = statement_rows(&[10, 1_000_000, 10, 10, 10], 1, 128, 1_000);
        assert_eq!(counts, [1, 1, 2, 1]);
    }

    #[test]
    fn floor_power_of_two_of_small_and_large_numbers() {
        assert_eq!(floor_power_of_two(1), 1);
        assert_eq!(floor_power_of_two(3), 2);
        assert_eq!(floor_power_of_two(1024), 1024);
        assert_eq!(floor_power_of_two(2978), 2048);
    }
}
