use super::*;

fn url(text: &str) -> Url {
    crate::urls::normalize(text).unwrap()
}

fn scope(text: &str) -> Scope {
    text.parse().unwrap()
}

fn in_scope(scope: &Scope, from: &str, to: &str) -> bool {
    scope.contains(&url(from), &url(to))
}

fn policy(scope: &str, depth: Option<u32>, include: &[&str], exclude: &[&str]) -> FollowPolicy {
    FollowPolicy::new(self::scope(scope), depth, include, exclude).unwrap()
}

fn check(policy: &FollowPolicy, from: &str, to: &str, depth: u32) -> Result<(), Skip> {
    policy.check(&url(from), &url(to), depth)
}

#[test]
fn scopes_parse_from_text_and_print_back() {
    assert_eq!(scope("none"), Scope::None);
    assert_eq!(scope(" same-host "), Scope::SameHost);
    assert_eq!(scope("same-domain"), Scope::SameDomain);
    assert_eq!(
        scope("Example.COM, bücher.example,127.0.0.1,[::1],example.com"),
        Scope::Hosts(vec![
            "127.0.0.1".into(),
            "[::1]".into(),
            "example.com".into(),
            "xn--bcher-kva.example".into(),
        ])
    );
    for text in ["none", "same-host", "same-domain", "a.example,b.example"] {
        assert_eq!(scope(text).to_string(), text);
    }
}

#[test]
fn invalid_scopes_say_what_is_wrong() {
    let error = |text: &str| text.parse::<Scope>().unwrap_err().to_string();
    assert!(error("").contains("give none, same-host"), "{}", error(""));
    assert!(error("a.com,,b.com").contains("empty host"));
    assert!(error("a.com,").contains("empty host"));
    assert!(error("https://a.com").contains("without a scheme, port or path"));
    assert!(error("a.com:8080").contains("without a scheme, port or path"));
    assert!(error("a.com/x").contains("without a scheme, port or path"));
    assert!(error("same-host,a.com").contains("cannot be combined"));
    let spaced = error("exa mple.com");
    assert!(
        spaced.contains("`exa mple.com` is not a host name"),
        "{spaced}"
    );
    assert!(error("[::1").contains("not a host name"));
}

#[test]
fn same_host_ignores_scheme_and_port_but_not_subdomains() {
    let same = Scope::SameHost;
    assert!(in_scope(&same, "http://a.com/x", "https://a.com:8443/y"));
    assert!(!in_scope(&same, "http://a.com/", "http://www.a.com/"));
    assert!(!in_scope(&same, "http://www.a.com/", "http://a.com/"));
    assert!(in_scope(
        &same,
        "http://127.0.0.1:1/",
        "http://127.0.0.1:2/"
    ));
}

#[test]
fn same_domain_uses_the_public_suffix_list() {
    let domain = Scope::SameDomain;
    assert!(in_scope(
        &domain,
        "http://a.example.co.uk/",
        "https://b.example.co.uk/"
    ));
    assert!(in_scope(
        &domain,
        "http://example.co.uk/",
        "http://x.y.example.co.uk/"
    ));
    assert!(!in_scope(
        &domain,
        "http://example.co.uk/",
        "http://other.co.uk/"
    ));
    assert!(!in_scope(
        &domain,
        "http://a.github.io/",
        "http://b.github.io/"
    ));
    assert!(in_scope(
        &domain,
        "http://a.github.io/",
        "http://x.a.github.io/"
    ));
    assert!(in_scope(
        &domain,
        "http://www.example.com/",
        "http://example.com/"
    ));
    assert!(!in_scope(
        &domain,
        "http://example.com/",
        "http://example.org/"
    ));
    assert!(in_scope(
        &domain,
        "http://shop.bücher.de/",
        "http://www.xn--bcher-kva.de/"
    ));
}

#[test]
fn same_domain_compares_ip_addresses_and_bare_suffixes_exactly() {
    let domain = Scope::SameDomain;
    assert!(in_scope(
        &domain,
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/"
    ));
    // Not "the domain 0.1": an address has no registrable domain.
    assert!(!in_scope(&domain, "http://127.0.0.1/", "http://10.0.0.1/"));
    assert!(in_scope(&domain, "http://[::1]/", "http://[::1]:99/"));
    assert!(!in_scope(&domain, "http://[::1]/", "http://[::2]/"));
    assert!(in_scope(
        &domain,
        "http://localhost/",
        "http://localhost:1/"
    ));
    assert!(!in_scope(&domain, "http://localhost/", "http://other/"));
    assert!(!in_scope(
        &domain,
        "http://github.io/",
        "http://a.github.io/"
    ));
}

#[test]
fn a_host_list_matches_exact_hosts_wherever_the_link_was_found() {
    let hosts = scope("a.com,[::1]");
    assert!(in_scope(&hosts, "http://elsewhere.org/", "http://a.com/x"));
    assert!(in_scope(&hosts, "http://a.com/", "http://[::1]:8080/"));
    assert!(!in_scope(&hosts, "http://a.com/", "http://www.a.com/"));
    assert!(!in_scope(&Scope::None, "http://a.com/", "http://a.com/x"));
}

#[test]
fn only_http_links_are_followed() {
    let p = policy("same-host", None, &[], &[]);
    let from = url("http://a.com/");
    for to in [
        "mailto:x@a.com",
        "ftp://a.com/f",
        "javascript:void(0)",
        "data:,x",
    ] {
        let to = Url::parse(to).unwrap();
        assert_eq!(p.check(&from, &to, 1), Err(Skip::Scheme), "{to}");
    }
    assert_eq!(check(&p, "http://a.com/", "https://a.com/x", 1), Ok(()));
    assert_eq!(
        check(&p, "http://a.com/", "https://b.com/x", 1),
        Err(Skip::OutOfScope)
    );
}

