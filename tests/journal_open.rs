//! Opening a journal with the real binary: only `crawl` creates one; the other commands
//! refuse a path without a journal and create nothing; paths that cannot hold one are
//! named with what is wrong; a journal that lost its records is reported as damaged,
//! never shown as an empty journal, and left as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cli::{run, stderr};
use crate::util;

/// Every command that needs an existing journal, with its other required flags.
const READERS: [&[&str]; 6] = [
    &["status"],
    &["verify"],
    &["compact"],
    &["parse"],
    &["reparse"],
    &["sync", "--mysql", "mysql://root@127.0.0.1:1/nothing"],
];

fn with_journal(command: &[&str], journal: &Path) -> Output {
    let mut args = command.to_vec();
    args.extend(["--journal", journal.to_str().unwrap()]);
    run(&args)
}

/// Regression: `status --journal DIR` on an empty directory created a journal there and
/// exited 0.
#[test]
fn commands_other_than_crawl_refuse_a_missing_or_empty_journal_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for command in READERS {
        let out = with_journal(command, &missing);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(
            err.contains(&format!(
                "no webspool journal at {} (run `webspool crawl` to create one)",
                missing.display()
            )),
            "{command:?}: {err}"
        );
        assert!(
            !missing.exists(),
            "{command:?} created {}",
            missing.display()
        );

        let out = with_journal(command, &empty);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(
            err.contains("no webspool journal at") && err.contains("the directory is empty"),
            "{command:?}: {err}"
        );
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{command:?}");
    }
    // crawl creates one in the empty directory, after which the others open it.
    let out = Command::new(util::bin())
        .args(["crawl", "--quiet", "--urls", "-", "--journal"])
        .arg(&empty)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for command in &READERS[..4] {
        let out = with_journal(command, &empty);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    }
}

/// Regression: a dangling symbolic link as `--journal` said `File exists (os error 17)`.
#[test]
fn a_dangling_symlink_as_journal_is_named_with_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gone");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let crawl: &[&str] = &["crawl", "--quiet", "--urls", "-"];
    for command in [crawl, &["status"]] {
        let out = with_journal(command, &link);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(
            err.contains(&format!(
                "{}: it is a symbolic link to {}, which does not exist",
                link.display(),
                target.display()
            )),
            "{command:?}: {err}"
        );
        assert!(!target.exists(), "{command:?}");
    }
}

/// Crawls three pages of a loopback server into a new journal at `dir/j` with the
/// binary.
async fn crawled_journal(dir: &tempfile::TempDir) -> (PathBuf, PathBuf, util::TestServer) {
    let server = util::TestServer::start(|req| async move {
        util::server::reply(200, format!("<title>{}</title>", req.uri().path()))
    })
    .await;
    let list = util::url_file(dir, &["/a", "/b", "/c"].map(|p| server.url(p)));
    let journal = dir.path().join("j");
    let (list_, journal_) = (list.clone(), journal.clone());
    let out = tokio::task::spawn_blocking(move || crawl(&list_, &journal_))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (journal, list, server)
}

fn crawl(list: &Path, journal: &Path) -> Output {
    Command::new(util::bin())
        .args(["crawl", "--quiet", "--urls"])
        .arg(list)
        .arg("--journal")
        .arg(journal)
        .output()
        .expect("run webspool")
}

/// Every file under `dir` and its contents.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(contents(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

/// sled's snapshot files in a journal: `snap.` and the log position it covers, in hex.
fn snapshots(journal: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(journal)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("snap."))
        })
        .collect()
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    assert!(
        at < bytes.len(),
        "{} has {} bytes",
        file.display(),
        bytes.len()
    );
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes).unwrap();
}

/// Regression: with sled's snapshot file gone and one damaged byte in its database
/// file, the journal opened as an empty one (`status`: 0 URLs, exit 0), sled having
/// cut its log at the damage. Now it is refused before sled opens it, and no file in
/// it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_without_its_snapshot_is_damaged_and_left_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, list, _server) = crawled_journal(&dir).await;
    let snaps = snapshots(&journal);
    assert!(
        !snaps.is_empty(),
        "a journal has a snapshot from its creation"
    );
    for snap in snaps {
        std::fs::remove_file(snap).unwrap();
    }
    flip_byte(&journal.join("db"), 100);
    let before = contents(&journal);
    let status = with_journal(&["status"], &journal);
    let crawl = tokio::task::spawn_blocking(move || crawl(&list, &journal))
        .await
        .unwrap();
    refused_as_damaged([status, crawl], "snapshot file (`snap.*`) is missing");
    assert!(contents(&dir.path().join("j")) == before, "a file changed");
}

