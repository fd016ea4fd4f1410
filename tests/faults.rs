//! Damage to the segment files of a real journal, through the real binary: a byte
//! flipped in one page's body or in one entry's header after a crawl of 200 pages, then
//! `verify` (text and JSON), `sync` into MariaDB, `status`, `reparse`, `verify --repair`
//! (with and without `--drop`) and the crawl that fetches the damaged page again.
//!
//! The tests walk the entry frames of the segment file themselves (see the module doc of
//! `src/journal/segments.rs`), so they pin the on-disk framing too.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mysql_async::prelude::*;
use webspool::journal::Journal;
use webspool::parse::Field;

use crate::util::mysql::TestDb;
use crate::util::{self, server};

/// Pages the site serves and every test crawls.
const PAGES: usize = 200;
/// The entry the tests damage: one in the middle of the segment.
const VICTIM_ENTRY: usize = 57;
/// Magic, header length, body length and the two checksums of every entry.
const FRAME_BYTES: usize = 32;
/// A reparse rule that changes every page's annotation: the number in `<b class=v>`.
const RULES: &str = "[fields.v]\nselector = \"b.v\"\n";

/// Page `i`: its number in `<b class=v>`, then about 3 KB of words drawn by a
/// generator seeded with `i`, so that every body is distinct and stays several hundred
/// bytes once compressed.
fn page(i: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "spool", "journal", "segment", "entry", "frame", "body", "header", "checksum", "crawl",
        "parse", "sync", "verify", "repair", "damage", "byte", "page",
    ];
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut text = String::new();
    while text.len() < 3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    format!(
        "<html><head><title>Page {i}</title></head>\
         <body><b class=v>{i}</b><p>{text}</p></body></html>"
    )
    .into_bytes()
}

/// Page `i`'s path: three digits, so that no page's URL is a prefix of another's.
fn path(i: usize) -> String {
    format!("/p/{i:03}")
}

/// What a run of the binary printed, and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with the output unless the run exited with `code`.
    fn expect(self, code: i32, what: &str) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The lines of stderr that name `url`.
    fn lines_naming(&self, url: &str) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(url)).collect()
    }
}

/// Runs `webspool ARGS --journal JOURNAL` off the async threads, which serve the site.
async fn webspool(args: &[&str], journal: &Path) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let journal = journal.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(util::bin())
            .args(&args)
            .arg("--journal")
            .arg(&journal)
            .stdin(Stdio::null())
            .output()
            .expect("run webspool")
    })
    .await
    .expect("join");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One entry of a segment file, as the framing says: where its header and body lie.
#[derive(Clone, Debug)]
struct Frame {
    offset: usize,
    header: Range<usize>,
    body: Range<usize>,
}

/// Walks the entry frames of a whole, undamaged segment file.
fn frames(segment: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < segment.len() {
        let frame = segment
            .get(pos..pos + FRAME_BYTES)
            .unwrap_or_else(|| panic!("a frame cut short at {pos}"));
        assert_eq!(&frame[..4], b"WSE\x01", "entry magic at {pos}");
        let header_len = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
        let body_len = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
        let header = pos + FRAME_BYTES..pos + FRAME_BYTES + header_len as usize;
        let body = header.end..header.end + body_len as usize;
        assert!(
            body.end <= segment.len(),
            "entry at {pos} runs past the file"
        );
        frames.push(Frame {
            offset: pos,
            header,
            body: body.clone(),
        });
        pos = body.end;
    }
    frames
}

/// Which part of an entry to damage.
#[derive(Clone, Copy)]
enum Part {
    /// A byte in the middle of the header.
    Header,
    /// A byte in the middle of the body.
    Body,
    /// A byte of the body's checksum in the frame.
    BodyChecksum,
    /// The body length in the frame, made to take in the next entry whole.
    BodyLength,
}

/// The site, crawled into a journal by the binary.
struct Crawled {
    server: util::TestServer,
    dir: tempfile::TempDir,
    journal: PathBuf,
    list: PathBuf,
    urls: Vec<String>,
}

