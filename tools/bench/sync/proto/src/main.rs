//! sync-proto: a diagnostic for tools/bench-sync (not part of webspool).
//!
//! Reads every page and link of a database `webspool sync` filled (the source), holds
//! them in memory as the `Value`s webspool's `sync::batch::build` makes, and then, timed,
//! writes them into another database in batches of `--batch-rows` pages (one transaction
//! each, with the watermark row, as webspool does) in one of these ways:
//!
//! - `current`: exactly what `sync::batch::write` does today: multi-row
//!   `INSERT ... ON DUPLICATE KEY UPDATE` prepared statements as large as the placeholder
//!   and packet limits allow (so their shape, and text, changes with every batch and
//!   each one is prepared anew), parameters cloned into `Params`;
//! - `fixed`: the same statements, but always of a power-of-two number of rows up to
//!   `--chunk`, so a handful of shapes are prepared once per connection and then only
//!   executed (mysql_async's statement cache), parameters moved, not cloned;
//! - `infile`: `LOAD DATA LOCAL INFILE ... REPLACE INTO TABLE` of the batch's rows,
//!   serialized in memory to the tab-separated format and streamed through mysql_async's
//!   local infile handler (no file).
//!
//! The journal side of webspool (reading and decompressing bodies, the sync queue) is
//! not in these figures: the rows are ready in memory before the clock starts.
//!
//! Usage: sync-proto --mysql mysql://user@host:port --source DB --target DB
//!            --mode current|fixed|infile [--batch-rows 1000] [--chunk 128]
//!            [--infile-verb REPLACE|IGNORE|INTO]
//! The target must have webspool's tables (pages, links, webspool_sync_state), empty.
//! Prints one JSON line.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row as DbRow, Value};

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
const FETCHED_AT: usize = 8;
const MAX_PLACEHOLDERS: usize = 65_535;
const PACKET_SLACK: usize = 64 * 1024;

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

struct Batch {
    last_seq: u64,
    page_rows: Vec<Row>,
    hashes: Vec<Vec<u8>>,
    link_rows: Vec<Row>,
}

#[derive(Default)]
struct Phases {
    serialize: Duration,
    delete: Duration,
    pages: Duration,
    links: Duration,
    commit: Duration,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let need = |n: &str| arg(&args, n).ok_or_else(|| format!("missing {n}"));
    let base = need("--mysql")?;
    let source = need("--source")?;
    let target = need("--target")?;
    let mode = need("--mode")?;
    let batch_rows: usize = arg(&args, "--batch-rows").map_or(Ok(1000), |s| s.parse())?;
    let chunk: usize = arg(&args, "--chunk").map_or(Ok(128), |s| s.parse())?;
    let chunk = chunk.max(1).next_power_of_two();
    // For `infile`: REPLACE (idempotent, the default), IGNORE, or nothing (plain INTO).
    let verb = arg(&args, "--infile-verb").unwrap_or_else(|| "REPLACE".into());
    let verb = if verb == "INTO" { String::new() } else { verb };
    if !matches!(mode.as_str(), "current" | "fixed" | "infile") {
        return Err(format!("unknown mode {mode}").into());
    }
    let opts = |db: &str| -> Result<Opts, Box<dyn std::error::Error>> {
        let o = Opts::from_url(&format!("{}/{db}", base.trim_end_matches('/')))?;
        Ok(OptsBuilder::from_opts(o)
            .prefer_socket(false)
            .stmt_cache_size(64)
            .init(vec!["SET time_zone = '+00:00'"])
            .into())
    };