#[test]
fn depth_is_limited_when_asked() {
    let p = policy("same-host", Some(2), &[], &[]);
    assert_eq!(check(&p, "http://a.com/", "http://a.com/x", 2), Ok(()));
    assert_eq!(
        check(&p, "http://a.com/", "http://a.com/x", 3),
        Err(Skip::TooDeep)
    );
    let zero = policy("same-host", Some(0), &[], &[]);
    assert_eq!(
        check(&zero, "http://a.com/", "http://a.com/x", 1),
        Err(Skip::TooDeep)
    );
    let unlimited = policy("same-host", None, &[], &[]);
    assert_eq!(
        check(&unlimited, "http://a.com/", "http://a.com/x", u32::MAX),
        Ok(())
    );
}

#[test]
fn exclude_wins_over_include_and_patterns_see_the_whole_url() {
    let p = policy(
        "same-domain",
        None,
        &["^https://[^/]*example\\.com/docs/", "\\?page=\\d+$"],
        &["/docs/private", "(?i)\\.PDF$"],
    );
    let from = "https://example.com/";
    assert_eq!(check(&p, from, "https://example.com/docs/a", 1), Ok(()));
    assert_eq!(check(&p, from, "https://www.example.com/docs/a", 1), Ok(()));
    assert_eq!(
        check(&p, from, "https://example.com/blog?page=2", 1),
        Ok(())
    );
    assert_eq!(
        check(&p, from, "http://example.com/docs/a", 1),
        Err(Skip::NotIncluded),
        "the scheme is part of what patterns see"
    );
    assert_eq!(
        check(&p, from, "https://example.com/blog", 1),
        Err(Skip::NotIncluded)
    );
    assert_eq!(
        check(&p, from, "https://example.com/docs/private/x", 1),
        Err(Skip::Excluded)
    );
    assert_eq!(
        check(&p, from, "https://example.com/docs/a.pdf", 1),
        Err(Skip::Excluded)
    );
    // Patterns see the normalized form: %7E is ~, %2f stays an escape, uppercased.
    let p = policy("same-host", None, &[], &["/~user/", "%2F"]);
    assert_eq!(
        check(&p, from, "https://example.com/%7euser/", 1),
        Err(Skip::Excluded)
    );
    assert_eq!(
        check(&p, from, "https://example.com/a%2fb", 1),
        Err(Skip::Excluded)
    );
}

#[test]
fn invalid_patterns_are_named_in_the_error() {
    let error = FollowPolicy::new(Scope::SameHost, None, &["ok", "(unclosed"], &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid --include pattern `(unclosed`: unclosed group"),
        "{error}"
    );
    let error = FollowPolicy::new(Scope::SameHost, None, &[], &["[z-a]"])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid --exclude pattern `[z-a]`: ") && !error.contains('\n'),
        "{error}"
    );
}

#[test]
fn overly_long_urls_are_skipped() {
    let mut p = policy("same-host", None, &[], &[]);
    let long = format!("http://a.com/{}", "x".repeat(DEFAULT_MAX_URL_LEN));
    assert_eq!(check(&p, "http://a.com/", &long, 1), Err(Skip::TooLong));
    let fits = format!("http://a.com/{}", "x".repeat(DEFAULT_MAX_URL_LEN - 13));
    assert_eq!(fits.len(), DEFAULT_MAX_URL_LEN);
    assert_eq!(check(&p, "http://a.com/", &fits, 1), Ok(()));
    p.max_url_len = 20;
    assert_eq!(
        check(&p, "http://a.com/", "http://a.com/123456789", 1),
        Err(Skip::TooLong)
    );
}

#[test]
fn repeated_path_segments_are_traps() {
    let p = policy("same-host", None, &[], &[]);
    let from = "http://a.com/";
    for trap in [
        "http://a.com/a/b/a/b/a/b/a/b",
        "http://a.com/x/x/x/x",
        "http://a.com/x/y/x/z/x/w/x.html/x",
        "http://a.com/a//////",
    ] {
        assert_eq!(check(&p, from, trap, 1), Err(Skip::Trap), "{trap}");
    }
    for fine in [
        "http://a.com/a/b/a/b/a/b",
        "http://a.com/x/x/x/",
        "http://a.com/2024/01/01/01",
        "http://a.com/",
        "http://a.com/?a=/x/x/x/x/x",
    ] {
        assert_eq!(check(&p, from, fine, 1), Ok(()), "{fine}");
    }
    let mut strict = p.clone();
    strict.max_repeated_segments = 1;
    assert_eq!(
        check(&strict, from, "http://a.com/a/b/a", 1),
        Err(Skip::Trap)
    );
}

#[test]
fn the_first_failing_rule_names_the_skip() {
    let p = policy("same-host", Some(1), &[], &["."]);
    // Out of scope, too deep and excluded at once: scope comes first.
    assert_eq!(
        check(&p, "http://a.com/", "http://b.com/x/x/x/x", 5),
        Err(Skip::OutOfScope)
    );
    assert_eq!(
        check(&p, "http://a.com/", "http://a.com/x/x/x/x", 5),
        Err(Skip::TooDeep)
    );
    assert_eq!(
        check(&p, "http://a.com/", "http://a.com/x/x/x/x", 1),
        Err(Skip::Excluded)
    );
}

#[test]
fn skip_names_are_stable_and_distinct() {
    let names: Vec<&str> = Skip::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "scheme",
            "out_of_scope",
            "too_deep",
            "excluded",
            "not_included",
            "too_long",
            "trap"
        ]
    );
    assert_eq!(Skip::Trap.to_string(), "trap");
}
