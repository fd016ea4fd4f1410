//! Secrets stay secret: every command that takes a MySQL URL or a URL list is run with
//! passwords holding each of `/ # ? @ : %` (and as a bare word), with every log level
//! on, and the password must appear in no output, no `status`, no journal record and no
//! MySQL column; the user's `--header`s reach only the origins the user gave.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::*;

use crate::util::mysql::TestDb;
use crate::util::server::{header, reply};
use crate::util::{self, TestServer};

/// Passwords that a URL parser may take for the end of the userinfo, or for an escape,
/// and a plain one.
const PASSWORDS: [&str; 7] = [
    "plainSECRET",
    "ab/SECRET",
    "ab#SECRET",
    "ab?SECRET",
    "a@SECRET",
    "a:SECRET",
    "SECRET%zz",
];

fn printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs the binary with every log enabled and returns what it printed, checked to
/// hold no `SECRET`.
fn run_quiet_about_secrets(args: &[&str], env: Option<&str>) -> Output {
    let mut cmd = Command::new(util::bin());
    cmd.args(args)
        .env("WEBSPOOL_LOG", "trace")
        .stdin(Stdio::null());
    if let Some(url) = env {
        cmd.env("WEBSPOOL_MYSQL_URL", url);
    }
    let out = cmd.output().expect("run webspool");
    let all = printed(&out);
    assert!(
        !all.contains("SECRET"),
        "{args:?} (env {}) printed the secret: {all}",
        env.is_some()
    );
    out
}

/// `host:port` of the test server at `MYSQL_URL`.
fn mysql_host_port() -> String {
    let admin =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let url = url::Url::parse(&admin).expect("MYSQL_URL is a URL");
    format!(
        "{}:{}",
        url.host_str().expect("MYSQL_URL has a host"),
        url.port().unwrap_or(3306)
    )
}

#[test]
fn mysql_passwords_are_never_printed_however_the_url_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let journal = journal.to_str().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let out = run_quiet_about_secrets(
        &["crawl", "--quiet", "--urls", empty, "--journal", journal],
        None,
    );
    assert!(out.status.success(), "{}", printed(&out));

    let server = mysql_host_port();
    let mut urls = vec![("SECRET".to_string(), "not a URL")];
    for password in PASSWORDS {
        // Well formed, wrong password: the server refuses it.
        urls.push((format!("mysql://root:{password}@{server}/test"), "denied"));
        // Not a URL webspool can use: the port is not a number.
        urls.push((
            format!("mysql://root:{password}@{server}x/test"),
            "not a URL",
        ));
    }
    for (url, want) in &urls {
        let runs: [(Vec<&str>, Option<&str>); 4] = [
            (vec!["sync", "--journal", journal, "--mysql", url], None),
            (vec!["sync", "--journal", journal], Some(url)),
            (
                vec![
                    "crawl",
                    "--quiet",
                    "--urls",
                    empty,
                    "--journal",
                    journal,
                    "--sync",
                    url,
                ],
                None,
            ),
            (
                vec![
                    "crawl",
                    "--quiet",
                    "--journal",
                    journal,
                    "--from-mysql",
                    url,
                    "--query",
                    "SELECT 1, 'http://a/'",
                ],
                None,
            ),
        ];
        for (args, env) in runs {
            let out = run_quiet_about_secrets(&args, env);
            let all = printed(&out);
            assert!(!out.status.success(), "{args:?}: {all}");
            match *want {
                "denied" => assert!(all.contains("Access denied"), "{args:?}: {all}"),
                _ => assert!(
                    all.contains("mysql://user:password@host"),
                    "{args:?}: says the form expected: {all}"
                ),
            }
        }
    }
    let status = run_quiet_about_secrets(&["status", "--json", "--journal", journal], None);
    assert!(status.status.success());
}

