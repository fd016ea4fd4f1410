//! WARC in and out: `export --warc` read back record by record (digests, ids, bodies as
//! the server sent them) and, when `warcio` is installed, checked by it; `export
//! --jsonl`; `import` of files written by wget and in Common Crawl's layout (revisits,
//! a truncated record), twice; a file cut inside a gzip member; export and import while
//! a crawl holds the journal.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::cli::{crawl_list, on, status_json, stderr};
use crate::holder::{held, on_journal, wait};
use crate::util::server::{gzip, refused_port, reply, with_headers};
use crate::util::{self, TestServer};
use webspool::warc::{Record, Sha1Digest, WarcReader};

const HOME: &str = r#"<!doctype html><html lang="en"><head><title>Home page</title>
<meta name="description" content="The start"></head><body><a href="/a">A</a></body></html>"#;
const ARTICLE: &str = "<html><head><title>Zipped article</title></head><body>words</body></html>";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/warc")
        .join(name)
}

/// Every record of a WARC file, read with webspool's reader (which checks each block
/// digest).
fn records(path: &Path) -> Vec<Record> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = WarcReader::new(file, 64 << 20).unwrap();
    let mut all = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        all.push(record);
    }
    all
}

/// The HTTP head and payload of a response record.
fn split_http(record: &Record) -> (String, Vec<u8>) {
    let block = record.block.as_ref().unwrap();
    let at = block.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&block[..at]).into_owned(),
        block[at + 4..].to_vec(),
    )
}

/// A site of four pages (one gzip-encoded, one 404) and a URL that refuses
/// connections, crawled and parsed by the binary.
async fn crawled_site(dir: &Path) -> (TestServer, PathBuf) {
    let site = TestServer::start(|req| async move {
        match req.uri().path() {
            "/" => with_headers(reply(200, HOME), &[("content-type", "text/html")]),
            "/article" => with_headers(
                reply(200, gzip(ARTICLE.as_bytes())),
                &[("content-type", "text/html"), ("content-encoding", "gzip")],
            ),
            "/notes.txt" => with_headers(
                reply(200, "plain notes\n"),
                &[("content-type", "text/plain"), ("etag", "\"n1\"")],
            ),
            _ => reply(404, "no such page"),
        }
    })
    .await;
    let urls = [
        site.url("/"),
        site.url("/article"),
        site.url("/notes.txt"),
        site.url("/missing"),
        format!("http://127.0.0.1:{}/refused", refused_port()),
    ];
    let list = dir.join("list.txt");
    std::fs::write(&list, urls.join("\n") + "\n").unwrap();
    let journal = dir.join("j");
    let (l, j) = (list.clone(), journal.clone());
    tokio::task::spawn_blocking(move || {
        crawl_list(&l, &j);
        let out = on(&["parse", "--quiet"], &j);
        assert!(out.status.success(), "{}", stderr(&out));
    })
    .await
    .unwrap();
    (site, journal)
}

