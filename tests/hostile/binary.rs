//! Every hostile server at once, mixed with normal pages, through the real binary: the
//! normal pages are stored exactly, each hostile URL ends as its case says, and the
//! process's peak memory stays bounded.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use webspool::journal::Journal;

use super::{Site, Want, CASES, DEADLINE, IDLE, MAX_BODY};
use crate::util::server::reply;
use crate::util::{self, body_of, page_of, status_of, TestServer};

const NORMAL: usize = 60;
/// Peak resident memory allowed to the crawl (VmHWM).
const MAX_RSS_KB: u64 = 200 * 1024;

/// Page `i`: distinct bytes, 1 KB to about 180 KB.
fn page(i: usize) -> Vec<u8> {
    let line = format!("<p>page {i} line</p>\n");
    line.repeat(1 + i * 150).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_survives_every_hostile_server_among_normal_pages() {
    let site = Site::start().await;
    let pages: Arc<Vec<Vec<u8>>> = Arc::new((0..NORMAL).map(page).collect());
    let served = pages.clone();
    let normal = TestServer::start(move |req| {
        let i: Option<usize> = req
            .uri()
            .path()
            .strip_prefix("/page/")
            .and_then(|n| n.parse().ok());
        let body = i.and_then(|i| served.get(i).cloned());
        async move {
            match body {
                Some(body) => reply(200, body),
                None => reply(404, ""),
            }
        }
    })
    .await;
    let normal_urls: Vec<String> = (0..NORMAL)
        .map(|i| normal.url(&format!("/page/{i}")))
        .collect();
    let hostile_urls: Vec<String> = CASES.iter().map(|c| site.url(c)).collect();
    // Hostile URLs spread among the normal ones.
    let mut lines = Vec::new();
    let mut hostile = hostile_urls.iter();
    for (i, url) in normal_urls.iter().enumerate() {
        if i % 3 == 0 {
            lines.extend(hostile.next().cloned());
        }
        lines.push(url.clone());
    }
    lines.extend(hostile.cloned());

    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &lines);
    let journal = dir.path().join("journal");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let secs = |d: Duration| d.as_secs_f64().to_string();
    let started = Instant::now();
    let mut child = Command::new(util::bin())
        // No retries: each hostile server is met once (tests/polite.rs covers retries).
        .args([
            "crawl",
            "--quiet",
            "--retries",
            "0",
            "--timeout",
            &secs(DEADLINE),
        ])
        .args(["--idle-timeout", &secs(IDLE), "--connect-timeout", "1"])
        .args(["--max-body", &MAX_BODY.to_string()])
        .arg("--urls")
        .arg(&list)
        .arg("--journal")
        .arg(&journal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start webspool");
    let mut peak_kb = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_kb = peak_kb.max(util::vm_hwm_kb(child.id()).unwrap_or(0));
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the crawl did not end within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(peak_kb > 0, "VmHWM was read");
    assert!(peak_kb < MAX_RSS_KB, "peak RSS {peak_kb} kB");

    let journal = Journal::open(&journal).unwrap();
    for (i, url) in normal_urls.iter().enumerate() {
        assert_eq!(status_of(&page_of(&journal, url)), 200, "{url}");
        assert!(
            body_of(&journal, url) == pages[i],
            "{url}: stored body differs"
        );
    }
    for (case, url) in CASES.iter().zip(&hostile_urls) {
        case.assert_recorded(&journal, url);
    }
    let failing = CASES
        .iter()
        .filter(|c| matches!(c.want, Want::Fails(_)))
        .count();
    let s = journal.status().unwrap();
    let stored = (NORMAL + CASES.len() - failing) as u64;
    assert_eq!(
        (s.urls, s.fetched, s.failed),
        (lines.len() as u64, stored, failing as u64)
    );
    assert_eq!(
        (s.pending_fetch, s.pending_parse),
        (0, 0),
        "all fetched and parsed"
    );
}