/// Each run exited 1 saying the journal is damaged and why, and printed nothing else.
fn refused_as_damaged(outs: [Output; 2], why: &str) {
    for out in outs {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("is damaged") && err.contains(why), "{err}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// A damaged byte in the part of sled's log after its snapshot: sled cuts the log
/// there when it opens the database (that much it writes), and would show what is
/// left, here a journal with none of its pages. The marker file says what the journal
/// held when last closed, so the journal is refused as damaged instead, and webspool
/// does not go on to cut the page bodies the lost records pointed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_whose_log_lost_its_records_is_damaged_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, list, _server) = crawled_journal(&dir).await;
    let snap = snapshots(&journal).pop().expect("a snapshot");
    let name = snap.file_name().unwrap().to_string_lossy().into_owned();
    // The snapshot covers the log up to this position; the crawl's records follow it.
    // (A small journal has one sled segment, at the start of the file.)
    let stable = usize::from_str_radix(name.trim_start_matches("snap."), 16).unwrap();
    flip_byte(&journal.join("db"), stable + 100);
    let bodies = contents(&journal.join("segments"));
    assert!(!bodies.is_empty());
    let status = with_journal(&["status"], &journal);
    let crawl = tokio::task::spawn_blocking(move || crawl(&list, &journal))
        .await
        .unwrap();
    refused_as_damaged([status, crawl], "but the journal had");
    assert!(
        contents(&dir.path().join("j").join("segments")) == bodies,
        "the page bodies changed"
    );
}

/// A page record damaged inside a whole sled database (the bytes of a `PageRecord::V1`
/// whose redirect list claims 2^60 entries, and plain garbage): never a panic, nor an
/// attempt to allocate what the length prefix claims. `verify` names the page and what
/// is wrong, `sync` and `reparse` leave it out with a warning and go on with the others,
/// `status` counts it as damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_page_record_is_named_and_left_out_never_a_panic() {
    use mysql_async::prelude::Queryable;
    let huge_list = {
        let mut bytes = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/journal_records/seed-page-v1"),
        )
        .unwrap();
        // Variant tag (4), fetched_at_ms (8), duration_ms (8), then the list's length.
        bytes[20..28].copy_from_slice(&(1u64 << 60).to_le_bytes());
        bytes
    };
    let cases = [
        (
            huge_list,
            "it is cut short (a field or a length runs past its end)",
        ),
        (vec![0xA5; 40], "expected variant index"),
    ];
    for (damage, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _list, server) = crawled_journal(&dir).await;
        {
            let db = sled::open(&journal).unwrap();
            let pages = db.open_tree("pages").unwrap();
            // Ids follow the list: the first page is /a.
            let (id, _) = pages.first().unwrap().expect("a page");
            pages.insert(id, damage.as_slice()).unwrap();
            db.flush().unwrap();
        }
        let named = format!(
            "damaged: {}: journal is damaged: undecodable record in tree `pages`: ",
            server.url("/a")
        );
        let verify = with_journal(&["verify"], &journal);
        let found = String::from_utf8_lossy(&verify.stdout).into_owned();
        assert_eq!(verify.status.code(), Some(1), "{found}{}", stderr(&verify));
        assert!(found.contains(&named) && found.contains(why), "{found}");

        let db = util::mysql::TestDb::new().await;
        let sync = with_journal(&["sync", "--mysql", &db.url], &journal);
        let err = stderr(&sync);
        assert!(sync.status.success(), "{err}");
        assert!(
            err.contains("is damaged, not synced") && err.contains(why),
            "{err}"
        );
        let rows: Vec<String> = db
            .conn()
            .await
            .query("SELECT url FROM pages")
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(!rows.contains(&server.url("/a")), "{rows:?}");

        // Regression: reparse stopped at the record (exit 1) instead of skipping it.
        let reparse = with_journal(&["reparse"], &journal);
        let err = stderr(&reparse);
        assert!(reparse.status.success(), "{err}");
        assert!(
            err.contains("is damaged, skipped") && err.contains(why),
            "{err}"
        );
        assert!(err.contains("done: 2 pages annotated"), "{err}");

        let status = with_journal(&["status", "--json"], &journal);
        assert!(status.status.success(), "{}", stderr(&status));
        let shown: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(shown["damaged"], 1, "{shown}");
        for out in [&verify, &sync, &reparse, &status] {
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
            assert!(!all.contains("panicked") && !all.contains("memory allocation"));
        }
    }
}

