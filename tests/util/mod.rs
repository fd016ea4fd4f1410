//! Helpers shared by the integration tests: real servers on 127.0.0.1:0, temporary
//! journals, crawls through the library and through the real binary.

#![allow(dead_code)]

pub mod http_proxy;
pub mod mysql;
pub mod proxy;
pub mod raw;
pub mod server;
pub mod socks;
pub mod tmpfs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use webspool::fetch::{FetchConfig, Fetcher};
use webspool::journal::{Journal, Outcome, PageMeta};
use webspool::parse::stage::ParseConfig;
use webspool::parse::{Rules, RulesChoice};
use webspool::pipeline::{crawl, CrawlConfig, CrawlSummary, Input, Politeness};
use webspool::progress::ProgressMode;

pub use server::{Reply, TestServer};

/// Path of the real binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_webspool"))
}

/// URLs the binary logged as fetched, with `WEBSPOOL_LOG=webspool::committed=debug`
/// (it logs a page only after the flush holding it returned Ok).
pub fn reported(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|line| line.contains("webspool::committed"))
        .filter_map(|line| line.split(" fetched ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A fetch config with short deadlines, for tests.
pub fn quick_fetch() -> FetchConfig {
    FetchConfig {
        concurrency: 16,
        per_host: 8,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        ..FetchConfig::default()
    }
}

/// A fetcher for tests that fetch without a crawl, with the grants of an empty journal
/// (no origin gets `--header`s); the directory must outlive it.
pub fn fetcher(config: FetchConfig) -> (tempfile::TempDir, Fetcher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(&dir.path().join("journal")).expect("open journal");
    let fetcher = Fetcher::new(config, journal.grants()).expect("fetcher");
    (dir, fetcher)
}

/// Writes `lines` to a URL list file in `dir`.
pub fn url_file(dir: &tempfile::TempDir, lines: &[String]) -> PathBuf {
    let path = dir.path().join("urls.txt");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write url list");
    path
}

/// Rules given as if read from a file `rules.toml` holding `toml`.
pub fn rules(toml: &str) -> RulesChoice {
    let parsed = Rules::from_toml(toml).expect("rules");
    RulesChoice::given(parsed, toml.to_string(), "rules.toml".to_string())
}

/// Crawls `lines` into a fresh journal with the library, to completion.
pub async fn crawl_lines(
    lines: &[String],
    fetch: FetchConfig,
) -> (tempfile::TempDir, Arc<Journal>, CrawlSummary) {
    crawl_lines_with_rules(lines, fetch, RulesChoice::Kept).await
}

/// Like [`crawl_lines`], parsing with `rules` alongside.
pub async fn crawl_lines_with_rules(
    lines: &[String],
    fetch: FetchConfig,
    rules: RulesChoice,
) -> (tempfile::TempDir, Arc<Journal>, CrawlSummary) {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = url_file(&dir, lines);
    let journal = Arc::new(Journal::open(&dir.path().join("journal")).expect("open journal"));
    let summary = crawl(
        journal.clone(),
        crawl_config(list, fetch, rules),
        watch::channel(false).1,
    )
    .await
    .expect("crawl");
    (dir, journal, summary)
}

/// A crawl config reading `list`, with progress off, two parser threads, no retries and
/// no free-space watermark.
pub fn crawl_config(list: PathBuf, fetch: FetchConfig, rules: RulesChoice) -> CrawlConfig {
    CrawlConfig {
        input: Input::File(list),
        sitemaps: Vec::new(),
        fetch,
        parse: Some(ParseConfig {
            rules,
            threads: 2,
            progress: ProgressMode::Off,
            follow: None,
            min_free: 0,
        }),
        sync: None,
        // robots.txt as by default; no retries, so that failures are recorded at once.
        politeness: Politeness {
            retries: 0,
            ..Politeness::default()
        },
        progress: ProgressMode::Off,
        min_free: 0,
    }
}

/// The page record of a URL (given in normalized form).
pub fn page_of(journal: &Journal, url: &str) -> PageMeta {
    let id = journal
        .find(url)
        .expect("journal read")
        .unwrap_or_else(|| panic!("{url} is not in the journal"));
    journal
        .page(id)
        .expect("journal read")
        .unwrap_or_else(|| panic!("{url} has no page record"))
}

/// The body stored for a URL.
pub fn body_of(journal: &Journal, url: &str) -> Vec<u8> {
    let id = journal.find(url).expect("journal read").expect("url known");
    journal
        .body(id)
        .expect("journal read")
        .expect("body stored")
}

/// The HTTP status of a page, panicking with its error if it has none.
pub fn status_of(meta: &PageMeta) -> u16 {
    match &meta.outcome {
        Outcome::Response { status, .. } => *status,
        Outcome::Error { kind, message } => panic!("expected a response, got {kind}: {message}"),
    }
}

/// Crawls `lines` with the library into the journal at `dir/journal` (created or
/// reopened), then closes the journal again, so the next call can reopen it.
pub async fn crawl_in(dir: &std::path::Path, lines: &[String], fetch: FetchConfig) -> CrawlSummary {
    let list = dir.join("urls.txt");
    std::fs::write(&list, lines.join("\n") + "\n").expect("write url list");
    let journal = Arc::new(Journal::open(&dir.join("journal")).expect("open journal"));
    let config = crawl_config(list, fetch, RulesChoice::Kept);
    let summary = crawl(journal.clone(), config, watch::channel(false).1)
        .await
        .expect("crawl");
    close(journal).await;
    summary
}

/// Drops the last handle of a journal, waiting (up to 10 s) for handles still held by
/// the crawl's threads that are about to exit.
pub async fn close(journal: Arc<Journal>) {
    let mut journal = journal;
    for _ in 0..1000 {
        match Arc::try_unwrap(journal) {
            Ok(j) => {
                drop(j);
                return;
            }
            Err(shared) => {
                journal = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    panic!("the journal is still shared 10 s after the crawl returned");
}

/// The error kind and message of a page, panicking if it got a response.
pub fn error_of(journal: &Journal, url: &str) -> (webspool::journal::ErrorKind, String) {
    match page_of(journal, url).outcome {
        Outcome::Error { kind, message } => (kind, message),
        other => panic!("{url}: expected an error, got {other:?}"),
    }
}

/// The error kind of a page, panicking if it got a response.
pub fn kind_of(journal: &Journal, url: &str) -> webspool::journal::ErrorKind {
    error_of(journal, url).0
}

/// Version, final URL and decoded body length of a response.
pub fn response_of(meta: &PageMeta) -> (&str, &str, u64) {
    match &meta.outcome {
        Outcome::Response {
            version,
            final_url,
            body_len,
            ..
        } => (version, final_url, *body_len),
        Outcome::Error { kind, message } => panic!("expected a response, got {kind}: {message}"),
    }
}

/// A `Status::errors` map.
pub fn errors(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Whether no body is stored for a known URL.
pub fn no_body(journal: &Journal, url: &str) -> bool {
    let id = journal.find(url).unwrap().expect("url known");
    journal.body(id).unwrap().is_none()
}

/// Asserts that `started` is less than `most` seconds ago.
pub fn took(started: std::time::Instant, most: u64) {
    let took = started.elapsed();
    assert!(took < Duration::from_secs(most), "took {took:?}");
}

/// Peak resident set size of a running process (VmHWM), in kB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `sig` to a child process (SIGINT for Ctrl-C, SIGTERM).
pub fn signal(child: &std::process::Child, sig: i32) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child we started and have not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits (polling, up to `secs` seconds) until `done` holds; whether it did.
pub async fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
