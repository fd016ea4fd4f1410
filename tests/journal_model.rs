//! Model test of the journal: random adds, recorded fetches, retries scheduled and
//! promoted, and reopens, checked after every step against a `BTreeMap` model (as
//! sled's own tree tests do).

use std::collections::BTreeMap;

use proptest::prelude::*;
use webspool::journal::{
    ErrorKind, FetchedPage, Journal, KeptHeaders, NewUrl, Outcome, PageMeta, PendingEntry,
};

/// A retry time already past, and one far ahead.
const DUE: u64 = 1_000;
const LATER: u64 = 1 << 60;

const UNIVERSE: usize = 24;

fn url(i: usize) -> String {
    format!("http://h{}.test/p/{i}", i % 3)
}

#[derive(Clone, Debug)]
enum Op {
    Add(Vec<usize>),
    /// (url index, Some(body) for a response, None for an error)
    Record(Vec<(usize, Option<Vec<u8>>)>),
    /// Transient failures: (url index, whether the retry is already due)
    Retry(Vec<(usize, bool)>),
    /// Due retries back to the frontier.
    Promote,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(0..UNIVERSE, 0..8).prop_map(Op::Add),
        3 => prop::collection::vec(
            (0..UNIVERSE, prop::option::of(prop::collection::vec(any::<u8>(), 0..64))),
            0..6
        )
        .prop_map(Op::Record),
        2 => prop::collection::vec((0..UNIVERSE, any::<bool>()), 0..6).prop_map(Op::Retry),
        1 => Just(Op::Promote),
        1 => Just(Op::Reopen),
    ]
}

/// A recorded fetch in the model: `Some(body)` for a response, `None` for an error.
type Recorded = Option<Vec<u8>>;

/// A URL in the model: pending (attempts so far, retry time if waiting) or recorded.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Pending { attempts: u32, waiting: Option<u64> },
    Done(Recorded),
}

const NEW: State = State::Pending {
    attempts: 0,
    waiting: None,
};

#[derive(Clone, Debug, Default)]
struct Model {
    /// url -> (insertion order, its state)
    urls: BTreeMap<String, (usize, State)>,
}

fn meta(body: &Option<Vec<u8>>) -> PageMeta {
    PageMeta {
        fetched_at_ms: 1,
        duration_ms: 2,
        redirects: Vec::new(),
        outcome: match body {
            Some(b) => Outcome::Response {
                status: 200,
                version: "HTTP/1.1".into(),
                final_url: "http://x.test/".into(),
                headers: KeptHeaders::default(),
                body_len: b.len() as u64,
            },
            None => Outcome::Error {
                kind: ErrorKind::Timeout,
                message: "slow".into(),
            },
        },
    }
}

