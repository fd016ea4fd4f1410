//! `webspool recover` with the real binary: a journal whose database files are gone is
//! refused with advice to recover; `recover` rebuilds it from the segments, killed or
//! not; then parse and sync load every page byte-equal, one row each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mysql_async::prelude::*;

use crate::cli::{crawl_list, on, status_json, stderr};
use crate::util;
use crate::util::mysql::TestDb;

/// The body the test site serves at `path`: distinct, a few KB.
pub(crate) fn body_for(path: &str) -> String {
    let mut body = format!("<html><head><title>{path}</title></head><body>");
    for i in 0..60 {
        body.push_str(&format!("<p>{path} paragraph {i}: {}</p>", i * 7919 % 1000));
    }
    body.push_str("</body></html>");
    body
}

/// A site of `n` pages and a journal at `dir/j` that crawled all of them.
async fn crawled(dir: &tempfile::TempDir, n: usize) -> (util::TestServer, PathBuf, PathBuf) {
    crawled_with(dir, n, body_for).await
}

/// Like [`crawled`], the site serving `body(path)` at each path.
pub(crate) async fn crawled_with(
    dir: &tempfile::TempDir,
    n: usize,
    body: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (util::TestServer, PathBuf, PathBuf) {
    let server = util::TestServer::start(move |req| {
        let reply = util::server::reply(200, body(req.uri().path()));
        async move { reply }
    })
    .await;
    let urls: Vec<String> = (0..n).map(|i| server.url(&format!("/p{i}"))).collect();
    let list = util::url_file(dir, &urls);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    (server, list, journal)
}

/// Deletes sled's files and the marker: only `segments/` is left.
pub(crate) fn delete_database(journal: &Path) {
    for entry in std::fs::read_dir(journal).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "segments" {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// url -> body of every row in MySQL.
pub(crate) async fn rows(db: &TestDb) -> BTreeMap<String, Vec<u8>> {
    let mut conn = db.conn().await;
    conn.query::<(String, Vec<u8>), _>("SELECT url, body FROM pages")
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn expected(server: &util::TestServer, n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let path = format!("/p{i}");
            (server.url(&path), body_for(&path).into_bytes())
        })
        .collect()
}

fn parse_and_sync(journal: &Path, db: &TestDb) {
    let out = on(&["parse"], journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = on(&["sync", "--mysql", &db.url], journal);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_without_its_database_is_recovered_from_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let (server, _, journal) = crawled(&dir, n).await;
    let db = TestDb::new().await;
    // Synced once before the loss: the recovered journal (a new journal id) must not
    // duplicate a row.
    let out = on(&["sync", "--mysql", &db.url], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    delete_database(&journal);

    let out = on(&["status"], &journal);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is damaged") && err.contains("webspool recover --journal"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = on(&["recover"], &journal);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{n} pages back as fetched")), "{err}");
    let replaced: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("replaced-"))
        .collect();
    assert_eq!(replaced.len(), 1, "{replaced:?}");

    let status = status_json(&journal);
    assert_eq!(status["fetched"], n);
    assert_eq!(status["pending_parse"], n);
    parse_and_sync(&journal, &db);
    assert_eq!(rows(&db).await, expected(&server, n));
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing was fetched again.
    assert!(server.all_hits().values().all(|&hits| hits == 1));
}

/// A body whose bytes fail their checksum is fetched again after recovery; an entry
/// whose frame is damaged is lost to recovery, and the crawl of the same list adds
/// its URL again.
#[tokio::test(flavor = "multi_thread")]
async fn recover_refetches_damaged_bodies_and_a_crawl_restores_lost_entries() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50;
    let (server, list, journal) = crawled(&dir, n).await;
    let segment = journal.join("segments").join("00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    // The first entry's magic, and a byte in the middle of the file (some body or
    // header: either way one page is affected).
    bytes[1] ^= 0x20;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    delete_database(&journal);

    let out = on(&["recover"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    crawl_list(&list, &journal);
    let db = TestDb::new().await;
    let out = on(&["sync", "--mysql", &db.url], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows(&db).await, expected(&server, n));
    let refetched: Vec<_> = server
        .all_hits()
        .into_iter()
        // robots.txt lived only in the lost database: asked for again.
        .filter(|(path, hits)| *hits > 1 && path != "/robots.txt")
        .collect();
    assert!(
        refetched.iter().any(|(path, _)| path == "/p0") && refetched.len() <= 2,
        "only the damaged pages are fetched again: {refetched:?}"
    );
}

/// SIGKILL at any moment of a recovery: every other command refuses the journal while
/// the switch is half done, and `recover` run again finishes it; no page is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_recovery_finishes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    let (server, _, journal) = crawled(&dir, n).await;
    delete_database(&journal);
    for delay_ms in [5, 20, 40, 80, 160] {
        let mut child = Command::new(util::bin())
            .args(["recover", "--journal"])
            .arg(&journal)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        util::signal(&child, libc::SIGKILL);
        let _ = child.wait();
        let out = on(&["status"], &journal);
        if !out.status.success() {
            let err = stderr(&out);
            assert!(
                err.contains("webspool recover") && !err.contains("panicked"),
                "{err}"
            );
        }
    }
    let out = on(&["recover"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_json(&journal);
    assert_eq!(status["fetched"], n, "{status}");
    let db = TestDb::new().await;
    parse_and_sync(&journal, &db);
    assert_eq!(rows(&db).await, expected(&server, n));
}
