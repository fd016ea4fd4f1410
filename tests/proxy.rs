//! Crawls through proxies started by the test: an HTTP proxy (`CONNECT` and absolute
//! form, `util::http_proxy`) and a SOCKS5 proxy (`util::socks`), with and without
//! credentials; the environment's proxies and `NO_PROXY`; `--no-proxy`; a pool with a
//! dead proxy; 407; credentials never shown; the SSRF guard in front of the proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use webspool::fetch::{Proxy, ProxyChoice, Trust};
use webspool::journal::{ErrorKind, Outcome};

use crate::cli::stderr;
use crate::tls::{https_server, Ca, BOTH};
use crate::util::http_proxy::{HttpProxy, ProxyOptions};
use crate::util::server::{refused_port, reply};
use crate::util::socks::SocksProxy;
use crate::util::{self, TestServer};

const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Runs `webspool crawl` of `urls` into `dir/j` with `args`, the environment's proxy
/// variables replaced by `env`.
fn crawl(dir: &Path, urls: &[String], args: &[&str], env: &[(&str, &str)]) -> (Output, PathBuf) {
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n") + "\n").unwrap();
    let journal = dir.join("j");
    let mut command = Command::new(util::bin());
    command.args(["crawl", "--quiet", "--ignore-robots", "--retries", "0"]);
    command.args([
        "--urls",
        list.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ]);
    command.args(args);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    (command.output().expect("run webspool"), journal)
}

fn status(journal: &Path) -> serde_json::Value {
    crate::cli::status_json(journal)
}