/// `export FORMAT PATH` of `journal`, which must succeed; its stderr.
fn export(journal: &Path, format: &str, path: &Path) -> String {
    let out = on(&["export", format, path.to_str().unwrap()], journal);
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

/// Runs `warcio ARGS` if warcio is installed; its stdout, or None without it.
fn warcio(args: &[&str]) -> Option<String> {
    let out = Command::new("warcio").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "warcio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_warc_reads_back_with_valid_digests_and_imports_again() {
    let dir = tempfile::tempdir().unwrap();
    let (site, journal) = crawled_site(dir.path()).await;
    let warc = dir.path().join("out.warc.gz");
    let err = export(&journal, "--warc", &warc);
    assert!(
        err.contains("4 pages written") && err.contains("1 failed"),
        "{err}"
    );

    let all = records(&warc);
    assert_eq!(all[0].kind(), "warcinfo");
    assert_eq!(all[0].version, "WARC/1.1");
    let responses: Vec<&Record> = all.iter().filter(|r| r.kind() == "response").collect();
    assert_eq!(responses.len(), 4);
    assert_eq!(all.iter().filter(|r| r.kind() == "request").count(), 4);
    assert_eq!(all.iter().filter(|r| r.kind() == "metadata").count(), 4);
    for response in &responses {
        let id = response.header("WARC-Record-ID").unwrap();
        assert!(id.starts_with("<urn:uuid:"), "{id}");
        let target = response.header("WARC-Target-URI").unwrap();
        assert!(target.starts_with(&site.url("/")), "{target}");
        assert!(response.header("WARC-Date").unwrap().ends_with('Z'));
        let (head, payload) = split_http(response);
        // The reader checked the block digest; the payload digest is checked here.
        assert_eq!(
            Sha1Digest::parse(response.header("WARC-Payload-Digest").unwrap()),
            Some(Sha1Digest::of(&payload))
        );
        assert!(
            head.contains(&format!("Content-Length: {}", payload.len())),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("content-encoding"),
            "{head}"
        );
        let request = all
            .iter()
            .find(|r| r.kind() == "request" && r.header("WARC-Concurrent-To") == Some(id))
            .unwrap_or_else(|| panic!("no request for {target}"));
        assert_eq!(request.header("WARC-Target-URI"), Some(target));
        if target.ends_with("/article") {
            // Stored decoded: the article as written, not the gzip bytes sent.
            assert_eq!(payload, ARTICLE.as_bytes());
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        }
        if target.ends_with("/missing") {
            assert!(head.starts_with("HTTP/1.1 404 Not Found"), "{head}");
        }
        if target.ends_with("/notes.txt") {
            assert!(head.contains("ETag: \"n1\""), "{head}");
        }
    }
    let home = all
        .iter()
        .find(|r| r.kind() == "metadata" && r.header("WARC-Target-URI") == Some(&site.url("/")))
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(home.block.as_ref().unwrap()).unwrap();
    assert_eq!(json["annotation"]["title"], "Home page");

    if let Some(check) = warcio(&["check", "-v", warc.to_str().unwrap()]) {
        assert_eq!(check.matches("digest pass").count(), all.len(), "{check}");
        assert!(!check.contains("fail"), "{check}");
        let index = warcio(&["index", warc.to_str().unwrap()]).unwrap();
        assert_eq!(index.lines().count(), all.len(), "{index}");
    }

    // A file is never overwritten.
    let again = on(&["export", "--warc", warc.to_str().unwrap()], &journal);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("out.warc.gz"), "{}", stderr(&again));

    // Rolled over: every file starts with a warcinfo, no record is lost.
    let small = dir.path().join("small.warc.gz");
    let out = on(
        &[
            "export",
            "--warc",
            small.to_str().unwrap(),
            "--max-size",
            "1KiB",
        ],
        &journal,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files = vec![small.clone()];
    for n in 1.. {
        let next = dir.path().join(format!("small-{n:05}.warc.gz"));
        if !next.exists() {
            break;
        }
        files.push(next);
    }
    assert!(files.len() > 2, "{files:?}");
    let mut rolled = 0;
    for file in &files {
        let records = records(file);
        assert_eq!(records[0].kind(), "warcinfo");
        rolled += records.iter().filter(|r| r.kind() != "warcinfo").count();
    }
    assert_eq!(rolled, all.len() - 1);

    // Imported into a new journal: the same pages, the same bodies.
    let copy = dir.path().join("copy");
    let out = on(&["import", "--warc", warc.to_str().unwrap()], &copy);
    assert!(out.status.success(), "{}", stderr(&out));
    let (j, c) = (journal.clone(), copy.clone());
    let (original, imported) = tokio::task::spawn_blocking(move || (bodies(&j), bodies(&c)))
        .await
        .unwrap();
    assert_eq!(original.len(), 4);
    assert_eq!(original, imported);
}

/// The URL, status and body of every page with a response, from `export --jsonl -
/// --with-body`.
fn bodies(journal: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let out = on(&["export", "--jsonl", "-", "--with-body"], journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut pages: Vec<(String, u64, Vec<u8>)> = jsonl(&out.stdout)
        .into_iter()
        .filter(|line| line["status"].is_u64())
        .map(|line| {
            let body = base64::engine::general_purpose::STANDARD
                .decode(line["body"].as_str().unwrap())
                .unwrap();
            (
                line["final_url"].as_str().unwrap().to_string(),
                line["status"].as_u64().unwrap(),
                body,
            )
        })
        .collect();
    pages.sort();
    pages
}

fn jsonl(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_jsonl_with_and_without_bodies_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (site, journal) = crawled_site(dir.path()).await;
    let file = dir.path().join("pages.jsonl");
    export(&journal, "--jsonl", &file);
    let lines = jsonl(&std::fs::read(&file).unwrap());
    assert_eq!(lines.len(), 5);
    let home = lines.iter().find(|l| l["url"] == site.url("/")).unwrap();
    assert_eq!(home["status"], 200);
    assert_eq!(home["title"], "Home page");
    assert_eq!(home["description"], "The start");
    assert_eq!(home["lang"], "en");
    assert_eq!(home["links"][0]["url"], site.url("/a"));
    assert!(home["fields"].is_object());
    assert_eq!(home["content_hash"].as_str().unwrap().len(), 32);
    assert!(home["fetched_at"].as_str().unwrap().ends_with('Z'));
    assert!(home.get("body").is_none(), "{home}");
    let failed = lines.iter().find(|l| l["status"].is_null()).unwrap();
    assert_eq!(failed["error"], "connect");

    let bodies = bodies(&journal);
    let article = bodies
        .iter()
        .find(|(u, ..)| u.ends_with("/article"))
        .unwrap();
    assert_eq!(article.2, ARTICLE.as_bytes());

    let only = on(
        &["export", "--jsonl", "-", "--include", "notes\\.txt$"],
        &journal,
    );
    assert!(only.status.success(), "{}", stderr(&only));
    let only = jsonl(&only.stdout);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["url"], site.url("/notes.txt"));
    let later = on(
        &["export", "--jsonl", "-", "--since", "2999-01-01"],
        &journal,
    );
    assert!(later.status.success(), "{}", stderr(&later));
    assert!(later.stdout.is_empty());
    assert!(stderr(&later).contains("5 left out"), "{}", stderr(&later));
    let bad = on(
        &["export", "--jsonl", "-", "--since", "yesterday"],
        &journal,
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a date"), "{}", stderr(&bad));
}

/// `import` of `files` into `journal`; its stderr.
fn import(journal: &Path, files: &[&Path]) -> String {
    let mut args = vec!["import", "--warc"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = on(&args, journal);
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn import_wget_and_common_crawl_files_then_parse_and_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let (wget, cc) = (fixture("wget-site.warc.gz"), fixture("cc-layout.warc.gz"));
    let first = import(&journal, &[&wget, &cc]);
    // wget: index, robots.txt (404), a, b, notes; Common Crawl: 5 responses (one
    // gzip-encoded, one chunked, one 404) and 2 revisits; its truncated one skipped.
    assert!(first.contains("12 pages recorded"), "{first}");
    assert!(first.contains("2 revisits resolved"), "{first}");
    assert!(first.contains("truncated 1"), "{first}");
    assert!(first.contains("request 11"), "{first}");
    let status = status_json(&journal);
    assert_eq!(status["fetched"], 12);
    assert_eq!(status["pending_parse"], 12);

    let out = on(&["parse", "--quiet"], &journal);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = on(&["export", "--jsonl", "-", "--with-body"], &journal);
    let lines = jsonl(&out.stdout);
    let page = |url: &str| {
        lines
            .iter()
            .find(|l| l["url"] == url)
            .unwrap_or_else(|| panic!("no {url} in {lines:?}"))
    };
    assert_eq!(page("http://127.0.0.1:18765/a.html")["title"], "Page A");
    assert_eq!(page("http://127.0.0.1:18765/b.html")["lang"], "fr");
    assert_eq!(page("http://127.0.0.1:18765/robots.txt")["status"], 404);
    assert_eq!(page("https://example.com/")["title"], "CC home");
    assert_eq!(
        page("https://example.com/")["fetched_at"],
        "2024-02-20T10:00:01.000Z"
    );
    assert_eq!(page("https://example.com/about")["title"], "About us");
    assert_eq!(page("https://example.com/chunked")["title"], "Chunked");
    assert_eq!(page("https://example.com/missing")["status"], 404);
    // The revisits took their original's body.
    let home = page("https://example.com/")["content_hash"].clone();
    assert_eq!(page("https://example.com/index.html")["content_hash"], home);
    assert_eq!(
        page("https://mirror.example.org/home")["content_hash"],
        home
    );
    assert!(lines.iter().all(|l| l["url"] != "https://example.com/big"));

    let counters = |status: serde_json::Value| {
        [
            "urls",
            "fetched",
            "pending_parse",
            "parsed",
            "pending_sync",
            "stored_body_bytes",
        ]
        .map(|key| status[key].clone())
    };
    let before = counters(status_json(&journal));
    let again = import(&journal, &[&wget, &cc]);
    assert!(again.contains("0 pages recorded, 12 unchanged"), "{again}");
    assert_eq!(counters(status_json(&journal)), before);
}

/// `import` of `file` into `journal` fails saying `why`.
fn import_fails(journal: &Path, file: &Path, why: &str) {
    let out = on(&["import", "--warc", file.to_str().unwrap()], journal);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
}

#[test]
fn a_file_cut_inside_a_gzip_member_stops_there_naming_its_offset_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cc = std::fs::read(fixture("cc-layout.warc.gz")).unwrap();
    let all = records(&fixture("cc-layout.warc.gz"));
    // Cut inside the response of the third capture (https://example.com/chunked).
    let cut_record = all
        .iter()
        .find(|r| {
            r.kind() == "response" && r.header("WARC-Target-URI").unwrap().ends_with("/chunked")
        })
        .unwrap();
    let at = cut_record.offset.file;
    let cut = dir.path().join("cut.warc.gz");
    std::fs::write(&cut, &cc[..at as usize + 40]).unwrap();
    let journal = dir.path().join("j");
    let out = on(&["import", "--warc", cut.to_str().unwrap()], &journal);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cut.warc.gz: at byte {at}: truncated gzip member")),
        "{err}"
    );
    assert!(err.contains("2 pages recorded"), "{err}");
    assert_eq!(status_json(&journal)["fetched"], 2);

    // Not a WARC at all.
    let text = dir.path().join("list.txt");
    std::fs::write(&text, "http://example.com/\n").unwrap();
    import_fails(&journal, &text, "list.txt: at byte 0: not a WARC record");

    // A block that does not match its digest.
    let plain = dir.path().join("bad.warc");
    let block = b"HTTP/1.1 200 OK\r\n\r\nhello";
    let record = format!(
        "WARC/1.1\r\nWARC-Type: resource\r\nWARC-Target-URI: http://example.com/x\r\n\
         WARC-Block-Digest: {}\r\nContent-Length: {}\r\n\r\n",
        Sha1Digest::of(b"something else").field(),
        block.len()
    );
    let mut bytes = record.into_bytes();
    bytes.extend_from_slice(block);
    bytes.extend_from_slice(b"\r\n\r\n");
    std::fs::write(&plain, &bytes).unwrap();
    import_fails(&journal, &plain, "bad.warc: at byte 0: bad digest");
    assert_eq!(status_json(&journal)["fetched"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_runs_in_the_crawl_holding_the_journal_and_import_is_refused() {
    let (_site, dir, journal, crawl) = held(200).await;
    assert!(
        util::eventually(30, || status_json(&journal)["fetched"].as_u64() >= Some(5)).await,
        "the crawl fetched nothing"
    );

    let warc = dir.path().join("live.warc.gz");
    let out = on_journal(&["export", "--warc", warc.to_str().unwrap()], &journal).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let responses = records(&warc)
        .into_iter()
        .filter(|r| r.kind() == "response")
        .count();
    assert!(responses >= 5, "{responses}");
    let lines = on_journal(&["export", "--jsonl", "-"], &journal).await;
    assert!(lines.status.success(), "{}", stderr(&lines));
    assert!(jsonl(&lines.stdout).len() >= responses);

    let refused = on_journal(
        &[
            "import",
            "--warc",
            fixture("cc-layout.warc.gz").to_str().unwrap(),
        ],
        &journal,
    )
    .await;
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("in use by webspool process") && err.contains("an import would conflict"),
        "{err}"
    );
    assert!(
        status_json(&journal)["fetched"].as_u64() < Some(200),
        "the crawl ended before the checks: they did not run against a holder"
    );
    util::signal(&crawl, libc::SIGKILL);
    wait(crawl).await;
}
