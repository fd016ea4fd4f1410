//! URL lists as the real binary reads them: a stdin that stays open (each line fetched as
//! it arrives, none lost to Ctrl-C or SIGTERM), byte order marks and UTF-16 files.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use webspool::journal::{Journal, Status};

use crate::util::{self, server};

/// Starts `webspool crawl --urls -` on `dir/journal` with its stdin open for the test to
/// write, as `tail -f log | webspool crawl --urls -` has it, and stderr in `dir/log`.
fn crawl_stdin(dir: &Path) -> (Child, ChildStdin) {
    let log = std::fs::File::create(dir.join("log")).expect("log file");
    let mut child = Command::new(util::bin())
        .args(["crawl", "--urls", "-", "--journal"])
        .arg(dir.join("journal"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start webspool");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

fn send_line(stdin: &mut ChildStdin, line: &str) {
    writeln!(stdin, "{line}").expect("write stdin");
    stdin.flush().expect("flush stdin");
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).expect("read log")
}

/// Waits up to `secs` for the child to exit; kills it and fails if it does not.
async fn exit_within(child: &mut Child, secs: u64) -> ExitStatus {
    if !util::eventually(secs, || child.try_wait().expect("poll child").is_some()).await {
        let _ = child.kill();
        let _ = child.wait();
        panic!("webspool did not exit within {secs} s");
    }
    child.wait().expect("wait")
}

/// Crawls the URL list file `list` with the binary into `dir/journal`, to its end.
async fn crawl_file(dir: &Path, list: &[u8]) -> Output {
    crawl_file_with(dir, list, &[]).await
}

/// [`crawl_file`] with more flags.
async fn crawl_file_with(dir: &Path, list: &[u8], flags: &[&str]) -> Output {
    let path = dir.join("urls.txt");
    std::fs::write(&path, list).expect("write url list");
    let journal = dir.join("journal");
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(util::bin())
            .arg("crawl")
            .args(flags)
            .arg("--urls")
            .arg(path)
            .arg("--journal")
            .arg(journal)
            .output()
            .expect("run webspool")
    })
    .await
    .expect("join")
}