/// Every file of the journal but the credentials file, searched for `needle`.
fn journal_files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if path.file_name() != Some("credentials".as_ref()) {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A server that records the Authorization header of every request and answers with
/// `body` (or a page with a canonical URL and a link).
struct Site {
    server: TestServer,
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

async fn site(body: Option<String>) -> Site {
    let auth = Arc::new(Mutex::new(Vec::new()));
    let seen = auth.clone();
    let server = TestServer::start(move |req| {
        seen.lock().unwrap().push(header(&req, "authorization"));
        let body = body.clone().unwrap_or_else(|| {
            "<html><head><title>t</title><link rel=canonical href=\"/page\"></head>\
             <body><a href=\"/other\">o</a></body></html>"
                .into()
        });
        async move { reply(200, body) }
    })
    .await;
    Site { server, auth }
}

fn with_userinfo(url: &str, userinfo: &str) -> String {
    url.replacen("http://", &format!("http://{userinfo}@"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_reach_their_origin_only_and_are_stored_nowhere_else() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let mut sites = Vec::new();
    let mut lines = Vec::new();
    for password in PASSWORDS {
        let site = site(None).await;
        lines.push(with_userinfo(
            &site.server.url("/page"),
            &format!("user:{password}"),
        ));
        sites.push(site);
    }
    // A sitemap given with credentials, listing a page of another origin.
    let mapped = site(None).await;
    let map_site = site(Some(format!(
        "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
         <url><loc>{}</loc></url></urlset>",
        mapped.server.url("/listed")
    )))
    .await;
    let sitemap_url = with_userinfo(&map_site.server.url("/sitemap.xml"), "mapper:map:SECRET");
    let list = util::url_file(&dir, &lines);
    let out = run_quiet_about_secrets(
        &[
            "crawl",
            "--quiet",
            "--ignore-robots",
            "--allow-private",
            "--urls",
            list.to_str().unwrap(),
            "--sitemap",
            &sitemap_url,
            "--journal",
            journal.to_str().unwrap(),
            "--sync",
            &db.url,
        ],
        None,
    );
    let all = printed(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("TRACE") || all.contains("DEBUG"),
        "logs were on: {all}"
    );

    // The URLs that parse were fetched with their own credentials, as Basic auth.
    let basic = |userinfo: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userinfo)
        )
    };
    let mut valid = 0;
    for (password, site) in PASSWORDS.iter().zip(&sites) {
        let got = site.auth.lock().unwrap().clone();
        if webspool::urls::normalize(&with_userinfo(
            &site.server.url("/page"),
            &format!("user:{password}"),
        ))
        .is_ok()
        {
            valid += 1;
            let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
            assert_eq!(got, [Some(basic(&format!("user:{decoded}")))], "{password}");
        } else {
            assert!(got.is_empty(), "{password}: an invalid line was fetched");
        }
    }
    assert!(valid >= 3, "the test covers URLs that parse");
    assert_eq!(
        map_site.auth.lock().unwrap().clone(),
        [Some(basic("mapper:map:SECRET"))],
        "the sitemap is fetched with its credentials"
    );
    assert_eq!(
        mapped.auth.lock().unwrap().clone(),
        [None],
        "a page the sitemap lists on another origin gets none"
    );

    // Nothing but the owner-only credentials file holds a password.
    let holding = journal_files_holding(&journal, b"SECRET");
    assert!(holding.is_empty(), "{holding:?}");
    let credentials = journal.join("credentials");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(&credentials)
        .unwrap()
        .contains("SECRET"));
    let status = run_quiet_about_secrets(
        &["status", "--json", "--journal", journal.to_str().unwrap()],
        None,
    );
    assert!(status.status.success());

    // MySQL holds every page, and no column holds a password or userinfo.
    let mut conn = db.conn().await;
    let pages: Vec<String> = conn
        .query("SELECT CONCAT_WS(' ', url, final_url, error, canonical) FROM pages")
        .await
        .unwrap();
    assert_eq!(pages.len(), valid + 2, "{pages:?}");
    let links: Vec<String> = conn.query("SELECT to_url FROM links").await.unwrap();
    assert!(!links.is_empty());
    let synced = format!("{pages:?} {links:?}");
    assert!(
        !synced.contains("SECRET") && !synced.contains("user"),
        "{synced}"
    );
}