impl Crawled {
    /// Serves the pages (404 for anything else, robots.txt too) and crawls them all.
    async fn new() -> Crawled {
        let server = util::TestServer::start(|req| async move {
            let number = req
                .uri()
                .path()
                .strip_prefix("/p/")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < PAGES);
            match number {
                Some(i) => server::with_headers(
                    server::reply(200, page(i)),
                    &[("content-type", "text/html; charset=utf-8")],
                ),
                None => server::reply(404, "no such page"),
            }
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let urls: Vec<String> = (0..PAGES).map(|i| server.url(&path(i))).collect();
        let list = util::url_file(&dir, &urls);
        let journal = dir.path().join("journal");
        let crawled = Crawled {
            server,
            dir,
            journal,
            list,
            urls,
        };
        crawled.crawl().await;
        crawled
    }

    /// `webspool crawl` of the URL list, which must succeed.
    async fn crawl(&self) {
        let list = self.list.to_str().expect("UTF-8 path");
        webspool(&["crawl", "--quiet", "--urls", list], &self.journal)
            .await
            .expect(0, "crawl");
    }

    fn segment_path(&self) -> PathBuf {
        self.journal.join("segments/00000001.seg")
    }

    /// The page whose entry `frame` is: the one URL its header holds.
    fn page_of(&self, segment: &[u8], frame: &Frame) -> usize {
        let header = &segment[frame.header.clone()];
        let holds = |url: &str| header.windows(url.len()).any(|w| w == url.as_bytes());
        let pages: Vec<usize> = (0..PAGES).filter(|&i| holds(&self.urls[i])).collect();
        assert_eq!(
            pages.len(),
            1,
            "the header of the entry at {}",
            frame.offset
        );
        pages[0]
    }

    /// Damages `part` of the segment's entry number `k` (a byte flipped, or the body
    /// length changed); returns the page it belongs to, the entry as it was, and every
    /// page's entry by page.
    fn damage(&self, k: usize, part: Part) -> (usize, Frame, BTreeMap<usize, Frame>) {
        let path = self.segment_path();
        let mut segment = std::fs::read(&path).expect("read the segment");
        let frames = frames(&segment);
        assert_eq!(frames.len(), PAGES, "one entry per page");
        let by_page: BTreeMap<usize, Frame> = frames
            .iter()
            .map(|f| (self.page_of(&segment, f), f.clone()))
            .collect();
        assert_eq!(by_page.len(), PAGES, "every page has its own entry");
        let victim = frames[k].clone();
        let page = self.page_of(&segment, &victim);
        let middle = |range: &Range<usize>| range.start + range.len() / 2;
        match part {
            Part::Header => segment[middle(&victim.header)] ^= 0x5a,
            Part::Body => segment[middle(&victim.body)] ^= 0x5a,
            Part::BodyChecksum => segment[victim.offset + 27] ^= 0x5a,
            Part::BodyLength => {
                let longer = (frames[k + 1].body.end - victim.body.start) as u64;
                segment[victim.offset + 8..victim.offset + 16]
                    .copy_from_slice(&longer.to_le_bytes());
            }
        }
        std::fs::write(&path, &segment).expect("write the segment");
        (page, victim, by_page)
    }

    /// The requests each page got.
    fn hits(&self) -> Vec<u64> {
        (0..PAGES).map(|i| self.server.hits(&path(i))).collect()
    }
}

/// The lines of `verify`'s report.
fn damaged_lines(verify: &Run) -> Vec<&str> {
    verify
        .stdout
        .lines()
        .filter(|l| l.starts_with("damaged:"))
        .collect()
}

/// `webspool status --json`.
async fn status(journal: &Path) -> serde_json::Value {
    let run = webspool(&["status", "--json"], journal)
        .await
        .expect(0, "status");
    serde_json::from_str(&run.stdout).expect("status --json is JSON")
}

/// Every row of `pages` in MySQL: URL -> (body, fields).
async fn rows(db: &TestDb) -> BTreeMap<String, (Option<Vec<u8>>, Option<String>)> {
    let mut conn = db.conn().await;
    let rows: Vec<(String, Option<Vec<u8>>, Option<String>)> = conn
        .query("SELECT url, body, fields FROM pages")
        .await
        .expect("select pages");
    let count = rows.len();
    let rows: BTreeMap<_, _> = rows.into_iter().map(|(u, b, f)| (u, (b, f))).collect();
    assert_eq!(rows.len(), count, "one row per URL");
    rows
}

/// MySQL holds exactly the pages `expected`, each with the body the server served.
async fn assert_synced(db: &TestDb, urls: &[String], expected: impl Iterator<Item = usize>) {
    let rows = rows(db).await;
    let mut count = 0;
    for i in expected {
        let (body, _) = rows
            .get(&urls[i])
            .unwrap_or_else(|| panic!("no row for {}", urls[i]));
        assert!(
            body.as_deref() == Some(page(i).as_slice()),
            "the body of {} in MySQL is not the one served",
            urls[i]
        );
        count += 1;
    }
    assert_eq!(rows.len(), count, "rows in MySQL besides the expected ones");
}

/// `sync --mysql` into `db`.
async fn sync(db: &TestDb, journal: &Path) -> Run {
    webspool(&["sync", "--quiet", "--mysql", &db.url], journal).await
}

/// A flipped byte in the middle of a body, never synced: `verify` names the page (text
/// and JSON), `sync` loads every other page byte for byte and warns once about that
/// one, `status` counts it; `verify --repair` puts it back in the frontier, and the next
/// crawl fetches it (and nothing else) again, after which MySQL holds every page and the
/// journal is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_body_byte_is_reported_skipped_and_fetched_again_after_repair() {
    let db = TestDb::new().await;
    let site = Crawled::new().await;
    let (victim, _, _) = site.damage(VICTIM_ENTRY, Part::Body);
    let url = &site.urls[victim];

