//! The binary's command line: help, usage errors, exit codes, and clear errors for
//! journals that are not ours.

use std::process::{Command, Output};

use crate::util;

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(util::bin())
        .args(args)
        .output()
        .expect("run webspool")
}

/// A journal made by the binary from an empty URL list.
fn empty_journal(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let journal = dir.path().join("j");
    let out = run(&[
        "crawl",
        "--quiet",
        "--urls",
        "-",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    journal
}

/// Runs `command` on `journal` (`--journal` appended).
pub(crate) fn on(command: &[&str], journal: &std::path::Path) -> Output {
    let mut args = command.to_vec();
    args.extend(["--journal", journal.to_str().unwrap()]);
    run(&args)
}

/// `status --json` of `journal`, which must open.
pub(crate) fn status_json(journal: &std::path::Path) -> serde_json::Value {
    let out = on(&["status", "--json"], journal);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `crawl --quiet --urls list` into `journal`, which must succeed.
pub(crate) fn crawl_list(list: &std::path::Path, journal: &std::path::Path) {
    let out = on(
        &["crawl", "--quiet", "--urls", list.to_str().unwrap()],
        journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for sub in [&["--help"][..], &["crawl", "--help"], &["status", "--help"]] {
        let out = run(sub);
        assert!(out.status.success(), "{sub:?}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--"),
            "{sub:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["crawl"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&["crawl", "--urls", "x", "--concurrency", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Regression: `--user-agent` with a line break exited 1 (found when the fetcher was
/// built), and `--include` patterns, `--sync` and `--from-mysql` URLs were checked after
/// clap as well. Every bad flag value is a usage error (2), said before any work, naming
/// the flag and never repeating a value that may be a secret or hold line breaks.
#[test]
fn bad_flag_values_are_usage_errors_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let journal = journal.to_str().unwrap();
    let no_db = "mysql://root:hunter2@127.0.0.1";
    let cases: [(&[&str], &str); 8] = [
        (&["--urls", "-", "--follow", "same-planet,"], "--follow"),
        (
            &[
                "--urls",
                "-",
                "--follow",
                "same-host",
                "--include",
                "(unclosed",
            ],
            "include",
        ),
        (
            &["--urls", "-", "--follow", "same-host", "--no-parse"],
            "--no-parse",
        ),
        (&["--urls", "-", "--delay", "abc"], "--delay"),
        (
            &["--urls", "-", "--user-agent", "bot\nhunter2: yes"],
            "--user-agent",
        ),
        (
            &["--urls", "-", "--user-agent", "bot\u{7f}hunter2"],
            "--user-agent",
        ),
        (&["--urls", "-", "--sync", no_db], "--sync"),
        (
            &["--from-mysql", no_db, "--query", "SELECT 1"],
            "--from-mysql",
        ),
    ];
    for (flags, said) in cases {
        let mut args = vec!["crawl", "--journal", journal];
        args.extend_from_slice(flags);
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(said), "{flags:?}: {err}");
        assert!(!err.contains("hunter2"), "{flags:?}: {err}");
        assert!(
            !dir.path().join("j").exists(),
            "{flags:?} created the journal"
        );
    }
    let out = run(&["sync", "--mysql", no_db, "--journal", journal]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--mysql") && !err.contains("hunter2"), "{err}");
}

/// Regression: `WEBSPOOL_JOURNAL=` (set, empty) said that `--journal` needs a value.
/// An empty variable is an unset one: the default journal, `./webspool.journal`.
#[test]
fn an_empty_webspool_journal_variable_means_the_default_journal() {
    let dir = tempfile::tempdir().unwrap();
    let in_dir = |args: &[&str]| {
        Command::new(util::bin())
            .args(args)
            .current_dir(dir.path())
            .env("WEBSPOOL_JOURNAL", "")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run webspool")
    };
    let out = in_dir(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no webspool journal at webspool.journal"),
        "{}",
        stderr(&out)
    );
    let out = in_dir(&["crawl", "--quiet", "--urls", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("webspool.journal").is_dir());
    let out = in_dir(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `WEBSPOOL_MYSQL_URL=` (set, empty) is no URL: the usual usage error for a missing
/// `--mysql`, not a URL error.
#[test]
fn an_empty_mysql_url_variable_means_no_url() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(&dir);
    let out = Command::new(util::bin())
        .args(["sync", "--journal"])
        .arg(&journal)
        .env("WEBSPOOL_MYSQL_URL", "")
        .output()
        .expect("run webspool");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("required") && err.contains("--mysql"), "{err}");
}

/// Regression: the `status` text showed `too_many_redirects1`, the kind against its
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_separates_too_many_redirects_from_its_count() {
    let server = util::TestServer::start(|req| async move {
        match req.uri().path() {
            "/loop" => util::server::redirect(302, "/loop"),
            _ => util::server::reply(404, ""),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &[server.url("/loop")]);
    let journal = dir.path().join("j");
    let out = tokio::task::spawn_blocking(move || {
        let crawl = Command::new(util::bin())
            .args(["crawl", "--quiet", "--max-redirects", "2", "--urls"])
            .arg(&list)
            .arg("--journal")
            .arg(&journal)
            .output()
            .expect("run webspool");
        assert!(crawl.status.success(), "{}", stderr(&crawl));
        run(&["status", "--journal", journal.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|line| line.split_whitespace().eq(["too_many_redirects", "1"])),
        "{text}"
    );
}

#[test]
fn a_missing_url_list_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = run(&[
        "crawl",
        "--quiet",
        "--urls",
        "/nonexistent/list.txt",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read the URL list /nonexistent/list.txt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_into_a_closed_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(&dir);
    for flags in [&["--json"][..], &[]] {
        // The reading end is closed before webspool writes: as with `status | head -0`.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(util::bin())
            .args(["status", "--journal", journal.to_str().unwrap()])
            .args(flags)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run webspool");
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{flags:?}: {}", stderr(&out));
    }
}

#[test]
fn foreign_directories_and_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = run(&["status", "--journal", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a webspool journal"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );

    let file = dir.path().join("notes.txt");
    let out = run(&["status", "--journal", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a webspool journal"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert("format", "webspool-journal").unwrap();
        db.insert("version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let out = run(&["status", "--journal", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("format version 99"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_journal_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(&dir);
    // Overwrite the database file with garbage.
    let db = journal.join("db");
    let len = std::fs::metadata(&db).unwrap().len().max(4096) as usize;
    std::fs::write(&db, vec![0xA5; len]).unwrap();
    let out = run(&["status", "--journal", journal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(stderr(&out).contains("journal"), "{}", stderr(&out));
}

#[test]
fn a_journal_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let _held = webspool::journal::Journal::open(&path).unwrap();
    let out = run(&["status", "--journal", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
}

#[test]
fn status_json_has_the_contract_keys() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(&dir);
    let out = run(&["status", "--json", "--journal", journal.to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "urls",
        "pending_fetch",
        "retry_waiting",
        "fetched",
        "failed",
        "pending_parse",
        "parsed",
        "pending_sync",
        "raw_bytes",
        "disk_bytes",
        "versions",
        "version_bytes",
        "errors",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["urls"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_from_stdin_are_crawled_and_bad_lines_reported_with_their_number() {
    use std::io::Write;
    let server = util::TestServer::start(|_req| async { util::server::reply(200, "hi") }).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let input = format!(
        "# comment\n{}\n\nnot a url\n{}\n{}\n",
        server.url("/a"),
        server.url("/b"),
        server.url("/a#again")
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(util::bin())
            .args(["crawl", "--urls", "-", "--journal"])
            .arg(&journal)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("-:4: skipped \"not a url\""), "{err}");
    assert!(
        err.contains("2 new URLs (1 duplicate, 1 invalid line)"),
        "{err}"
    );
    assert_eq!((server.hits("/a"), server.hits("/b")), (1, 1));
}
