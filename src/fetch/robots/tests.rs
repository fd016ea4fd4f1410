use super::*;

const AGENT: &str = "webspool";

fn robots(body: &str) -> Robots {
    Robots::from_fetch(
        RobotsFetch::Response {
            status: 200,
            body: body.as_bytes(),
        },
        AGENT,
    )
}

fn status(status: u16) -> Robots {
    Robots::from_fetch(RobotsFetch::Response { status, body: b"" }, AGENT)
}

fn allowed(robots: &Robots, path: &str) -> bool {
    let url = Url::parse(&format!("https://example.com{path}")).unwrap();
    robots.allowed(&url)
}

#[test]
fn our_group_applies_and_others_fall_back_to_the_star_group() {
    let body = "User-agent: *\nDisallow: /\n\n\
                User-agent: otherbot\nUser-agent: WebSpool\nDisallow: /private\n\n\
                User-agent: thirdbot\nDisallow: /third\n";
    let ours = robots(body);
    assert!(!allowed(&ours, "/private/x"));
    assert!(allowed(&ours, "/public"), "the `*` group must not apply");
    assert!(allowed(&ours, "/third"));
    assert_eq!(ours.problem(), None);
    let star = Robots::from_fetch(
        RobotsFetch::Response {
            status: 200,
            body: body.as_bytes(),
        },
        "somebot",
    );
    assert!(!allowed(&star, "/public"));
}

#[test]
fn groups_for_the_same_agent_are_combined() {
    let body = "User-agent: webspool\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n\n\
                User-agent: webspool\nDisallow: /c\n";
    let r = robots(body);
    assert!(!allowed(&r, "/a"));
    assert!(allowed(&r, "/b"));
    assert!(!allowed(&r, "/c"));
}

#[test]
fn a_file_without_groups_applies_to_everyone_and_an_empty_one_allows_all() {
    assert!(!allowed(&robots("Disallow: /tmp\n"), "/tmp/x"));
    let empty = robots("");
    assert!(allowed(&empty, "/anything"));
    assert!(!empty.is_unreachable());
}

#[test]
fn wildcards_and_end_anchors_match() {
    let r = robots(
        "User-agent: *\nDisallow: /*.pdf$\nDisallow: /search?q=*&page=\nDisallow: /*/edit\n",
    );
    assert!(!allowed(&r, "/docs/a.pdf"));
    assert!(allowed(&r, "/docs/a.pdf?download=1"), "`$` anchors the end");
    assert!(allowed(&r, "/docs/a.pdfx"));
    assert!(
        !allowed(&r, "/search?q=rust&page=2"),
        "the query is matched too"
    );
    assert!(allowed(&r, "/search?q=rust"));
    assert!(!allowed(&r, "/wiki/Main/edit"));
    assert!(allowed(&r, "/edit"));
}

#[test]
fn the_longest_match_wins_and_allow_wins_a_tie() {
    let r = robots("User-agent: *\nDisallow: /a\nAllow: /a/b\nAllow: /p\nDisallow: /p\n");
    assert!(allowed(&r, "/a/b/c"));
    assert!(!allowed(&r, "/a/c"));
    assert!(!allowed(&r, "/a"));
    assert!(
        allowed(&r, "/p/x"),
        "equal length: the least restrictive rule"
    );
    let r = robots("User-agent: *\nAllow: /shop\nDisallow: /shop/cart\n");
    assert!(!allowed(&r, "/shop/cart/1"));
    assert!(allowed(&r, "/shop/items"));
}

#[test]
fn non_ascii_rules_match_percent_encoded_paths() {
    let r = robots("User-agent: *\nDisallow: /bücher\n");
    assert!(!allowed(&r, "/bücher/1"));
    assert!(!allowed(&r, "/b%C3%BCcher/1"));
    assert!(allowed(&r, "/buecher"));
}

#[test]
fn robots_txt_itself_is_always_allowed() {
    for r in [robots("User-agent: *\nDisallow: /\n"), status(503)] {
        assert!(allowed(&r, "/robots.txt"));
        assert!(!allowed(&r, "/robots.txt?x"));
        assert!(!allowed(&r, "/"));
    }
}

