//! The fetch stage against real servers on loopback, driven through the library crawl:
//! stored bytes and headers, status counts, redirects, content-decoding, the size cap,
//! connect and DNS errors, URL-list intake, resume, per-host limits and credentials.
//! Servers that misbehave (timeouts, bombs, loops, garbage) are in `hostile.rs`;
//! `codings.rs` runs every content-coding spelling and stack through the real binary.

mod codings;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use webspool::fetch::FetchConfig;
use webspool::journal::{ErrorKind::*, Journal, Outcome, Redirect};

use crate::util::server::{brotli, chunks, gzip, header, redirect, refused_port, reply};
use crate::util::server::{slow_server, with_headers, Gauge};
use crate::util::server::{zlib, zstd};
use crate::util::{self, body_of, error_of, errors, kind_of, no_body, page_of, took};
use crate::util::{response_of, status_of, Reply, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_stored_exactly_with_headers_and_counts() {
    let page: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let served = Bytes::from(page.clone());
    let agent = Arc::new(Mutex::new(None::<String>));
    let seen = agent.clone();
    let server = TestServer::start(move |req| {
        let served = served.clone();
        *seen.lock().unwrap() = header(&req, "user-agent");
        async move {
            let kept = [
                ("content-type", "application/octet-stream"),
                ("etag", "\"v1-abc\""),
                ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ];
            match req.uri().path() {
                "/page" => with_headers(reply(200, served), &kept),
                "/missing" => reply(404, "no such page"),
                "/broken" => reply(500, "it broke"),
                _ => reply(418, ""),
            }
        }
    })
    .await;
    let refused = format!("http://127.0.0.1:{}/", refused_port());
    let mut urls: Vec<String> = ["/page", "/missing", "/broken"]
        .map(|p| server.url(p))
        .into();
    urls.push(refused.clone());
    let (_dir, journal, summary) = util::crawl_lines(&urls, util::quick_fetch()).await;

    let meta = page_of(&journal, &urls[0]);
    assert_eq!(status_of(&meta), 200);
    assert_eq!(response_of(&meta), ("HTTP/1.1", &*urls[0], 70_000));
    assert!(meta.redirects.is_empty());
    assert_eq!(body_of(&journal, &urls[0]), page);
    let Outcome::Response { headers: h, .. } = &meta.outcome else {
        unreachable!()
    };
    let ua = webspool::fetch::default_user_agent();
    assert_eq!(agent.lock().unwrap().as_deref(), Some(&*ua));
    let kept = [
        &h.content_type,
        &h.etag,
        &h.last_modified,
        &h.content_length,
    ];
    let want = [
        "application/octet-stream",
        "\"v1-abc\"",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "70000",
    ];
    assert_eq!(kept.map(|v| v.as_deref()), want.map(Some));
    assert!(
        h.date.as_ref().is_some_and(|d| d.ends_with(" GMT")),
        "{h:?}"
    );

    // Non-2xx answers are responses, stored with their status and body.
    assert_eq!(status_of(&page_of(&journal, &urls[1])), 404);
    assert_eq!(body_of(&journal, &urls[1]), b"no such page");
    assert_eq!(status_of(&page_of(&journal, &urls[2])), 500);
    assert_eq!(body_of(&journal, &urls[2]), b"it broke");
    assert_eq!(kind_of(&journal, &refused), Connect);
    for path in ["/page", "/missing", "/broken"] {
        assert_eq!(server.hits(path), 1, "{path}");
    }

    let s = journal.status().unwrap();
    assert_eq!((s.urls, s.fetched, s.failed, s.pending_fetch), (4, 3, 1, 0));
    // The crawl parsed every response alongside; every page awaits sync.
    assert_eq!((s.pending_parse, s.parsed, s.pending_sync), (0, 3, 4));
    assert_eq!(s.errors, errors(&[("connect", 1)]));
    assert_eq!(s.raw_bytes, 70_000 + 12 + 8);
    assert!(s.stored_body_bytes > 0 && s.stored_body_bytes < s.raw_bytes);
    assert_eq!((summary.added, summary.fetched, summary.failed), (4, 3, 1));
    assert_eq!(summary.bytes, s.raw_bytes);
    assert!(!summary.interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redirect_status_is_followed_and_recorded() {
    let server = TestServer::start(|req| async move {
        let host = header(&req, "host").unwrap();
        match req.uri().path() {
            "/a/r301" => redirect(301, "r302"),
            "/a/r302" => redirect(302, "/b/r303"),
            "/b/r303" => redirect(303, &format!("http://{host}/b/r307")),
            "/b/r307" => redirect(307, "../r308"),
            "/r308" => redirect(308, "./final?x=1#top"),
            "/final" => reply(200, "landed"),
            _ => reply(404, ""),
        }
    })
    .await;
    let start = server.url("/a/r301");
    let (_dir, journal, _) =
        util::crawl_lines(std::slice::from_ref(&start), util::quick_fetch()).await;
    let meta = page_of(&journal, &start);
    assert_eq!(status_of(&meta), 200);
    let hops = [
        (301, "/a/r302"),
        (302, "/b/r303"),
        (303, "/b/r307"),
        (307, "/r308"),
        (308, "/final?x=1"),
    ];
    let expected: Vec<Redirect> = hops
        .iter()
        .map(|&(status, path)| Redirect {
            status,
            location: server.url(path),
        })
        .collect();
    assert_eq!(meta.redirects, expected);
    assert_eq!(response_of(&meta).1, server.url("/final?x=1"));
    assert_eq!(body_of(&journal, &start), b"landed");
    assert_eq!(server.hits("/a/r301"), 1);
    for (_, path) in hops {
        assert_eq!(server.hits(path), 1, "{path}");
    }
}

/// The redirect cap's boundary (loops, long chains and foreign schemes are in
/// `hostile.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_stop_after_max_redirects_and_exactly_max_is_followed() {
    let server = TestServer::start(|req| async move {
        let step = req.uri().path().strip_prefix("/chain/");
        match step.and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n < 20 => redirect(302, &format!("/chain/{}", n + 1)),
            Some(_) => reply(200, "end of chain"),
            None => reply(404, ""),
        }
    })
    .await;
    let urls = ["/chain/0", "/chain/17"].map(|p| server.url(p));
    let config = FetchConfig {
        max_redirects: 3,
        ..util::quick_fetch()
    };
    let (_dir, journal, _) = util::crawl_lines(&urls, config).await;

    assert_eq!(kind_of(&journal, &urls[0]), TooManyRedirects);
    assert_eq!(page_of(&journal, &urls[0]).redirects.len(), 3);
    let asked: Vec<u64> = (0..5)
        .map(|i| server.hits(&format!("/chain/{i}")))
        .collect();
    assert_eq!(
        asked,
        [1, 1, 1, 1, 0],
        "the request and 3 redirects, no more"
    );
    let meta = page_of(&journal, &urls[1]);
    assert_eq!(status_of(&meta), 200);
    assert_eq!(meta.redirects.len(), 3);
    assert_eq!(body_of(&journal, &urls[1]), b"end of chain");
    let s = journal.status().unwrap();
    assert_eq!(s.errors, errors(&[("too_many_redirects", 1)]));
    assert_eq!((s.fetched, s.failed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_are_stored_decoded() {
    let original: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i} of the page\n").into_bytes())
        .collect();
    let encoded = Arc::new(BTreeMap::from([
        ("gzip", gzip(&original)),
        ("deflate", zlib(&original)),
        ("br", brotli(&original)),
        ("zstd", zstd(&original)),
        ("identity", original.clone()),
    ]));
    for (name, data) in encoded.iter() {
        let small = data.len() < original.len() / 4;
        assert!(*name == "identity" || small, "{name} compresses");
    }
    let server = TestServer::start(move |req| {
        let encoded = encoded.clone();
        async move {
            let coding = req.uri().path().trim_start_matches('/').to_string();
            let accepted = header(&req, "accept-encoding").unwrap_or_default();
            let needed = coding.replace("corrupt", "gzip");
            if needed != "identity" && !accepted.contains(&needed) {
                return reply(406, "encoding not accepted");
            }
            let (body, coding) = match coding.as_str() {
                "corrupt" => (Bytes::from_static(b"\x1f\x8b\x08\0garbage"), "gzip"),
                c => (encoded[c].clone().into(), c),
            };
            let headers = [("content-encoding", coding), ("content-type", "text/plain")];
            with_headers(reply(200, body), &headers)
        }
    })
    .await;
    let codings = ["gzip", "deflate", "br", "zstd", "identity", "corrupt"];
    let urls = codings.map(|c| server.url(&format!("/{c}")));
    let (_dir, journal, _) = util::crawl_lines(&urls, util::quick_fetch()).await;
    for url in &urls[..5] {
        let meta = page_of(&journal, url);
        assert_eq!(status_of(&meta), 200, "{url}");
        assert_eq!(response_of(&meta).2, original.len() as u64, "{url}");
        let same = body_of(&journal, url) == original;
        assert!(same, "{url}: the stored body differs from the original");
    }
    // A body that does not decode is an error, never stored as if it were the page.
    assert_eq!(kind_of(&journal, &urls[5]), Protocol);
    assert!(no_body(&journal, &urls[5]));
    let raw = journal.status().unwrap().raw_bytes;
    assert_eq!(raw, 5 * original.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_cap_are_too_large_and_at_the_cap_are_kept() {
    const CAP: usize = 64 * 1024;
    let at_cap = Bytes::from(vec![b'a'; CAP]);
    let gz_at_cap = Bytes::from(gzip(&at_cap));
    let server = TestServer::start(move |req| {
        let (at_cap, gz_at_cap) = (at_cap.clone(), gz_at_cap.clone());
        async move {
            let gzipped = [("content-encoding", "gzip")];
            match req.uri().path() {
                "/identity-at-cap" => reply(200, at_cap),
                "/identity-over" => reply(200, vec![b'x'; CAP + 1]),
                "/chunked-at-cap" => Reply::new(chunks(16, CAP / 16)),
                "/chunked-over" => Reply::new(chunks(10, 16 * 1024 + 1)),
                "/gzip-at-cap" => with_headers(reply(200, gz_at_cap), &gzipped),
                _ => reply(404, ""),
            }
        }
    })
    .await;
    let urls = [
        "/identity-at-cap",
        "/chunked-at-cap",
        "/gzip-at-cap",
        "/identity-over",
        "/chunked-over",
    ]
    .map(|p| server.url(p));
    let config = FetchConfig {
        max_body: CAP as u64,
        ..util::quick_fetch()
    };
    let started = Instant::now();
    let (_dir, journal, summary) = util::crawl_lines(&urls, config).await;
    took(started, 8);

    for url in &urls[..3] {
        let meta = page_of(&journal, url);
        assert_eq!(status_of(&meta), 200, "{url}");
        assert_eq!(response_of(&meta).2, CAP as u64, "{url}");
        assert_eq!(body_of(&journal, url).len(), CAP, "{url}");
    }
    for url in &urls[3..] {
        assert_eq!(kind_of(&journal, url), TooLarge, "{url}");
        assert!(no_body(&journal, url), "{url}: nothing stored");
    }
    let (_, message) = error_of(&journal, &urls[3]);
    assert!(message.contains("Content-Length"), "{message}");
    assert_eq!((summary.fetched, summary.failed), (3, 2));
    let s = journal.status().unwrap();
    assert_eq!(s.errors, errors(&[("too_large", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_and_unknown_hosts_are_told_apart() {
    // `.invalid` never resolves (RFC 6761); offline the lookup fails at once here.
    let refused = format!("http://127.0.0.1:{}/x", refused_port());
    let urls = [refused, "http://nonexistent.invalid/".to_string()];
    let started = Instant::now();
    let (_dir, journal, summary) = util::crawl_lines(&urls, util::quick_fetch()).await;
    took(started, 4);
    for (url, want) in urls.iter().zip([Connect, Dns]) {
        let (kind, message) = error_of(&journal, url);
        assert_eq!(kind, want, "{url}: {message}");
        assert!(!message.is_empty(), "{url}");
    }
    assert_eq!((summary.fetched, summary.failed), (0, 2));
    let s = journal.status().unwrap();
    assert_eq!(s.errors, errors(&[("connect", 1), ("dns", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_lists_skip_comments_and_invalid_lines_and_dedup() {
    let server =
        TestServer::start(|req| async move { reply(200, req.uri().path().to_string()) }).await;
    let port = server.addr.port();
    let a = server.url("/a");
    let lines = [
        "# a comment".to_string(),
        String::new(),
        "   ".to_string(),
        "not a url".to_string(),
        "ftp://x/".to_string(),
        "http://".to_string(),
        a.clone(),
        format!("  {a}  "),
        format!("{a}#section"),
        server.url("/x/../a"),
        format!("http://localhost:{port}/b"),
        format!("http://LocalHost:{port}/b"),
        format!("HTTP://LOCALHOST:{port}/b#frag"),
        server.url("/c?q=1"),
        server.url("/c?q=2"),
        "# trailing comment".to_string(),
    ];
    let (_dir, journal, summary) = util::crawl_lines(&lines, util::quick_fetch()).await;
    assert_eq!(summary.invalid_lines, 3);
    assert_eq!(summary.added, 4);
    assert_eq!(summary.duplicates, 5);
    assert_eq!(summary.fetched, 4);
    let mut hits: Vec<(String, u64)> = server.all_hits().into_iter().collect();
    hits.sort();
    // robots.txt once for each of the two hosts (`127.0.0.1` and `localhost`).
    let want = [
        ("/a", 1),
        ("/b", 1),
        ("/c?q=1", 1),
        ("/c?q=2", 1),
        ("/robots.txt", 2),
    ]
    .map(|(p, n)| (p.to_string(), n));
    assert_eq!(hits, want, "each distinct URL fetched once");
    let b = format!("http://localhost:{port}/b");
    assert_eq!(body_of(&journal, &b), b"/b");
    let found = journal.find(&format!("{a}#section")).unwrap();
    assert_eq!(found, None, "URLs are stored without their fragment");
    let s = journal.status().unwrap();
    assert_eq!((s.urls, s.fetched, s.pending_fetch), (4, 4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_crawl_fetches_only_new_urls() {
    let server =
        TestServer::start(|req| async move { reply(200, format!("v{}", req.uri().path())) }).await;
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<String> = (0..5).map(|i| server.url(&format!("/old/{i}"))).collect();
    let first = util::crawl_in(dir.path(), &old, util::quick_fetch()).await;
    assert_eq!((first.added, first.fetched), (5, 5));

    let new: Vec<String> = (0..3).map(|i| server.url(&format!("/new/{i}"))).collect();
    let both = [&old[..], &new[..]].concat();
    let second = util::crawl_in(dir.path(), &both, util::quick_fetch()).await;
    let counts = (second.added, second.duplicates, second.fetched);
    assert_eq!((counts, second.failed), ((3, 5, 3), 0));
    for path in (0..5).map(|i| format!("/old/{i}")) {
        assert_eq!(server.hits(&path), 1, "{path} fetched again");
    }
    for path in (0..3).map(|i| format!("/new/{i}")) {
        assert_eq!(server.hits(&path), 1, "{path}");
    }
    let journal = Journal::open(&dir.path().join("journal")).unwrap();
    for url in &both {
        let path = url.trim_start_matches(&server.url(""));
        assert_eq!(body_of(&journal, url), format!("v{path}").as_bytes());
    }
    let s = journal.status().unwrap();
    assert_eq!((s.urls, s.fetched, s.pending_fetch), (8, 8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_limit_caps_requests_in_flight_per_host() {
    let overall = Gauge::default();
    let hosts = [Gauge::default(), Gauge::default()];
    let servers = [
        slow_server([hosts[0].clone(), overall.clone()]).await,
        slow_server([hosts[1].clone(), overall.clone()]).await,
    ];
    let urls: Vec<String> = (0..24)
        .flat_map(|i| servers.iter().map(move |s| s.url(&format!("/p/{i}"))))
        .collect();
    let config = FetchConfig {
        per_host: 3,
        concurrency: 16,
        ..util::quick_fetch()
    };
    let (_dir, _journal, summary) = util::crawl_lines(&urls, config).await;
    assert_eq!(summary.fetched, 48);
    for (i, host) in hosts.iter().enumerate() {
        let peak = host.1.load(SeqCst);
        assert_eq!(peak, 3, "host {i}: most requests in flight at once");
    }
    // The limit is per host: both hosts were served at once.
    assert!(overall.1.load(SeqCst) > 3, "peak over both hosts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sent_to_their_origin_and_never_shown() {
    let other = TestServer::start(|req| async move {
        reply(200, format!("auth={:?}", header(&req, "authorization")))
    })
    .await;
    let elsewhere = other.url("/landing");
    let server = TestServer::start(move |req| {
        let elsewhere = elsewhere.clone();
        async move {
            match req.uri().path() {
                "/x" => reply(200, format!("auth={:?}", header(&req, "authorization"))),
                "/away" => redirect(302, &elsewhere),
                "/loop" => redirect(302, "/loop"),
                _ => reply(404, ""),
            }
        }
    })
    .await;
    let port = server.addr.port();
    let creds = |port: u16, path: &str| format!("http://user:secret@127.0.0.1:{port}{path}");
    let urls = [
        creds(port, "/x"),
        creds(port, "/away"),
        creds(port, "/loop"),
        creds(refused_port(), "/refused"),
    ];
    let (_dir, journal, _) = util::crawl_lines(&urls, util::quick_fetch()).await;
    // The journal knows each URL without its userinfo.
    let urls = urls.map(|url| url.replace("user:secret@", ""));
    // base64("user:secret")
    let sent = body_of(&journal, &urls[0]);
    assert_eq!(sent, b"auth=Some(\"Basic dXNlcjpzZWNyZXQ=\")");
    // Recorded URLs (final URL, redirect chain) carry no credentials.
    for url in &urls[..2] {
        let page = format!("{:?}", page_of(&journal, url));
        assert!(
            !page.contains("secret") && !page.contains("user@"),
            "{page}"
        );
    }
    let sent = body_of(&journal, &urls[1]);
    assert_eq!(sent, b"auth=None", "no credentials to another origin");
    for (url, want) in urls[2..].iter().zip([TooManyRedirects, Connect]) {
        let (kind, message) = error_of(&journal, url);
        assert_eq!(kind, want, "{url}: {message}");
        assert!(!message.contains("secret"), "{url}: {message}");
    }
    let status = serde_json::to_string(&journal.status().unwrap()).unwrap();
    assert!(!status.contains("secret"), "{status}");
}
