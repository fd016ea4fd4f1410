//! Extraction rules as analysts use them, through the binary and MariaDB: the rules are
//! kept in the journal (plain `reparse` uses them again, `status` names them,
//! `reparse --rules` replaces them, `--no-rules` drops them), a field without
//! `all = true` is one JSON value, and URL attributes are absolute.

use mysql_async::prelude::*;
use serde_json::{json, Value};
use webspool::parse::Rules;

use crate::cli::{on, status_json, stderr};
use crate::util::mysql::TestDb;
use crate::util::{self, server};

const RULES: &str = "[fields.price]\nselector = \"span.price\"\n\
    [fields.tags]\nselector = \"li.tag\"\nall = true\n\
    [fields.image]\nselector = \"img.main\"\nattr = \"src\"\n\
    [fields.more]\nselector = \"a.more\"\nattr = \"href\"\n\
    [fields.sizes]\nselector = \"img.main\"\nattr = \"srcset\"\n\
    [fields.alt]\nselector = \"img.main\"\nattr = \"alt\"\n\
    [fields.missing]\nselector = \"table.none\"\n";

const OTHER_RULES: &str = "[fields.heading]\nselector = \"h2\"\n";

/// `/plain/N`: relative URLs against the page; `/based/N`: a `<base href>` first, so
/// they resolve against it.
async fn shop() -> util::TestServer {
    util::TestServer::start(|req| async move {
        let path = req.uri().path().to_string();
        let base = match path.starts_with("/based/") {
            true => "<base href=\"https://cdn.example/assets/\">",
            false => "",
        };
        let html = format!(
            "<html><head>{base}<title>{path}</title></head><body>\
             <h2>Heading {path}</h2><span class=price>10</span>\
             <ul><li class=tag>red</li><li class=tag>blue</li></ul>\
             <img class=main src=\"img/a.png\" srcset=\"img/a.png 1x, /b.png 2x\" alt=\"A &amp; B\">\
             <a class=more href=\"../next?x=1&amp;y=2#top\">more</a></body></html>"
        );
        server::with_headers(server::reply(200, html), &[("content-type", "text/html")])
    })
    .await
}

/// MySQL's `fields` of every page, by URL.
async fn fields(db: &TestDb) -> std::collections::BTreeMap<String, Value> {
    let mut conn = db.conn().await;
    let rows: Vec<(String, String)> = conn.query("SELECT url, fields FROM pages").await.unwrap();
    rows.into_iter()
        .map(|(url, fields)| (url, serde_json::from_str(&fields).unwrap()))
        .collect()
}

fn succeeds(command: &[&str], journal: &std::path::Path) -> String {
    let out = on(command, journal);
    assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    stderr(&out)
}