#[test]
fn crawl_delay_is_read_per_group_and_clamped() {
    let r = robots("User-agent: webspool\nCrawl-delay: 2.5\n\nUser-agent: *\nCrawl-delay: 9\n");
    assert_eq!(r.crawl_delay(), Some(Duration::from_millis(2500)));
    let star = robots("User-agent: other\nCrawl-delay: 2\n\nUser-agent: *\nCrawl-delay: 9\n");
    assert_eq!(star.crawl_delay(), Some(Duration::from_secs(9)));
    for huge in ["86400", "1e30", "inf"] {
        let r = robots(&format!("User-agent: *\nCrawl-delay: {huge}\n"));
        assert_eq!(r.crawl_delay(), Some(MAX_CRAWL_DELAY), "{huge}");
    }
    for ignored in ["-1", "NaN", "soon", ""] {
        let r = robots(&format!(
            "User-agent: *\nCrawl-delay: {ignored}\nDisallow: /x\n"
        ));
        assert_eq!(r.crawl_delay(), None, "{ignored}");
        assert!(!allowed(&r, "/x"), "the rest of the file still counts");
    }
    assert_eq!(robots("User-agent: *\nDisallow:\n").crawl_delay(), None);
}

#[test]
fn sitemaps_are_absolute_http_urls_from_anywhere_in_the_file() {
    let r = robots(
        "Sitemap: https://example.com/sitemap.xml#top\n\
         User-agent: other\nSitemap: http://cdn.example.net/s2.xml\n\
         Sitemap: /relative.xml\nSitemap: ftp://example.com/s.xml\nSitemap: not a url\n",
    );
    let sitemaps: Vec<String> = r.sitemaps().iter().map(Url::to_string).collect();
    assert_eq!(
        sitemaps,
        [
            "https://example.com/sitemap.xml",
            "http://cdn.example.net/s2.xml"
        ]
    );
}

#[test]
fn client_errors_allow_all() {
    for code in [400, 401, 403, 404, 410, 451] {
        let r = status(code);
        assert!(allowed(&r, "/private"), "{code}");
        assert!(!r.is_unreachable());
        assert_eq!(r.problem(), None);
        assert_eq!(r.crawl_delay(), None);
        assert!(r.sitemaps().is_empty());
    }
}

#[test]
fn server_errors_rate_limits_and_failures_disallow_all() {
    let failed = Robots::from_fetch(
        RobotsFetch::Failed {
            message: "connection refused",
        },
        AGENT,
    );
    for r in [
        status(500),
        status(503),
        status(429),
        status(302),
        status(100),
        failed,
    ] {
        assert!(r.is_unreachable());
        assert!(!allowed(&r, "/"));
        assert!(!allowed(&r, "/page?x=1"));
        assert!(r.problem().is_some());
    }
    assert_eq!(status(503).problem(), Some("robots.txt answered HTTP 503"));
}

#[test]
fn garbage_and_binary_bodies_never_panic() {
    // A deterministic xorshift stream of bytes, with rule-like text mixed in.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = Vec::with_capacity(64 * 1024);
    for i in 0..64 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        noise.push(state as u8);
        if i % 997 == 0 {
            noise.extend_from_slice(b"\nDisallow: /*$\nUser-agent: *\nCrawl-delay: \xff\n");
        }
    }
    for body in [
        &noise[..],
        b"\xff\xfe\x00U\x00s\x00e\x00r",
        b"User-agent: *\nDisallow: /\x80\x81\nAllow: /ok\n",
        b"\x00\x00\x00",
        b"<html><body>Not Found</body></html>",
    ] {
        let r = Robots::from_fetch(RobotsFetch::Response { status: 200, body }, AGENT);
        let _ = allowed(&r, "/ok");
        let _ = r.crawl_delay();
        let _ = r.sitemaps();
        assert!(!r.is_unreachable());
    }
    let html = robots("<html><body>Not Found</body></html>");
    assert!(allowed(&html, "/x"), "an HTML page holds no rules");
}

#[test]
fn a_rule_too_complex_to_compile_allows_all_and_says_so() {
    let body = format!("User-agent: *\nDisallow: /{}$\n", "a*".repeat(20_000));
    let r = robots(&body);
    assert!(allowed(&r, "/aaa"));
    assert!(!r.is_unreachable());
    let problem = r.problem().unwrap();
    assert!(problem.contains("unparseable"), "{problem}");
    assert!(problem.len() < 300, "the quoted rule is cut: {problem}");
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let r = robots("\u{feff}User-agent: *\nDisallow: /x\n");
    assert!(!allowed(&r, "/x"));
    assert!(allowed(&r, "/y"));
}

