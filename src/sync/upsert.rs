//! The write of a batch to MySQL: one transaction of multi-row
//! `INSERT ... ON DUPLICATE KEY UPDATE` statements with bound parameters (the pages, the
//! DELETE of their old links, the links) and the upsert of the journal's watermark.
//!
//! Statements hold a power-of-two number of rows (at most `PAGE_STATEMENT_ROWS` pages,
//! `LINK_STATEMENT_ROWS` links or hashes), so only a few statement shapes exist: each is
//! prepared once per connection and found in mysql_async's statement cache after that.
//! A statement with a new shape costs a prepare round trip, and the server sends back
//! one column definition per placeholder, which for tens of thousands of placeholders
//! costs more than the rows themselves. Statements stay under the placeholder limit and
//! the server's `max_allowed_packet`.

use mysql_async::prelude::*;
use mysql_async::{Params, TxOpts, Value};

use super::batch::{statement_budget, Batch, Rows, LINK_COLUMNS, PAGE_COLUMNS};

/// MySQL's limit of placeholders in one statement.
const MAX_PLACEHOLDERS: usize = 65_535;
/// The most rows in one statement, per kind: powers of two, so that the few statement
/// shapes stay in the statement cache (64 statements a connection; see
/// `Target::parse`). 128 pages of the Rust docs are ~1.5 MB; 1024 links ~150 kB.
const PAGE_STATEMENT_ROWS: usize = 128;
const LINK_STATEMENT_ROWS: usize = 1024;

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
        .map(|c| match *c {
            // A page still gone keeps the time it was first found gone.
            "gone_at" => "gone_at = IF(VALUES(gone_at) IS NULL, NULL, \
                 COALESCE(gone_at, VALUES(gone_at)))"
                .to_string(),
            c => format!("{c} = VALUES({c})"),
        })
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
    let budget = statement_budget(packet);
    let counts = statement_rows(&rows.sizes, rows.columns, most, budget);
    let mut values = rows.values.into_iter();
    for n in counts {
        let params: Vec<Value> = values.by_ref().take(n * rows.columns).collect();
        tx.exec_drop(sql(n), Params::Positional(params)).await?;
    }
    Ok(())
}

/// A recrawl check for [`write_checks`]: the row's key, when, and whether the page was
/// gone.
pub struct CheckRow {
    pub url_hash: Vec<u8>,
    pub at_ms: u64,
    pub gone: bool,
}

/// Records when pages were last checked, in one statement: a later sync of a page
/// never moves its time back, and replaying it changes nothing. `gone_at` is set to the
/// check's time when a page is gone and was not already, and cleared when it is back.
/// Rows not synced yet are left alone (their first sync carries it).
pub async fn write_checks(
    conn: &mut mysql_async::Conn,
    checks: &[CheckRow],
) -> Result<(), mysql_async::Error> {
    if checks.is_empty() {
        return Ok(());
    }
    let at = vec!["WHEN ? THEN FROM_UNIXTIME(? / 1000)"; checks.len()].join(" ");
    let gone =
        vec!["WHEN ? THEN IF(?, COALESCE(gone_at, FROM_UNIXTIME(? / 1000)), NULL)"; checks.len()]
            .join(" ");
    let keys = vec!["?"; checks.len()].join(", ");
    let sql = format!(
        "UPDATE pages SET checked_at = GREATEST(COALESCE(checked_at, FROM_UNIXTIME(0)), \
         CASE url_hash {at} END), gone_at = CASE url_hash {gone} END \
         WHERE url_hash IN ({keys})"
    );
    let mut params = Vec::with_capacity(checks.len() * 6);
    for check in checks {
        params.push(Value::Bytes(check.url_hash.clone()));
        params.push(Value::UInt(check.at_ms));
    }
    for check in checks {
        params.push(Value::Bytes(check.url_hash.clone()));
        params.push(Value::from(check.gone));
        params.push(Value::UInt(check.at_ms));
    }
    params.extend(checks.iter().map(|c| Value::Bytes(c.url_hash.clone())));
    conn.exec_drop(sql, Params::Positional(params)).await
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
    // fetched_at, checked_at and gone_at are bound as milliseconds since the epoch;
    // the session is in UTC.
    let page_values = format!(
        "({}, {}, {}, NOW(3))",
        ["?"; 8].join(", "),
        ["FROM_UNIXTIME(? / 1000)"; 3].join(", "),
        vec!["?"; PAGE_COLUMNS.len() - 11].join(", ")
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