fn hash_of(toml: &str) -> String {
    format!("{:016x}", Rules::from_toml(toml).unwrap().hash())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_are_single_values_or_lists_and_url_attributes_absolute() {
    let server = shop().await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (plain, based) = (server.url("/plain/1"), server.url("/based/1"));
    let list = util::url_file(&dir, &[plain.clone(), based.clone()]);
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let journal = dir.path().join("j");
    let (list, rules) = (list.to_str().unwrap(), rules.to_str().unwrap());
    succeeds(
        &["crawl", "--quiet", "--urls", list, "--rules", rules],
        &journal,
    );
    succeeds(&["sync", "--quiet", "--mysql", &db.url], &journal);

    let rows = fields(&db).await;
    let host = server.url("");
    assert_eq!(
        rows[&plain],
        json!({
            "price": "10",
            "tags": ["red", "blue"],
            "image": format!("{host}/plain/img/a.png"),
            "more": format!("{host}/next?x=1&y=2#top"),
            "sizes": format!("{host}/plain/img/a.png 1x, {host}/b.png 2x"),
            "alt": "A & B",
            "missing": null,
        })
    );
    assert_eq!(
        rows[&based],
        json!({
            "price": "10",
            "tags": ["red", "blue"],
            "image": "https://cdn.example/assets/img/a.png",
            "more": "https://cdn.example/next?x=1&y=2#top",
            "sizes": "https://cdn.example/assets/img/a.png 1x, https://cdn.example/b.png 2x",
            "alt": "A & B",
            "missing": null,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_kept_named_replaced_and_dropped() {
    let server = shop().await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<String> = (0..3).map(|i| server.url(&format!("/plain/{i}"))).collect();
    let list = util::url_file(&dir, &pages);
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let journal = dir.path().join("j");
    let list = list.to_str().unwrap();
    let rules_arg = rules.to_str().unwrap();
    succeeds(
        &["crawl", "--quiet", "--urls", list, "--rules", rules_arg],
        &journal,
    );
    let sync = ["sync", "--quiet", "--mysql", &db.url];
    succeeds(&sync, &journal);

    // status names the rules: the file (made absolute) and the hash.
    let file = std::fs::canonicalize(&rules).unwrap().display().to_string();
    let status = status_json(&journal);
    assert_eq!(
        status["rules"],
        json!({"file": file, "hash": hash_of(RULES)})
    );
    let text = String::from_utf8_lossy(&on(&["status"], &journal).stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("rules ")).unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["rules", file.as_str(), &format!("({})", hash_of(RULES))],
        "{text}"
    );

    // The file is gone; a plain reparse parses with the kept text: nothing changes,
    // so nothing is synced again, and MySQL keeps the fields.
    std::fs::remove_file(&rules).unwrap();
    let err = succeeds(&["reparse"], &journal);
    assert!(err.contains("3 pages annotated (0 changed"), "{err}");
    assert!(
        err.contains(&format!("parsing with the journal's rules from {file}")),
        "{err}"
    );
    succeeds(&sync, &journal);
    for page in &pages {
        assert_eq!(fields(&db).await[page]["price"], json!("10"), "{page}");
    }
    // A resumed crawl (new URLs) parses them with the kept rules too.
    let more = util::url_file(&dir, &[server.url("/plain/9")]);
    succeeds(
        &["crawl", "--quiet", "--urls", more.to_str().unwrap()],
        &journal,
    );
    succeeds(&sync, &journal);
    assert_eq!(
        fields(&db).await[&server.url("/plain/9")]["price"],
        json!("10")
    );

    // reparse --rules NEW replaces them, for every page, and says so.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, OTHER_RULES).unwrap();
    let other_file = std::fs::canonicalize(&other).unwrap().display().to_string();
    let err = succeeds(&["reparse", "--rules", other.to_str().unwrap()], &journal);
    assert!(
        err.contains(&format!(
            "the rules from {other_file} ({}) replace those from {file} ({})",
            hash_of(OTHER_RULES),
            hash_of(RULES)
        )),
        "{err}"
    );
    assert_eq!(
        status_json(&journal)["rules"],
        json!({"file": other_file, "hash": hash_of(OTHER_RULES)})
    );
    succeeds(&sync, &journal);
    for (url, fields) in fields(&db).await {
        let heading = format!("Heading {}", url.trim_start_matches(&server.url("")));
        assert_eq!(fields, json!({ "heading": heading }), "{url}");
    }

    // crawl --rules on a journal that keeps other rules: they replace them for the
    // pages parsed from now on, with a warning that says how to apply them to the rest.
    std::fs::write(&rules, RULES).unwrap();
    let newer = util::url_file(&dir, &[server.url("/plain/10")]);
    let err = succeeds(
        &[
            "crawl",
            "--urls",
            newer.to_str().unwrap(),
            "--rules",
            rules_arg,
        ],
        &journal,
    );
    assert!(
        err.contains(&format!(
            "the rules from {file} ({}) replace the journal's rules from {other_file}",
            hash_of(RULES)
        )) && err.contains("`webspool reparse` applies them to the pages parsed before"),
        "{err}"
    );
    assert_eq!(
        status_json(&journal)["rules"]["hash"],
        json!(hash_of(RULES))
    );

    // --no-rules drops them: every page loses its fields, and status shows none.
    let err = succeeds(&["reparse", "--no-rules"], &journal);
    assert!(err.contains("are dropped"), "{err}");
    assert_eq!(status_json(&journal)["rules"], Value::Null);
    let text = String::from_utf8_lossy(&on(&["status"], &journal).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["rules", "none"]),
        "{text}"
    );
    succeeds(&sync, &journal);
    let rows = fields(&db).await;
    assert_eq!(rows.len(), 5);
    for (url, fields) in rows {
        assert_eq!(fields, json!({}), "{url}");
    }

    // --rules and --no-rules together are a usage error.
    let out = on(&["reparse", "--rules", rules_arg, "--no-rules"], &journal);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
