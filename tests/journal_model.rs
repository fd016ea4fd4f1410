//! Model test of the journal: random adds, recorded fetches and reopens, checked after
//! every step against a `BTreeMap` model (as sled's own tree tests do).

use std::collections::BTreeMap;

use proptest::prelude::*;
use webspool::journal::{ErrorKind, FetchedPage, Journal, KeptHeaders, NewUrl, Outcome, PageMeta};

const UNIVERSE: usize = 24;

fn url(i: usize) -> String {
    format!("http://h{}.test/p/{i}", i % 3)
}

#[derive(Clone, Debug)]
enum Op {
    Add(Vec<usize>),
    /// (url index, Some(body) for a response, None for an error)
    Record(Vec<(usize, Option<Vec<u8>>)>),
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
        1 => Just(Op::Reopen),
    ]
}

/// A recorded fetch in the model: `Some(body)` for a response, `None` for an error.
type Recorded = Option<Vec<u8>>;

#[derive(Clone, Debug, Default)]
struct Model {
    /// url -> (insertion order, the recorded fetch if any)
    urls: BTreeMap<String, (usize, Option<Recorded>)>,
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
    let fetched = model
        .urls
        .values()
        .filter(|(_, p)| matches!(p, Some(Some(_))))
        .count() as u64;
    let failed = model
        .urls
        .values()
        .filter(|(_, p)| matches!(p, Some(None)))
        .count() as u64;
    assert_eq!(status.urls, model.urls.len() as u64);
    assert_eq!(status.fetched, fetched);
    assert_eq!(status.failed, failed);
    assert_eq!(
        status.pending_fetch,
        model.urls.len() as u64 - fetched - failed
    );
    assert_eq!(status.pending_parse, fetched);
    assert_eq!(status.errors.get("timeout").copied().unwrap_or(0), failed);
    let raw: u64 = model
        .urls
        .values()
        .filter_map(|(_, p)| p.as_ref().and_then(|b| b.as_ref()).map(|b| b.len() as u64))
        .sum();
    assert_eq!(status.raw_bytes, raw);

    for (u, (_, page)) in &model.urls {
        let id = journal.find(u).unwrap().expect("known url");
        assert_eq!(journal.url(id).unwrap().unwrap().url, *u);
        assert_eq!(journal.is_pending_fetch(id).unwrap(), page.is_none());
        match page {
            None => assert!(journal.page(id).unwrap().is_none()),
            Some(body) => {
                assert_eq!(journal.page(id).unwrap().unwrap(), meta(body));
                assert_eq!(journal.body(id).unwrap(), body.clone());
            }
        }
    }
    // Pending URLs come back in insertion order, whole or in slices.
    let mut expected: Vec<(usize, String)> = model
        .urls
        .iter()
        .filter(|(_, (_, p))| p.is_none())
        .map(|(u, (order, _))| (*order, u.clone()))
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, u)| u).collect();
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let slice = journal.pending_fetch_after(cursor, 3).unwrap();
        if slice.is_empty() {
            break;
        }
        cursor = slice.last().map(|(id, _)| *id);
        got.extend(slice.into_iter().map(|(_, e)| e.url));
    }
    assert_eq!(got, expected);
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
                    let batch: Vec<NewUrl> = idxs
                        .iter()
                        .map(|i| NewUrl { url: url(*i), source_key: None })
                        .collect();
                    let mut added = 0;
                    for new in &batch {
                        if !model.urls.contains_key(&new.url) {
                            model.urls.insert(new.url.clone(), (order, None));
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
                        if let Some((_, page @ None)) = model.urls.get_mut(&u) {
                            *page = Some(body.clone());
                        }
                        pages.push(FetchedPage {
                            id,
                            meta: meta(&body),
                            compressed_body: body.as_ref().map(|b| zstd::bulk::compress(b, 1).unwrap()),
                        });
                    }
                    // Within one batch the first record of an id wins; replays change nothing.
                    journal.record_fetches(&pages).unwrap();
                    journal.record_fetches(&pages).unwrap();
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
        j.add_urls(&[NewUrl {
            url: url(1),
            source_key: None,
        }])
        .unwrap();
        j.flush_blocking().unwrap();
        j.find(&url(1)).unwrap().unwrap()
    };
    let j = Journal::open(&path).unwrap();
    j.add_urls(&[NewUrl {
        url: url(2),
        source_key: None,
    }])
    .unwrap();
    assert!(j.find(&url(2)).unwrap().unwrap() > first);
}