fn check(journal: &Journal, model: &Model) {
    let status = journal.status().unwrap();
    let done: Vec<&Recorded> = model
        .urls
        .values()
        .filter_map(|(_, s)| match s {
            State::Done(r) => Some(r),
            State::Pending { .. } => None,
        })
        .collect();
    let fetched = done.iter().filter(|r| r.is_some()).count() as u64;
    let failed = done.len() as u64 - fetched;
    assert_eq!(status.urls, model.urls.len() as u64);
    assert_eq!(status.fetched, fetched);
    assert_eq!(status.failed, failed);
    assert_eq!(
        status.pending_fetch,
        model.urls.len() as u64 - fetched - failed
    );
    let waiting = model
        .urls
        .values()
        .filter(|(_, s)| {
            matches!(
                s,
                State::Pending {
                    waiting: Some(_),
                    ..
                }
            )
        })
        .count() as u64;
    assert_eq!(status.retry_waiting, waiting);
    assert_eq!(status.pending_parse, fetched);
    assert_eq!(status.errors.get("timeout").copied().unwrap_or(0), failed);
    let raw: u64 = done
        .iter()
        .filter_map(|r| r.as_ref())
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(status.raw_bytes, raw);

    for (u, (_, state)) in &model.urls {
        let id = journal.find(u).unwrap().expect("known url");
        assert_eq!(journal.url(id).unwrap().unwrap().url, *u);
        let pending = journal.pending(id).unwrap();
        assert_eq!(journal.is_pending_fetch(id).unwrap(), pending.is_some());
        match state {
            State::Pending { attempts, waiting } => {
                assert!(journal.page(id).unwrap().is_none());
                let pending = pending.expect("pending entry");
                assert_eq!(pending.attempts, *attempts, "{u}");
                assert_eq!(pending.not_before_ms, waiting.unwrap_or(0), "{u}");
            }
            State::Done(body) => {
                assert!(pending.is_none(), "{u} still pending");
                assert_eq!(journal.page(id).unwrap().unwrap(), meta(body));
                assert_eq!(journal.body(id).unwrap(), body.clone());
            }
        }
    }
    // The frontier: ready URLs by host, each host's in insertion order, whole or in
    // slices; the earliest retry time of those waiting.
    let mut expected: BTreeMap<String, Vec<(usize, String, u32)>> = BTreeMap::new();
    for (u, (order, state)) in &model.urls {
        if let State::Pending {
            attempts,
            waiting: None,
        } = state
        {
            let host = webspool::urls::host_key(&url::Url::parse(u).unwrap());
            expected
                .entry(host)
                .or_default()
                .push((*order, u.clone(), *attempts));
        }
    }
    let expected: Vec<(String, Vec<(String, u32)>)> = expected
        .into_iter()
        .map(|(host, mut urls)| {
            urls.sort();
            (host, urls.into_iter().map(|(_, u, a)| (u, a)).collect())
        })
        .collect();
    let mut got = Vec::new();
    let mut host_cursor: Option<String> = None;
    loop {
        let hosts = journal
            .frontier_hosts_after(host_cursor.as_deref(), 1)
            .unwrap();
        let Some(host) = hosts.into_iter().next() else {
            break;
        };
        let mut urls = Vec::new();
        let mut cursor = None;
        loop {
            let slice = journal.frontier_of(&host, cursor, 2).unwrap();
            if slice.is_empty() {
                break;
            }
            cursor = slice.last().map(|r| r.id);
            urls.extend(slice.into_iter().map(|r| (r.entry.url, r.attempts)));
        }
        host_cursor = Some(host.clone());
        got.push((host, urls));
    }
    assert_eq!(got, expected);
    let next_retry = model
        .urls
        .values()
        .filter_map(|(_, s)| match s {
            State::Pending { waiting, .. } => *waiting,
            State::Done(_) => None,
        })
        .min();
    assert_eq!(journal.next_retry_ms().unwrap(), next_retry);
}

fn new_url(u: &str) -> NewUrl {
    NewUrl::given(&url::Url::parse(u).unwrap(), None)
}

/// The host key a URL's frontier entry is under.
fn host(u: &str) -> String {
    new_url(u).host
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn journal_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = Journal::open(&path).unwrap();
        let mut model = Model::default();
        let mut order = 0;
        for op in ops {
            match op {
                Op::Add(idxs) => {
                    let batch: Vec<NewUrl> = idxs.iter().map(|i| new_url(&url(*i))).collect();
                    let mut added = 0;
                    for new in &batch {
                        if !model.urls.contains_key(&new.url) {
                            model.urls.insert(new.url.clone(), (order, NEW));
                            order += 1;
                            added += 1;
                        }
                    }
                    let report = journal.add_urls(&batch).unwrap();
                    prop_assert_eq!(report.added, added);
                    prop_assert_eq!(report.duplicates, batch.len() as u64 - added);
                }
                Op::Record(items) => {
                    let mut pages = Vec::new();
                    for (i, body) in items {
                        let u = url(i);
                        let Some(id) = journal.find(&u).unwrap() else { continue };
                        // Only a ready URL is fetched: one waiting for a retry is not
                        // in the frontier, and a record of it changes nothing.
                        if let Some((_, state @ State::Pending { waiting: None, .. })) =
                            model.urls.get_mut(&u)
                        {
                            *state = State::Done(body.clone());
                        }
                        pages.push(FetchedPage {
                            id,
                            host: host(&u),
                            url: journal.url(id).unwrap().expect("known id"),
                            meta: meta(&body),
                            body: body.as_ref().map(|b| webspool::journal::pack_body(b).unwrap()),
                            retry_at_ms: None,
                        });
                    }
                    // Within one batch the first record of an id wins; replays change nothing.
                    journal.record_fetches(&pages).unwrap();
                    journal.record_fetches(&pages).unwrap();
                }
                Op::Retry(items) => {
                    let mut pages = Vec::new();
                    for (i, due) in items {
                        let u = url(i);
                        let Some(id) = journal.find(&u).unwrap() else { continue };
                        let at = if due { DUE } else { LATER };
                        if let Some((_, State::Pending { attempts, waiting: waiting @ None })) =
                            model.urls.get_mut(&u)
                        {
                            *attempts += 1;
                            *waiting = Some(at);
                        }
                        pages.push(FetchedPage {
                            id,
                            host: host(&u),
                            url: journal.url(id).unwrap().expect("known id"),
                            meta: meta(&None),
                            body: None,
                            retry_at_ms: Some(at),
                        });
                    }
                    journal.record_fetches(&pages).unwrap();
                }
                Op::Promote => {
                    for (_, state) in model.urls.values_mut() {
                        if let State::Pending { waiting: waiting @ Some(DUE), .. } = state {
                            *waiting = None;
                        }
                    }
                    journal.promote_retries(webspool::journal::now_ms(), 1000).unwrap();
                }
                Op::Reopen => {
                    journal.flush_blocking().unwrap();
                    drop(journal);
                    journal = Journal::open(&path).unwrap();
                }
            }
            check(&journal, &model);
        }
    }
}

