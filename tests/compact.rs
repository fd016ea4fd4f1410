//! `webspool compact` with the real binary: after `verify --repair` and a crawl that
//! fetched the damaged pages again, compaction leaves `verify` clean, the disk smaller
//! and every body byte-equal; an older journal's bodies become entries that `recover`
//! restores; SIGKILL at any moment of a compaction loses nothing, and `compact` run
//! again finishes it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use webspool::journal::{Journal, PageMeta, UrlEntry};

use crate::cli::{crawl_list, on, status_json as status, stderr};
use crate::recover::{crawled_with, delete_database, rows};
use crate::util;
use crate::util::mysql::TestDb;
use crate::util::tmpfs::Tmpfs;

/// The body the test site serves at `path`: 16 KB of numbers that compress about three
/// times, so that the bytes a compaction gives back are not lost among sled's.
fn body_for(path: &str) -> String {
    let mut state = path.bytes().fold(0x9E37_79B9_7F4A_7C15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    let mut body = format!("<html><head><title>{path}</title></head><body><p>");
    while body.len() < 16 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.push_str(&format!("{} ", state % 4096));
    }
    body.push_str("</p></body></html>");
    body
}

/// Asserts that every page of the site is in the journal with its exact body.
fn assert_bodies(journal: &Path, server: &util::TestServer, n: usize) {
    assert_bodies_are(journal, server, n, body_for);
}

/// Asserts that every page of the site is in the journal with the body `expected` says.
fn assert_bodies_are(
    journal: &Path,
    server: &util::TestServer,
    n: usize,
    expected: impl Fn(&str) -> String,
) {
    let journal = Journal::open_existing(journal).expect("open the journal");
    for i in 0..n {
        let path = format!("/p{i}");
        let body = util::body_of(&journal, &server.url(&path));
        assert!(body == expected(&path).as_bytes(), "{path}: body differs");
    }
}