    // ---- the rows, as webspool's batch builder makes them (untimed)
    let loaded = Instant::now();
    let mut src = Conn::new(opts(&source)?).await?;
    let journal_id: Option<String> = src
        .query_first("SELECT journal_id FROM webspool_sync_state LIMIT 1")
        .await?;
    let journal_id = journal_id.unwrap_or_else(|| "0".repeat(32));
    let select: Vec<String> = PAGE_COLUMNS
        .iter()
        .map(|c| match *c {
            "fetched_at" => "CAST(ROUND(UNIX_TIMESTAMP(fetched_at) * 1000) AS UNSIGNED)".into(),
            "status" | "word_count" => format!("CAST({c} AS UNSIGNED)"),
            c => c.to_string(),
        })
        .collect();
    let pages: Vec<DbRow> = src
        .exec(
            format!("SELECT {} FROM pages ORDER BY url_hash", select.join(", ")),
            (),
        )
        .await?;
    let links: Vec<DbRow> = src
        .exec(
            format!(
                "SELECT {} FROM links ORDER BY page_hash, position",
                LINK_COLUMNS.join(", ")
            ),
            (),
        )
        .await?;
    src.disconnect().await?;
    let mut links_of: HashMap<Vec<u8>, Vec<Row>> = HashMap::new();
    let n_links = links.len();
    for row in links {
        let values = row.unwrap();
        let Value::Bytes(hash) = &values[0] else {
            return Err("page_hash is not bytes".into());
        };
        links_of
            .entry(hash.clone())
            .or_default()
            .push(Row::new(values));
    }
    let n_pages = pages.len();
    let mut batches = Vec::new();
    let mut pages = pages.into_iter().peekable();
    while pages.peek().is_some() {
        let mut batch = Batch {
            last_seq: batches.len() as u64 + 1,
            page_rows: Vec::new(),
            hashes: Vec::new(),
            link_rows: Vec::new(),
        };
        for row in pages.by_ref().take(batch_rows.max(1)) {
            let values = row.unwrap();
            let Value::Bytes(hash) = values[0].clone() else {
                return Err("url_hash is not bytes".into());
            };
            batch
                .link_rows
                .extend(links_of.remove(&hash).unwrap_or_default());
            batch.hashes.push(hash);
            batch.page_rows.push(Row::new(values));
        }
        batches.push(batch);
    }
    let load_secs = loaded.elapsed().as_secs_f64();

