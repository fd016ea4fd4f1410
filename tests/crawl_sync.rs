//! `crawl --from-mysql ... --sync ...` end to end, with the sync database down while the
//! crawl runs: fetching and parsing go on at full speed, sync says it is retrying, and it
//! catches up when the database returns.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::util::mysql::TestDb;
use crate::util::proxy::Proxy;
use crate::util::{self, server};

const SITES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_from_mysql_synced_through_an_outage() {
    let site = util::TestServer::start(|req| async move {
        let mut r = server::reply(200, format!("<title>{}</title>", req.uri().path()));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html"),
        );
        r
    })
    .await;
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.query_drop("CREATE TABLE sites (id INT PRIMARY KEY, url TEXT, active BOOL)")
        .await
        .unwrap();
    let rows: Vec<(u32, String, bool)> = (1..=SITES as u32)
        .map(|i| (i, site.url(&format!("/site/{i}")), true))
        .chain([
            (9001, "not a url".to_string(), true),
            (9002, site.url("/inactive"), false),
        ])
        .collect();
    conn.exec_batch("INSERT INTO sites VALUES (?, ?, ?)", rows)
        .await
        .unwrap();

    // Sync goes through a proxy that is down from the start.
    let port: u16 = db
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or(3306);
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    proxy.down();
    let through_proxy =
        db.url
            .replacen(&format!(":{port}/"), &format!(":{}/", proxy.addr.port()), 1);
    assert_ne!(through_proxy, db.url);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("crawl.log");
    let mut child = Command::new(util::bin())
        .args(["crawl", "--from-mysql", &db.url])
        .args([
            "--query",
            "SELECT id, url FROM sites WHERE active ORDER BY id",
        ])
        .args(["--sync", &through_proxy, "--journal"])
        .arg(dir.path().join("journal"))
        .env("WEBSPOOL_LOG", "webspool::committed=debug,webspool=info")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // Everything is fetched while the database is down.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let fetched = text
            .lines()
            .filter(|l| l.contains("webspool::committed") && l.contains(" fetched "))
            .count();
        if fetched == SITES && text.contains("retrying") {
            assert!(
                text.contains("row 301 (key 9001): skipped \"not a url\""),
                "{text}"
            );
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "crawl ended during the outage:\n{text}"
        );
        assert!(
            Instant::now() < deadline,
            "fetching stalled while MySQL was down:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pages: u64 = conn.query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'pages'").await.unwrap().unwrap();
    assert_eq!(
        pages, 0,
        "nothing can have been synced through a down proxy"
    );

    proxy.up();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains(&format!("synced {SITES} in")), "{text}");

    pages = conn
        .query_first("SELECT COUNT(*) FROM pages")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pages, SITES as u64);
    let keys: Vec<(String, String, String)> = conn
        .query("SELECT source_key, url, title FROM pages")
        .await
        .unwrap();
    let by_key: BTreeMap<String, (String, String)> =
        keys.into_iter().map(|(k, u, t)| (k, (u, t))).collect();
    for i in 1..=SITES {
        let (url, title) = &by_key[&i.to_string()];
        assert_eq!(url, &site.url(&format!("/site/{i}")));
        assert_eq!(title, &format!("/site/{i}"));
    }
}