/// A flipped byte in a stored body, which zstd would decompress to other bytes without
/// a word (its frames carry no checksum here): the body's checksum fails, `verify` names
/// the page, `sync` loads every other page byte for byte and not that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_body_is_named_by_verify_and_never_synced() {
    use mysql_async::prelude::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let (journal, _list, server) = crawled_journal(&dir).await;
    let stored = webspool::journal::pack_body(b"<title>/b</title>")
        .unwrap()
        .bytes;
    let (segment, at) = contents(&journal.join("segments"))
        .into_iter()
        .find_map(|(path, bytes)| {
            let at = bytes.windows(stored.len()).position(|w| w == stored)?;
            Some((path, at))
        })
        .expect("the stored body of /b in a segment");
    flip_byte(&segment, at + stored.len() - 2);

    let verify = with_journal(&["verify"], &journal);
    let found = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert_eq!(verify.status.code(), Some(1), "{found}{}", stderr(&verify));
    assert!(
        found.contains(&format!("damaged: {}: ", server.url("/b"))),
        "{found}"
    );
    let db = util::mysql::TestDb::new().await;
    let sync = with_journal(&["sync", "--mysql", &db.url], &journal);
    assert!(sync.status.success(), "{}", stderr(&sync));
    let rows: BTreeMap<String, Vec<u8>> = db
        .conn()
        .await
        .query("SELECT url, body FROM pages")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let want: BTreeMap<String, Vec<u8>> = ["/a", "/c"]
        .map(|p| (server.url(p), format!("<title>{p}</title>").into_bytes()))
        .into();
    assert_eq!(rows, want);
}

/// Every command writes in the journal directory it was given, and nowhere else: not
/// in the working directory, `HOME` or `TMPDIR`, not beside the URL list. The journal
/// holds sled's files, the body segments, the marker file, the disk-space reserve, the
/// credentials file and what `recover` replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_write_only_inside_the_journal_they_were_given() {
    let db = util::mysql::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, list, _server) = crawled_journal(&dir).await;
    let [work, home, tmp] = ["work", "home", "tmp"].map(|name| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        path
    });
    let journal_arg = journal.to_str().unwrap();
    let list_arg = list.to_str().unwrap();
    let commands: [&[&str]; 8] = [
        &["crawl", "--quiet", "--urls", list_arg, "--sync", &db.url],
        &["recrawl", "--quiet", "--all"],
        &["parse"],
        &["reparse"],
        &["sync", "--mysql", &db.url],
        &["status", "--json"],
        &["verify"],
        &["recover"],
    ];
    for command in commands {
        let out = Command::new(util::bin())
            .args(command)
            .args(["--journal", journal_arg])
            .current_dir(&work)
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    }
    for empty in [&work, &home, &tmp] {
        assert!(
            contents(empty).is_empty(),
            "{} was written",
            empty.display()
        );
    }
    let mut beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    let list_name = list.file_name().unwrap().to_string_lossy().into_owned();
    let mut want = vec!["home", "j", &list_name, "tmp", "work"];
    want.sort();
    assert_eq!(beside, want);
    for entry in std::fs::read_dir(&journal).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let known = [
            "conf",
            "db",
            "blobs",
            "segments",
            "webspool-journal",
            "webspool-reserve",
            "credentials",
        ];
        assert!(
            known.contains(&name.as_str())
                || name.starts_with("snap.")
                || name.starts_with("replaced-"),
            "{name} in the journal"
        );
    }
}
