//! `webspool recrawl` with the real binary against a site whose pages change: requests
//! carry the stored validators, 304s and same-content 200s keep the stored version,
//! changed pages get a new one (parsed and synced again), 404s mark pages gone, and a
//! recrawl killed with SIGKILL resumes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::*;

use crate::cli::{crawl_list, on, run, status_json as status, stderr};
use crate::util::mysql::TestDb;
use crate::util::{self, server};
use webspool::journal::Journal;

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

/// A site of `n` pages `/t0`.. with ETags, at version 1, crawled into `dir/j`: the
/// site, its server, the URL list and the journal.
async fn crawled_tagged(
    dir: &tempfile::TempDir,
    n: usize,
) -> (Shared, util::TestServer, PathBuf, PathBuf) {
    let site: Shared = Arc::default();
    set_pages(&site, 0..n, |path| Page::Tagged(body(path, 1), 1));
    let server = serve(site.clone()).await;
    let urls: Vec<String> = (0..n).map(|i| server.url(&format!("/t{i}"))).collect();
    let list = util::url_file(dir, &urls);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    (site, server, list, journal)
}

/// Sets what the site serves at `/t{i}` for each `i` of `which`.
fn set_pages(site: &Shared, which: impl IntoIterator<Item = usize>, page: impl Fn(&str) -> Page) {
    let mut s = site.lock().unwrap();
    for i in which {
        let path = format!("/t{i}");
        s.pages.insert(path.clone(), page(&path));
    }
}

