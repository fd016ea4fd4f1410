//! `webspool show` with the real binary: one JSON object per URL (a fetched page, a
//! failed one, one with versions after a recrawl that found it changed), the stored
//! body byte for byte (a gzip-encoded response comes back decoded), unknown URLs named
//! without their userinfo, and the same answers from the process holding the journal.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::cli::{crawl_list, on, stderr};
use crate::holder::{on_journal, serving, start_crawl, wait};
use crate::util::server::{self, slow_server, Gauge};
use crate::util::{self, eventually};

/// `show URL` of `journal` as JSON; it must succeed.
fn show(url: &str, journal: &Path) -> serde_json::Value {
    let out = on(&["show", url], journal);
    assert!(out.status.success(), "{url}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A page whose text depends on its version, long enough for gzip to matter.
fn page(version: u32) -> String {
    format!(
        "<html><title>page v{version}</title><body><a href=\"/next\">next</a>{}</body></html>",
        "words ".repeat(300)
    )
}

/// A site serving `/a` gzip-encoded with an ETag at the version in `version`, `/missing`
/// as a 404.
async fn site(version: Arc<Mutex<u32>>) -> util::TestServer {
    util::TestServer::start(move |req| {
        let version = *version.lock().unwrap();
        async move {
            match req.uri().path() {
                "/a" => server::with_headers(
                    server::reply(200, server::gzip(page(version).as_bytes())),
                    &[
                        ("content-encoding", "gzip"),
                        ("content-type", "text/html; charset=utf-8"),
                        ("etag", &format!("\"v{version}\"")),
                    ],
                ),
                _ => server::reply(404, "no such page"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tells_a_fetched_page_and_a_failed_one_and_gives_the_body_decoded() {
    let version = Arc::new(Mutex::new(1));
    let server = site(version.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let refused = format!("http://127.0.0.1:{}/down", server::refused_port());
    let with_password = server
        .url("/b")
        .replace("http://", "http://someone:sekrit@");
    let list = util::url_file(
        &dir,
        &[server.url("/a"), refused.clone(), with_password.clone()],
    );
    let journal = dir.path().join("j");
    let out = on(
        &[
            "crawl",
            "--quiet",
            "--ignore-robots",
            "--retries",
            "0",
            "--urls",
            list.to_str().unwrap(),
        ],
        &journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Looked up as crawl normalizes: scheme case and fragment do not matter.
    let typed = server.url("/a").replace("http://", "HTTP://") + "#top";
    let a = show(&typed, &journal);
    assert_eq!(a["url"], server.url("/a"), "{a:#}");
    assert_eq!(a["state"], "fetched", "{a:#}");
    assert_eq!(a["fetch"]["status"], 200, "{a:#}");
    assert_eq!(a["fetch"]["headers"]["etag"], "\"v1\"", "{a:#}");
    assert_eq!(
        a["fetch"]["headers"]["content_type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(a["fetch"]["size"], page(1).len() as u64, "{a:#}");
    assert!(a["fetch"]["fetched_at_ms"].as_u64().unwrap() > 0, "{a:#}");
    assert!(a["fetch"]["error"].is_null(), "{a:#}");
    assert_eq!(a["annotation"]["title"], "page v1", "{a:#}");
    assert_eq!(
        a["annotation"]["links"][0]["url"],
        server.url("/next"),
        "{a:#}"
    );
    assert_eq!(a["versions"], serde_json::json!([]), "{a:#}");
    let recrawl = &a["recrawl"];
    assert!(
        recrawl["next_due_ms"].as_u64().unwrap() > recrawl["checked_at_ms"].as_u64().unwrap(),
        "{a:#}"
    );
    // Never synced: pending, no version in MySQL.
    assert_eq!(a["sync"]["pending"], true, "{a:#}");
    assert!(a["sync"]["synced_version_ms"].is_null(), "{a:#}");
    assert!(a["pending"].is_null() && a["damage"].is_null(), "{a:#}");

    // The body as the server meant it: gzip removed, byte for byte.
    let out = on(&["show", "--body", &server.url("/a")], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == page(1).as_bytes(),
        "{} bytes",
        out.stdout.len()
    );

    // Given with a password: found with it, shown without it.
    let out = on(&["show", &with_password], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("sekrit") && !text.contains("someone"),
        "{text}"
    );
    let b: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["url"], server.url("/b"), "{b:#}");
    assert_eq!(
        (&b["state"], &b["fetch"]["status"]),
        (&"fetched".into(), &404.into())
    );

    let down = show(&refused, &journal);
    assert_eq!(down["state"], "failed", "{down:#}");
    assert!(down["fetch"]["status"].is_null(), "{down:#}");
    assert_eq!(down["fetch"]["error"]["kind"], "connect", "{down:#}");
    assert!(down["annotation"].is_null(), "{down:#}");
    let out = on(&["show", "--body", &refused], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no stored body"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_url_is_named_without_its_password_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &[]);
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    let out = on(
        &["show", "http://someone:sekrit@example.com/nope"],
        &journal,
    );
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(
        said.trim_end(),
        format!(
            "error: no URL http://***@example.com/nope in journal {}",
            journal.display()
        )
    );
    assert!(out.stdout.is_empty());
    let out = on(&["show", "not a url"], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: `not a url` is not a URL webspool fetches: "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_changed_at_recrawl_lists_its_older_version_and_gives_either_body() {
    let version = Arc::new(Mutex::new(1));
    let server = site(version.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/a");
    let list = util::url_file(&dir, std::slice::from_ref(&url));
    let journal = dir.path().join("j");
    crawl_list(&list, &journal);
    let first = show(&url, &journal);
    *version.lock().unwrap() = 2;
    let out = on(&["recrawl", "--quiet", "--all"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));

    let now = show(&url, &journal);
    assert_eq!(now["annotation"]["title"], "page v2", "{now:#}");
    assert_eq!(now["fetch"]["headers"]["etag"], "\"v2\"", "{now:#}");
    let versions = now["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{now:#}");
    assert_eq!(
        versions[0]["fetched_at_ms"], first["fetch"]["fetched_at_ms"],
        "{now:#}"
    );
    assert_eq!(versions[0]["size"], page(1).len() as u64, "{now:#}");
    assert_eq!(versions[0]["status"], 200, "{now:#}");
    assert!(
        now["recrawl"]["changed_at_ms"].as_u64().is_some(),
        "{now:#}"
    );

    let out = on(&["show", "--body", &url], &journal);
    assert!(out.stdout == page(2).as_bytes(), "{}", stderr(&out));
    let key = versions[0]["key"].to_string();
    let out = on(&["show", "--body", "--version", &key, &url], &journal);
    assert!(out.stdout == page(1).as_bytes(), "{}", stderr(&out));
    let out = on(&["show", "--body", "--version", "1", &url], &journal);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no version 1"),
        "{}",
        stderr(&out)
    );
}

/// While a crawl holds the journal, `show` asks it: the same JSON, and the body in
/// chunks through the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_during_a_crawl_is_answered_by_the_crawl() {
    const PAGES: usize = 300;
    let site = slow_server([Gauge::default(), Gauge::default()]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let crawl = start_crawl(&site, dir.path(), PAGES, None);
    serving(&journal).await;
    let url = site.url("/p0");
    assert!(
        eventually(30, || {
            let out = on(&["show", &url], &journal);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v["state"] == "fetched")
        })
        .await,
        "/p0 never showed as fetched"
    );
    let shown = on_journal(&["show", &url], &journal).await;
    let view: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(view["fetch"]["status"], 200, "{view:#}");
    assert_eq!(view["fetch"]["size"], 4, "{view:#}");
    let body = on_journal(&["show", "--body", &url], &journal).await;
    assert!(body.status.success(), "{}", stderr(&body));
    assert_eq!(body.stdout, b"slow");
    let missing = on_journal(&["show", &site.url("/nowhere")], &journal).await;
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains(&format!("no URL {}", site.url("/nowhere"))),
        "{}",
        stderr(&missing)
    );
    assert!(
        util::vm_hwm_kb(crawl.id()).is_some(),
        "the crawl ended before the checks: they may not have gone through it"
    );
    let status = wait(crawl).await;
    assert!(status.success());
}
