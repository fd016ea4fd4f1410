//! Hostile pages: links to the crawler's own network (SSRF) and redirects that would
//! carry the user's credentials to another origin.
//!
//! Every server here is on loopback, so a discovered link can only be tested as refused
//! at its first hop; redirect hops go through the same guarded connector (see
//! `src/fetch/guard.rs`).

use std::process::{Command, Stdio};

use tokio::io::AsyncWriteExt;
use url::Url;
use webspool::fetch::{FetchConfig, Fetched, Fetcher, Trust};
use webspool::journal::{ErrorKind, Journal, Outcome};

use crate::util::raw::RawServer;
use crate::util::server::{header, redirect, reply};
use crate::util::{self, body_of, status_of, TestServer};

async fn fetch(fetcher: &Fetcher, url: &str, trust: Trust) -> Fetched {
    fetcher.fetch(&Url::parse(url).unwrap(), trust).await
}

fn blocked_message(fetched: &Fetched) -> &str {
    match &fetched.meta.outcome {
        Outcome::Error {
            kind: ErrorKind::Blocked,
            message,
        } => message,
        other => panic!("expected blocked, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_links_to_loopback_are_blocked_before_connecting_unless_allowed() {
    let server = RawServer::start(|_path, mut s| async move {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ninside";
        s.write_all(answer.as_bytes()).await
    })
    .await;
    let port = server.addr.port();
    let literal = format!("http://127.0.0.1:{port}/literal");
    let name = format!("http://localhost:{port}/name");
    let mapped = format!("http://[::ffff:127.0.0.1]:{port}/mapped");
    let (_grants, strict) = util::fetcher(util::quick_fetch());

    let refused = fetch(&strict, &literal, Trust::Discovered).await;
    let message = blocked_message(&refused);
    assert!(message.contains("127.0.0.1 (loopback)"), "{message}");
    assert!(message.contains("--allow-private"), "{message}");
    assert!(!refused.transient && refused.body.is_none());
    let refused = fetch(&strict, &name, Trust::Discovered).await;
    let message = blocked_message(&refused);
    assert!(message.contains("127.0.0.1 (loopback)"), "{message}");
    assert!(message.contains("for localhost"), "{message}");
    let refused = fetch(&strict, &mapped, Trust::Discovered).await;
    assert!(blocked_message(&refused).contains("(loopback)"));
    assert_eq!(server.accepted(), 0, "no connection was even opened");

    // The same URLs given by the user, or discovered with --allow-private, are fetched.
    let (_open_grants, open) = util::fetcher(FetchConfig {
        allow_private: true,
        ..util::quick_fetch()
    });
    for (fetcher, url, trust) in [
        (&strict, &literal, Trust::Given),
        (&strict, &name, Trust::Given),
        (&open, &literal, Trust::Discovered),
        (&open, &name, Trust::Discovered),
    ] {
        let fetched = fetch(fetcher, url, trust).await;
        assert_eq!(status_of(&fetched.meta), 200, "{url} {trust:?}");
        assert_eq!(fetched.body.as_deref(), Some(&b"inside"[..]), "{url}");
    }
    assert_eq!(server.accepted(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_urls_and_their_redirects_to_private_addresses_are_trusted() {
    let server = TestServer::start(|req| async move {
        let port = header(&req, "host")
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        match req.uri().path() {
            "/start" => redirect(302, &format!("http://localhost:{port}/end")),
            "/end" => reply(200, "trusted"),
            _ => reply(404, ""),
        }
    })
    .await;
    let start = server.url("/start");
    let (_grants, fetcher) = util::fetcher(util::quick_fetch());
    let given = fetch(&fetcher, &start, Trust::Given).await;
    assert_eq!(status_of(&given.meta), 200);
    assert_eq!(given.meta.redirects.len(), 1);
    assert_eq!(given.body.as_deref(), Some(&b"trusted"[..]));
    let discovered = fetch(&fetcher, &start, Trust::Discovered).await;
    blocked_message(&discovered);
    assert_eq!((server.hits("/start"), server.hits("/end")), (1, 1));
}

/// The headers the user gave reach the origin of the URL (also after a same-origin
/// redirect) and none of them another origin the user did not give; no value is ever
/// printed, even with every log enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_credentials_stay_with_their_origin_and_out_of_the_logs() {
    let echo = |req: &http::Request<hyper::body::Incoming>| {
        let [auth, cookie, custom] = ["authorization", "cookie", "x-crawl"].map(|h| header(req, h));
        reply(200, format!("auth={auth:?} cookie={cookie:?} x={custom:?}"))
    };
    let other = TestServer::start(move |req| {
        let answer = echo(&req);
        async move { answer }
    })
    .await;
    let elsewhere = other.url("/landing");
    let server = TestServer::start(move |req| {
        let answer = match req.uri().path() {
            "/away" => redirect(302, &elsewhere),
            "/same" => redirect(302, "/x"),
            _ => echo(&req),
        };
        async move { answer }
    })
    .await;
    let urls = ["/x", "/same", "/away"].map(|p| server.url(p));
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &urls);
    let journal = dir.path().join("journal");
    let out = Command::new(util::bin())
        .args(["crawl", "--urls"])
        .arg(&list)
        .arg("--journal")
        .arg(&journal)
        .args(["--header", "Authorization: Bearer s3cret-token"])
        .args(["--header", "Cookie: session=s3cret-cookie"])
        .args(["--header", "X-Crawl: hello"])
        .env("WEBSPOOL_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("TRACE") || printed.contains("DEBUG"),
        "logs were on"
    );
    assert!(
        !printed.contains("s3cret"),
        "a header value was printed: {printed}"
    );

    let journal = Journal::open(&journal).unwrap();
    let with = "auth=Some(\"Bearer s3cret-token\") cookie=Some(\"session=s3cret-cookie\") \
                x=Some(\"hello\")";
    for url in &urls[..2] {
        assert_eq!(
            String::from_utf8(body_of(&journal, url)).unwrap(),
            with,
            "{url}"
        );
    }
    let without = "auth=None cookie=None x=None";
    assert_eq!(
        String::from_utf8(body_of(&journal, &urls[2])).unwrap(),
        without
    );
    assert_eq!(other.hits("/landing"), 1);
}