/// Starts `recrawl --all` on `journal`, slowly, and kills it with SIGKILL once `site`
/// saw `requests` conditional requests.
async fn kill_recrawl_after(journal: &std::path::Path, site: &Shared, requests: u64) {
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
        .arg(journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while site.lock().unwrap().conditional < requests && started.elapsed().as_secs() < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    util::signal(&child, libc::SIGKILL);
    let _ = child.wait();
}

/// SIGKILL in the middle of a recrawl: the next `recrawl` finishes the checks that were
/// queued (no `--all` needed), and no page is checked twice except those in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_recrawl_resumes_its_queued_checks() {
    let n = 300;
    let dir = tempfile::tempdir().unwrap();
    let (site, _server, _list, journal) = crawled_tagged(&dir, n).await;

    kill_recrawl_after(&journal, &site, 40).await;
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

/// A changed page's previous version moves to `versions` in the transaction that
/// records the new one: SIGKILL in the middle of a recrawl that finds every page
/// changed, then a recrawl that finishes, leave each page with exactly one older
/// version, the first one, none lost and none twice.
#[tokio::test(flavor = "multi_thread")]
async fn versions_survive_a_killed_recrawl() {
    let n = 300;
    let dir = tempfile::tempdir().unwrap();
    let (site, server, _list, journal) = crawled_tagged(&dir, n).await;
    set_pages(&site, 0..n, |path| Page::Tagged(body(path, 2), 2));
    kill_recrawl_after(&journal, &site, 40).await;
    let s = status(&journal);
    assert!(
        s["changed"].as_u64().unwrap() < n as u64,
        "killed mid-run: {s}"
    );
    assert_eq!(s["versions"], s["changed"], "{s}");

    let out = on(&["recrawl", "--quiet"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&journal);
    assert_eq!(
        (&s["changed"], &s["versions"]),
        (&n.into(), &n.into()),
        "{s}"
    );
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let journal = Journal::open_existing(&journal).unwrap();
    for i in 0..n {
        let path = format!("/t{i}");
        let url = server.url(&path);
        assert!(util::body_of(&journal, &url) == body(&path, 2).as_bytes());
        let id = journal.find(&url).unwrap().unwrap();
        let versions = journal.versions(id).unwrap();
        assert_eq!(versions.len(), 1, "{path}");
        let old = journal.version_body(id, versions[0].key_ms).unwrap();
        assert!(old.unwrap() == body(&path, 1).as_bytes(), "{path}");
    }
}

/// The status, whether the body is NULL and whether `gone_at` is set, of the row of
/// `url`.
async fn row_of(db: &TestDb, url: &str) -> (u16, bool, bool) {
    let mut conn = db.conn().await;
    conn.exec_first(
        "SELECT status, body IS NULL, gone_at IS NOT NULL FROM pages WHERE url = ?",
        (url,),
    )
    .await
    .unwrap()
    .unwrap()
}

/// `compact --drop-gone`: a gone page loses its body, its older versions and its
/// annotation and keeps a tombstone (a 410 without a body). A crawl of the same list
/// does not fetch it again; a recrawl that finds it still gone keeps the tombstone
/// (nothing parsed); reparse does not annotate it; MySQL's row has no body any more;
/// a page that comes back is a new version. A page that was gone and came back as it
/// was is not dropped.
#[tokio::test(flavor = "multi_thread")]
async fn drop_gone_keeps_a_tombstone_that_is_neither_fetched_again_nor_resurrected() {
    let n = 10;
    let dir = tempfile::tempdir().unwrap();
    let (site, server, list, journal) = crawled_tagged(&dir, n).await;
    let db = TestDb::new().await;
    let recrawl = |expect: &'static str| {
        let out = on(&["recrawl", "--all", "--sync", &db.url], &journal);
        let err = stderr(&out);
        assert!(out.status.success() && err.contains(expect), "{err}");
    };
    // /t0 changes (one older version), then goes; /t1 goes; /t2 goes and comes back
    // as it was (a 304: gone no more).
    set_pages(&site, [0], |path| Page::Tagged(body(path, 2), 2));
    set_pages(&site, [1, 2], |_| Page::Missing);
    recrawl("checked 10: 7 unchanged, 1 changed, 2 gone");
    set_pages(&site, [0], |_| Page::Missing);
    set_pages(&site, [2], |path| Page::Tagged(body(path, 1), 1));
    recrawl("checked 10: 8 unchanged, 0 changed, 2 gone");
    let before = status(&journal);
    assert_eq!(
        (&before["versions"], &before["parsed"]),
        (&1.into(), &10.into())
    );

    let said = crate::compact::compact_with(&journal, &["--drop-gone"]);
    assert!(
        said.contains("1 older version dropped, 2 gone pages dropped"),
        "{said}"
    );
    let after = status(&journal);
    assert_eq!(
        (&after["versions"], &after["parsed"]),
        (&0.into(), &8.into())
    );
    assert_eq!(after["fetched"], n as u64, "a tombstone is a page record");
    let one = before["stored_body_bytes"].as_u64().unwrap() / n as u64;
    assert!(after["stored_body_bytes"].as_u64().unwrap() <= 8 * one + one / 2);
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    {
        let j = Journal::open_existing(&journal).unwrap();
        for path in ["/t0", "/t1"] {
            let url = server.url(path);
            assert!(util::no_body(&j, &url), "{path}");
            assert_eq!(util::status_of(&util::page_of(&j, &url)), 410);
        }
    }
    // The next sync writes the tombstones.
    let out = on(&["sync", "--quiet", "--mysql", &db.url], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(row_of(&db, &server.url("/t1")).await, (410, true, true));
    assert_eq!(row_of(&db, &server.url("/t2")).await, (200, false, false));
    {
        let j = Journal::open_existing(&journal).unwrap();
        let url = server.url("/t2");
        assert!(util::body_of(&j, &url) == body("/t2", 1).as_bytes());
    }

    let hits = server.all_hits();
    crawl_list(&list, &journal);
    assert_eq!(
        server.all_hits(),
        hits,
        "a crawl of the same list fetches nothing"
    );
    recrawl("checked 10: 10 unchanged, 0 changed, 0 gone");
    let out = on(&["reparse", "--quiet"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let now = status(&journal);
    assert_eq!(
        (&now["parsed"], &now["versions"]),
        (&8.into(), &0.into()),
        "{now}"
    );
    assert_eq!(row_of(&db, &server.url("/t0")).await, (410, true, true));

    set_pages(&site, [1], |path| Page::Tagged(body(path, 3), 3));
    recrawl("checked 10: 9 unchanged, 1 changed, 0 gone");
    assert_eq!(status(&journal)["parsed"], 9);
    assert_eq!(row_of(&db, &server.url("/t1")).await, (200, false, false));
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `YYYY-MM-DDThh:mm:ssZ` of a time in milliseconds since the epoch, whole seconds.
fn w3c_datetime(ms: u64) -> String {
    let [year, month, day, hour, minute, second] = webspool::journal::utc_fields(ms);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Sitemap hints: a `<changefreq>` shortens a page's interval (`always`: to
/// `--min-interval`), a `<lastmod>` after a page's last check makes it due at the next
/// recrawl; pages without a hint, or with a longer changefreq, keep their interval.
#[tokio::test(flavor = "multi_thread")]
async fn sitemap_changefreq_and_lastmod_make_pages_due_sooner() {
    let server = util::TestServer::start_knowing_base(|base, req| async move {
        let path = req.uri().path().to_string();
        if path != "/sitemap.xml" {
            return server::reply(200, body(&path, 1));
        }
        let now = w3c_datetime(webspool::journal::now_ms());
        let entries = [
            ("/a", "<changefreq>always</changefreq>".to_string()),
            ("/b", format!("<lastmod>{now}</lastmod>")),
            ("/c", "<changefreq>yearly</changefreq>".to_string()),
            ("/d", String::new()),
        ];
        let urls: String = entries
            .iter()
            .map(|(path, hint)| format!("<url><loc>{base}{path}</loc>{hint}</url>"))
            .collect();
        server::with_headers(
            server::reply(
                200,
                format!(
                    "<?xml version=\"1.0\"?><urlset \
                     xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">{urls}</urlset>"
                ),
            ),
            &[("content-type", "application/xml")],
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pages = ["/a", "/b", "/c", "/d"];
    let list = util::url_file(&dir, &pages.map(|p| server.url(p)));
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    // The sitemap's lastmod (whole seconds) comes after the pages' fetch.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sitemap = server.url("/sitemap.xml");
    let out = on(&["crawl", "--quiet", "--sitemap", &sitemap], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(pages.iter().all(|p| server.hits(p) == 1));

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = on(&["recrawl", "--min-interval", "200ms"], &journal);
    let err = stderr(&out);
    assert!(out.status.success() && err.contains("checked 2:"), "{err}");
    let hits: Vec<u64> = pages.iter().map(|p| server.hits(p)).collect();
    assert_eq!(hits, [2, 2, 1, 1], "/a (always) and /b (lastmod) only");
    assert_eq!(server.hits("/sitemap.xml"), 1);

    // Checked since its lastmod, /b is not due again; /a is, every 200 ms.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = on(&["recrawl"], &journal);
    let err = stderr(&out);
    assert!(out.status.success() && err.contains("checked 1:"), "{err}");
    let hits: Vec<u64> = pages.iter().map(|p| server.hits(p)).collect();
    assert_eq!(hits, [3, 2, 1, 1]);
    let out = on(&["verify"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
}
