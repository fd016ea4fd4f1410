//! The sync stage against the real MariaDB, a fresh database per test: exact bytes,
//! exactly one row per page whatever crashes when, reparse updates, several journals,
//! and secrets kept out of every output.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use sha2::{Digest, Sha256};
use webspool::journal::Journal;
use webspool::parse::RulesChoice;
use webspool::sync::{self, SyncConfig, SyncControl, Target};

use crate::util::mysql::TestDb;
use crate::util::{self, server};

fn config(db: &TestDb, batch_rows: usize) -> SyncConfig {
    SyncConfig {
        target: Target::parse(&db.url).expect("target"),
        every: None,
        bodies: true,
        batch_rows,
        batch_bytes: 64 << 20,
        op_timeout: Duration::from_secs(30),
        give_up_after: None,
        min_free: 0,
        turn: Default::default(),
    }
}

async fn sync_all(journal: &Arc<Journal>, config: &SyncConfig) -> sync::SyncSummary {
    sync::run(journal.clone(), config, Arc::new(SyncControl::default()))
        .await
        .expect("sync")
}

/// A site whose page `i` has `i % links` links and a body that depends on `i`.
async fn site(links: usize) -> util::TestServer {
    util::TestServer::start(move |req| async move {
        let path = req.uri().path().to_string();
        let n: usize = path
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let links: String = (0..n % links)
            .map(|k| format!("<a href=/l/{k}>link {k}</a>"))
            .collect();
        let mut r = server::reply(
            200,
            format!("<html><title>Page {n}</title><body><b class=v>{n}</b>{links}</body></html>"),
        );
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html"),
        );
        r
    })
    .await
}

