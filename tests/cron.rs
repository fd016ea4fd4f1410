//! What a cron job, a newcomer's first commands and a run's summary see: a sync that
//! gives up on an unreachable MySQL with one line, `--quiet` that prints only warnings
//! and errors, flags that would do nothing refused as usage errors, no journal left by
//! a list that cannot be read, and summaries that count what the run did.

use std::time::{Duration, Instant};

use crate::cli::{crawl_list, on, run, status_json, stderr};
use crate::util::mysql::TestDb;
use crate::util::{self, server};

/// A MySQL URL where nothing listens.
fn unreachable_mysql() -> String {
    format!("mysql://127.0.0.1:{}/test", server::refused_port())
}

/// A site of `n` pages `/p/{i}` and a sitemap listing them by absolute URL.
async fn site_with_sitemap(n: usize) -> util::TestServer {
    util::TestServer::start_knowing_base(move |base, req| async move {
        match req.uri().path() {
            "/robots.txt" => server::reply(404, ""),
            "/sitemap.xml" => {
                let urls: String = (0..n)
                    .map(|i| format!("<url><loc>{base}/p/{i}</loc></url>"))
                    .collect();
                server::with_headers(
                    server::reply(200, format!("<urlset>{urls}</urlset>")),
                    &[("content-type", "application/xml")],
                )
            }
            path => server::with_headers(
                server::reply(200, format!("<title>{path}</title>")),
                &[("content-type", "text/html")],
            ),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_sync_gives_up_on_an_unreachable_mysql_in_one_line() {
    let server = site_with_sitemap(0).await;
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &[server.url("/a"), server.url("/b")]);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);

    let mysql = unreachable_mysql();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        on(
            &["sync", "--give-up-after", "2s", "--mysql", &mysql],
            &journal,
        )
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Loosely bounded: retried until the deadline, not for the default 5 minutes.
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: gave up syncing after 2s: mysql://127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.contains("the pages stay in the journal for the next sync"),
        "{err}"
    );
    assert_eq!(err.matches("refused").count(), 1, "the cause once: {err}");
    assert_eq!(status_json(&dir.path().join("j"))["pending_sync"], 2);
}

/// `crawl --sync` with MySQL down: the crawl is not held up, and at its end waits for
/// MySQL only up to `--give-up-after`, then prints its summary and the reason, exit 1,
/// with every page in the journal for a later `sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_sync_gives_up_at_its_end_and_keeps_every_page_for_a_later_sync() {
    let server = site_with_sitemap(0).await;
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<String> = (0..5).map(|i| server.url(&format!("/p/{i}"))).collect();
    let list = util::url_file(&dir, &pages);
    let journal = dir.path().join("j");
    let mysql = unreachable_mysql();
    let out = tokio::task::spawn_blocking({
        let (list, journal) = (list.clone(), journal.clone());
        move || {
            on(
                &[
                    "crawl",
                    "--urls",
                    list.to_str().unwrap(),
                    "--sync",
                    &mysql,
                    "--give-up-after",
                    "1s",
                ],
                &journal,
            )
        }
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("this run fetched 5, failed 0"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: gave up syncing after 1s: "),
        "{err}"
    );
    let status = status_json(&journal);
    assert_eq!(
        (status["fetched"].as_u64(), status["pending_sync"].as_u64()),
        (Some(5), Some(5))
    );

    let db = TestDb::new().await;
    let out = on(&["sync", "--quiet", "--mysql", &db.url], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_json(&journal)["pending_sync"], 0);
}

#[test]
fn give_up_after_is_refused_with_every() {
    let out = run(&[
        "sync",
        "--mysql",
        "mysql://127.0.0.1/db",
        "--every",
        "1m",
        "--give-up-after",
        "2m",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--give-up-after") && err.contains("--every"),
        "{err}"
    );
}

/// `--quiet` on each command that has it: no INFO line from any stage (schema
/// migration, sync's connection, progress) and no summary; warnings still show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_prints_warnings_and_errors_only() {
    let server = site_with_sitemap(0).await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &[server.url("/a"), "not a url".to_string()]);
    let journal = dir.path().join("j");
    let list = list.to_str().unwrap();
    let runs: [&[&str]; 5] = [
        &["crawl", "--quiet", "--urls", list, "--sync", &db.url],
        &["parse", "--quiet"],
        &["reparse", "--quiet"],
        &["recrawl", "--quiet", "--all", "--sync", &db.url],
        &["sync", "--quiet", "--mysql", &db.url],
    ];
    for (i, args) in runs.iter().enumerate() {
        let out = on(args, &journal);
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("INFO"), "{args:?}: {err}");
        if i == 0 {
            // The invalid line is a warning: it shows, and nothing else does.
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("WARN") && err.contains("skipped"), "{err}");
        } else {
            assert_eq!(err, "", "{args:?}");
        }
    }
    assert_eq!(status_json(&journal)["pending_sync"], 0);
}