    let verify = webspool(&["verify"], &site.journal)
        .await
        .expect(1, "verify finds the damage");
    let damaged = damaged_lines(&verify);
    assert_eq!(damaged.len(), 1, "{}", verify.stdout);
    assert!(
        damaged[0].starts_with(&format!("damaged: {url}: ")),
        "{}",
        damaged[0]
    );
    assert!(verify.stderr.contains(": 1 problem"), "{}", verify.stderr);

    let json = webspool(&["verify", "--json"], &site.journal)
        .await
        .expect(1, "verify --json finds the damage");
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let problems: Vec<&serde_json::Value> = lines.iter().filter_map(|l| l.get("problem")).collect();
    assert_eq!(problems.len(), 1, "{}", json.stdout);
    assert_eq!(problems[0]["url"], url.as_str());
    assert!(problems[0]["id"].is_u64(), "{}", problems[0]);
    let summary = &lines.last().expect("a summary line")["summary"];
    assert_eq!(
        (&summary["pages"], &summary["bodies"], &summary["entries"]),
        (
            &serde_json::json!(PAGES),
            &serde_json::json!(PAGES - 1),
            &serde_json::json!(PAGES)
        ),
        "{summary}"
    );
    assert_eq!(summary["problems"], 1, "{summary}");

    let synced = sync(&db, &site.journal)
        .await
        .expect(0, "sync goes on past the damaged page");
    let warnings = synced.lines_naming(url);
    assert_eq!(warnings.len(), 1, "{}", synced.stderr);
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("damaged"),
        "{}",
        warnings[0]
    );
    assert_synced(&db, &site.urls, (0..PAGES).filter(|&i| i != victim)).await;

    let s = status(&site.journal).await;
    assert_eq!(s["damaged"], 1, "{s}");
    let text = webspool(&["status"], &site.journal)
        .await
        .expect(0, "status");
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("damaged") && l.ends_with(" 1 (run `webspool verify`)")),
        "{}",
        text.stdout
    );

    let repair = webspool(&["verify", "--repair"], &site.journal)
        .await
        .expect(1, "verify --repair reports what it repaired");
    assert!(
        repair
            .stderr
            .contains("repair: 1 damaged page will be fetched again"),
        "{}",
        repair.stderr
    );
    webspool(&["verify"], &site.journal)
        .await
        .expect(0, "verify after the repair");
    let s = status(&site.journal).await;
    assert_eq!(
        (&s["damaged"], &s["pending_fetch"], &s["fetched"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(1),
            &serde_json::json!(PAGES - 1)
        ),
        "{s}"
    );

    let before = site.hits();
    site.crawl().await;
    let after = site.hits();
    for i in 0..PAGES {
        let again = u64::from(i == victim);
        assert_eq!(after[i], before[i] + again, "requests for {}", site.urls[i]);
    }
    let synced = sync(&db, &site.journal)
        .await
        .expect(0, "sync of the page fetched again");
    assert!(synced.lines_naming(url).is_empty(), "{}", synced.stderr);
    assert_synced(&db, &site.urls, 0..PAGES).await;
    webspool(&["verify"], &site.journal)
        .await
        .expect(0, "verify at the end");
    let s = status(&site.journal).await;
    assert_eq!(
        (&s["damaged"], &s["fetched"], &s["pending_sync"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(PAGES),
            &serde_json::json!(0)
        ),
        "{s}"
    );
}

/// `verify --repair --drop`: the damaged page leaves the journal (its URL too), the
/// journal is clean afterwards, and every counter counts the pages that are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_with_drop_removes_the_damaged_page_and_recounts() {
    let site = Crawled::new().await;
    let (victim, _, by_page) = site.damage(VICTIM_ENTRY, Part::Body);
    let repair = webspool(&["verify", "--repair", "--drop"], &site.journal)
        .await
        .expect(1, "verify --repair --drop reports what it dropped");
    assert!(
        repair
            .stderr
            .contains("repair: 1 damaged page dropped from the journal"),
        "{}",
        repair.stderr
    );
    webspool(&["verify"], &site.journal)
        .await
        .expect(0, "verify after the drop");

    let left = || (0..PAGES).filter(|&i| i != victim);
    let raw: usize = left().map(|i| page(i).len()).sum();
    let stored: usize = left().map(|i| by_page[&i].body.len()).sum();
    let s = status(&site.journal).await;
    let left_pages = serde_json::json!(PAGES - 1);
    for name in ["urls", "fetched", "parsed", "pending_sync"] {
        assert_eq!(s[name], left_pages, "{name}: {s}");
    }
    for name in ["pending_fetch", "failed", "pending_parse", "damaged"] {
        assert_eq!(s[name], 0, "{name}: {s}");
    }
    assert_eq!(
        (&s["raw_bytes"], &s["stored_body_bytes"]),
        (&serde_json::json!(raw), &serde_json::json!(stored)),
        "{s}"
    );

    let journal = Journal::open_existing(&site.journal).expect("open the journal");
    assert_eq!(journal.find(&site.urls[victim]).expect("read"), None);
    for i in left() {
        let id = journal
            .find(&site.urls[i])
            .expect("read")
            .expect("still there");
        assert_eq!(
            journal.body(id).expect("read").as_deref(),
            Some(&page(i)[..])
        );
    }
}

