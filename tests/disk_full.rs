//! A full disk. The real binary crawls pages of random bytes (which zstd cannot shrink)
//! into a small tmpfs the test mounts (CI runs as root): it stops cleanly at the
//! `--min-free` watermark, or at ENOSPC itself with `--min-free 0`; `status` opens the
//! journal on the full disk; and the same crawl, given room again (the tmpfs grown, or
//! the journal copied to a bigger disk), completes with every page it reported fetched
//! before, byte for byte, never fetched again. The library's journal is also run out
//! of space in each of its writers: sled's log, the marker file, the credentials file.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use webspool::journal::{DiskFull, Journal, JournalError, NewUrl};
use webspool::urls::Userinfo;

use crate::cli::{run, stderr};
use crate::util::tmpfs::Tmpfs;
use crate::util::{self, reported, server, TestServer};

/// 600 pages of 64 KiB: 37.5 MiB, more than the tmpfs holds.
const PAGES: usize = 600;
const PAGE_BYTES: usize = 64 * 1024;
const TMPFS_MIB: u64 = 24;
const EXIT_DISK_FULL: i32 = 75;

/// The body of page `i`: random bytes (splitmix64), the same on every request.
fn body(i: usize) -> Vec<u8> {
    let mut state = i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(PAGE_BYTES);
    while out.len() < PAGE_BYTES {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

async fn site() -> TestServer {
    TestServer::start(|req| async move {
        let page = req
            .uri()
            .path()
            .strip_prefix("/p/")
            .and_then(|n| n.parse().ok());
        match page {
            Some(i) => server::reply(200, body(i)),
            None => server::reply(404, ""),
        }
    })
    .await
}

/// The site's URL list, written in `dir`.
fn url_list(site: &TestServer, dir: &tempfile::TempDir) -> (Vec<String>, std::path::PathBuf) {
    let urls: Vec<String> = (0..PAGES).map(|i| site.url(&format!("/p/{i}"))).collect();
    let list = util::url_file(dir, &urls);
    (urls, list)
}

/// Runs `webspool crawl` with `--min-free min_free`, logging every committed page.
async fn crawl(list: &Path, journal: &Path, min_free: &str) -> Output {
    let mut command = Command::new(util::bin());
    command
        .args(["crawl", "--quiet", "--concurrency", "8", "--per-host", "8"])
        .args(["--min-free", min_free, "--urls"])
        .arg(list)
        .arg("--journal")
        .arg(journal)
        .env("WEBSPOOL_LOG", "webspool::committed=debug,webspool=info");
    tokio::task::spawn_blocking(move || command.output().expect("run webspool"))
        .await
        .expect("join")
}

/// Nothing a user should never see: a panic, or an error in Rust's Debug format.
fn assert_clean(what: &str, err: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "Os {", "kind: ", "Error {"] {
        assert!(!err.contains(bad), "{what} printed `{bad}`:\n{err}");
    }
}

/// `status --json` of the journal: it must open.
fn status(journal: &Path) -> serde_json::Value {
    let out = run(&["status", "--json", "--journal", journal.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "status failed: {err}");
    assert_clean("status", &err);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Every page of the site is in the journal with its exact body, and every page
/// reported fetched before was requested once only: it was kept, not fetched again.
fn assert_complete(journal: &Path, urls: &[String], site: &TestServer, before: &[String]) {
    let journal = Journal::open_existing(journal).expect("open the journal");
    let s = journal.status().expect("status");
    assert_eq!(
        (s.urls, s.fetched, s.failed),
        (PAGES as u64, PAGES as u64, 0)
    );
    for (i, url) in urls.iter().enumerate() {
        assert_eq!(util::body_of(&journal, url), body(i), "{url}");
    }
    for url in before {
        let path = url.rsplit_once(&site.addr.to_string()).map_or("", |p| p.1);
        assert_eq!(
            site.hits(path),
            1,
            "{url} was reported fetched, then fetched again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_stops_at_the_watermark_and_resumes_once_there_is_room() {
    let site = site().await;
    let dir = tempfile::tempdir().unwrap();
    let (urls, list) = url_list(&site, &dir);
    let disk = Tmpfs::mount(TMPFS_MIB);
    let journal = disk.path().join("j");

    let out = crawl(&list, &journal, "8MiB").await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_DISK_FULL), "{err}");
    assert_clean("crawl", &err);
    let error = err
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert!(
        error.starts_with("error: disk full: ")
            && error.ends_with(&format!(
                " free under {} (--min-free 8 MiB)",
                journal.display()
            )),
        "{error}"
    );
    assert!(err.contains("stopped (disk full)"), "{err}");
    assert!(err.contains("then run the same command again"), "{err}");
    assert!(!err.contains("no space left"), "{err}");
    // It stopped before the disk filled up (the free space is looked at every 100 ms, so
    // a loaded machine may write a few MiB past the watermark first).
    assert!(disk.free() > 1 << 20, "{} bytes left", disk.free());
    let before = reported(&err);
    assert!(
        !before.is_empty() && before.len() < PAGES,
        "{} reported",
        before.len()
    );
    assert_eq!(status(&journal)["fetched"], before.len() as u64);

    disk.resize(4 * TMPFS_MIB);
    let out = crawl(&list, &journal, "8MiB").await;
    assert!(out.status.success(), "resumed crawl: {}", stderr(&out));
    assert_complete(&journal, &urls, &site, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_that_fills_the_disk_stops_cleanly_and_the_copied_journal_resumes() {
    let site = site().await;
    let dir = tempfile::tempdir().unwrap();
    let (urls, list) = url_list(&site, &dir);
    let disk = Tmpfs::mount(TMPFS_MIB);
    let journal = disk.path().join("j");

    let out = crawl(&list, &journal, "0").await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_DISK_FULL), "{err}");
    assert_clean("crawl", &err);
    assert!(
        err.contains(&format!(
            "error: disk full: no space left under {} (writing ",
            journal.display()
        )),
        "{err}"
    );
    assert!(err.contains("then run the same command again"), "{err}");
    let before = reported(&err);
    assert!(!before.is_empty(), "no page was reported fetched:\n{err}");

    // Another process takes whatever room is left: `status` still opens the journal.
    disk.fill();
    assert!(disk.free() < 64 * 1024, "{} bytes left", disk.free());
    let shown = status(&journal);
    assert!(
        shown["fetched"].as_u64() >= Some(before.len() as u64),
        "{shown}"
    );

    // Moved to a bigger disk, the same crawl resumes and loses nothing.
    let moved = dir.path().join("moved");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&journal)
        .arg(&moved)
        .status()
        .unwrap();
    assert!(copied.success());
    let out = crawl(&list, &moved, "0").await;
    assert!(out.status.success(), "resumed crawl: {}", stderr(&out));
    assert_complete(&moved, &urls, &site, &before);
}

/// sled's log, the marker file and the credentials file, each out of space: a clear
/// error that names the journal, nothing half written, later writes refused, no panic
/// or hang when closing, and the journal opens on the full disk with everything
/// flushed before.
#[test]
fn each_journal_writer_out_of_space_fails_cleanly_and_keeps_what_was_flushed() {
    let disk = Tmpfs::mount(16);
    let path = disk.path().join("j");
    let journal = Journal::open(&path).expect("create the journal");
    assert!(path.join("webspool-reserve").is_file(), "no reserve");
    let name = |i: usize| format!("http://h{}.test/a-rather-long-path/to/page/{i}", i % 7);
    let batch = |from: usize| -> Vec<NewUrl> {
        (from..from + 64)
            .map(|i| NewUrl::given(&url::Url::parse(&name(i)).unwrap(), None))
            .collect()
    };
    journal.add_urls(&batch(0)).unwrap();
    journal.checkpoint().unwrap();
    let marker = std::fs::read(path.join("webspool-journal")).unwrap();
    let filler = disk.fill();

    let is_no_space = |e: &JournalError| matches!(e, JournalError::DiskFull(DiskFull::NoSpace { dir, .. }) if *dir == path);
    let given = url::Url::parse("https://given.test/").unwrap();
    let err = journal
        .grants()
        .grant(&given, Some(&Userinfo::new("user:s3cret".into())))
        .expect_err("credentials written on a full disk");
    assert!(is_no_space(&err), "{err}");
    assert_eq!(
        std::fs::read(path.join("credentials")).unwrap_or_default(),
        b"",
        "half a credentials line was left"
    );

    let err = journal
        .checkpoint()
        .expect_err("marker written on a full disk");
    assert!(is_no_space(&err), "{err}");
    assert_eq!(
        std::fs::read(path.join("webspool-journal")).unwrap(),
        marker
    );
    assert!(!path.join("webspool-journal.new").exists());

    let mut flushed = 64;
    let err = loop {
        let result = journal
            .add_urls(&batch(flushed))
            .and_then(|_| journal.flush_blocking());
        match result {
            Ok(()) => flushed += 64,
            Err(e) => break e,
        }
        assert!(flushed < 1_000_000, "sled never ran out of space");
    };
    assert!(is_no_space(&err), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "disk full: no space left under {}",
            path.display()
        )),
        "{shown}"
    );
    assert_clean("the error", &shown);
    let again = journal.add_urls(&batch(flushed)).unwrap_err();
    assert!(is_no_space(&again), "a write after a full disk: {again}");
    // sled writes even for a transaction that only reads (a batch marker in its log):
    // the counters are refused too, with the same words.
    let counters = journal.status().expect_err("status after sled stopped");
    assert!(is_no_space(&counters), "{counters}");

    // Closing writes what sled still holds: on a full disk, neither a panic nor a hang.
    let (tx, rx) = std::sync::mpsc::channel();
    let closing = std::thread::spawn(move || {
        drop(journal);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("closing the journal hung");
    closing.join().expect("closing the journal panicked");

    // On the disk still full, the reserve makes room for sled to open it.
    let journal = Journal::open_existing(&path).expect("open on a full disk");
    assert!(!path.join("webspool-reserve").exists());
    for i in 0..flushed {
        assert!(
            journal.find(&name(i)).unwrap().is_some(),
            "{} lost",
            name(i)
        );
    }
    drop(journal);

    // Room again: the next open keeps a reserve again.
    std::fs::remove_file(filler).unwrap();
    let journal = Journal::open_existing(&path).expect("open with room");
    assert!(path.join("webspool-reserve").is_file());
    assert!(journal.status().unwrap().urls >= flushed as u64);
}