#[test]
fn only_the_first_500_kib_of_a_body_count() {
    let mut body = String::from("User-agent: *\nDisallow: /early\n");
    while body.len() < MAX_BODY + 10 {
        body.push_str("# padding padding padding padding padding padding padding\n");
    }
    body.push_str("Disallow: /late\n");
    let r = robots(&body);
    assert!(!allowed(&r, "/early"));
    assert!(allowed(&r, "/late"));
    let source = RobotsSource::new(
        RobotsFetch::Response {
            status: 200,
            body: body.as_bytes(),
        },
        0,
    );
    let SourceKind::Response { body: kept, .. } = &source.kind else {
        panic!("{source:?}");
    };
    assert_eq!(kept.len(), MAX_BODY);
    assert!(allowed(&Robots::from_source(&source, AGENT), "/late"));
}

#[test]
fn the_stored_form_round_trips_through_bincode() {
    let body =
        b"User-agent: webspool\nDisallow: /no\nCrawl-delay: 3\nSitemap: https://e.com/s.xml\n";
    let sources = [
        RobotsSource::new(
            RobotsFetch::Response { status: 200, body },
            1_700_000_000_000,
        ),
        RobotsSource::new(RobotsFetch::Response { status: 404, body }, 5),
        RobotsSource::new(
            RobotsFetch::Failed {
                message: "timed out",
            },
            7,
        ),
    ];
    for source in &sources {
        let bytes = bincode::serialize(source).unwrap();
        let back: RobotsSource = bincode::deserialize(&bytes).unwrap();
        assert_eq!(&back, source);
    }
    let parsed = Robots::from_source(&sources[0], AGENT);
    assert!(!allowed(&parsed, "/no"));
    assert_eq!(parsed.crawl_delay(), Some(Duration::from_secs(3)));
    assert_eq!(parsed.sitemaps().len(), 1);
    assert_eq!(
        sources[1].kind,
        SourceKind::Response {
            status: 404,
            body: Vec::new()
        },
        "bodies of non-2xx responses are not kept"
    );
    assert!(allowed(&Robots::from_source(&sources[1], AGENT), "/no"));
    let failed = Robots::from_source(&sources[2], AGENT);
    assert!(failed.is_unreachable());
    assert_eq!(failed.problem(), Some("robots.txt unreachable: timed out"));
}

#[test]
fn unreachable_results_expire_sooner() {
    let day = 24 * 60 * 60 * 1000;
    let at = |status| RobotsSource::new(RobotsFetch::Response { status, body: b"" }, 1000);
    assert_eq!(at(200).expires_at_ms(), 1000 + day);
    assert_eq!(at(404).expires_at_ms(), 1000 + day);
    assert_eq!(at(503).expires_at_ms(), 1000 + 5 * 60 * 1000);
    assert_eq!(at(429).expires_at_ms(), 1000 + 5 * 60 * 1000);
    let failed = RobotsSource::new(RobotsFetch::Failed { message: "x" }, 1000);
    assert_eq!(failed.expires_at_ms(), 1000 + 5 * 60 * 1000);
    let late = RobotsSource::new(RobotsFetch::Failed { message: "x" }, u64::MAX - 1);
    assert_eq!(late.expires_at_ms(), u64::MAX);
}

#[test]
fn the_agent_token_is_the_product_name() {
    assert_eq!(agent_token("webspool/0.1.0 (+http://x)"), "webspool");
    assert_eq!(agent_token("Mozilla/5.0 (compatible; Foo)"), "mozilla");
    assert_eq!(agent_token("  My_Bot-X/2"), "my_bot-x");
    assert_eq!(agent_token("bot2000"), "bot");
    assert_eq!(agent_token(""), "*");
    assert_eq!(agent_token("123/4"), "*");
}

#[test]
fn the_robots_url_is_at_the_origin_without_credentials() {
    let at = |text: &str| robots_url(&Url::parse(text).unwrap()).to_string();
    assert_eq!(
        at("https://bob:secret@Example.com:8443/a/b?c=d#e"),
        "https://example.com:8443/robots.txt"
    );
    assert_eq!(
        at("http://example.com:80/x"),
        "http://example.com/robots.txt"
    );
    assert_eq!(at("http://[::1]:8080"), "http://[::1]:8080/robots.txt");
}