/// `reparse` with a damaged body: exit 0, one warning naming the page, every other page
/// annotated with the new rules, and the damaged one keeps its annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_skips_a_damaged_body_and_annotates_the_others() {
    let site = Crawled::new().await;
    let (victim, _, _) = site.damage(VICTIM_ENTRY, Part::Body);
    let url = &site.urls[victim];
    let rules = site.dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("write rules");
    let rules = rules.to_str().expect("UTF-8 path");
    let reparse = webspool(&["reparse", "--rules", rules], &site.journal)
        .await
        .expect(0, "reparse goes on past the damaged page");
    let warnings = reparse.lines_naming(url);
    assert_eq!(warnings.len(), 1, "{}", reparse.stderr);
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("damaged"),
        "{}",
        warnings[0]
    );
    assert!(
        reparse
            .stderr
            .contains(&format!("{} pages annotated", PAGES - 1)),
        "{}",
        reparse.stderr
    );
    assert_eq!(status(&site.journal).await["damaged"], 1);

    let journal = Journal::open_existing(&site.journal).expect("open the journal");
    for (i, url) in site.urls.iter().enumerate() {
        let id = journal.find(url).expect("read").expect("known");
        let annotation = journal
            .annotation(id)
            .expect("read")
            .unwrap_or_else(|| panic!("{url} has no annotation"));
        let field = annotation.fields.get("v").cloned();
        if i == victim {
            assert_eq!(field, None, "the damaged page keeps its old annotation");
            assert_eq!(annotation.title, Some(format!("Page {i}")));
        } else {
            assert_eq!(field, Some(Field::One(Some(i.to_string()))), "{url}");
        }
    }
}

/// A flipped byte in an entry's header, not in a body: `verify` names the segment and
/// the offset of the entry that no longer checks out, and no page loses anything: sync
/// loads every body byte for byte, without a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_entry_header_is_reported_and_costs_no_body() {
    let db = TestDb::new().await;
    let site = Crawled::new().await;
    let (page, victim, _) = site.damage(VICTIM_ENTRY, Part::Header);
    let verify = webspool(&["verify"], &site.journal)
        .await
        .expect(1, "verify finds the damaged header");
    let damaged = damaged_lines(&verify);
    assert_eq!(damaged.len(), 1, "{}", verify.stdout);
    // The stretch that is not a whole entry is exactly the damaged entry, named by the
    // page whose body lies in it.
    let stretch = format!(
        "damaged: {}: its segment entry is damaged ({} bytes at offset {} of segment 1 are \
         not a whole entry)",
        site.urls[page],
        victim.body.end - victim.offset,
        victim.offset
    );
    assert!(damaged[0].starts_with(&stretch), "{}", damaged[0]);

    let synced = sync(&db, &site.journal)
        .await
        .expect(0, "sync with a damaged header");
    assert!(!synced.stderr.contains("damaged"), "{}", synced.stderr);
    assert_synced(&db, &site.urls, 0..PAGES).await;
    assert_eq!(status(&site.journal).await["damaged"], 0);
}