/// The names of the segment files, sorted.
fn segment_files(journal: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(journal.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_clean(journal: &Path) {
    let out = on(&["verify"], journal);
    let err = stderr(&out);
    assert!(out.status.success() && err.contains(": clean"), "{err}");
}

fn compact(journal: &Path) -> String {
    compact_with(journal, &[])
}

/// Where the body of each entry of a segment's `bytes` is (start, length), in order.
/// Each entry: a 32-byte frame (magic, header length u32 LE, body length u64 LE, two
/// checksums), the header, the body.
fn entry_bodies(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut bodies = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
        bodies.push((at + 32 + header, body));
        at += 32 + header + body;
    }
    bodies
}

/// Flips a byte in the bodies of `k` entries spread over segment 1, then has `verify
/// --repair` put those pages back in the frontier and a crawl of `list` fetch them
/// again: the bytes of their first fetch are used by no page any more. Returns how many
/// pages were fetched again.
fn refetch_damaged(journal: &Path, list: &Path, k: usize) -> u64 {
    let segment = journal.join("segments").join("00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let bodies = entry_bodies(&bytes);
    for i in 0..k {
        let (start, len) = bodies[bodies.len() * (2 * i + 1) / (2 * k)];
        bytes[start + len / 2] ^= 0x20;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let out = on(&["verify", "--repair", "--json"], journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap();
    crawl_list(list, journal);
    let now = status(journal);
    assert_eq!(now["failed"], 0, "{now}");
    summary["summary"]["refetch"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_after_a_repair_and_a_recrawl_gives_the_old_bodies_back() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let (server, list, journal) = crawled_with(&dir, n, body_for).await;
    // Nothing to give back yet: nothing is done.
    let said = compact(&journal);
    assert!(said.contains("nothing to reclaim"), "{said}");
    assert_eq!(segment_files(&journal), ["00000001.seg"]);
    let refetch = refetch_damaged(&journal, &list, 40);
    assert_eq!(refetch, 40);
    assert_clean(&journal);
    let before = status(&journal);

    let said = compact(&journal);
    assert!(
        said.contains(&format!("{n} bodies moved")) && said.contains("0 upgraded"),
        "{said}"
    );
    let after = status(&journal);
    // compact's own figures: `status` run before and after it opens the journal once
    // more, and sled's files may grow by a step when they are opened.
    let (before_bytes, after_bytes) = said
        .split_once("disk bytes ")
        .and_then(|(_, rest)| rest.split_once(" -> "))
        .and_then(|(before, rest)| {
            let after = rest.split(' ').next()?;
            Some((before.parse::<u64>().ok()?, after.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no disk bytes in {said}"));
    // At least the bodies of the damaged pages' first fetch are given back.
    let one_body = after["stored_body_bytes"].as_u64().unwrap() / n as u64;
    assert!(
        after_bytes + refetch * one_body <= before_bytes,
        "{before_bytes} -> {after_bytes}"
    );
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
    for field in ["fetched", "parsed", "stored_body_bytes", "raw_bytes"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    assert_clean(&journal);
    assert_bodies(&journal, &server, n);
    // A second run in a row finds nothing to give back.
    let said = compact(&journal);
    assert!(said.contains("nothing to reclaim"), "{said}");
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
}

/// Issue 16: after three rounds of "every page changed, `recrawl --all`", compaction
/// brings the journal to at most 1.25 times a fresh crawl of the final site; reparse
/// and sync work afterwards as before.
#[tokio::test(flavor = "multi_thread")]
async fn three_recrawls_of_a_changed_site_compact_to_the_size_of_a_fresh_crawl() {
    let round = Arc::new(AtomicUsize::new(0));
    let served = round.clone();
    // Pages of 64 KiB (about 28 KiB stored), so that bodies outweigh sled's files, which
    // grow in steps of 512 KiB: with small pages one step more or less in the fresh
    // crawl's files or the compacted ones moves the ratio by a tenth.
    let page = |path: &str| {
        (0..4)
            .map(|i| body_for(&format!("{path}#{i}")))
            .collect::<String>()
    };
    let site = move |path: &str| {
        let round = served.load(Ordering::SeqCst);
        format!("{}<!-- round {round} -->", page(path))
    };
    let last = move |path: &str| format!("{}<!-- round 3 -->", page(path));
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let (server, list, journal) = crawled_with(&dir, n, site).await;
    for r in 1..=3 {
        round.store(r, Ordering::SeqCst);
        let out = on(&["recrawl", "--all", "--quiet"], &journal);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(status(&journal)["changed"], 300 * r as u64);
    }
    let before = status(&journal)["disk_bytes"].as_u64().unwrap();
    compact(&journal);
    let after = status(&journal)["disk_bytes"].as_u64().unwrap();
    let fresh = dir.path().join("fresh");
    crawl_list(&list, &fresh);
    let fresh_bytes = status(&fresh)["disk_bytes"].as_u64().unwrap();
    assert!(
        after * 4 <= fresh_bytes * 5 && after * 2 < before,
        "{before} -> {after}, a fresh crawl {fresh_bytes}"
    );
    assert_clean(&journal);
    assert_bodies_are(&journal, &server, n, last);

    let out = on(&["reparse", "--quiet"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = TestDb::new().await;
    let out = on(&["sync", "--quiet", "--mysql", &db.url], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let synced = rows(&db).await;
    assert_eq!(synced.len(), n);
    for (url, body) in synced {
        let path = url.rsplit_once('/').map(|(_, p)| format!("/{p}")).unwrap();
        assert!(
            body == last(&path).into_bytes(),
            "{url}: synced body differs"
        );
    }
}

/// A body that fails its checksum is not copied: `compact` names the page as `verify`
/// does, keeps the old segment it lies in and exits 1; after `verify --repair` and a
/// crawl that fetches the page again, `compact` finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_body_is_left_for_repair_and_the_next_compaction_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let (server, list, journal) = crawled_with(&dir, n, body_for).await;
    // Something to give back, in pages after the first.
    assert_eq!(refetch_damaged(&journal, &list, 4), 4);
    // A byte in the body of the first entry (after its 32-byte frame and its header).
    let segment = journal.join("segments").join("00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let header_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    bytes[32 + header_len + 100] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let out = on(&["compact"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let named = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        named.starts_with(&format!("damaged: {}: ", server.url("/p0")))
            && named.contains("fail their checksum")
            && named.lines().count() == 1,
        "{named}"
    );
    let said = stderr(&out);
    assert!(
        said.contains(&format!("{} bodies moved", n - 1))
            && said.contains("1 damaged page left where they are (1 old segment file kept"),
        "{said}"
    );
    assert_eq!(segment_files(&journal), ["00000001.seg", "00000002.seg"]);
    assert_eq!(status(&journal)["damaged"], 1);

    let out = on(&["verify", "--repair"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    crawl_list(&list, &journal);
    assert_eq!(server.hits("/p0"), 2);
    assert_eq!(
        server
            .all_hits()
            .values()
            .filter(|&&hits| hits == 2)
            .count(),
        5
    );
    assert_deletion_finished(&journal);
    assert_eq!(status(&journal)["damaged"], 0);
    assert_clean(&journal);
    assert_bodies(&journal, &server, n);
}

/// The records of journal format 4 (and 2), as they were written then: the test builds
/// an older journal from a crawled one.
#[derive(Serialize, Deserialize)]
struct BodyLocation {
    segment: u32,
    offset: u64,
    len: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredBody {
    at: BodyLocation,
    checksum: u64,
    content_hash: u128,
}

#[derive(Serialize, Deserialize)]
enum PageRecord {
    V1(PageMeta),
    V2 {
        meta: PageMeta,
        body: Option<BodyLocation>,
    },
    V3 {
        meta: PageMeta,
        body: Option<BodyLocation>,
        url: UrlEntry,
    },
    V4 {
        meta: PageMeta,
        body: Option<StoredBody>,
        url: UrlEntry,
    },
}

#[derive(Serialize, Deserialize)]
enum UrlRecord {
    V1(()),
    V2(UrlEntry),
}

#[derive(Serialize, Deserialize)]
struct SegmentsEnd {
    segment: u32,
    len: u64,
}

#[derive(Serialize, Deserialize)]
enum SegmentsEndRecord {
    V1(SegmentsEnd),
}

/// Rewrites the crawled journal at `journal` as a format-4 journal upgraded from format
/// 2 would be: even ids a `PageRecord::V1` with the body in `bodies` and the URL in
/// `urls`, odd ids a `V3` with a bare body in segment 1; version 4, no marker.
fn make_format_4(journal: &Path) {
    let db = sled::open(journal).unwrap();
    let (pages, bodies, urls) = (
        db.open_tree("pages").unwrap(),
        db.open_tree("bodies").unwrap(),
        db.open_tree("urls").unwrap(),
    );
    let segment = journal.join("segments").join("00000001.seg");
    let entries = std::fs::read(&segment).unwrap();
    let mut bare = Vec::new();
    for item in pages.iter() {
        let (key, value) = item.unwrap();
        let PageRecord::V4 {
            meta,
            body: Some(body),
            url,
        } = bincode::deserialize(&value).unwrap()
        else {
            panic!("a crawled page without a body");
        };
        let (from, len) = (body.at.offset as usize, body.at.len as usize);
        let stored = &entries[from..from + len];
        let id = u64::from_be_bytes(key.as_ref().try_into().unwrap());
        let record = if id % 2 == 0 {
            bodies.insert(&key, stored).unwrap();
            urls.insert(&key, bincode::serialize(&UrlRecord::V2(url)).unwrap())
                .unwrap();
            PageRecord::V1(meta)
        } else {
            let at = BodyLocation {
                segment: 1,
                offset: bare.len() as u64,
                len: len as u64,
            };
            bare.extend_from_slice(stored);
            PageRecord::V3 {
                meta,
                body: Some(at),
                url,
            }
        };
        pages
            .insert(&key, bincode::serialize(&record).unwrap())
            .unwrap();
    }
    std::fs::write(&segment, &bare).unwrap();
    let end = SegmentsEndRecord::V1(SegmentsEnd {
        segment: 1,
        len: bare.len() as u64,
    });
    db.insert("segments_end", bincode::serialize(&end).unwrap())
        .unwrap();
    db.remove("framed_from").unwrap();
    db.insert("version", &4u32.to_be_bytes()).unwrap();
    db.flush().unwrap();
    drop((pages, bodies, urls, db));
    // The marker holds the segments' end of the journal it was; a journal of format 4
    // may well predate it.
    std::fs::remove_file(journal.join("webspool-journal")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_journal_is_compacted_into_entries_that_recover_restores() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let (server, _, journal) = crawled_with(&dir, n, body_for).await;
    make_format_4(&journal);
    assert_clean(&journal);
    assert_bodies(&journal, &server, n);

    let said = compact(&journal);
    assert!(
        said.contains(&format!("{n} bodies moved")) && said.contains(&format!("{n} upgraded")),
        "{said}"
    );
    assert_clean(&journal);
    // Segment 1 held the bare bodies; opening the format-4 journal started entries at
    // segment 2 (empty), and the compaction wrote them to segment 3.
    assert_eq!(segment_files(&journal), ["00000003.seg"]);
    assert_eq!(status(&journal)["fetched"], n);

    delete_database(&journal);
    let out = on(&["recover"], &journal);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{n} pages back as fetched")), "{err}");
    assert_bodies(&journal, &server, n);
    assert_clean(&journal);
}

/// A compaction killed while it deleted the old segments: every record points into the
/// new set, `compact` is still recorded and an old file is still there. The next run
/// copies nothing and deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_killed_while_deleting_the_old_segments_finishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20;
    let (server, list, journal) = crawled_with(&dir, n, body_for).await;
    refetch_damaged(&journal, &list, 2);
    let old = journal.join("segments").join("00000001.seg");
    let kept = std::fs::read(&old).unwrap();
    compact(&journal);
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
    {
        // `CompactRecord::V1(CompactState { from: 2 })`.
        let db = sled::open(&journal).unwrap();
        let state = [0u32.to_le_bytes(), 2u32.to_le_bytes()].concat();
        db.insert("compact", state).unwrap();
        db.flush().unwrap();
    }
    std::fs::write(&old, &kept).unwrap();

    assert_deletion_finished(&journal);
    // Ended: the next run starts afresh, and finds nothing to give back.
    let said = compact(&journal);
    assert!(said.contains("nothing to reclaim"), "{said}");
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
    assert_clean(&journal);
    assert_bodies(&journal, &server, n);
}

/// `--min-free`: checked before each chunk, it stops a compaction that would go below
/// it (exit 75, what was copied kept); run again with room, the compaction goes on and
/// finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_stops_at_the_watermark_and_goes_on_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let n = 800;
    let (server, list, crawled) = crawled_with(&dir, n, body_for).await;
    refetch_damaged(&crawled, &list, 80);
    let disk = Tmpfs::mount(32);
    let journal = disk.path().join("j");
    copy_dir(&crawled, &journal);
    // The watermark is crossed about halfway through the copy of the live bodies.
    let copy = status(&journal)["stored_body_bytes"].as_u64().unwrap();
    let min_free = (disk.free() - copy / 2).to_string();

    let out = on(&["compact", "--min-free", &min_free], &journal);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("compact: stopped (disk full): ")
            && err.contains("error: disk full: ")
            && err.contains("then run the same command again"),
        "{err}"
    );
    assert_eq!(segment_files(&journal), ["00000001.seg", "00000002.seg"]);
    assert_clean(&journal);

    disk.resize(400);
    let said = compact(&journal);
    assert!(
        said.contains("resumed an interrupted compaction")
            && said.contains("1 old segment file deleted"),
        "{said}"
    );
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
    assert_clean(&journal);
    assert_bodies(&journal, &server, n);
}

/// Copies the directory `from` to `to` (which must not exist), recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// SIGKILL at moments spread over a compaction, each time of the same journal: after
/// the kill the journal opens and `verify` finds every page whole; `compact` run again
/// finishes, and leaves one segment file with every body.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_compaction_loses_nothing_and_finishes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let n = 800;
    let (server, list, pristine) = crawled_with(&dir, n, body_for).await;
    refetch_damaged(&pristine, &list, 80);
    let journal = dir.path().join("copy");
    killed_compactions(&pristine, &journal, &[], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(status(&journal)["fetched"], n);
    assert_bodies(&journal, &server, n);
}

/// A compaction killed while deleting the old segment files, run again: it copies
/// nothing and deletes the one old file left, which leaves only the new segment.
fn assert_deletion_finished(journal: &Path) {
    let said = compact(journal);
    assert!(
        said.contains("resumed an interrupted compaction; 0 bodies moved")
            && said.contains("1 old segment file deleted"),
        "{said}"
    );
    assert_eq!(segment_files(journal), ["00000002.seg"]);
}

/// A site whose every page changes each round: its body at `path` in round `round`.
fn round_body(path: &str, round: usize) -> String {
    format!("{}<!-- round {round} -->", body_for(path))
}

/// A journal of `n` pages crawled in round 0 and recrawled (`--all`) in rounds 1 to
/// `rounds`, every page changed each time: each page has `rounds` older versions.
async fn recrawled(
    dir: &tempfile::TempDir,
    n: usize,
    rounds: usize,
) -> (util::TestServer, std::path::PathBuf) {
    let round = Arc::new(AtomicUsize::new(0));
    let served = round.clone();
    let site = move |path: &str| round_body(path, served.load(Ordering::SeqCst));
    let (server, _, journal) = crawled_with(dir, n, site).await;
    for r in 1..=rounds {
        round.store(r, Ordering::SeqCst);
        let out = on(&["recrawl", "--all", "--quiet"], &journal);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    (server, journal)
}

/// Asserts that every page's current body is round `last`'s and that its older
/// versions are exactly rounds `kept`, oldest first, each body read back checked.
fn assert_versions(
    journal: &Path,
    server: &util::TestServer,
    n: usize,
    last: usize,
    kept: &[usize],
) {
    let journal = Journal::open_existing(journal).expect("open the journal");
    for i in 0..n {
        let path = format!("/p{i}");
        let url = server.url(&path);
        assert!(util::body_of(&journal, &url) == round_body(&path, last).as_bytes());
        let id = journal.find(&url).unwrap().unwrap();
        let versions = journal.versions(id).unwrap();
        assert_eq!(versions.len(), kept.len(), "{path}");
        for (version, round) in versions.iter().zip(kept) {
            let body = journal.version_body(id, version.key_ms).unwrap().unwrap();
            assert!(
                body == round_body(&path, *round).as_bytes(),
                "{path} round {round}"
            );
        }
    }
}

fn compact_keeping(journal: &Path, n: &str) -> String {
    compact_with(journal, &["--keep-versions", n])
}

/// `compact` with `args`, which must succeed; what it said.
pub(crate) fn compact_with(journal: &Path, args: &[&str]) -> String {
    let out = on(&[&["compact"], args].concat(), journal);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    err
}

/// Issue 16: a recrawl keeps a changed page's previous version; `compact --keep-versions
/// N` keeps the newest N versions of each page (its current one and N-1 older ones),
/// drops the older ones and gives their bytes back.
#[tokio::test(flavor = "multi_thread")]
async fn compact_keeps_the_newest_versions_and_gives_the_older_ones_back() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let (server, journal) = recrawled(&dir, n, 3).await;
    let before = status(&journal);
    assert_eq!(before["versions"], 3 * n as u64, "{before}");
    // Three versions of bodies of one size (`verify` checks the exact count).
    assert!(
        before["version_bytes"].as_u64().unwrap()
            > 2 * before["stored_body_bytes"].as_u64().unwrap(),
        "{before}"
    );
    assert_versions(&journal, &server, n, 3, &[0, 1, 2]);
    assert_clean(&journal);

    let mut disk = before["disk_bytes"].as_u64().unwrap();
    let one_body = before["stored_body_bytes"].as_u64().unwrap() / n as u64;
    for (keep, kept) in [(3, &[1, 2][..]), (2, &[2][..]), (1, &[][..])] {
        let said = compact_keeping(&journal, &keep.to_string());
        assert!(
            said.contains(&format!("{n} older versions dropped")),
            "{said}"
        );
        let now = status(&journal);
        assert_eq!(now["versions"], (kept.len() * n) as u64, "{now}");
        assert_eq!(now["fetched"], n as u64);
        // At least the dropped versions' bodies are given back.
        let after = now["disk_bytes"].as_u64().unwrap();
        assert!(after + n as u64 * one_body <= disk, "{disk} -> {after}");
        disk = after;
        assert_eq!(segment_files(&journal).len(), 1);
        assert_clean(&journal);
        assert_versions(&journal, &server, n, 3, kept);
    }
    let said = compact(&journal);
    assert!(said.contains("nothing to reclaim"), "{said}");
}

/// `compact` with `args` on fresh copies of `pristine` at `journal`, killed at each of
/// `tenths` of the time a whole run takes: after each kill the journal opens and
/// `verify` finds it whole; the same `compact` run again finishes, leaving one segment
/// file. Asserts that some kill landed before the old segments were deleted: one more
/// kill (`None`) lands as soon as the new segment file appears, whatever the machine's
/// load does to the timing of the others.
fn killed_compactions(pristine: &Path, journal: &Path, args: &[&str], tenths: &[u32]) {
    let run = |journal: &Path| compact_with(journal, args);
    copy_dir(pristine, journal);
    let started = std::time::Instant::now();
    run(journal);
    let whole = started.elapsed();
    let mut unfinished = 0;
    for tenth in tenths.iter().map(Some).chain([None]) {
        std::fs::remove_dir_all(journal).unwrap();
        copy_dir(pristine, journal);
        let mut child = Command::new(util::bin())
            .arg("compact")
            .args(args)
            .arg("--journal")
            .arg(journal)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match tenth {
            Some(tenth) => std::thread::sleep(whole * *tenth / 10),
            None => {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while segment_files(journal).len() < 2
                    && child.try_wait().unwrap().is_none()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        util::signal(&child, libc::SIGKILL);
        let _ = child.wait();
        if segment_files(journal).len() > 1 {
            unfinished += 1;
        }
        assert_clean(journal);
        let said = run(journal);
        assert!(!said.contains("damaged"), "{said}");
        assert_eq!(segment_files(journal).len(), 1, "{said}");
        assert_clean(journal);
    }
    assert!(
        unfinished > 0,
        "no kill landed before the old segments were deleted"
    );
}

/// SIGKILL during a compaction that keeps two versions of each page and drops the
/// third: after each kill `verify` is clean (no version lost half-way), and `compact`
/// run again finishes with the newest older version of every page, read back checked.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_compaction_of_versions_finishes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let (server, pristine) = recrawled(&dir, n, 2).await;
    let journal = dir.path().join("copy");
    killed_compactions(
        &pristine,
        &journal,
        &["--keep-versions", "2"],
        &[2, 4, 6, 8],
    );
    let now = status(&journal);
    assert_eq!(now["versions"], n as u64, "{now}");
    assert_versions(&journal, &server, n, 2, &[1]);
}

/// A damaged body of an older version: `verify` names it (as the page's older version)
/// and `compact --keep-versions 2`, which keeps it, leaves it with its segment (exit 1); `verify --repair` drops that
/// version only (an old version cannot be fetched again), and `compact` then finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_older_version_is_found_and_dropped_by_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10;
    let (server, journal) = recrawled(&dir, n, 2).await;
    // Segment 1 holds the entries of round 0, then of round 1, then of round 2: the
    // fourth of round 1 is a version that `--keep-versions 2` keeps.
    let segment = journal.join("segments").join("00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let (start, len) = entry_bodies(&bytes)[n + 3];
    bytes[start + len / 2] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let out = on(&["verify"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let named = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        named.lines().count() == 1
            && named.contains("its older version of ")
            && named.contains("fail their checksum"),
        "{named}"
    );
    let out = on(&["compact", "--keep-versions", "2"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("its older version of "),
        "{}",
        stderr(&out)
    );
    assert_eq!(segment_files(&journal), ["00000001.seg", "00000002.seg"]);

    let out = on(&["verify", "--repair"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_clean(&journal);
    let now = status(&journal);
    assert_eq!((&now["versions"], &now["fetched"]), (&9.into(), &10.into()));
    assert_eq!(now["damaged"], 0, "a version's damage is not its page's");
    let said = compact_keeping(&journal, "2");
    assert!(
        said.contains("resumed an interrupted compaction; 0 bodies moved")
            && said.contains("1 old segment file deleted"),
        "{said}"
    );
    assert_eq!(segment_files(&journal), ["00000002.seg"]);
    assert_clean(&journal);
    assert_eq!(status(&journal)["versions"], 9);
    let journal = Journal::open_existing(&journal).unwrap();
    for i in 0..n {
        let path = format!("/p{i}");
        let url = server.url(&path);
        assert!(util::body_of(&journal, &url) == round_body(&path, 2).as_bytes());
    }
}

/// `recover` from segments that hold several entries of each page: the one fetched
/// last is the page, the others its older versions, before a compaction (all in
/// segment 1, in round order) and after one that kept two versions of each page.
#[tokio::test(flavor = "multi_thread")]
async fn recover_makes_the_older_entries_of_a_page_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20;
    let (server, journal) = recrawled(&dir, n, 2).await;
    let recover = |journal: &Path| {
        delete_database(journal);
        let out = on(&["recover"], journal);
        let err = stderr(&out);
        assert!(
            out.status.success()
                && err.contains(&format!("{n} pages back as fetched (and {} older", 2 * n)),
            "{err}"
        );
        assert_clean(journal);
    };
    recover(&journal);
    assert_versions(&journal, &server, n, 2, &[0, 1]);
    assert_eq!(status(&journal)["versions"], 2 * n as u64);

    compact_keeping(&journal, "2");
    delete_database(&journal);
    let out = on(&["recover"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean(&journal);
    assert_versions(&journal, &server, n, 2, &[1]);
}