/// URLs seeded from MySQL carry their credentials to their origin, and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_seed_rows_are_kept_like_those_in_a_list() {
    let db = TestDb::new().await;
    let seeded = site(None).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let page = with_userinfo(&seeded.server.url("/page"), "u:s%40SECRET");
    let query = format!("SELECT 7, '{page}'");
    let out = run_quiet_about_secrets(
        &[
            "crawl",
            "--quiet",
            "--ignore-robots",
            "--from-mysql",
            &db.url,
            "--query",
            &query,
            "--journal",
            journal.to_str().unwrap(),
            "--sync",
            &db.url,
        ],
        None,
    );
    assert!(out.status.success(), "{}", printed(&out));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("u:s@SECRET");
    assert_eq!(
        seeded.auth.lock().unwrap().clone(),
        [Some(format!("Basic {basic}"))]
    );
    assert!(journal_files_holding(&journal, b"SECRET").is_empty());
    let mut conn = db.conn().await;
    let urls: Vec<(String, Option<String>)> = conn
        .query("SELECT url, source_key FROM pages")
        .await
        .unwrap();
    assert_eq!(urls, [(seeded.server.url("/page"), Some("7".to_string()))]);
}

/// A crawl with three `--header`s (and `extra` flags) from a given site whose page
/// links to, and whose sitemap lists, pages of another origin: each request's path
/// (`given/...` or `other/...`) and the headers it carried, `auth|cookie|custom`.
async fn crawl_with_headers(extra: &[&str]) -> Vec<(String, String)> {
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let record = |seen: Arc<Mutex<Vec<(String, String)>>>, name: &'static str| {
        move |req: http::Request<hyper::body::Incoming>| {
            let got = ["authorization", "cookie", "x-custom"]
                .map(|h| header(&req, h).unwrap_or_default())
                .join("|");
            seen.lock()
                .unwrap()
                .push((format!("{name}{}", req.uri().path()), got));
            async move { reply(200, "<html><title>other</title></html>") }
        }
    };
    let other = TestServer::start(record(seen.clone(), "other")).await;
    let (linked, listed) = (other.url("/linked"), other.url("/listed"));
    let given = {
        let seen = seen.clone();
        TestServer::start(move |req| {
            let got = ["authorization", "cookie", "x-custom"]
                .map(|h| header(&req, h).unwrap_or_default())
                .join("|");
            let path = req.uri().path().to_string();
            seen.lock().unwrap().push((format!("given{path}"), got));
            let body = match path.as_str() {
                "/sitemap.xml" => format!(
                    "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                     <url><loc>{listed}</loc></url></urlset>"
                ),
                _ => format!(
                    "<html><title>given</title><a href=\"{linked}\">l</a><a href=\"/a2\">2</a></html>"
                ),
            };
            async move { reply(200, body) }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &[given.url("/")]);
    let out = run_quiet_about_secrets(
        &[
            "crawl",
            "--quiet",
            "--ignore-robots",
            "--allow-private",
            "--follow",
            "same-host",
            "--urls",
            list.to_str().unwrap(),
            "--sitemap",
            &given.url("/sitemap.xml"),
            "--header",
            "Authorization: Bearer T0KEN-SECRET",
            "--header",
            "Cookie: s=C00KIE-SECRET",
            "--header",
            "X-Custom: v",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
        None,
    );
    assert!(out.status.success(), "{}", printed(&out));
    let seen = seen.lock().unwrap().clone();
    let mut requested: Vec<&str> = seen.iter().map(|(path, _)| path.as_str()).collect();
    requested.sort();
    requested.dedup();
    for path in [
        "given/",
        "given/a2",
        "given/sitemap.xml",
        "other/linked",
        "other/listed",
    ] {
        assert!(requested.contains(&path), "{path} not requested: {seen:?}");
    }
    seen
}

const ALL_HEADERS: &str = "Bearer T0KEN-SECRET|s=C00KIE-SECRET|v";

/// The case: `--header`s given for a site are not sent to the other hosts its
/// sitemap lists or its pages link to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_headers_reach_only_the_origins_the_user_gave() {
    for (path, got) in crawl_with_headers(&[]).await {
        let want = if path.starts_with("given") {
            ALL_HEADERS
        } else {
            "||"
        };
        assert_eq!(got, want, "{path}");
    }
}

/// `--header-all-origins` widens the scope to every origin the crawl reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_all_origins_sends_them_everywhere() {
    for (path, got) in crawl_with_headers(&["--header-all-origins"]).await {
        assert_eq!(got, ALL_HEADERS, "{path}");
    }
}