async fn site() -> TestServer {
    TestServer::start(|req| async move { reply(200, format!("page {}", req.uri().path())) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_pages_go_in_absolute_form_and_https_through_connect() {
    let site = site().await;
    let ca = Ca::new("webspool proxy test CA");
    let secure = https_server(ca.leaf(&["localhost"]), BOTH).await;
    let proxy = HttpProxy::start(ProxyOptions {
        credentials: Some("al:s3cret".into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ca.pem");
    std::fs::write(&root, ca.pem()).unwrap();
    let plain = site.url("/plain");
    let https = format!("https://localhost:{}/secure", secure.addr.port());
    let via = proxy.url(Some("al:s3cret"));
    let (out, journal) = crawl(
        dir.path(),
        &[plain.clone(), https],
        &["--proxy", &via, "--tls-extra-root", root.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&journal);
    assert_eq!(
        (s["fetched"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(0)),
        "{s}"
    );
    let mut asked = proxy.requests();
    asked.sort();
    assert_eq!(
        asked,
        [
            format!("CONNECT localhost:{}", secure.addr.port()),
            format!("GET {plain}"),
        ]
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("al:s3cret")
    );
    assert!(proxy
        .authorizations()
        .iter()
        .all(|a| a.as_deref() == Some(basic.as_str())));
    let proxies = &s["proxies"];
    assert_eq!(proxies[0]["proxy"], format!("http://{}", proxy.addr), "{s}");
    assert_eq!(
        (
            proxies[0]["requests"].as_u64(),
            proxies[0]["errors"].as_u64()
        ),
        (Some(2), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_resolves_here_socks5h_at_the_proxy_with_and_without_credentials() {
    let site = site().await;
    let port = site.addr.port();
    let open = SocksProxy::start(None, None).await;
    let locked = SocksProxy::start(Some(("al", "s3cret")), None).await;
    let cases = [
        (
            open.url("socks5", None),
            &open,
            format!("127.0.0.1:{port}"),
            true,
        ),
        (
            open.url("socks5h", None),
            &open,
            format!("localhost:{port}"),
            true,
        ),
        (
            locked.url("socks5h", Some("al:s3cret")),
            &locked,
            format!("localhost:{port}"),
            true,
        ),
        (
            locked.url("socks5", Some("al:s3cret")),
            &locked,
            format!("127.0.0.1:{port}"),
            true,
        ),
        (
            locked.url("socks5h", Some("al:wrong")),
            &locked,
            String::new(),
            false,
        ),
        (locked.url("socks5h", None), &locked, String::new(), false),
    ];
    for (i, (via, socks, want, fetched)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let before = socks.destinations().len();
        let url = format!("http://localhost:{port}/{i}");
        let (out, journal) = crawl(dir.path(), &[url], &["--proxy", &via], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let s = status(&journal);
        let asked = socks.destinations()[before..].to_vec();
        if fetched {
            assert_eq!(s["fetched"], 1, "{via}: {s}");
            assert_eq!(asked, [want], "{via}");
        } else {
            assert_eq!(s["errors"]["proxy"], 1, "{via}: {s}");
            assert!(asked.is_empty(), "{via}: {asked:?}");
            let last = s["proxies"][0]["last_error"].as_str().unwrap_or("");
            assert!(last.contains("SOCKS5 handshake failed"), "{last}");
        }
    }
    // A destination the proxy cannot reach is the proxy's error, and does not rest it.
    let dir = tempfile::tempdir().unwrap();
    let urls = ["http://localhost:9/".to_string(), site.url("/after")];
    let (out, journal) = crawl(
        dir.path(),
        &urls,
        &["--proxy", &open.url("socks5h", None), "--concurrency", "1"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&journal);
    assert_eq!(
        (s["fetched"].as_u64(), s["errors"]["proxy"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    let last = s["proxies"][0]["last_error"].as_str().unwrap_or("");
    assert!(
        last.ends_with("could not connect to localhost:9: connection refused"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_honored_with_no_proxy_and_no_proxy_turns_it_off() {
    let site = site().await;
    let proxy = HttpProxy::start(ProxyOptions::default()).await;
    let via = site.url("/via");
    let direct = format!("http://localhost:{}/direct", site.addr.port());
    let urls = [via.clone(), direct];
    let url = proxy.url(None);
    for env in [
        [("HTTP_PROXY", url.as_str()), ("NO_PROXY", "localhost")],
        [("http_proxy", url.as_str()), ("no_proxy", "localhost")],
        [
            ("ALL_PROXY", url.as_str()),
            ("NO_PROXY", "example.com,localhost"),
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let before = proxy.requests().len();
        let (out, journal) = crawl(dir.path(), &urls, &[], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(status(&journal)["fetched"], 2);
        assert_eq!(
            proxy.requests()[before..],
            [format!("GET {via}")],
            "{env:?}"
        );
    }
    // `HTTPS_PROXY` is for https:// URLs only.
    let dir = tempfile::tempdir().unwrap();
    let before = proxy.requests().len();
    let (out, journal) = crawl(dir.path(), &urls, &[], &[("HTTPS_PROXY", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(&journal)["fetched"], 2);
    // `--no-proxy`: straight to the site, whatever the environment says.
    let dir = tempfile::tempdir().unwrap();
    let (out, journal) = crawl(dir.path(), &urls, &["--no-proxy"], &[("HTTP_PROXY", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(&journal)["fetched"], 2);
    assert_eq!(proxy.requests().len(), before);
    assert!(status(&journal).get("proxies").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_in_the_pool_hands_its_hosts_to_the_live_one() {
    let site = site().await;
    // The live proxy sends every name to the site: the hosts need no DNS.
    let live = HttpProxy::start(ProxyOptions {
        upstream: Some(site.addr),
        ..Default::default()
    })
    .await;
    let dead = format!("http://127.0.0.1:{}", refused_port());
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..16).map(|i| format!("http://site{i}.test/p")).collect();
    let file = dir.path().join("proxies.txt");
    std::fs::write(&file, format!("# the pool\n{}\n\n", live.url(None))).unwrap();
    let (out, journal) = crawl(
        dir.path(),
        &urls,
        &["--proxy", &dead, "--proxy-file", file.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&journal);
    assert_eq!(
        (s["fetched"].as_u64(), s["failed"].as_u64()),
        (Some(16), Some(0)),
        "{s}"
    );
    assert_eq!(live.requests().len(), 16);
    let proxies = s["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 2, "{s}");
    assert_eq!(proxies[0]["proxy"], dead);
    assert!(proxies[0]["errors"].as_u64() >= Some(1), "{s}");
    let last = proxies[0]["last_error"].as_str().unwrap();
    assert!(
        last.starts_with(&format!("proxy {dead}: cannot connect")),
        "{last}"
    );
    assert_eq!(proxies[1]["requests"], 16);
    let text = crate::cli::on(&["status"], &journal);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{} 16 requests, 0 errors", live.url(None))),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_asking_for_credentials_is_a_transient_proxy_error() {
    let proxy = HttpProxy::start(ProxyOptions {
        credentials: Some("al:s3cret".into()),
        ..Default::default()
    })
    .await;
    for (proxy_url, how) in [
        (proxy.url(None), "without"),
        (proxy.url(Some("al:wrong")), "wrong"),
    ] {
        let config = webspool::fetch::FetchConfig {
            proxy: ProxyChoice::Pool(vec![Proxy::parse(&proxy_url).unwrap()]),
            ..util::quick_fetch()
        };
        let (_dir, fetcher) = util::fetcher(config);
        // Plain (absolute form: the 407 is a response) and https (CONNECT: a failed
        // tunnel), each with a fresh fetcher so the first failure's rest is not met.
        for url in ["http://127.0.0.1:9/", "https://127.0.0.1:9/"] {
            let config = fetcher.config().clone();
            let (_dir, fetcher) = util::fetcher(config);
            let fetched = fetcher.fetch(&url.parse().unwrap(), Trust::Given).await;
            let Outcome::Error { kind, message } = &fetched.meta.outcome else {
                panic!("{how} {url}: {:?}", fetched.meta.outcome);
            };
            assert_eq!(*kind, ErrorKind::Proxy, "{how} {url}: {message}");
            assert!(
                message.contains("407 Proxy Authentication Required"),
                "{message}"
            );
            assert!(fetched.transient, "retried like a connect error");
            // The proxy rests: the next request fails at once, without reaching it.
            let before = proxy.requests().len();
            let again = fetcher.fetch(&url.parse().unwrap(), Trust::Given).await;
            let Outcome::Error { kind, message } = &again.meta.outcome else {
                panic!("{:?}", again.meta.outcome);
            };
            assert_eq!(*kind, ErrorKind::Proxy);
            assert!(message.contains("resting"), "{message}");
            assert_eq!(proxy.requests().len(), before);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_appear_in_no_output_status_or_journal_file() {
    let site = site().await;
    let proxy = HttpProxy::start(ProxyOptions {
        credentials: Some("al:Hunter2Secret".into()),
        ..Default::default()
    })
    .await;
    let socks = SocksProxy::start(Some(("al", "Hunter2Secret")), None).await;
    let secrets = [
        "Hunter2Secret".to_string(),
        "Wr0ngSecret".to_string(),
        base64::engine::general_purpose::STANDARD.encode("al:Hunter2Secret"),
        base64::engine::general_purpose::STANDARD.encode("al:Wr0ngSecret"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        proxy.url(Some("al:Hunter2Secret")),
        proxy.url(Some("al:Wr0ngSecret")),
        socks.url("socks5h", Some("al:Hunter2Secret")),
        socks.url("socks5h", Some("al:Wr0ngSecret")),
    ];
    let mut shown = String::new();
    let mut journal = PathBuf::new();
    for (i, via) in runs.iter().enumerate() {
        let url = site.url(&format!("/{i}"));
        let list = dir.path().join("urls.txt");
        std::fs::write(&list, format!("{url}\n")).unwrap();
        journal = dir.path().join("j");
        let out = Command::new(util::bin())
            .args(["crawl", "--ignore-robots", "--retries", "0", "--proxy", via])
            .args([
                "--urls",
                list.to_str().unwrap(),
                "--journal",
                journal.to_str().unwrap(),
            ])
            .env("WEBSPOOL_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        shown += &stderr(&out);
        shown += &String::from_utf8_lossy(&out.stdout);
    }
    // A proxy refused as a flag value.
    let bad = util::bin();
    let out = Command::new(bad)
        .args([
            "crawl",
            "--urls",
            "-",
            "--proxy",
            "ftp://al:Hunter2Secret@p",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    shown += &stderr(&out);
    let s = status(&journal);
    assert_eq!(
        (s["fetched"].as_u64(), s["errors"]["proxy"].as_u64()),
        (Some(2), Some(2)),
        "{s}"
    );
    shown += &s.to_string();
    shown += &String::from_utf8_lossy(&crate::cli::on(&["status"], &journal).stdout);
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{secret} shown:\n{shown}");
    }
    for entry in walk(&journal) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in &secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} in {}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_private_links_are_refused_before_the_proxy_sees_them() {
    let site = TestServer::start_knowing_base(|base, req| async move {
        let port = base.rsplit(':').next().unwrap_or("").to_string();
        match req.uri().path() {
            "/" => reply(
                200,
                format!(
                    "<html><body><a href=\"/a\">a</a> \
                     <a href=\"http://localhost:{port}/b\">b</a></body></html>"
                ),
            ),
            _ => reply(200, "secret"),
        }
    })
    .await;
    let http = HttpProxy::start(ProxyOptions::default()).await;
    let socks = SocksProxy::start(None, None).await;
    let seed = site.url("/");
    for via in [
        http.url(None),
        socks.url("socks5h", None),
        socks.url("socks5", None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (out, journal) = crawl(
            dir.path(),
            std::slice::from_ref(&seed),
            &["--proxy", &via, "--follow", "127.0.0.1,localhost"],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let s = status(&journal);
        assert_eq!(
            (s["fetched"].as_u64(), s["errors"]["blocked"].as_u64()),
            (Some(1), Some(2)),
            "{via}: {s}"
        );
    }
    assert_eq!(http.requests(), [format!("GET {seed}")]);
    assert_eq!(
        socks.destinations(),
        [site.addr.to_string(), site.addr.to_string()]
    );
    assert_eq!(site.hits("/a") + site.hits("/b"), 0);
}