    // ---- the timed writes
    let mut conn = Conn::new(opts(&target)?).await?;
    let packet: Option<u64> = conn.query_first("SELECT @@max_allowed_packet").await?;
    let packet = packet.unwrap_or(16 << 20) as usize;
    let mut phases = Phases::default();
    let started = Instant::now();
    let n_batches = batches.len();
    for batch in batches {
        match mode.as_str() {
            "current" => write_current(&mut conn, &batch, &journal_id, packet, &mut phases).await?,
            "fixed" => write_fixed(&mut conn, batch, &journal_id, packet, chunk, &mut phases).await?,
            _ => write_infile(&mut conn, batch, &journal_id, chunk, &verb, &mut phases).await?,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    conn.disconnect().await?;
    println!(
        "{{\"mode\": \"{mode}\", \"batch_rows\": {batch_rows}, \"chunk\": {chunk}, \"pages\": {n_pages}, \
         \"links\": {n_links}, \"batches\": {n_batches}, \"seconds\": {secs:.3}, \"load_seconds\": {load_secs:.3}, \
         \"serialize\": {:.3}, \"delete\": {:.3}, \"pages_stmts\": {:.3}, \"links_stmts\": {:.3}, \"commit\": {:.3}}}",
        phases.serialize.as_secs_f64(),
        phases.delete.as_secs_f64(),
        phases.pages.as_secs_f64(),
        phases.links.as_secs_f64(),
        phases.commit.as_secs_f64(),
    );
    Ok(())
}

fn upsert_sql(table: &str, columns: &[&str], rows: usize, values: &str, extra: &str) -> String {
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
    sql.push_str(extra);
    sql
}

fn page_values() -> String {
    format!(
        "({}, FROM_UNIXTIME(? / 1000), {}, NOW(3))",
        ["?"; 8].join(", "),
        vec!["?"; PAGE_COLUMNS.len() - 9].join(", ")
    )
}

fn link_values() -> String {
    format!("({})", vec!["?"; LINK_COLUMNS.len()].join(", "))
}

const STATE_SQL: &str = "INSERT INTO webspool_sync_state (journal_id, watermark, synced_at) \
     VALUES (?, ?, NOW(3)) ON DUPLICATE KEY UPDATE watermark = VALUES(watermark), \
     synced_at = VALUES(synced_at)";

/// webspool's `statements`: as many rows as the placeholder and packet limits allow.
fn greedy_groups(rows: &[Row], columns: usize, packet: usize) -> Vec<&[Row]> {
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

/// Power-of-two group sizes up to `chunk`, halved while a group is over the packet budget.
fn pow2_sizes(rows: &[Row], columns: usize, packet: usize, chunk: usize) -> Vec<usize> {
    let max_rows = (MAX_PLACEHOLDERS / columns).min(chunk);
    let budget = packet.saturating_sub(PACKET_SLACK).max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let left = (rows.len() - i).min(max_rows);
        let mut k = 1usize << (usize::BITS - 1 - left.leading_zeros());
        while k > 1 && rows[i..i + k].iter().map(|r| r.bytes).sum::<usize>() > budget {
            k /= 2;
        }
        out.push(k);
        i += k;
    }
    out
}

async fn write_current(
    conn: &mut Conn,
    batch: &Batch,
    journal_id: &str,
    packet: usize,
    ph: &mut Phases,
) -> mysql_async::Result<()> {
    let params = |rows: &[Row]| -> Params {
        Params::Positional(rows.iter().flat_map(|r| r.values.iter().cloned()).collect())
    };
    conn.query_drop("START TRANSACTION").await?;
    let t = Instant::now();
    for rows in greedy_groups(&batch.page_rows, PAGE_COLUMNS.len(), packet) {
        let sql = upsert_sql(
            "pages",
            PAGE_COLUMNS,
            rows.len(),
            &page_values(),
            ", synced_at = VALUES(synced_at)",
        );
        conn.exec_drop(sql, params(rows)).await?;
    }
    ph.pages += t.elapsed();
    let t = Instant::now();
    for hashes in batch.hashes.chunks(1000) {
        let sql = format!(
            "DELETE FROM links WHERE page_hash IN ({})",
            vec!["?"; hashes.len()].join(", ")
        );
        let values: Vec<Value> = hashes.iter().map(|h| Value::Bytes(h.clone())).collect();
        conn.exec_drop(sql, Params::Positional(values)).await?;
    }
    ph.delete += t.elapsed();
    let t = Instant::now();
    for rows in greedy_groups(&batch.link_rows, LINK_COLUMNS.len(), packet) {
        let sql = upsert_sql("links", LINK_COLUMNS, rows.len(), &link_values(), "");
        conn.exec_drop(sql, params(rows)).await?;
    }
    ph.links += t.elapsed();
    let t = Instant::now();
    conn.exec_drop(STATE_SQL, (journal_id, batch.last_seq)).await?;
    conn.query_drop("COMMIT").await?;
    ph.commit += t.elapsed();
    Ok(())
}

/// DELETE of the batch's links in power-of-two groups of hashes (few statement shapes).
async fn delete_links(conn: &mut Conn, hashes: Vec<Vec<u8>>, chunk: usize) -> mysql_async::Result<()> {
    let mut hashes = hashes.into_iter().map(Value::Bytes).collect::<Vec<_>>().into_iter();
    let mut left = hashes.len();
    while left > 0 {
        let n = left.min(chunk.max(1024));
        let k = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let values: Vec<Value> = hashes.by_ref().take(k).collect();
        let sql = format!(
            "DELETE FROM links WHERE page_hash IN ({})",
            vec!["?"; k].join(", ")
        );
        conn.exec_drop(sql, Params::Positional(values)).await?;
        left -= k;
    }
    Ok(())
}

async fn write_fixed(
    conn: &mut Conn,
    batch: Batch,
    journal_id: &str,
    packet: usize,
    chunk: usize,
    ph: &mut Phases,
) -> mysql_async::Result<()> {
    conn.query_drop("START TRANSACTION").await?;
    let t = Instant::now();
    let sizes = pow2_sizes(&batch.page_rows, PAGE_COLUMNS.len(), packet, chunk);
    let mut rows = batch.page_rows.into_iter();
    for k in sizes {
        let sql = upsert_sql("pages", PAGE_COLUMNS, k, &page_values(), ", synced_at = VALUES(synced_at)");
        let values: Vec<Value> = rows.by_ref().take(k).flat_map(|r| r.values).collect();
        conn.exec_drop(sql, Params::Positional(values)).await?;
    }
    ph.pages += t.elapsed();
    let t = Instant::now();
    delete_links(conn, batch.hashes, chunk).await?;
    ph.delete += t.elapsed();
    let t = Instant::now();
    let sizes = pow2_sizes(&batch.link_rows, LINK_COLUMNS.len(), packet, chunk * 8);
    let mut rows = batch.link_rows.into_iter();
    for k in sizes {
        let sql = upsert_sql("links", LINK_COLUMNS, k, &link_values(), "");
        let values: Vec<Value> = rows.by_ref().take(k).flat_map(|r| r.values).collect();
        conn.exec_drop(sql, Params::Positional(values)).await?;
    }
    ph.links += t.elapsed();
    let t = Instant::now();
    conn.exec_drop(STATE_SQL, (journal_id, batch.last_seq)).await?;
    conn.query_drop("COMMIT").await?;
    ph.commit += t.elapsed();
    Ok(())
}

/// Appends `v` in the LOAD DATA format: NULL as \N; backslash, tab, newline, NUL escaped.
fn push_field(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::NULL => out.extend_from_slice(b"\\N"),
        Value::Bytes(b) => {
            let mut run = 0;
            for (i, &c) in b.iter().enumerate() {
                let esc: &[u8] = match c {
                    b'\\' => b"\\\\",
                    b'\t' => b"\\t",
                    b'\n' => b"\\n",
                    0 => b"\\0",
                    _ => continue,
                };
                out.extend_from_slice(&b[run..i]);
                out.extend_from_slice(esc);
                run = i + 1;
            }
            out.extend_from_slice(&b[run..]);
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Double(f) => {
            let _ = write!(out, "{f}");
        }
        other => {
            let _ = out.write_all(&other.as_sql(false).into_bytes());
        }
    }
}

fn tsv(rows: &[Row]) -> Vec<u8> {
    let size: usize = rows.iter().map(|r| r.bytes + r.bytes / 16).sum();
    let mut out = Vec::with_capacity(size);
    for row in rows {
        for (i, v) in row.values.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            push_field(&mut out, v);
        }
        out.push(b'\n');
    }
    out
}

async fn load(conn: &mut Conn, sql: String, data: Vec<u8>) -> mysql_async::Result<()> {
    // Handed to the driver in 1 MiB pieces, as a stream.
    let data = Bytes::from(data);
    let pieces: Vec<std::io::Result<Bytes>> = (0..data.len())
        .step_by(1 << 20)
        .map(|i| Ok(data.slice(i..(i + (1 << 20)).min(data.len()))))
        .collect();
    conn.set_infile_handler(async move { Ok(stream::iter(pieces).boxed()) });
    conn.query_drop(sql).await
}

async fn write_infile(
    conn: &mut Conn,
    batch: Batch,
    journal_id: &str,
    chunk: usize,
    verb: &str,
    ph: &mut Phases,
) -> mysql_async::Result<()> {
    let t = Instant::now();
    let pages = tsv(&batch.page_rows);
    let links = tsv(&batch.link_rows);
    ph.serialize += t.elapsed();
    let format = "CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'";
    let page_cols: Vec<&str> = PAGE_COLUMNS
        .iter()
        .map(|c| if *c == "fetched_at" { "@fetched_ms" } else { c })
        .collect();
    debug_assert_eq!(PAGE_COLUMNS[FETCHED_AT], "fetched_at");
    conn.query_drop("START TRANSACTION").await?;
    let t = Instant::now();
    load(
        conn,
        format!(
            "LOAD DATA LOCAL INFILE 'webspool-pages' {verb} INTO TABLE pages {format} ({}) \
             SET fetched_at = FROM_UNIXTIME(CAST(@fetched_ms AS UNSIGNED) / 1000), synced_at = NOW(3)",
            page_cols.join(", ")
        ),
        pages,
    )
    .await?;
    ph.pages += t.elapsed();
    let t = Instant::now();
    delete_links(conn, batch.hashes, chunk).await?;
    ph.delete += t.elapsed();
    let t = Instant::now();
    load(
        conn,
        format!(
            "LOAD DATA LOCAL INFILE 'webspool-links' {verb} INTO TABLE links {format} ({})",
            LINK_COLUMNS.join(", ")
        ),
        links,
    )
    .await?;
    ph.links += t.elapsed();
    let t = Instant::now();
    conn.exec_drop(STATE_SQL, (journal_id, batch.last_seq)).await?;
    conn.query_drop("COMMIT").await?;
    ph.commit += t.elapsed();
    Ok(())
}