#[test]
fn reopening_a_journal_keeps_its_id_counter_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let first = {
        let j = Journal::open(&path).unwrap();
        j.add_urls(&[new_url(&url(1))]).unwrap();
        j.flush_blocking().unwrap();
        j.find(&url(1)).unwrap().unwrap()
    };
    let j = Journal::open(&path).unwrap();
    j.add_urls(&[new_url(&url(2))]).unwrap();
    assert!(j.find(&url(2)).unwrap().unwrap() > first);
}

/// A journal as format version 1 left it: pending ids with empty values, `UrlRecord::V1`.
#[test]
fn a_version_1_journal_is_upgraded_in_place() {
    #[derive(serde::Serialize)]
    enum UrlRecordV1 {
        V1 {
            url: String,
            source_key: Option<String>,
            added_at_ms: u64,
        },
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    {
        let db = sled::open(&path).unwrap();
        db.insert("version", &1u32.to_be_bytes()).unwrap();
        db.insert("journal_id", &[7u8; 16]).unwrap();
        db.insert("next_id", &3u64.to_be_bytes()).unwrap();
        db.insert("format", b"webspool-journal").unwrap();
        let (urls, index, pending) = (
            db.open_tree("urls").unwrap(),
            db.open_tree("url_index").unwrap(),
            db.open_tree("pending_fetch").unwrap(),
        );
        for id in 1u64..3 {
            let url = url(id as usize);
            let record = UrlRecordV1::V1 {
                url: url.clone(),
                source_key: Some(format!("k{id}")),
                added_at_ms: 5,
            };
            urls.insert(id.to_be_bytes(), bincode::serialize(&record).unwrap())
                .unwrap();
            index.insert(url.as_bytes(), &id.to_be_bytes()).unwrap();
            pending.insert(id.to_be_bytes(), &[]).unwrap();
        }
        db.open_tree("counters")
            .unwrap()
            .insert("urls", &2u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.status().unwrap().pending_fetch, 2);
    for id in 1u64..3 {
        let entry = journal.url(id).unwrap().unwrap();
        assert_eq!(entry.source_key, Some(format!("k{id}")));
        let pending = journal.pending(id).unwrap().unwrap();
        let host = webspool::urls::host_key(&url::Url::parse(&entry.url).unwrap());
        assert_eq!(
            (pending.host.as_str(), pending.attempts),
            (host.as_str(), 0)
        );
        let ready = journal.frontier_of(&host, None, 10).unwrap();
        assert_eq!(ready.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    }
    drop(journal);
    // Opened again, it is a current journal and stays as it is.
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.frontier_hosts_after(None, 10).unwrap().len(), 2);
}

/// A journal as format version 3 left it: each pending URL's entry in the
/// `pending_fetch` tree by id, its record in `urls`, its `frontier` or `retry_queue` key
/// with an empty value. Opening it moves entry and record into those values and drops
/// `pending_fetch`.
#[test]
fn a_version_3_journal_has_its_pending_entries_moved_into_the_frontier() {
    #[derive(serde::Serialize)]
    struct PendingEntryV1 {
        host: String,
        attempts: u32,
        not_before_ms: u64,
    }
    #[derive(serde::Serialize)]
    enum PendingRecord {
        V1(PendingEntryV1),
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (first, second) = two_urls_first_fetched(&path, b"<p>one</p>");
    let (third, urls) = {
        let journal = Journal::open(&path).unwrap();
        journal.add_urls(&[new_url(&url(3))]).unwrap();
        journal.flush_blocking().unwrap();
        let third = journal.find(&url(3)).unwrap().unwrap();
        let urls = [second, third].map(|id| journal.url(id).unwrap().unwrap());
        (third, urls)
    };
    // `second` ready with one failed attempt behind it, `third` waiting for a retry.
    let ready = PendingEntry {
        host: host(&url(2)),
        attempts: 1,
        not_before_ms: 0,
        url: urls[0].clone(),
    };
    let waiting = PendingEntry {
        host: host(&url(3)),
        attempts: 2,
        not_before_ms: DUE,
        url: urls[1].clone(),
    };
    {
        let db = open_raw(&path);
        let (frontier, retry, pending, records) = (
            db.open_tree("frontier").unwrap(),
            db.open_tree("retry_queue").unwrap(),
            db.open_tree("pending_fetch").unwrap(),
            db.open_tree("urls").unwrap(),
        );
        frontier.clear().unwrap();
        let mut key = ready.host.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&second.to_be_bytes());
        frontier.insert(key, &[]).unwrap();
        let retry_key = [DUE.to_be_bytes(), third.to_be_bytes()].concat();
        retry.insert(retry_key, &[]).unwrap();
        for (id, entry) in [(second, &ready), (third, &waiting)] {
            let old = PendingEntryV1 {
                host: entry.host.clone(),
                attempts: entry.attempts,
                not_before_ms: entry.not_before_ms,
            };
            let value = bincode::serialize(&PendingRecord::V1(old)).unwrap();
            pending.insert(id.to_be_bytes(), value).unwrap();
            // `UrlRecord::V2(entry)`: bincode writes the variant index, then the fields.
            let record = [
                1u32.to_le_bytes().to_vec(),
                bincode::serialize(&entry.url).unwrap(),
            ]
            .concat();
            records.insert(id.to_be_bytes(), record).unwrap();
        }
        db.insert("version", &3u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.pending(first).unwrap(), None);
    assert_eq!(journal.pending(second).unwrap(), Some(ready.clone()));
    assert_eq!(journal.pending(third).unwrap(), Some(waiting.clone()));
    let loaded = journal.frontier_of(&ready.host, None, 10).unwrap();
    let loaded: Vec<(u64, &str, u32)> = loaded
        .iter()
        .map(|r| (r.id, r.entry.url.as_str(), r.attempts))
        .collect();
    assert_eq!(loaded, vec![(second, url(2).as_str(), 1)]);
    let promoted = journal.promote_retries(DUE, 10).unwrap();
    let back = PendingEntry {
        not_before_ms: 0,
        ..waiting.clone()
    };
    assert_eq!(
        promoted
            .iter()
            .map(|p| (p.id, &p.entry))
            .collect::<Vec<_>>(),
        vec![(third, &back)]
    );
    journal
        .record_fetches(&[response(&journal, second, b"<p>two</p>")])
        .unwrap();
    journal.flush_blocking().unwrap();
    drop(journal);
    let db = open_raw(&path);
    let names = db.tree_names();
    assert!(!names.iter().any(|name| name == b"pending_fetch".as_slice()));
    assert_eq!(
        db.get("version").unwrap().unwrap().as_ref(),
        webspool::journal::FORMAT_VERSION.to_be_bytes()
    );
    drop(db);
    let journal = Journal::open(&path).unwrap();
    let status = journal.status().unwrap();
    assert_eq!((status.fetched, status.pending_fetch), (2, 1));
    assert_eq!(journal.body(second).unwrap(), Some(b"<p>two</p>".to_vec()));
    assert_eq!(journal.url(second).unwrap().unwrap().url, url(2));
    assert_eq!(journal.url(third).unwrap().unwrap().url, url(3));
}

/// The sled database under a journal, opened directly once the journal has let go of
/// it (sled releases its lock from a background thread).
fn open_raw(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the journal's lock: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

fn response(journal: &Journal, id: u64, body: &[u8]) -> FetchedPage {
    let body = body.to_vec();
    FetchedPage {
        id,
        host: host(&journal.url(id).unwrap().expect("known id").url),
        url: journal.url(id).unwrap().expect("known id"),
        meta: meta(&Some(body.clone())),
        body: Some(webspool::journal::pack_body(&body).unwrap()),
        retry_at_ms: None,
    }
}

/// A new journal at `path` with two URLs, the first fetched with `body` and flushed;
/// returns their ids.
fn two_urls_first_fetched(path: &std::path::Path, body: &[u8]) -> (u64, u64) {
    let journal = Journal::open(path).unwrap();
    journal
        .add_urls(&[new_url(&url(1)), new_url(&url(2))])
        .unwrap();
    let first = journal.find(&url(1)).unwrap().unwrap();
    let second = journal.find(&url(2)).unwrap().unwrap();
    journal
        .record_fetches(&[response(&journal, first, body)])
        .unwrap();
    journal.flush_blocking().unwrap();
    (first, second)
}

/// A journal as format version 2 left it: `PageRecord::V1` records, each body inline in
/// the `bodies` tree, no segment files. It is read as it is, and new bodies go to
/// segments.
#[test]
fn a_version_2_journal_keeps_its_bodies_and_new_ones_go_to_segments() {
    #[derive(serde::Serialize)]
    enum PageRecordV1 {
        V1(PageMeta),
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let old_body = b"<html>stored by format 2</html>".to_vec();
    let (first, second) = two_urls_first_fetched(&path, &old_body);
    {
        let db = open_raw(&path);
        let record = PageRecordV1::V1(meta(&Some(old_body.clone())));
        db.open_tree("pages")
            .unwrap()
            .insert(first.to_be_bytes(), bincode::serialize(&record).unwrap())
            .unwrap();
        let inline = zstd::bulk::compress(&old_body, 1).unwrap();
        db.open_tree("bodies")
            .unwrap()
            .insert(first.to_be_bytes(), inline)
            .unwrap();
        db.remove("segments_end").unwrap();
        db.insert("version", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_dir_all(path.join("segments")).unwrap();

    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.body(first).unwrap(), Some(old_body.clone()));
    journal
        .record_fetches(&[response(&journal, second, b"new")])
        .unwrap();
    journal.flush_blocking().unwrap();
    drop(journal);
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.body(first).unwrap(), Some(old_body));
    assert_eq!(journal.body(second).unwrap(), Some(b"new".to_vec()));
    assert!(path.join("segments").join("00000001.seg").is_file());
    drop(journal);
    let version = open_raw(&path).get("version").unwrap().unwrap();
    assert_eq!(
        version.as_ref(),
        &webspool::journal::FORMAT_VERSION.to_be_bytes()
    );
}

/// Bytes a crash left past the last recorded group (appended, never committed) are
/// cut off when the journal is opened; what was committed reads back.
#[test]
fn a_segment_tail_past_the_last_commit_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let segment = path.join("segments").join("00000001.seg");
    let (first, second) = two_urls_first_fetched(&path, b"kept");
    let committed = std::fs::metadata(&segment).unwrap().len();
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        file.write_all(b"a group that never committed").unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), committed);
    journal
        .record_fetches(&[response(&journal, second, b"next")])
        .unwrap();
    assert_eq!(journal.body(first).unwrap(), Some(b"kept".to_vec()));
    assert_eq!(journal.body(second).unwrap(), Some(b"next".to_vec()));
}

#[test]
fn a_journal_without_the_retry_counter_gets_its_retries_counted_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (_, second) = two_urls_first_fetched(&path, b"<p>one</p>");
    {
        let journal = Journal::open(&path).unwrap();
        let retry = FetchedPage {
            id: second,
            host: host(&url(2)),
            url: journal.url(second).unwrap().unwrap(),
            meta: meta(&None),
            body: None,
            retry_at_ms: Some(DUE),
        };
        journal.record_fetches(&[retry]).unwrap();
        journal.flush_blocking().unwrap();
        assert_eq!(journal.status().unwrap().retry_waiting, 1);
    }
    // As a journal written before the counter existed would be.
    {
        let db = open_raw(&path);
        let counters = db.open_tree("counters").unwrap();
        assert!(counters.remove("retry_waiting").unwrap().is_some());
        db.flush().unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    let status = journal.status().unwrap();
    assert_eq!((status.pending_fetch, status.retry_waiting), (1, 1));
    // And from there it moves with the queue.
    let promoted = journal.promote_retries(DUE, 10).unwrap();
    assert_eq!(
        promoted.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![second]
    );
    assert_eq!(journal.status().unwrap().retry_waiting, 0);
    journal
        .record_fetches(&[response(&journal, second, b"<p>two</p>")])
        .unwrap();
    let status = journal.status().unwrap();
    assert_eq!((status.pending_fetch, status.fetched), (0, 2));
}