fn status(dir: &Path) -> Status {
    Journal::open(&dir.join("journal"))
        .expect("open journal")
        .status()
        .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_64_urls_on_an_open_stdin_are_fetched_as_they_arrive() {
    let server = util::TestServer::start(|_req| async { server::reply(200, "hi") }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, mut stdin) = crawl_stdin(dir.path());
    // Each line is fetched before the next is written, with stdin open throughout (the
    // crawl once waited for 64 lines, or the end of the input, before taking any).
    for path in ["/a", "/b", "/c"] {
        send_line(&mut stdin, &server.url(path));
        let fetched = util::eventually(30, || server.hits(path) == 1).await;
        assert!(
            fetched,
            "{path} not requested while stdin is open: {:?}\n{}",
            server.all_hits(),
            log(dir.path())
        );
    }
    drop(stdin);
    let exit = exit_within(&mut child, 30).await;
    let log = log(dir.path());
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("done: 3 new URLs"), "{log}");
    let s = status(dir.path());
    assert_eq!((s.urls, s.fetched, s.pending_fetch), (3, 3, 0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_read_before_ctrl_c_or_sigterm_is_kept_and_counted_while_stdin_stays_open() {
    // SIGINT while the page is in flight; SIGTERM once it is fetched, intake waiting
    // on stdin alone. Either way the crawl must stop without waiting for stdin.
    for (signal, page_ms) in [(libc::SIGINT, 1000), (libc::SIGTERM, 0)] {
        let server = util::TestServer::start(move |req| async move {
            if req.uri().path() == "/robots.txt" {
                return server::reply(404, "");
            }
            tokio::time::sleep(Duration::from_millis(page_ms)).await;
            server::reply(200, "page")
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut child, mut stdin) = crawl_stdin(dir.path());
        send_line(&mut stdin, &server.url("/only"));
        // Not asserted here: without the line taken at once, the signal comes after 30 s.
        util::eventually(30, || server.hits("/only") == 1).await;
        util::signal(&child, signal);
        let exit = exit_within(&mut child, 30).await;
        let log = log(dir.path());
        assert_eq!(exit.code(), Some(130), "signal {signal}: {log}");
        assert!(
            log.contains("interrupted: 1 new URL "),
            "signal {signal}: {log}"
        );
        let s = status(dir.path());
        assert_eq!((s.urls, s.fetched), (1, 1), "signal {signal}: {log}");
        drop(stdin);
    }
}

/// A hostile list on stdin: a 256 MiB line, binary bytes and a NUL in a line that also
/// holds a password. Each bad line is reported by number (the password not shown) and
/// skipped, the good lines around them are fetched, and the huge line is never held:
/// the process stays under half its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_url_list_is_read_in_bounded_memory_and_its_bad_lines_skipped() {
    const HUGE_MIB: usize = 256;
    const MAX_RSS_KB: u64 = (HUGE_MIB as u64 / 2) << 10;
    let server = util::TestServer::start(|_req| async { server::reply(200, "hi") }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, mut stdin) = crawl_stdin(dir.path());
    let (a, b, huge) = (server.url("/a"), server.url("/b"), server.url("/huge?"));
    let written = tokio::task::spawn_blocking(move || {
        send_line(&mut stdin, &a);
        let mib = vec![b'x'; 1 << 20];
        stdin.write_all(huge.as_bytes())?;
        for _ in 0..HUGE_MIB {
            stdin.write_all(&mib)?;
        }
        stdin.write_all(b"\nhttp://user:SECRET@b\0.test/\xff\xfe\x1b[2J\n")?;
        send_line(&mut stdin, &b);
        Ok::<_, std::io::Error>(stdin)
    });
    let stdin = written.await.expect("join").expect("write the list");
    // The huge line has been read by now: only a pipe's worth of the list can be unread.
    let peak_kb = util::vm_hwm_kb(child.id()).expect("VmHWM of the running crawl");
    drop(stdin);
    let exit = exit_within(&mut child, 30).await;
    let log = log(dir.path());
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(peak_kb < MAX_RSS_KB, "peak RSS {peak_kb} kB");
    assert!(
        log.contains("-:2: skipped") && log.contains("line longer than 8192 bytes"),
        "{log}"
    );
    assert!(log.contains("-:3: skipped"), "{log}");
    assert!(!log.contains("SECRET"), "{log}");
    assert!(
        log.contains("2 new URLs (0 duplicates, 2 invalid lines)"),
        "{log}"
    );
    assert_eq!((server.hits("/a"), server.hits("/b")), (1, 1));
    assert_eq!(server.hits("/huge"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_does_not_cost_the_first_url() {
    let server = util::TestServer::start(|_req| async { server::reply(200, "hi") }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = format!("\u{FEFF}{}\n{}\n", server.url("/a"), server.url("/b"));
    let out = crawl_file(dir.path(), list.as_bytes()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 new URLs (0 duplicates, 0 invalid lines)"),
        "{err}"
    );
    assert_eq!((server.hits("/a"), server.hits("/b")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf16_url_list_is_one_clear_error_and_adds_nothing() {
    let server = util::TestServer::start(|_req| async { server::reply(200, "hi") }).await;
    let list = format!("{}\r\n{}\r\n", server.url("/a"), server.url("/b"));
    let le: Vec<u8> = list.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = list.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let cases = [
        (
            "little-endian",
            [&b"\xFF\xFE"[..], &le].concat(),
            "-f UTF-16 ",
        ),
        ("big-endian", [&b"\xFE\xFF"[..], &be].concat(), "-f UTF-16 "),
        ("no byte order mark", le, "-f UTF-16LE "),
    ];
    for (case, bytes, convert) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = crawl_file(dir.path(), &bytes).await;
        let err = String::from_utf8_lossy(&out.stderr);
        // Exit code 1 (README: URL list unreadable), one error line, no warning per line.
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        assert_eq!(err.lines().count(), 1, "{case}: {err}");
        assert_eq!(
            err.matches("webspool reads UTF-8").count(),
            1,
            "{case}: {err}"
        );
        assert!(
            err.starts_with("error: cannot read the URL list ")
                && err.contains("webspool reads UTF-8")
                && err.contains(convert),
            "{case}: {err}"
        );
        assert_eq!(status(dir.path()).urls, 0, "{case}");
    }
    assert!(server.all_hits().is_empty(), "{:?}", server.all_hits());
}

/// A list that cannot be read stops the crawl at once, even when other work (here the
/// pages of a `--sitemap`, one every 0.2 s) would keep it busy: the error is not held
/// back until that work is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_list_stops_a_crawl_busy_with_other_work() {
    let server = util::TestServer::start_knowing_base(|root, req| async move {
        match req.uri().path() {
            "/sitemap.xml" => {
                let urls: String = (0..50)
                    .map(|i| format!("<url><loc>{root}/p{i}</loc></url>"))
                    .collect();
                server::reply(200, format!("<urlset>{urls}</urlset>"))
            }
            _ => server::reply(200, "page"),
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = format!("{}\n", server.url("/a"));
    let utf16 = [
        &b"\xFF\xFE"[..],
        &list
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<_>>(),
    ]
    .concat();
    let sitemap = server.url("/sitemap.xml");
    let busy = [
        "--ignore-robots",
        "--allow-private",
        "--delay",
        "0.2",
        "--sitemap",
        &sitemap,
    ];
    let out = crawl_file_with(dir.path(), &utf16, &busy).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("webspool reads UTF-8"), "{err}");
    let pages = server
        .all_hits()
        .keys()
        .filter(|p| p.starts_with("/p"))
        .count();
    assert!(pages < 50, "the crawl went on: {pages} pages fetched");
}
