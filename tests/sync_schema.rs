//! MySQL as analysts query it, through the binary and MariaDB: a database created by
//! the previous schema (version 2, built from its migrations) is migrated in place, its
//! old rows kept; page by URL and "who links to X" are index lookups; the fetch facts
//! are columns.

use mysql_async::prelude::*;
use mysql_async::Row;
use webspool::sync::MIGRATIONS;

use crate::cli::{on, stderr};
use crate::util::mysql::TestDb;
use crate::util::{self, server};

/// A row synced by the previous schema, its URL not in the crawl.
const OLD_ROW: &str = "INSERT INTO pages (url_hash, url, journal_id, status, title, synced_at) \
     VALUES (UNHEX('00112233445566778899AABBCCDDEEFF'), 'http://old.example/', \
     '00000000000000000000000000000000', 200, 'Old', NOW(3))";

const PAGES: usize = 40;
const ETAG: &str = "\"v1\"";
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// `/old` redirects to `/new`, which sends an ETag and a Last-Modified; each page links
/// to one of 8 hubs (`/p/N` to `/hub/N%8`) and to a page of its own.
async fn site() -> util::TestServer {
    util::TestServer::start(|req| async move {
        let path = req.uri().path().to_string();
        if path == "/old" {
            return server::redirect(301, "/new");
        }
        let n: usize = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let html = format!(
            "<html><title>{path}</title><body><a href=/hub/{}>hub</a>\
             <a href={path}/next>n</a></body></html>",
            n % 8
        );
        let reply =
            server::with_headers(server::reply(200, html), &[("content-type", "text/html")]);
        match path.as_str() {
            "/new" => {
                server::with_headers(reply, &[("etag", ETAG), ("last-modified", LAST_MODIFIED)])
            }
            _ => reply,
        }
    })
    .await
}

/// final_url, http_version, redirect_count, etag, last_modified, fetch_ms, gone_at.
type Facts = (
    String,
    Option<String>,
    Option<u32>,
    Option<String>,
    Option<String>,
    Option<u32>,
    Option<String>,
);

/// The fetch facts of `url`'s row.
async fn facts(conn: &mut mysql_async::Conn, url: &str) -> Facts {
    conn.exec_first(
        "SELECT final_url, http_version, redirect_count, etag, last_modified, \
         fetch_ms, CAST(gone_at AS CHAR) FROM pages WHERE url = ?",
        (url,),
    )
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("no row for {url}"))
}

/// The index `EXPLAIN` says MySQL uses for `sql` with `param`.
async fn index_of(conn: &mut mysql_async::Conn, sql: &str, param: &str) -> Option<String> {
    let plan: Vec<Row> = conn.exec(format!("EXPLAIN {sql}"), (param,)).await.unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    plan[0].get::<Option<String>, _>("key").flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_schema_is_migrated_and_queried_by_index() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    // The database as the previous version (schema 2) left it, with a row.
    assert_eq!(MIGRATIONS.len(), 3, "the previous schema is 2");
    conn.query_drop("CREATE TABLE webspool_schema (version INT UNSIGNED NOT NULL)")
        .await
        .unwrap();
    for statement in MIGRATIONS[..2].concat() {
        conn.query_drop(statement).await.unwrap();
    }
    conn.query_drop("INSERT INTO webspool_schema (version) VALUES (1), (2)")
        .await
        .unwrap();
    conn.query_drop(OLD_ROW).await.unwrap();
    let server = site().await;
    let dir = tempfile::tempdir().unwrap();
    let mut urls: Vec<String> = (0..PAGES).map(|i| server.url(&format!("/p/{i}"))).collect();
    urls.push(server.url("/old"));
    let list = util::url_file(&dir, &urls);
    let journal = dir.path().join("j");
    let list = list.to_str().unwrap();
    let out = on(
        &["crawl", "--quiet", "--urls", list, "--sync", &db.url],
        &journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let version: Option<u32> = conn
        .query_first("SELECT MAX(version) FROM webspool_schema")
        .await
        .unwrap();
    assert_eq!(version, Some(3));
    // The old row is kept as it was, its new columns empty.
    type Old = (String, Option<String>, Option<u32>, Option<String>);
    let old: Vec<Old> = conn
        .query("SELECT title, http_version, redirect_count, gone_at FROM pages WHERE url = 'http://old.example/'")
        .await
        .unwrap();
    assert_eq!(old, [("Old".to_string(), None, None, None)]);

    // The new columns of the synced pages.
    let (final_url, version, redirects, etag, last_modified, fetch_ms, gone_at) =
        facts(&mut conn, &server.url("/old")).await;
    assert_eq!(final_url, server.url("/new"));
    assert_eq!(version.as_deref(), Some("HTTP/1.1"));
    assert_eq!(redirects, Some(1));
    assert_eq!(etag.as_deref(), Some(ETAG));
    assert_eq!(last_modified.as_deref(), Some(LAST_MODIFIED));
    assert!(fetch_ms.is_some());
    assert_eq!(gone_at, None);
    let plain = facts(&mut conn, &urls[0]).await;
    assert_eq!(
        (plain.1.as_deref(), plain.2, plain.3, plain.4),
        (Some("HTTP/1.1"), Some(0), None, None)
    );

    // Page by URL and who links to X: index lookups, and the right answers.
    let by_url = "SELECT url_hash, title FROM pages WHERE url = ?";
    assert_eq!(
        index_of(&mut conn, by_url, &urls[7]).await.as_deref(),
        Some("url")
    );
    let target = server.url("/hub/3");
    assert_eq!(
        index_of(
            &mut conn,
            "SELECT page_hash FROM links WHERE to_url = ?",
            &target
        )
        .await
        .as_deref(),
        Some("to_url")
    );
    let linking = "SELECT p.url FROM links l JOIN pages p ON p.url_hash = l.page_hash \
                   WHERE l.to_url = ?";
    let plan: Vec<Row> = conn
        .exec(format!("EXPLAIN {linking}"), (&target,))
        .await
        .unwrap();
    let links_plan = plan
        .iter()
        .find(|row| row.get::<String, _>("table").as_deref() == Some("l"))
        .expect("a plan for links");
    assert_eq!(
        links_plan
            .get::<Option<String>, _>("key")
            .flatten()
            .as_deref(),
        Some("to_url"),
        "{plan:?}"
    );
    let mut linking_pages: Vec<String> = conn.exec(linking, (&target,)).await.unwrap();
    linking_pages.sort();
    let mut want: Vec<String> = (0..PAGES)
        .filter(|i| i % 8 == 3)
        .map(|i| urls[i].clone())
        .collect();
    want.sort();
    assert_eq!(linking_pages, want);
}
