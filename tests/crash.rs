//! Crash test: the real binary, SIGKILLed mid-crawl again and again, then restarted.
//! Every page it reported fetched must survive, every URL must end fetched, and the
//! refetches must stay within the in-flight window of each kill.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use webspool::journal::{Journal, Outcome};
use webspool::pipeline::max_unflushed;

use crate::util::{self, reported, server};

const URLS: usize = 4000;
const KILLS: usize = 5;
const CONCURRENCY: usize = 16;

fn body_for(path: &str) -> String {
    format!(
        "<html><title>{path}</title><body>{}</body></html>",
        path.repeat(40)
    )
}

fn run_binary(
    list: &std::path::Path,
    journal: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    let log_file = std::fs::File::create(log).expect("log file");
    Command::new(util::bin())
        .args([
            "crawl",
            "--quiet",
            "--concurrency",
            &CONCURRENCY.to_string(),
        ])
        .args(["--per-host", &CONCURRENCY.to_string()])
        .arg("--urls")
        .arg(list)
        .arg("--journal")
        .arg(journal)
        .env("WEBSPOOL_LOG", "webspool::committed=debug,webspool=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start webspool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_reported_and_refetches_only_the_in_flight() {
    let server = util::TestServer::start(|req| async move {
        let path = req.uri().path().to_string();
        let n: u64 = path
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(5 + n % 20)).await;
        server::reply(200, body_for(&path))
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = (0..URLS).map(|i| server.url(&format!("/p/{i}"))).collect();
    let list = util::url_file(&dir, &lines);
    let journal_dir = dir.path().join("journal");
    let log = dir.path().join("stderr.log");

    let mut ever_reported: HashSet<String> = HashSet::new();
    let mut kills = 0;
    for round in 0..KILLS {
        let mut child = run_binary(&list, &journal_dir, &log);
        // Kill once this run has reported pages, at a different moment each round:
        // a fixed delay would kill a slow start (a loaded machine) before anything.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20)
            && reported(&std::fs::read_to_string(&log).unwrap_or_default()).is_empty()
            && child.try_wait().expect("poll child").is_none()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + 100 * round as u64)).await;
        if child.try_wait().expect("poll child").is_some() {
            break; // finished before the kill: nothing more to crash
        }
        // SIGKILL: no chance to flush or clean up.
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        kills += 1;
        let stderr = std::fs::read_to_string(&log).expect("read log");
        let now_reported = reported(&stderr);
        ever_reported.extend(now_reported);

        let journal = Journal::open(&journal_dir).expect("reopen after kill -9");
        for url in &ever_reported {
            let id = journal
                .find(url)
                .expect("read")
                .expect("reported URL known");
            assert!(
                journal.page(id).expect("read").is_some(),
                "round {round}: {url} was reported fetched but is not in the journal after kill -9"
            );
        }
    }
    assert!(
        kills >= 3,
        "the crawl finished too fast to be killed enough ({kills} kills)"
    );

    let mut child = run_binary(&list, &journal_dir, &log);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let stderr = std::fs::read_to_string(&log).expect("read log");
    assert!(status.success(), "final run failed: {status:?}\n{stderr}");

    let journal = Journal::open(&journal_dir).expect("open");
    let s = journal.status().expect("status");
    assert_eq!(
        (s.urls, s.fetched, s.failed, s.pending_fetch),
        (URLS as u64, URLS as u64, 0, 0)
    );
    for (i, url) in lines.iter().enumerate() {
        let id = journal.find(url).expect("read").expect("known");
        let page = journal.page(id).expect("read").expect("page");
        assert!(
            matches!(page.outcome, Outcome::Response { status: 200, .. }),
            "{url}"
        );
        let body = journal.body(id).expect("read").expect("body");
        assert_eq!(body, body_for(&format!("/p/{i}")).into_bytes(), "{url}");
    }

    let hits = server.all_hits();
    let refetches: u64 = (0..URLS)
        .map(|i| {
            let n = hits.get(&format!("/p/{i}")).copied().unwrap_or(0);
            assert!(n >= 1, "/p/{i} was never requested");
            n - 1
        })
        .sum();
    let bound = (kills * max_unflushed(CONCURRENCY)) as u64;
    eprintln!(
        "{kills} kills, {} pages reported fetched before a kill, {refetches} refetches (bound {bound})",
        ever_reported.len()
    );
    assert!(
        !ever_reported.is_empty(),
        "no page was reported fetched before a kill"
    );
    assert!(
        refetches <= bound,
        "{refetches} refetches after {kills} kills; the in-flight window allows {bound}"
    );
}

