//! `--metrics-addr` with the real binary: `/metrics` scraped over HTTP from a running
//! crawl and a `sync --every`, their counters matching what they did, both formats by
//! content negotiation, and a port in use refused before any work.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use mysql_async::prelude::*;

use crate::cli::{crawl_list, on, status_json, stderr};
use crate::util::mysql::TestDb;
use crate::util::server::{self, refused_port};
use crate::util::{self, eventually};

/// GETs `/metrics` at `addr` with `accept`: the content type and the body, or `None`
/// when nothing answers.
fn scrape(addr: &str, accept: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-type: ")
            .map(str::to_string)
    })?;
    Some((content_type, body.to_string()))
}

/// The samples of a text exposition, `name{labels}` -> value, checked line by line:
/// every sample belongs to a family announced by `# TYPE` before it, and its value is
/// a number.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut families: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        let bare = name.split('{').next().unwrap();
        assert!(
            families.iter().any(|f| bare.starts_with(f.as_str())),
            "a sample without its TYPE: {line}"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

/// A site whose `/hold` answers only once `release` is set; every other page answers
/// `slow` after 20 ms.
async fn holding_site(release: Arc<std::sync::atomic::AtomicBool>) -> util::TestServer {
    util::TestServer::start(move |req| {
        let release = release.clone();
        async move {
            if req.uri().path() == "/hold" {
                while !release.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            server::reply(200, "slow")
        }
    })
    .await
}

async fn scrape_off(addr: &str, accept: &str) -> Option<(String, String)> {
    let (addr, accept) = (addr.to_string(), accept.to_string());
    tokio::task::spawn_blocking(move || scrape(&addr, &accept))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_crawl_is_scraped_and_its_counters_match_what_it_did() {
    const PAGES: usize = 40;
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let site = holding_site(release.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", refused_port());
    let mut lines: Vec<String> = (0..PAGES).map(|i| site.url(&format!("/p{i}"))).collect();
    lines.push(format!("{down}/a"));
    lines.push(format!("{down}/b"));
    lines.push(site.url("/hold"));
    let list = util::url_file(&dir, &lines);
    let journal = dir.path().join("j");
    let addr = format!("127.0.0.1:{}", refused_port());
    let crawl = Command::new(util::bin())
        .args(["crawl", "--quiet", "--ignore-robots", "--retries", "0"])
        .args(["--concurrency", "2", "--metrics-addr", &addr])
        .arg("--urls")
        .arg(&list)
        .arg("--journal")
        .arg(&journal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Everything fetched but `/hold`, which is in flight: the crawl is still running.
    let mut last = BTreeMap::new();
    let mut seen_frontier = false;
    let settled = eventually(60, || {
        let Some((content_type, body)) = scrape(&addr, "*/*") else {
            return false;
        };
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!body.contains("# EOF"), "{body}");
        last = samples(&body);
        seen_frontier |= last["webspool_frontier_urls"] > 0.0;
        assert!(last["webspool_requests_in_flight"] <= 2.0, "{body}");
        last["webspool_pages_fetched_total"] == PAGES as f64
            && last["webspool_pages_parsed_total"] == PAGES as f64
            && last["webspool_requests_in_flight"] == 1.0
    })
    .await;
    assert!(settled, "{last:#?}");
    assert!(seen_frontier, "{last:#?}");
    assert_eq!(last["webspool_fetch_errors_total{kind=\"connect\"}"], 2.0);
    assert_eq!(last["webspool_response_bytes_total"], 4.0 * PAGES as f64);
    assert_eq!(
        last["webspool_fetch_duration_seconds_count"],
        (PAGES + 2) as f64
    );
    assert_eq!(
        last["webspool_fetch_duration_seconds_bucket{le=\"+Inf\"}"],
        (PAGES + 2) as f64
    );
    assert_eq!(last["webspool_pages_synced_total"], 0.0);
    assert!(last["webspool_journal_disk_bytes"] > 0.0, "{last:#?}");
    assert_eq!(last["webspool_sync_pending_pages"], (PAGES + 2) as f64);

    // OpenMetrics when asked for, as Prometheus asks.
    let (content_type, body) = scrape_off(
        &addr,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await
    .unwrap();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains(&format!("\nwebspool_pages_fetched_total {PAGES}\n")),
        "{body}"
    );
    assert!(
        !body.contains(&down) && !body.contains("127.0.0.1"),
        "{body}"
    );

    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = tokio::task::spawn_blocking(move || crawl.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_json(&journal);
    assert_eq!(status["fetched"], PAGES + 1, "{status}");
    assert_eq!(status["failed"], 2, "{status}");
    // The endpoint ends with the crawl.
    assert!(scrape_off(&addr, "*/*").await.is_none());
}

#[test]
fn a_metrics_port_in_use_is_refused_before_any_work() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = on(&["crawl", "--urls", "-", "--metrics-addr", &addr], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: --metrics-addr {addr}: cannot listen there: Address already in use (os \
             error 98)"
        )
    );
    assert!(!journal.exists(), "a journal was made");

    // sync too, before MySQL or the journal is looked at; the password never shown.
    let out = on(
        &[
            "sync",
            "--mysql",
            "mysql://root:sekrit@127.0.0.1:1/db",
            "--metrics-addr",
            &addr,
        ],
        &journal,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot listen there"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("sekrit"), "{}", stderr(&out));

    let out = on(&["recrawl", "--metrics-addr", "somewhere"], Path::new("x"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--metrics-addr") && stderr(&out).contains("IP:PORT"),
        "{}",
        stderr(&out)
    );
}

/// `sync --every` counts the pages it writes, and its lag falls to 0 once MySQL has
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_every_counts_what_mysql_committed() {
    const PAGES: usize = 12;
    let site = util::TestServer::start(|_req| async { server::reply(200, "page") }).await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..PAGES).map(|i| site.url(&format!("/s{i}"))).collect();
    let list = util::url_file(&dir, &lines);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    let addr = format!("127.0.0.1:{}", refused_port());
    let sync = Command::new(util::bin())
        .args(["sync", "--quiet", "--every", "1s", "--metrics-addr", &addr])
        .args(["--mysql", &db.url])
        .arg("--journal")
        .arg(&journal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = BTreeMap::new();
    let synced = eventually(60, || {
        let Some((_, body)) = scrape(&addr, "text/plain") else {
            return false;
        };
        last = samples(&body);
        last["webspool_pages_synced_total"] == PAGES as f64
            && last["webspool_sync_pending_pages"] == 0.0
    })
    .await;
    assert!(synced, "{last:#?}");
    assert_eq!(last["webspool_pages_fetched_total"], 0.0, "{last:#?}");
    util::signal(&sync, libc::SIGINT);
    let out = tokio::task::spawn_blocking(move || sync.wait_with_output().unwrap())
        .await
        .unwrap();
    // Ctrl-C ends `--every` as interrupted.
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let mut conn = db.conn().await;
    let rows: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM pages")
        .await
        .unwrap();
    assert_eq!(rows, Some(PAGES as u64));
}
