//! `webspool recrawl` with the real binary against a site whose pages change: requests
//! carry the stored validators, 304s and same-content 200s keep the stored version,
//! changed pages get a new one (parsed and synced again), 404s mark pages gone, and a
//! recrawl killed with SIGKILL resumes.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::*;

use crate::cli::{crawl_list, on, run, status_json as status, stderr};
use crate::util::mysql::TestDb;
use crate::util::{self, server};

/// What the site serves at a path: a body, whether it sends an ETag (and honours
/// If-None-Match), or a 404.
#[derive(Clone)]
enum Page {
    Tagged(String, u32),
    Plain(String),
    Missing,
}

/// The site's pages, the conditional requests it saw and the 304s it sent.
#[derive(Default)]
struct Site {
    pages: HashMap<String, Page>,
    conditional: u64,
    not_modified: u64,
}

type Shared = Arc<Mutex<Site>>;

fn body(path: &str, version: u32) -> String {
    format!(
        "<html><title>{path} v{version}</title><body>{}</body></html>",
        "text ".repeat(200)
    )
}

async fn serve(site: Shared) -> util::TestServer {
    util::TestServer::start(move |req| {
        let site = site.clone();
        async move {
            let path = req.uri().path().to_string();
            let asked = server::header(&req, "if-none-match");
            let mut site = site.lock().unwrap();
            site.conditional += u64::from(asked.is_some());
            match site.pages.get(&path).cloned() {
                Some(Page::Tagged(text, version)) => {
                    let tag = format!("\"{path}-{version}\"");
                    if asked.as_deref() == Some(tag.as_str()) {
                        site.not_modified += 1;
                        return server::with_headers(server::reply(304, ""), &[("etag", &tag)]);
                    }
                    server::with_headers(server::reply(200, text), &[("etag", &tag)])
                }
                Some(Page::Plain(text)) => server::reply(200, text),
                Some(Page::Missing) | None => server::reply(404, "gone"),
            }
        }
    })
    .await
}

/// A row: body, synced_at, checked_at.
type Row = (Vec<u8>, String, String);