/// Starts a crawl of 400 slow pages and sends it one SIGINT once it is under way.
async fn interrupted_crawl() -> (util::TestServer, tempfile::TempDir, std::process::Child) {
    let server = slow_site().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = (0..400).map(|i| server.url(&format!("/p/{i}"))).collect();
    let list = util::url_file(&dir, &lines);
    let child = run_binary(
        &list,
        &dir.path().join("journal"),
        &dir.path().join("stderr.log"),
    );
    // Under way: the first pages are being served (each takes 2 s).
    while pages_requested(&server) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    util::signal(&child, libc::SIGINT);
    (server, dir, child)
}

/// Pages take 2 s each; robots.txt (none) is answered at once.
async fn slow_site() -> util::TestServer {
    util::TestServer::start(|req| async move {
        if req.uri().path() == "/robots.txt" {
            return server::reply(404, "");
        }
        tokio::time::sleep(Duration::from_millis(2000)).await;
        server::reply(200, body_for(req.uri().path()))
    })
    .await
}

/// Pages requested from a server, robots.txt left out.
fn pages_requested(server: &util::TestServer) -> u64 {
    let hits = server.all_hits();
    hits.iter()
        .filter(|(path, _)| *path != "/robots.txt")
        .map(|(_, n)| n)
        .sum()
}

async fn wait_child(mut child: std::process::Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_in_flight_pages_then_resume_completes() {
    let (server, dir, child) = interrupted_crawl().await;
    let (list, journal_dir, log) = (
        dir.path().join("urls.txt"),
        dir.path().join("journal"),
        dir.path().join("stderr.log"),
    );
    let status = wait_child(child).await;
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    let requested = pages_requested(&server);
    let journal = Journal::open(&journal_dir).expect("open");
    let s = journal.status().expect("status");
    // Every request the server saw was allowed to finish and was committed.
    assert_eq!(s.fetched, requested, "{stderr}");
    assert!(s.fetched > 0 && s.pending_fetch > 0, "{s:?}");
    assert_eq!(reported(&stderr).len() as u64, s.fetched);
    drop(journal);

    let status = wait_child(run_binary(&list, &journal_dir, &log)).await;
    assert!(status.success());
    let journal = Journal::open(&journal_dir).expect("open");
    assert_eq!(journal.status().expect("status").fetched, 400);
    let hits = server.all_hits();
    assert!(
        hits.values().all(|n| *n == 1),
        "a page was fetched twice after a clean stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_and_loses_nothing_reported() {
    let (_server, dir, child) = interrupted_crawl().await;
    let (journal_dir, log) = (dir.path().join("journal"), dir.path().join("stderr.log"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    util::signal(&child, libc::SIGINT);
    let started = std::time::Instant::now();
    let status = wait_child(child).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "second Ctrl-C did not exit at once"
    );
    assert_eq!(status.code(), Some(130));
    let stderr = std::fs::read_to_string(&log).expect("log");
    let journal = Journal::open(&journal_dir).expect("open");
    for url in reported(&stderr) {
        let id = journal.find(&url).expect("read").expect("known");
        assert!(journal.page(id).expect("read").is_some(), "{url} lost");
    }
}
