//! The MySQL schema, created on first use and migrated by version.
//!
//! `webspool_schema` holds the version applied; each migration runs once, under a
//! named lock so that two webspool processes starting at once do not race. Text columns
//! are utf8mb4 with a binary collation and bodies LONGBLOB, so any content fits.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::SyncError;

/// Migrations in order; migration `i` brings the schema to version `i + 1`. Never
/// changed once released: a database of any version is migrated by those after it
/// (tests build older schemas from them).
pub const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS pages (
        url_hash BINARY(16) NOT NULL PRIMARY KEY,
        url TEXT NOT NULL,
        journal_id CHAR(32) NOT NULL,
        source_key TEXT NULL,
        status SMALLINT UNSIGNED NULL,
        error TEXT NULL,
        final_url TEXT NULL,
        content_type TEXT NULL,
        fetched_at DATETIME(3) NULL,
        title TEXT NULL,
        description TEXT NULL,
        lang TEXT NULL,
        canonical TEXT NULL,
        h1 TEXT NULL,
        robots_noindex BOOLEAN NULL,
        robots_nofollow BOOLEAN NULL,
        word_count INT UNSIGNED NULL,
        content_hash CHAR(32) NULL,
        parse_error TEXT NULL,
        fields JSON NULL,
        body LONGBLOB NULL,
        body_omitted TEXT NULL,
        synced_at DATETIME(3) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS links (
        page_hash BINARY(16) NOT NULL,
        position INT UNSIGNED NOT NULL,
        to_url TEXT NOT NULL,
        anchor TEXT NOT NULL,
        nofollow BOOLEAN NOT NULL,
        lastmod TEXT NULL,
        PRIMARY KEY (page_hash, position)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS webspool_sync_state (
        journal_id CHAR(32) NOT NULL PRIMARY KEY,
        watermark BIGINT UNSIGNED NOT NULL,
        synced_at DATETIME(3) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    ],
    // Recrawl: when a page was last checked (its fetch, or a check that found it
    // unchanged or gone).
    &["ALTER TABLE pages ADD COLUMN checked_at DATETIME(3) NULL AFTER fetched_at"],
    // As analysts query it: a page by its URL and the pages linking to a URL are index
    // lookups (prefix indexes: 512 characters of utf8mb4 are 2,048 bytes, within
    // InnoDB's 3,072; a longer URL is told apart by the row's full value), and the fetch
    // facts as columns. MariaDB adds the columns in place, without a table copy.
    &[
        "ALTER TABLE pages ADD COLUMN gone_at DATETIME(3) NULL AFTER checked_at",
        "ALTER TABLE pages ADD COLUMN http_version VARCHAR(16) NULL AFTER gone_at",
        "ALTER TABLE pages ADD COLUMN redirect_count INT UNSIGNED NULL AFTER http_version",
        "ALTER TABLE pages ADD COLUMN etag TEXT NULL AFTER redirect_count",
        "ALTER TABLE pages ADD COLUMN last_modified TEXT NULL AFTER etag",
        "ALTER TABLE pages ADD COLUMN fetch_ms INT UNSIGNED NULL AFTER last_modified",
        "ALTER TABLE pages ADD INDEX url (url(512))",
        "ALTER TABLE links ADD INDEX to_url (to_url(512))",
    ],
];

/// "Duplicate column name".
const ER_DUP_FIELDNAME: u16 = 1060;
/// "Duplicate key name".
const ER_DUP_KEYNAME: u16 = 1061;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`]; refuses a newer one.
pub async fn migrate(conn: &mut Conn) -> Result<(), SyncError> {
    let ctx = |what: &'static str| move |e| SyncError::mysql(what, e);
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS webspool_schema (version INT UNSIGNED NOT NULL) ENGINE=InnoDB",
    )
    .await
    .map_err(ctx("creating webspool_schema"))?;
    let locked: Option<Option<i64>> = conn
        .query_first("SELECT GET_LOCK('webspool_schema', 60)")
        .await
        .map_err(ctx("locking the schema"))?;
    if locked.flatten() != Some(1) {
        return Err(SyncError::Schema(
            "another process held the schema lock for 60 s".into(),
        ));
    }
    let result = apply(conn).await;
    let _ = conn.query_drop("DO RELEASE_LOCK('webspool_schema')").await;
    result
}

async fn apply(conn: &mut Conn) -> Result<(), SyncError> {
    let current: Option<Option<u32>> = conn
        .query_first("SELECT MAX(version) FROM webspool_schema")
        .await
        .map_err(|e| SyncError::mysql("reading the schema version", e))?;
    let current = current.flatten().unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(SyncError::Schema(format!(
            "the database has schema version {current}; this webspool writes up to {SCHEMA_VERSION}"
        )));
    }
    for (i, statements) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for statement in *statements {
            match conn.query_drop(*statement).await {
                // A column or index added by a run that died before it recorded the
                // version.
                Err(mysql_async::Error::Server(e))
                    if e.code == ER_DUP_FIELDNAME || e.code == ER_DUP_KEYNAME => {}
                other => other.map_err(|e| SyncError::mysql("migrating the schema", e))?,
            }
        }
        conn.exec_drop(
            "INSERT INTO webspool_schema (version) VALUES (?)",
            (i as u32 + 1,),
        )
        .await
        .map_err(|e| SyncError::mysql("recording the schema version", e))?;
        tracing::info!("MySQL schema migrated to version {}", i + 1);
    }
    Ok(())
}
