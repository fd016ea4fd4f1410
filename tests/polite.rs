//! Politeness and link following against real servers on loopback: robots.txt,
//! delays, retries with backoff and Retry-After (kept across restarts), hosts that keep
//! failing, slow hosts next to fast ones, `--follow` scopes and limits, sitemaps, and
//! the refusal of discovered private addresses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use webspool::journal::{Budget, ErrorKind, Journal};
use webspool::parse::follow::{Follow, FollowPolicy, Scope};
use webspool::pipeline::{crawl, CrawlConfig, CrawlSummary};

use crate::util::server::{reply, with_headers};
use crate::util::{self, kind_of, page_of, status_of, TestServer};

/// Crawls `lines` into the journal at `dir/journal` with the test config changed by
/// `edit`; returns the reopened journal's summary and the journal.
async fn crawl_with(
    dir: &std::path::Path,
    lines: &[String],
    edit: impl FnOnce(&mut CrawlConfig),
) -> (Arc<Journal>, CrawlSummary) {
    let list = dir.join("urls.txt");
    std::fs::write(&list, lines.join("\n") + "\n").expect("write url list");
    let mut config = util::crawl_config(list, util::quick_fetch(), Default::default());
    edit(&mut config);
    let journal = Arc::new(Journal::open(&dir.join("journal")).expect("open journal"));
    let summary = crawl(journal.clone(), config, watch::channel(false).1)
        .await
        .expect("crawl");
    (journal, summary)
}

fn follow(config: &mut CrawlConfig, scope: Scope, depth: Option<u32>, budget: Budget) {
    let policy = FollowPolicy::new::<&str>(scope, depth, &[], &[]).expect("policy");
    set_follow(config, Follow { policy, budget });
}

fn set_follow(config: &mut CrawlConfig, follow: Follow) {
    config.fetch.allow_private = true;
    config.politeness.robots_sitemaps = true;
    if let Some(parse) = config.parse.as_mut() {
        parse.follow = Some(Arc::new(follow));
    }
}

/// When each path was requested, in order.
type Log = Arc<Mutex<Vec<(String, Instant)>>>;