/// Regression: `--include`, `--exclude`, `--max-depth` and `--max-pages` were taken and
/// ignored without `--follow` or `--sitemap`.
#[test]
fn flags_that_would_do_nothing_and_bad_patterns_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let journal = journal.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["crawl", "--urls", "-", "--include", "x"], "--include"),
        (&["crawl", "--urls", "-", "--exclude", "x"], "--exclude"),
        (&["crawl", "--urls", "-", "--max-depth", "2"], "--max-depth"),
        (&["crawl", "--urls", "-", "--max-pages", "9"], "--max-pages"),
        (&["recrawl", "--include", "x"], "--include"),
        (
            &[
                "crawl",
                "--urls",
                "-",
                "--follow",
                "same-host",
                "--exclude",
                "a(b",
            ],
            "invalid --exclude pattern `a(b`: unclosed group",
        ),
    ];
    for (args, said) in cases {
        let mut args = args.to_vec();
        args.extend(["--journal", journal]);
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap_or_default().contains(said),
            "{args:?}: {err}"
        );
        assert!(err.contains("Usage: webspool "), "{args:?}: {err}");
        assert!(
            !dir.path().join("j").exists(),
            "{args:?} created the journal"
        );
    }
}

#[test]
fn a_zero_timeout_is_refused_without_contradiction() {
    let out = run(&["crawl", "--urls", "-", "--timeout", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("must be more than 0"), "{err}");
    assert!(!err.contains("between 0"), "{err}");
}

/// Regression: a missing `--urls` file left an empty journal behind.
#[test]
fn a_url_list_that_cannot_be_read_leaves_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let missing = dir.path().join("missing.txt");
    for list in [missing.as_path(), dir.path()] {
        let out = on(&["crawl", "--urls", list.to_str().unwrap()], &journal);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with("error: cannot read the URL list "), "{err}");
        assert!(!journal.exists(), "{list:?}: {err}");
    }
}

/// Regression: a sitemap crawl of 31 pages reported `0 new URLs`; links refused by the
/// private-address guard were counted nowhere, and their host was reported down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_counts_discovered_urls_and_links_skipped_as_private_once() {
    let server = site_with_sitemap(30).await;
    let sitemap = server.url("/sitemap.xml");
    let dir = tempfile::tempdir().unwrap();

    let allowed = dir.path().join("allowed");
    let out = on(
        &["crawl", "--sitemap", &sitemap, "--allow-private"],
        &allowed,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("done: 31 new URLs (1 given, 30 found in sitemaps, feeds and links; "),
        "{err}"
    );
    assert!(err.contains("this run fetched 31, failed 0"), "{err}");
    assert!(!err.contains("private addresses"), "{err}");

    let guarded = dir.path().join("guarded");
    let out = on(&["crawl", "--sitemap", &sitemap], &guarded);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("done: 31 new URLs (1 given, 30 found"),
        "{err}"
    );
    assert_eq!(
        err.matches("30 links to private addresses skipped; --allow-private fetches them")
            .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("taken for down"), "{err}");
    assert_eq!(server.hits("/p/0"), 1, "fetched once, by the allowed crawl");
}
