//! One writer, many users: while a crawl holds a journal, other processes read its
//! status, run sync passes and verify through the crawl's socket; conflicting writers
//! are refused naming it; a killed holder's socket blocks nothing; a read-only journal
//! is refused in one line.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use mysql_async::prelude::*;

use crate::cli::{on, status_json, stderr};
use crate::util::mysql::TestDb;
use crate::util::server::{slow_server, Gauge};
use crate::util::tmpfs::Tmpfs;
use crate::util::{self, eventually};

/// A secret in the holder's command line, which no other process may be shown.
const SECRET: &str = "hunter2";

/// A crawl of `pages` URLs of `site` (100 ms each), two at a time, so that it runs for
/// a while; its command line holds a `--header` secret and, with `sync`, a MySQL URL.
pub(crate) fn start_crawl(
    site: &util::TestServer,
    dir: &Path,
    pages: usize,
    sync: Option<&str>,
) -> Child {
    let lines: Vec<String> = (0..pages).map(|i| site.url(&format!("/p{i}"))).collect();
    let list = dir.join("list.txt");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let mut command = Command::new(util::bin());
    command
        .args(["crawl", "--quiet", "--ignore-robots", "--concurrency", "2"])
        .args(["--header", &format!("Authorization: Bearer {SECRET}")])
        .arg("--urls")
        .arg(&list)
        .arg("--journal")
        .arg(dir.join("j"));
    if let Some(url) = sync {
        command.args(["--sync", url]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("crawl.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Runs `command` on `journal` off the async workers (the test's servers run there).
pub(crate) async fn on_journal(command: &[&str], journal: &Path) -> Output {
    let (command, journal): (Vec<String>, PathBuf) = (
        command.iter().map(|s| s.to_string()).collect(),
        journal.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        on(&command, &journal)
    })
    .await
    .unwrap()
}

/// Waits until the crawl has fetched something and serves its socket.
pub(crate) async fn serving(journal: &Path) {
    let socket = journal.join(webspool::holder::SOCKET_FILE);
    assert!(
        eventually(30, || socket.exists()).await,
        "no socket at {}",
        socket.display()
    );
}

pub(crate) async fn wait(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

async fn pages_in(db: &TestDb) -> (u64, u64) {
    let mut conn = db.conn().await;
    conn.query_first("SELECT COUNT(*), COUNT(DISTINCT url) FROM pages")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sync_and_verify_from_other_processes_during_a_crawl() {
    const PAGES: usize = 300;
    let site = slow_server([Gauge::default(), Gauge::default()]).await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let crawl = start_crawl(&site, dir.path(), PAGES, None);
    serving(&journal).await;

    // The socket is the owner's only.
    let meta = std::fs::metadata(journal.join(webspool::holder::SOCKET_FILE)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // status --json: live counters from the crawl, `due` included.
    let live = |key: &str, status: &serde_json::Value| status[key].as_u64().unwrap();
    assert!(
        eventually(30, || {
            let status = status_json(&journal);
            // Parsed, so that the sync below has at least that many pages queued.
            live("urls", &status) == PAGES as u64 && live("parsed", &status) >= 10
        })
        .await,
        "the crawl added or parsed nothing"
    );
    let later = status_json(&journal);
    assert!(later["due"].is_u64(), "{later}");
    assert!(
        live("fetched", &later) < PAGES as u64,
        "the crawl ended too soon: {later}"
    );
    let text = on_journal(&["status"], &journal).await;
    assert!(text.status.success(), "{}", stderr(&text));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.starts_with("journal ") && text.contains("\nfetched "),
        "{text}"
    );

    // A one-shot sync from cron, run by the crawl.
    let out = on_journal(&["sync", "--mysql", &db.url], &journal).await;
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let line = said.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("done: ") && line.contains(" pages synced to mysql://***@"),
        "{said}"
    );
    let synced: u64 = line["done: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(synced >= 10, "{said}");
    let (rows, _) = pages_in(&db).await;
    assert_eq!(rows, synced, "{said}");

    // verify (read-only) runs in the crawl too.
    let out = on_journal(&["verify"], &journal).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("clean"), "{}", stderr(&out));

    // Writers that would conflict are refused, naming the crawl without its secrets.
    let pid = crawl.id().to_string();
    for command in [
        &["crawl", "--urls", "-"][..],
        &["parse"],
        &["compact"],
        &["verify", "--repair"],
        &["sync", "--every", "1m", "--mysql", &db.url],
    ] {
        let out = on_journal(command, &journal).await;
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.contains(&format!(
                "in use by webspool process {pid} (webspool crawl "
            )) && said.contains("Authorization: ***")
                && !said.contains(SECRET),
            "{command:?}: {said}"
        );
    }
    assert!(
        crate::util::vm_hwm_kb(crawl.id()).is_some(),
        "the crawl ended before the checks: they may not have gone through it"
    );

    let status = wait(crawl).await;
    let log = std::fs::read_to_string(dir.path().join("crawl.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!journal.join(webspool::holder::SOCKET_FILE).exists());
    // The final sync, from this process alone: one row per page.
    let out = on_journal(&["sync", "--quiet", "--mysql", &db.url], &journal).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pages_in(&db).await, (PAGES as u64, PAGES as u64));
    assert_eq!(live("pending_sync", &status_json(&journal)), 0);
}

/// `crawl --sync` syncs as it goes; a cron sync to the same database meanwhile joins
/// its pass instead of racing it, and MySQL ends with one row per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_during_crawl_sync_joins_its_pass() {
    const PAGES: usize = 80;
    let site = slow_server([Gauge::default(), Gauge::default()]).await;
    let db = TestDb::new().await;
    let other = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let crawl = start_crawl(&site, dir.path(), PAGES, Some(&db.url));
    serving(&journal).await;
    let live = |key: &str| status_json(&journal)[key].as_u64().unwrap();
    assert!(eventually(30, || live("parsed") >= 5).await);

    let out = on_journal(&["sync", "--mysql", &db.url], &journal).await;
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(" pages synced to mysql://***@"), "{said}");
    // Everything parsed before the request is in MySQL when it returns.
    let (rows, distinct) = pages_in(&db).await;
    assert!(rows >= 5 && rows == distinct, "{rows} {distinct}: {said}");

    // A pass to another database would take pages from the same queue.
    let out = on_journal(&["sync", "--quiet", "--mysql", &other.url], &journal).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is syncing it to mysql://***@"),
        "{}",
        stderr(&out)
    );

    let status = wait(crawl).await;
    let log = std::fs::read_to_string(dir.path().join("crawl.log")).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(pages_in(&db).await, (PAGES as u64, PAGES as u64));
}

/// A holder killed with SIGKILL leaves its socket behind: nobody listens there, so
/// `status` and the next crawl open the journal themselves; a stopped holder (alive,
/// not answering) is reported within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_leaves_a_socket_that_blocks_nothing() {
    let site = slow_server([Gauge::default(), Gauge::default()]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let crawl = start_crawl(&site, dir.path(), 60, None);
    serving(&journal).await;

    util::signal(&crawl, libc::SIGSTOP);
    let out = on_journal(&["status"], &journal).await;
    util::signal(&crawl, libc::SIGCONT);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "in use by webspool process {}, which did not answer",
            crawl.id()
        )),
        "{}",
        stderr(&out)
    );

    util::signal(&crawl, libc::SIGKILL);
    wait(crawl).await;
    let socket = journal.join(webspool::holder::SOCKET_FILE);
    assert!(socket.exists(), "SIGKILL leaves the socket file");
    let fetched = status_json(&journal)["fetched"].as_u64().unwrap();
    assert!(fetched < 60, "{fetched}");

    let list = dir.path().join("list.txt");
    let resume = [
        "crawl",
        "--quiet",
        "--ignore-robots",
        "--urls",
        list.to_str().unwrap(),
    ];
    let out = on_journal(&resume, &journal).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_json(&journal)["fetched"].as_u64(), Some(60));
    assert!(
        !socket.exists(),
        "the next holder replaced it, then removed it"
    );
}

/// A journal on a read-only file system: one line naming it and why, exit 1. (Tests
/// run as root, for whom permissions do not stop writes: a tmpfs remounted read-only
/// does.)
#[test]
fn a_read_only_journal_is_refused_in_one_line() {
    let disk = Tmpfs::mount(16);
    let journal = disk.path().join("j");
    let out = on(
        &["crawl", "--quiet", "--urls", "-", "--min-free", "0"],
        &journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    disk.read_only();
    for command in [
        &["status"][..],
        &["status", "--json"],
        &["verify"],
        &["parse"],
    ] {
        let out = on(command, &journal);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{command:?}: {said}");
        assert!(
            said.starts_with(&format!(
                "error: journal {}: it is on a read-only file system",
                journal.display()
            )) && said.contains("copy the directory"),
            "{command:?}: {said}"
        );
    }
}