fn times(log: &Log, path: &str) -> Vec<Instant> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|(p, _)| p == path)
        .map(|(_, t)| *t)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_obeyed_and_cached_in_the_journal() {
    let server = TestServer::start(|req| async move {
        match req.uri().path() {
            "/robots.txt" => reply(200, "User-agent: *\nDisallow: /private\n"),
            _ => reply(200, "<title>ok</title>"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urls = ["/a", "/private/x", "/b"].map(|p| server.url(p));
    let (journal, summary) = crawl_with(dir.path(), &urls, |_| {}).await;
    assert_eq!((summary.fetched, summary.failed), (2, 1));
    assert_eq!(status_of(&page_of(&journal, &urls[0])), 200);
    assert_eq!(kind_of(&journal, &urls[1]), ErrorKind::Robots);
    assert_eq!(
        server.hits("/private/x"),
        0,
        "a disallowed page was requested"
    );
    assert_eq!(server.hits("/robots.txt"), 1);
    util::close(journal).await;

    // A second run on the same journal uses the cached robots.txt.
    let more = [server.url("/c"), server.url("/private/y")];
    let (journal, _) = crawl_with(dir.path(), &more, |_| {}).await;
    assert_eq!(server.hits("/robots.txt"), 1, "robots.txt fetched again");
    assert_eq!(server.hits("/c"), 1);
    assert_eq!(kind_of(&journal, &more[1]), ErrorKind::Robots);
    util::close(journal).await;

    // --ignore-robots fetches what robots.txt disallows, without asking for it.
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/private/z")];
    let (journal, _) = crawl_with(dir.path(), &urls, |c| c.politeness.robots = false).await;
    assert_eq!(status_of(&page_of(&journal, &urls[0])), 200);
    assert_eq!(server.hits("/robots.txt"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_answering_5xx_means_nothing_is_fetched() {
    let server = TestServer::start(|req| async move {
        match req.uri().path() {
            "/robots.txt" => reply(503, "down for maintenance"),
            _ => reply(200, "page"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urls = ["/a", "/b"].map(|p| server.url(p));
    let (journal, _) = crawl_with(dir.path(), &urls, |c| c.politeness.retries = 1).await;
    for url in &urls {
        let (kind, message) = util::error_of(&journal, url);
        assert_eq!(kind, ErrorKind::Robots, "{message}");
        assert!(message.contains("503"), "{message}");
    }
    assert_eq!(server.hits("/robots.txt"), 2, "tried once, retried once");
    assert_eq!(server.hits("/a") + server.hits("/b"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_space_the_requests_to_a_host() {
    let log: Log = Arc::default();
    let seen = log.clone();
    let server = TestServer::start(move |req| {
        let path = req.uri().path().to_string();
        seen.lock().unwrap().push((path.clone(), Instant::now()));
        async move {
            match path.as_str() {
                "/robots.txt" => reply(200, "User-agent: *\nCrawl-delay: 0.4\n"),
                _ => reply(200, "page"),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..4).map(|i| server.url(&format!("/p{i}"))).collect();
    let (_journal, summary) = crawl_with(dir.path(), &urls, |c| {
        c.politeness.delay = Duration::from_millis(200);
    })
    .await;
    assert_eq!(summary.fetched, 4);
    let mut starts: Vec<Instant> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p != "/robots.txt")
        .map(|(_, t)| *t)
        .collect();
    starts.sort();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        // Crawl-delay (0.4 s) is longer than --delay (0.2 s), so it wins.
        assert!(gap >= Duration::from_millis(380), "requests {gap:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff() {
    let flaky = Arc::new(AtomicU64::new(0));
    let count = flaky.clone();
    let log: Log = Arc::default();
    let seen = log.clone();
    let server = TestServer::start(move |req| {
        let path = req.uri().path().to_string();
        seen.lock().unwrap().push((path.clone(), Instant::now()));
        let count = count.clone();
        async move {
            match path.as_str() {
                "/flaky" if count.fetch_add(1, SeqCst) < 2 => reply(503, "busy"),
                "/flaky" => reply(200, "finally"),
                "/broken" => reply(500, "always"),
                "/missing" => reply(404, "no"),
                _ => reply(200, "ok"),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urls = ["/flaky", "/broken", "/missing"].map(|p| server.url(p));
    let (journal, summary) = crawl_with(dir.path(), &urls, |c| c.politeness.retries = 2).await;
    assert_eq!(summary.fetched, 3);
    assert_eq!(status_of(&page_of(&journal, &urls[0])), 200);
    assert_eq!(util::body_of(&journal, &urls[0]), b"finally");
    // Out of retries: the last answer is what is stored.
    assert_eq!(status_of(&page_of(&journal, &urls[1])), 500);
    assert_eq!(status_of(&page_of(&journal, &urls[2])), 404);
    assert_eq!(server.hits("/flaky"), 3);
    assert_eq!(server.hits("/broken"), 3, "1 attempt + 2 retries");
    assert_eq!(server.hits("/missing"), 1, "a 404 is not retried");
    // Exponential backoff: the second wait is longer than the first.
    let broken = times(&log, "/broken");
    let (first, second) = (broken[1] - broken[0], broken[2] - broken[1]);
    assert!(first >= Duration::from_millis(450), "{first:?}");
    assert!(second >= Duration::from_millis(950), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honored_and_the_schedule_survives_a_restart() {
    let log: Log = Arc::default();
    let seen = log.clone();
    let server = TestServer::start(move |req| {
        let path = req.uri().path().to_string();
        let first = {
            let mut log = seen.lock().unwrap();
            log.push((path.clone(), Instant::now()));
            log.iter().filter(|(p, _)| *p == path).count() == 1
        };
        async move {
            match path.as_str() {
                "/later" if first => with_headers(reply(429, "slow down"), &[("retry-after", "2")]),
                _ => reply(200, "ok"),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/later")];
    // Stop the crawl while it waits for the retry.
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let mut config = util::crawl_config(list, util::quick_fetch(), Default::default());
    config.politeness.retries = 3;
    let journal = Arc::new(Journal::open(&dir.path().join("journal")).unwrap());
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(crawl(journal.clone(), config, stopped));
    while server.hits("/later") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let summary = run.await.unwrap().expect("crawl");
    assert!(summary.interrupted);
    let id = journal.find(&urls[0]).unwrap().unwrap();
    let pending = journal.pending(id).unwrap().expect("still pending");
    assert_eq!(pending.attempts, 1);
    assert!(pending.not_before_ms > 0, "{pending:?}");
    let status = journal.status().unwrap();
    assert_eq!((status.pending_fetch, status.retry_waiting), (1, 1));
    util::close(journal).await;

    // Restarted at once: the retry still waits for the server's 2 s.
    let (journal, summary) = crawl_with(dir.path(), &urls, |c| c.politeness.retries = 3).await;
    assert_eq!(summary.fetched, 1);
    assert_eq!(status_of(&page_of(&journal, &urls[0])), 200);
    let status = journal.status().unwrap();
    assert_eq!((status.pending_fetch, status.retry_waiting), (0, 0));
    let hits = times(&log, "/later");
    assert_eq!(hits.len(), 2);
    assert!(
        hits[1] - hits[0] >= Duration::from_millis(1900),
        "{:?}",
        hits[1] - hits[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_keeps_failing_is_not_hammered() {
    // Accepts connections and closes them at once: no response, ever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, SeqCst);
            drop(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..40).map(|i| format!("http://{addr}/p{i}")).collect();
    let started = Instant::now();
    let (journal, summary) = crawl_with(dir.path(), &urls, |c| {
        c.politeness.retries = 3;
        c.politeness.robots = false;
        c.fetch.per_host = 4;
    })
    .await;
    task.abort();
    assert_eq!(summary.failed, 40);
    for url in &urls {
        util::error_of(&journal, url);
    }
    // 40 URLs x 4 attempts would be 160 connections, and fewer than one per URL is
    // made: the host is given up on instead.
    let tries = accepted.load(SeqCst);
    assert!(
        tries < 40,
        "{tries} connections to a host that never answers"
    );
    util::took(started, 60);
}

/// A host that answers robots.txt at once (404) and holds every other request for 30 s.
async fn tarpit() -> TestServer {
    TestServer::start(|req| async move {
        if req.uri().path() != "/robots.txt" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        reply(404, "")
    })
    .await
}

/// A host that answers everything at once, and when it last answered.
async fn fast_host() -> (TestServer, Arc<Mutex<Option<Instant>>>) {
    let last = Arc::new(Mutex::new(None::<Instant>));
    let stamp = last.clone();
    let server = TestServer::start(move |_| {
        *stamp.lock().unwrap() = Some(Instant::now());
        async { reply(200, "fast") }
    })
    .await;
    (server, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarpit_host_does_not_hold_up_the_others() {
    let tarpit = tarpit().await;
    let (fast, last_fast) = fast_host().await;
    // The tarpit's URLs come first in the list. It gets one request at a time (it has
    // never served a page), so they hang one after the other.
    let mut urls: Vec<String> = (0..3).map(|i| tarpit.url(&format!("/t{i}"))).collect();
    urls.extend((0..300).map(|i| fast.url(&format!("/f{i}"))));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (journal, summary) = crawl_with(dir.path(), &urls, |c| {
        c.fetch.timeout = Duration::from_secs(5);
        c.fetch.idle_timeout = Duration::from_secs(5);
        c.fetch.concurrency = 16;
        c.politeness.retries = 0;
    })
    .await;
    assert_eq!(summary.fetched, 300);
    assert_eq!(summary.failed, 3);
    assert_eq!(kind_of(&journal, &urls[0]), ErrorKind::Timeout);
    let fast_done = last_fast.lock().unwrap().expect("fast server hit") - started;
    // Every fast page was served while the tarpit's first request was still hanging.
    assert!(
        fast_done < Duration::from_secs(4),
        "fast host done after {fast_done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_fetches_give_back_their_global_slots() {
    // Three tarpit hosts, each holding every page request for 30 s, listed first, with
    // as many global slots as there are tarpits: until their requests count as stalled,
    // nothing else can be sent.
    let mut tarpits = Vec::new();
    for _ in 0..3 {
        tarpits.push(tarpit().await);
    }
    let (fast, last_fast) = fast_host().await;
    let mut urls: Vec<String> = Vec::new();
    for tarpit in &tarpits {
        urls.extend((0..2).map(|i| tarpit.url(&format!("/t{i}"))));
    }
    urls.extend((0..100).map(|i| fast.url(&format!("/f{i}"))));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (journal, summary) = crawl_with(dir.path(), &urls, |c| {
        c.fetch.timeout = Duration::from_secs(6);
        c.fetch.idle_timeout = Duration::from_secs(6);
        c.fetch.concurrency = 3;
        c.politeness.retries = 0;
    })
    .await;
    assert_eq!(summary.fetched, 100);
    assert_eq!(summary.failed, 6);
    assert_eq!(kind_of(&journal, &urls[0]), ErrorKind::Timeout);
    let fast_done = last_fast.lock().unwrap().expect("fast server hit") - started;
    // The fast host was served while each tarpit still held its first request: each
    // tarpit holds one request at a time (it never served a page), and that request
    // stopped counting against --concurrency once it stalled.
    assert!(
        fast_done < Duration::from_secs(5),
        "fast host done after {fast_done:?}"
    );
}

/// A site of `n` pages: page i links to pages 2i+1 and 2i+2, to itself with a fragment,
/// and (with rel=nofollow) to /trap.
async fn tree_site(n: usize) -> TestServer {
    TestServer::start(move |req| async move {
        let path = req.uri().path().to_string();
        let Some(i) = path
            .strip_prefix("/p")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return reply(404, "");
        };
        let mut body = format!("<title>page {i}</title><a href='/p{i}#top'>me</a>");
        for child in [2 * i + 1, 2 * i + 2].into_iter().filter(|c| *c < n) {
            body.push_str(&format!("<a href='/p{child}'>child</a>"));
        }
        body.push_str("<a rel=nofollow href='/trap'>no</a>");
        with_headers(reply(200, body), &[("content-type", "text/html")])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_same_host_to_a_depth_and_page_budget() {
    let site = tree_site(100).await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, summary) = crawl_with(dir.path(), &[site.url("/p0")], |c| {
        follow(c, Scope::SameHost, Some(3), Budget::default());
    })
    .await;
    // Depth 0..=3 of a binary tree: 1 + 2 + 4 + 8 pages.
    assert_eq!(summary.fetched, 15, "{summary:?}");
    for i in 0..15 {
        assert_eq!(site.hits(&format!("/p{i}")), 1, "page {i}");
    }
    assert_eq!(site.hits("/p15"), 0, "depth 4 fetched");
    assert_eq!(site.hits("/trap"), 0, "nofollow link fetched");
    util::close(journal).await;

    let dir = tempfile::tempdir().unwrap();
    let (journal, summary) = crawl_with(dir.path(), &[site.url("/p0")], |c| {
        let budget = Budget {
            max_urls: Some(10),
            per_host: None,
        };
        follow(c, Scope::SameHost, None, budget);
    })
    .await;
    assert_eq!(journal.status().unwrap().urls, 10);
    assert_eq!(summary.fetched, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_scope_include_and_exclude() {
    let other = TestServer::start(|_| async { reply(200, "elsewhere") }).await;
    // `localhost` is another host than `127.0.0.1` for the scope.
    let elsewhere = format!("http://localhost:{}/x", other.addr.port());
    let page = format!(
        "<a href='/keep/1'>a</a><a href='/keep/2'>b</a><a href='/drop/1'>c</a>\
         <a href='/other'>d</a><a href='{elsewhere}'>e</a>"
    );
    let site = TestServer::start(move |req| {
        let page = page.clone();
        async move {
            match req.uri().path() {
                "/" => with_headers(reply(200, page), &[("content-type", "text/html")]),
                _ => reply(200, "leaf"),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_journal, summary) = crawl_with(dir.path(), &[site.url("/")], |c| {
        let include = [r"/keep/".to_string(), r"/drop/".to_string()];
        let exclude = [r"/drop/".to_string()];
        let policy = FollowPolicy::new(Scope::SameHost, None, &include, &exclude).unwrap();
        set_follow(
            c,
            Follow {
                policy,
                budget: Budget::default(),
            },
        );
    })
    .await;
    assert_eq!(summary.fetched, 3);
    let hits: HashMap<_, _> = site.all_hits();
    assert_eq!(hits.get("/keep/1"), Some(&1));
    assert_eq!(hits.get("/keep/2"), Some(&1));
    assert_eq!(hits.get("/drop/1"), None, "excluded");
    assert_eq!(hits.get("/other"), None, "not included");
    assert_eq!(other.hits("/x"), 0, "another host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_links_to_private_addresses_are_refused() {
    let site = tree_site(3).await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = crawl_with(dir.path(), &[site.url("/p0")], |c| {
        follow(c, Scope::SameHost, None, Budget::default());
        c.fetch.allow_private = false;
    })
    .await;
    // The seed is the user's and trusted; the links found on it are not.
    assert_eq!(status_of(&page_of(&journal, &site.url("/p0"))), 200);
    let (kind, message) = util::error_of(&journal, &site.url("/p1"));
    assert_eq!(kind, ErrorKind::Blocked);
    assert!(message.contains("--allow-private"), "{message}");
    assert_eq!(site.hits("/p1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_seed_the_crawl_from_the_flag_and_from_robots_txt() {
    let site = TestServer::start_knowing_base(|base, req| async move {
        let xml =
            |body: String| with_headers(reply(200, body), &[("content-type", "application/xml")]);
        match req.uri().path() {
            "/robots.txt" => reply(200, format!("Sitemap: {base}/from-robots.xml\n")),
            "/index.xml" => xml(format!(
                "<sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>\
                     <sitemap><loc>{base}/a.xml</loc></sitemap></sitemapindex>"
            )),
            "/a.xml" => xml(format!(
                "<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>\
                     <url><loc>{base}/one</loc></url><url><loc>{base}/two</loc></url></urlset>"
            )),
            "/from-robots.xml" => xml(format!(
                "<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>\
                     <url><loc>{base}/three</loc></url></urlset>"
            )),
            _ => reply(200, "page"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (url, userinfo) = webspool::urls::normalize_given(&site.url("/index.xml")).unwrap();
    let index = webspool::urls::GivenUrl { url, userinfo };
    let (_journal, _) = crawl_with(dir.path(), &[], |c| {
        c.input = webspool::pipeline::Input::None;
        c.sitemaps = vec![index];
        follow(c, Scope::None, None, Budget::default());
    })
    .await;
    for path in [
        "/index.xml",
        "/a.xml",
        "/one",
        "/two",
        "/from-robots.xml",
        "/three",
    ] {
        assert_eq!(site.hits(path), 1, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_follow_crawl_resumes_without_refetching() {
    let site = tree_site(400).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, site.url("/p0")).unwrap();
    let mut config = util::crawl_config(list, util::quick_fetch(), Default::default());
    follow(&mut config, Scope::SameHost, None, Budget::default());
    config.fetch.concurrency = 4;
    config.fetch.per_host = 2;
    let journal = Arc::new(Journal::open(&dir.path().join("journal")).unwrap());
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(crawl(journal.clone(), config, stopped));
    while site.all_hits().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    let summary = run.await.unwrap().expect("crawl");
    assert!(summary.interrupted);
    util::close(journal).await;

    let (journal, _) = crawl_with(dir.path(), &[site.url("/p0")], |c| {
        follow(c, Scope::SameHost, None, Budget::default());
    })
    .await;
    assert_eq!(journal.status().unwrap().fetched, 400);
    let hits = site.all_hits();
    let pages: Vec<_> = hits.iter().filter(|(p, _)| p.starts_with("/p")).collect();
    assert_eq!(pages.len(), 400);
    // A stop lets the fetches in flight finish and records them: nothing twice.
    let twice: Vec<_> = pages.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "fetched twice: {twice:?}");
}