/// (url -> (title, fields json)) and the link count per url, as MySQL has them.
async fn rows(
    db: &TestDb,
) -> (
    BTreeMap<String, (Option<String>, Option<String>)>,
    BTreeMap<String, u64>,
) {
    let mut conn = db.conn().await;
    let pages: Vec<(String, Option<String>, Option<String>)> = conn
        .query("SELECT url, title, fields FROM pages")
        .await
        .unwrap();
    let links: Vec<(String, u64)> = conn
        .query("SELECT p.url, COUNT(*) FROM links l JOIN pages p ON p.url_hash = l.page_hash GROUP BY p.url")
        .await
        .unwrap();
    let count = pages.len();
    let pages: BTreeMap<_, _> = pages.into_iter().map(|(u, t, f)| (u, (t, f))).collect();
    assert_eq!(pages.len(), count, "duplicate rows for one URL");
    (pages, links.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_round_trip_exactly() {
    let db = TestDb::new().await;
    let bodies: Vec<Vec<u8>> = vec![
        (0..=255u8).cycle().take(70_000).collect(), // NULs, invalid UTF-8
        "emoji 😀 𝄞 and NUL \0 in text".as_bytes().to_vec(),
        Vec::new(),
    ];
    let served = bodies.clone();
    let server = util::TestServer::start(move |req| {
        let served = served.clone();
        async move {
            let i: usize = req.uri().path()[1..].parse().unwrap_or(0);
            let mut r = server::reply(200, served[i].clone());
            let ct = if i == 1 {
                "text/html; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
            r
        }
    })
    .await;
    let mut lines: Vec<String> = (0..bodies.len())
        .map(|i| server.url(&format!("/{i}")))
        .collect();
    lines.push(format!(
        "http://127.0.0.1:{}/refused",
        util::server::refused_port()
    ));
    let (_dir, journal, _) = util::crawl_lines(&lines, util::quick_fetch()).await;
    let summary = sync_all(&journal, &config(&db, 2)).await;
    assert_eq!(summary.pages, 4);
    assert_eq!(journal.status().unwrap().pending_sync, 0);

    let mut conn = db.conn().await;
    for (i, body) in bodies.iter().enumerate() {
        let row: Option<(Option<String>, u16)> = conn
            .exec_first(
                "SELECT SHA2(body, 256), status FROM pages WHERE url = ?",
                (&lines[i],),
            )
            .await
            .unwrap();
        let (sha, status) = row.unwrap_or_else(|| panic!("no row for {}", lines[i]));
        assert_eq!(status, 200);
        assert_eq!(
            sha.as_deref(),
            Some(hex(&Sha256::digest(body)).as_str()),
            "body {i}"
        );
    }
    let title: Option<Option<String>> = conn
        .exec_first("SELECT title FROM pages WHERE url = ?", (&lines[1],))
        .await
        .unwrap();
    assert_eq!(title.flatten(), None, "the emoji page has no <title>");
    let failed: Option<(Option<u16>, String)> = conn
        .exec_first(
            "SELECT status, error FROM pages WHERE url = ?",
            (&lines[3],),
        )
        .await
        .unwrap();
    let (status, error) = failed.expect("failed fetches get a row too");
    assert_eq!(status, None);
    assert!(error.starts_with("connect: "), "{error}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_then_sync_replaces_rows_and_links_and_two_journals_share_a_database() {
    let db = TestDb::new().await;
    let server = site(5).await;
    let first: Vec<String> = (0..40).map(|i| server.url(&format!("/a/{i}"))).collect();
    let second: Vec<String> = (0..25).map(|i| server.url(&format!("/b/{i}"))).collect();
    let rules_v = util::rules("[fields.v]\nselector = \"b.v\"\n");
    let (_d1, j1, _) = util::crawl_lines_with_rules(&first, util::quick_fetch(), rules_v).await;
    let (_d2, j2, _) = util::crawl_lines(&second, util::quick_fetch()).await;
    assert_eq!(sync_all(&j1, &config(&db, 7)).await.pages, 40);
    assert_eq!(sync_all(&j2, &config(&db, 7)).await.pages, 25);
    let (pages, links) = rows(&db).await;
    assert_eq!(pages.len(), 65);
    assert_eq!(pages[&first[3]].1.as_deref(), Some(r#"{"v":"3"}"#));
    assert_eq!(links[&first[3]], 3);
    assert!(!links.contains_key(&first[5]), "page 5 has no links");
    let mut conn = db.conn().await;
    let marks: Vec<(String, u64)> = conn
        .query("SELECT journal_id, watermark FROM webspool_sync_state")
        .await
        .unwrap();
    assert_eq!(marks.len(), 2, "one watermark per journal: {marks:?}");

    // Nothing pending: a second sync writes nothing.
    assert_eq!(sync_all(&j1, &config(&db, 7)).await.pages, 0);
    // New rules: the field disappears from every page of journal 1, which is re-synced.
    let reparsed = webspool::parse::stage::run(
        &j1,
        &webspool::parse::stage::ParseConfig {
            rules: RulesChoice::Dropped,
            threads: 2,
            progress: webspool::progress::ProgressMode::Off,
            follow: None,
            min_free: 0,
        },
        webspool::parse::stage::Mode::Reparse,
        &Arc::new(webspool::parse::stage::Control::default()),
    )
    .unwrap();
    assert_eq!(reparsed.changed, 40);
    assert_eq!(sync_all(&j1, &config(&db, 7)).await.pages, 40);
    let (pages, links_after) = rows(&db).await;
    assert_eq!(pages.len(), 65);
    assert_eq!(pages[&first[3]].1.as_deref(), Some("{}"));
    assert_eq!(links_after, links, "links replaced, not duplicated");
}

/// One batch of 400 pages and 2,184 links takes several statements of each kind
/// (3 x 128 + 16 pages, 2 x 1,024 + 128 + 8 links); a replay of all of them through the
/// same statements changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_statement_writes_every_row_once() {
    let db = TestDb::new().await;
    let server = site(12).await;
    let lines: Vec<String> = (0..400).map(|i| server.url(&format!("/m/{i}"))).collect();
    let (_dir, journal, _) = util::crawl_lines(&lines, util::quick_fetch()).await;
    let expected: BTreeMap<String, u64> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 12 > 0)
        .map(|(i, url)| (url.clone(), (i % 12) as u64))
        .collect();
    let summary = sync_all(&journal, &config(&db, 1000)).await;
    assert_eq!((summary.pages, summary.batches), (400, 1));
    let (pages, links) = rows(&db).await;
    assert_eq!(pages.len(), 400);
    assert_eq!(pages[&lines[7]].0.as_deref(), Some("Page 7"));
    assert_eq!(links, expected);

    assert_eq!(journal.mark_all_for_sync().unwrap(), 400);
    assert_eq!(sync_all(&journal, &config(&db, 1000)).await.pages, 400);
    let (pages, links) = rows(&db).await;
    assert_eq!(pages.len(), 400);
    assert_eq!(links, expected, "links replaced, not duplicated");
    let mut conn = db.conn().await;
    let positions: Option<u64> = conn
        .query_first("SELECT COUNT(DISTINCT page_hash, position) FROM links")
        .await
        .unwrap();
    assert_eq!(positions, Some(expected.values().sum()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_mid_batch_and_at_commit_leave_exactly_one_row_per_page() {
    let db = TestDb::new().await;
    let server = site(5).await;
    let lines: Vec<String> = (0..1500).map(|i| server.url(&format!("/k/{i}"))).collect();
    let (_dir, journal, _) = util::crawl_lines(&lines, util::quick_fetch()).await;
    let control = Arc::new(SyncControl::default());
    let mut config = config(&db, 20);
    config.op_timeout = Duration::from_secs(10);
    let syncing = {
        let (journal, control) = (journal.clone(), control.clone());
        tokio::spawn(async move { sync::run(journal, &config, control).await })
    };
    // Kill every connection to the test database, again and again, at random points
    // of its batches (statements, commit), until the sync is well under way.
    let mut admin = db.conn().await;
    let my_id: u64 = admin
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut kills = 0;
    while !syncing.is_finished() && kills < 12 {
        tokio::time::sleep(Duration::from_millis(30 + (kills * 37) % 90)).await;
        let ids: Vec<u64> = admin
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> ?",
                (&name, my_id),
            )
            .await
            .unwrap();
        for id in ids {
            if admin
                .query_drop(format!("KILL CONNECTION {id}"))
                .await
                .is_ok()
            {
                kills += 1;
            }
        }
    }
    let summary = syncing
        .await
        .unwrap()
        .expect("sync survives killed connections");
    assert!(
        kills >= 3,
        "only {kills} connections killed: the sync ended too soon"
    );
    // A batch whose commit reply was lost is counted by neither side: MySQL's
    // watermark says it is done, so it is skipped, not replayed.
    assert!(summary.pages <= 1500 && summary.batches >= 1);
    let (pages, links) = rows(&db).await;
    assert_eq!(pages.len(), 1500, "exactly one row per page");
    for (i, url) in lines.iter().enumerate() {
        assert_eq!(pages[url].0.as_deref(), Some(format!("Page {i}").as_str()));
        assert_eq!(
            links.get(url).copied().unwrap_or(0),
            (i % 5) as u64,
            "{url}"
        );
    }
    assert_eq!(journal.status().unwrap().pending_sync, 0);
    assert_eq!(control.synced.load(Ordering::Relaxed), summary.pages);
}

fn sync_binary(journal: &std::path::Path, url: &str, log: &std::path::Path) -> std::process::Child {
    Command::new(util::bin())
        .args(["sync", "--batch-rows", "25", "--journal"])
        .arg(journal)
        .env("WEBSPOOL_MYSQL_URL", url)
        .env("WEBSPOOL_LOG", "webspool=debug")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sync_then_restart_leaves_exactly_one_row_per_page() {
    let db = TestDb::new().await;
    let server = site(5).await;
    let lines: Vec<String> = (0..3000).map(|i| server.url(&format!("/s/{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    util::crawl_in(dir.path(), &lines, util::quick_fetch()).await;
    let journal = dir.path().join("journal");
    let log = dir.path().join("sync.log");
    let mut killed = 0;
    for round in 0..4u64 {
        let mut child = sync_binary(&journal, &db.url, &log);
        // Wait for the first committed batches, then kill at a varying point.
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if std::fs::read_to_string(&log)
                .unwrap()
                .contains("pages synced")
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20 * round)).await;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed += 1;
    }
    assert!(killed >= 2, "sync finished before it could be killed twice");
    let status = sync_binary(&journal, &db.url, &log).wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let (pages, links) = rows(&db).await;
    assert_eq!(pages.len(), 3000, "exactly one row per page");
    for (i, url) in lines.iter().enumerate() {
        assert_eq!(
            pages[url].0.as_deref(),
            Some(format!("Page {i}").as_str()),
            "{url}"
        );
        assert_eq!(
            links.get(url).copied().unwrap_or(0),
            (i % 5) as u64,
            "{url}"
        );
    }
    let j = Journal::open(&journal).unwrap();
    let s = j.status().unwrap();
    assert_eq!(s.pending_sync, 0);
    assert!(s.last_sync.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_in_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let crawl = Command::new(util::bin())
        .args(["crawl", "--quiet", "--urls", "-", "--journal"])
        .arg(&journal)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(crawl.status.success());
    let admin =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let with_password = admin.replacen("mysql://root@", "mysql://root:hunter2-secret@", 1);
    assert!(
        with_password.contains("hunter2-secret"),
        "MYSQL_URL must be mysql://root@..."
    );
    // Wrong password: an access error, which is not retried.
    let out = Command::new(util::bin())
        .args(["sync", "--mysql", &with_password, "--journal"])
        .arg(&journal)
        .env("WEBSPOOL_LOG", "debug")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("Access denied"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    // An unreachable server: retried with backoff until the deadline, said clearly,
    // never with the password.
    let unreachable = format!(
        "mysql://root:hunter2-secret@127.0.0.1:{}/db",
        util::server::refused_port()
    );
    let out = Command::new(util::bin())
        .args(["sync", "--give-up-after", "1500ms", "--journal"])
        .arg(&journal)
        .env("WEBSPOOL_MYSQL_URL", &unreachable)
        .env("WEBSPOOL_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gave up syncing after 1.5s: mysql://***@127.0.0.1:")
            && err.contains("is unavailable"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // --help shows no environment value.
    let help = Command::new(util::bin())
        .args(["sync", "--help"])
        .env("WEBSPOOL_MYSQL_URL", &unreachable)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));
}

/// Restores the server's global max_allowed_packet when dropped, even on panic.
struct PacketGuard(u64);

impl Drop for PacketGuard {
    fn drop(&mut self) {
        let old = self.0;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = std::env::var("MYSQL_URL")
                    .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
                let mut conn = crate::util::mysql::connect(&admin).await;
                let _ = conn
                    .query_drop(format!("SET GLOBAL max_allowed_packet = {old}"))
                    .await;
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_allowed_packet_is_flagged_and_does_not_block_the_batch() {
    let db = TestDb::new().await;
    let big = vec![b'x'; 3 << 20];
    let served = big.clone();
    let server = util::TestServer::start(move |req| {
        let served = served.clone();
        async move {
            match req.uri().path() {
                "/big" => server::reply(200, served),
                path => server::reply(200, format!("small {path}")),
            }
        }
    })
    .await;
    let lines: Vec<String> = ["/a", "/big", "/b"].iter().map(|p| server.url(p)).collect();
    let (_dir, journal, _) = util::crawl_lines(&lines, util::quick_fetch()).await;

    let mut admin = db.conn().await;
    let old: u64 = admin
        .query_first("SELECT @@GLOBAL.max_allowed_packet")
        .await
        .unwrap()
        .unwrap();
    let _restore = PacketGuard(old);
    admin
        .query_drop("SET GLOBAL max_allowed_packet = 1048576")
        .await
        .unwrap();
    // New connections see the smaller packet; the sync opens its own.
    assert_eq!(sync_all(&journal, &config(&db, 10)).await.pages, 3);
    drop(_restore);

    let mut conn = db.conn().await;
    let rows: Vec<(String, Option<u64>, Option<String>)> = conn
        .query("SELECT url, LENGTH(body), body_omitted FROM pages ORDER BY url")
        .await
        .unwrap();
    let by_url: BTreeMap<_, _> = rows.into_iter().map(|(u, l, o)| (u, (l, o))).collect();
    assert_eq!(by_url[&lines[0]], (Some(8), None));
    assert_eq!(by_url[&lines[2]], (Some(8), None));
    let (len, why) = &by_url[&lines[1]];
    assert_eq!(*len, None);
    assert!(
        why.as_deref().unwrap_or("").contains("max_allowed_packet"),
        "{why:?}"
    );
}