/// url -> row, for every row.
async fn rows(db: &TestDb) -> BTreeMap<String, Row> {
    let mut conn = db.conn().await;
    conn.query::<(String, Vec<u8>, String, String), _>(
        "SELECT url, body, CAST(synced_at AS CHAR), CAST(checked_at AS CHAR) FROM pages",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(url, body, synced, checked)| (url, (body, synced, checked)))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn recrawl_keeps_unchanged_pages_and_stores_changed_and_gone_ones() {
    let site: Shared = Arc::default();
    {
        let mut s = site.lock().unwrap();
        for i in 0..20 {
            let path = format!("/t{i}");
            s.pages
                .insert(path.clone(), Page::Tagged(body(&path, 1), 1));
        }
        for i in 0..5 {
            let path = format!("/p{i}");
            s.pages.insert(path.clone(), Page::Plain(body(&path, 1)));
        }
    }
    let server = serve(site.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<String> = site.lock().unwrap().pages.keys().cloned().collect();
    paths.sort();
    let list = util::url_file(
        &dir,
        &paths.iter().map(|p| server.url(p)).collect::<Vec<_>>(),
    );
    let journal = dir.path().join("j");
    let db = TestDb::new().await;
    let out = run(&[
        "crawl",
        "--quiet",
        "--urls",
        list.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--sync",
        &db.url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = rows(&db).await;
    assert_eq!(first.len(), 25);
    assert_eq!(
        site.lock().unwrap().conditional,
        0,
        "a first fetch is unconditional"
    );

    // Nothing is due yet: the default interval is a day.
    let out = on(&["recrawl"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no page is due"), "{}", stderr(&out));
    assert_eq!(server.all_hits().values().sum::<u64>(), 25 + 1);

    // Three tagged pages change, one plain page changes, two tagged pages go away.
    {
        let mut s = site.lock().unwrap();
        for i in 0..3 {
            let path = format!("/t{i}");
            s.pages
                .insert(path.clone(), Page::Tagged(body(&path, 2), 2));
        }
        s.pages.insert("/p0".into(), Page::Plain(body("/p0", 2)));
        s.pages.insert("/t18".into(), Page::Missing);
        s.pages.insert("/t19".into(), Page::Missing);
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let out = on(&["recrawl", "--all", "--sync", &db.url], &journal);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("checked 25: 19 unchanged, 4 changed, 2 gone"),
        "{err}"
    );
    {
        let s = site.lock().unwrap();
        assert_eq!(
            s.conditional, 20,
            "every tagged page is asked for with its ETag"
        );
        assert_eq!(s.not_modified, 15);
    }
    let s = status(&journal);
    assert_eq!(
        (&s["checked"], &s["unchanged"], &s["changed"], &s["gone"]),
        (&25.into(), &19.into(), &4.into(), &2.into())
    );
    assert_eq!(s["fetched"], 25);
    assert_eq!(s["pending_fetch"], 0);
    assert_eq!(s["pending_parse"], 0);
    assert_eq!(s["due"], 0);

    let after = rows(&db).await;
    assert_eq!(after.len(), 25);
    for path in &paths {
        let url = server.url(path);
        let changed = ["/t0", "/t1", "/t2", "/p0"].contains(&path.as_str());
        let (old_body, old_synced, old_checked) = &first[&url];
        let (new_body, new_synced, new_checked) = &after[&url];
        assert!(
            new_checked > old_checked,
            "{path}: checked_at moves for every page"
        );
        if changed {
            assert_eq!(new_body, body(path, 2).as_bytes(), "{path}");
            assert_ne!(new_synced, old_synced, "{path} synced again");
        } else {
            // Unchanged and gone pages keep their stored version, and their rows are
            // not rewritten.
            assert_eq!(new_body, old_body, "{path}");
            assert_eq!(new_synced, old_synced, "{path}");
        }
    }
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));

    // gone_at: set for the pages that answered 404, and only for them.
    let gone = gone_at(&db).await;
    let gone_paths = ["/t18", "/t19"];
    for path in &paths {
        let at = &gone[&server.url(path)];
        assert_eq!(
            at.is_some(),
            gone_paths.contains(&path.as_str()),
            "{path}: {at:?}"
        );
    }
    // /t18 comes back as it was (a 304), /t19 is still gone: t18's gone_at is cleared,
    // t19 keeps the time it was first found gone.
    site.lock()
        .unwrap()
        .pages
        .insert("/t18".into(), Page::Tagged(body("/t18", 1), 1));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let out = on(
        &["recrawl", "--all", "--quiet", "--sync", &db.url],
        &journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again = gone_at(&db).await;
    assert_eq!(again[&server.url("/t18")], None);
    assert_eq!(again[&server.url("/t19")], gone[&server.url("/t19")]);
    assert_eq!(again.values().filter(|at| at.is_some()).count(), 1);
}

/// url -> gone_at, for every row.
async fn gone_at(db: &TestDb) -> BTreeMap<String, Option<String>> {
    let mut conn = db.conn().await;
    conn.query("SELECT url, CAST(gone_at AS CHAR) FROM pages")
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// SIGKILL in the middle of a recrawl: the next `recrawl` finishes the checks that were
/// queued (no `--all` needed), and no page is checked twice except those in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_recrawl_resumes_its_queued_checks() {
    let n = 300;
    let site: Shared = Arc::default();
    {
        let mut s = site.lock().unwrap();
        for i in 0..n {
            let path = format!("/t{i}");
            s.pages
                .insert(path.clone(), Page::Tagged(body(&path, 1), 1));
        }
    }
    let server = serve(site.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..n).map(|i| server.url(&format!("/t{i}"))).collect();
    let list = util::url_file(&dir, &urls);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);

    let mut child = Command::new(util::bin())
        .args([
            "recrawl",
            "--all",
            "--quiet",
            "--concurrency",
            "2",
            "--per-host",
            "2",
        ])
        .args(["--delay", "0.01", "--journal"])
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while site.lock().unwrap().conditional < 40 && started.elapsed().as_secs() < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    util::signal(&child, libc::SIGKILL);
    let _ = child.wait();
    let checked_before = status(&journal)["checked"].as_u64().unwrap();
    assert!(checked_before < n as u64, "killed mid-run");

    let out = on(&["recrawl", "--quiet"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&journal);
    assert_eq!(s["checked"], n as u64, "{s}");
    assert_eq!(s["unchanged"], n as u64, "{s}");
    assert_eq!(s["pending_fetch"], 0, "{s}");
    let conditional = site.lock().unwrap().conditional;
    assert!(
        conditional >= n as u64 && conditional <= n as u64 + 4,
        "only checks in flight at the kill are made twice: {conditional}"
    );
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
}