/// Damage in an entry's frame where no checksum covers it: a flipped byte of the body's
/// checksum, then (that one flipped back) a body length that takes in the next entry,
/// which a scan then never sees. `verify` names the page of the entry, the segment and
/// the offset each time (it said "clean" before); sync loads every page (the body is
/// whole); `verify --repair` fetches that page again, so that its entry is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_entry_frame_is_reported_naming_its_page() {
    let db = TestDb::new().await;
    let site = Crawled::new().await;
    let (victim, frame, _) = site.damage(VICTIM_ENTRY, Part::BodyChecksum);
    let url = &site.urls[victim];
    let says = format!(
        "damaged: {url}: its segment entry at offset {} of segment 1 says its body is {} bytes",
        frame.offset,
        frame.body.len()
    );
    let verify = webspool(&["verify"], &site.journal)
        .await
        .expect(1, "verify finds the damaged body checksum");
    let damaged = damaged_lines(&verify);
    assert_eq!(damaged.len(), 1, "{}", verify.stdout);
    assert!(damaged[0].starts_with(&says), "{}", damaged[0]);
    site.damage(VICTIM_ENTRY, Part::BodyChecksum);
    webspool(&["verify"], &site.journal)
        .await
        .expect(0, "verify with the byte flipped back");

    let (_, frame, by_page) = site.damage(VICTIM_ENTRY, Part::BodyLength);
    let verify = webspool(&["verify"], &site.journal)
        .await
        .expect(1, "verify finds the body length that swallows an entry");
    let damaged = damaged_lines(&verify);
    assert_eq!(damaged.len(), 1, "{}", verify.stdout);
    let swallowed = by_page
        .values()
        .find(|f| f.offset == frame.body.end)
        .expect("an entry after the damaged one");
    let longer = swallowed.body.end - frame.body.start;
    assert!(
        damaged[0].starts_with(&format!(
            "damaged: {url}: its segment entry at offset {} of segment 1 says its body is \
             {longer} bytes",
            frame.offset
        )),
        "{}",
        damaged[0]
    );
    // The body reads back: sync loads every page.
    sync(&db, &site.journal)
        .await
        .expect(0, "sync with a damaged frame");
    assert_synced(&db, &site.urls, 0..PAGES).await;
    // A repair fetches the page again (its entry could not be recovered), nothing else.
    let repair = webspool(&["verify", "--repair"], &site.journal)
        .await
        .expect(1, "verify --repair");
    assert!(
        repair
            .stderr
            .contains("1 damaged page will be fetched again"),
        "{}",
        repair.stderr
    );
    let s = status(&site.journal).await;
    assert_eq!(
        (&s["fetched"], &s["pending_fetch"]),
        (&serde_json::json!(PAGES - 1), &serde_json::json!(1)),
        "{s}"
    );
}

/// A page synced before its body was damaged keeps its row as it was: a reparse with
/// new rules queues every page for sync again, then the body is damaged, and the next
/// sync updates every other row but leaves that one's body and fields alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_synced_before_the_damage_keeps_its_row() {
    let db = TestDb::new().await;
    let site = Crawled::new().await;
    sync(&db, &site.journal).await.expect(0, "first sync");
    assert_synced(&db, &site.urls, 0..PAGES).await;

    let rules = site.dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("write rules");
    let rules = rules.to_str().expect("UTF-8 path");
    webspool(&["reparse", "--rules", rules], &site.journal)
        .await
        .expect(0, "reparse");
    assert_eq!(status(&site.journal).await["pending_sync"], PAGES);

    let (victim, _, _) = site.damage(VICTIM_ENTRY, Part::Body);
    let url = &site.urls[victim];
    let synced = sync(&db, &site.journal)
        .await
        .expect(0, "sync goes on past the damaged page");
    assert_eq!(synced.lines_naming(url).len(), 1, "{}", synced.stderr);
    assert_synced(&db, &site.urls, 0..PAGES).await;
    let rows = rows(&db).await;
    for (i, url) in site.urls.iter().enumerate() {
        let fields = rows[url].1.as_deref();
        if i == victim {
            assert_eq!(fields, Some("{}"), "the row as the first sync left it");
        } else {
            assert_eq!(fields, Some(format!("{{\"v\":\"{i}\"}}").as_str()), "{url}");
        }
    }
    let s = status(&site.journal).await;
    assert_eq!(
        (&s["damaged"], &s["pending_sync"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "{s}"
    );
}
