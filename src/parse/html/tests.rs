use std::collections::BTreeMap;

use super::*;
use crate::parse::{Field, Link, MAX_LINKS};

/// A field of a rule without `all` that found `value`.
fn one(value: &str) -> Field {
    Field::One(Some(value.to_string()))
}

const HOSTILE: &[u8] = include_bytes!("../../../tests/fixtures/html/hostile.html");
const TRUNCATED: &[u8] = include_bytes!("../../../tests/fixtures/html/truncated.html");
const W1252: &[u8] = include_bytes!("../../../tests/fixtures/html/windows-1252.html");
const SJIS: &[u8] = include_bytes!("../../../tests/fixtures/html/shift_jis.html");
const GBK: &[u8] = include_bytes!("../../../tests/fixtures/html/gbk.html");
const WRONG: &[u8] = include_bytes!("../../../tests/fixtures/html/wrong-charset.html");
const BOM: &[u8] = include_bytes!("../../../tests/fixtures/html/bom.html");
const PRODUCT: &[u8] = include_bytes!("../../../tests/fixtures/rules/product.html");
const PRODUCT_RULES: &str = include_str!("../../../tests/fixtures/rules/rules.toml");

fn page_url() -> Url {
    Url::parse("https://example.test/dir/page.html").unwrap()
}

fn parse_with(body: &[u8], content_type: Option<&str>, rules: &Rules) -> Annotation {
    let mut out = Annotation::default();
    parse_html(body, content_type, &page_url(), rules, &mut out);
    out
}

fn parse(body: &[u8]) -> Annotation {
    parse_with(body, Some("text/html"), &Rules::default())
}

/// Like `parse_html`, but lol_html gets the text `chunk` bytes at a time.
fn parse_chunked(body: &[u8], chunk: usize, rules: &Rules) -> Annotation {
    let decoded = decode_html(body, None, None);
    let state = RefCell::new(State::new(&decoded.text, &page_url(), rules));
    let result = rewrite(&decoded.text, chunk, &state, rules);
    let mut out = Annotation {
        charset: Some(decoded.encoding.name().to_string()),
        ..Annotation::default()
    };
    state.into_inner().finish(&mut out);
    if let Err(e) = result {
        out.error = Some(format!("HTML parsing stopped early: {e}"));
    }
    out
}

fn link(url: &str, text: &str, nofollow: bool) -> Link {
    Link {
        url: url.into(),
        text: text.into(),
        nofollow,
        lastmod: None,
    }
}

fn urls(a: &Annotation) -> Vec<&str> {
    a.links.iter().map(|l| l.url.as_str()).collect()
}

#[test]
fn hostile_page_head() {
    let a = parse(HOSTILE);
    assert_eq!(a.error, None);
    assert_eq!(a.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        a.title.as_deref(),
        Some("Café & 'Bar' — <b>not bold</b> <b>raw</b>")
    );
    assert_eq!(a.lang.as_deref(), Some("en-GB"));
    assert_eq!(a.description.as_deref(), Some("A \"hostile\" page & more"));
    assert!(a.robots_noindex && a.robots_nofollow);
    assert_eq!(
        a.canonical.as_deref(),
        Some("https://example.test/canonical?x=1&y=2")
    );
    assert_eq!(a.h1.as_deref(), Some("Main heading & more"));
    assert!(a.fields.is_empty());
}

#[test]
fn hostile_page_links() {
    let a = parse(HOSTILE);
    let expected = [
        link("https://example.test/base/relative", "Relative", false),
        link(
            "https://example.test/unquoted?a=1&b=2",
            "Unquoted & nofollow",
            true,
        ),
        link(
            "https://example.test/legacy?a=1&copy=2",
            "Legacy entity",
            false,
        ),
        link("http://example.com/Path", "Normalized", false),
        // A fragment-only href is the document's base URL (here the <base href>).
        link("https://example.test/base/", "top", false),
        link("https://example.test/dup", "first dup", false),
        link("https://example.test/ugc", "ugc", true),
        link("https://example.test/sponsored", "sponsored", true),
        link("https://example.test/outer", "outer", false),
        // lol_html keeps no tree: text after a nested anchor's end goes to it.
        link("https://example.test/inner", "inner tail", false),
        link("https://example.test/area", "Area & alt", false),
        link("https://example.test/from-template", "template link", false),
        link("https://example.test/spaced", "spaced href", false),
    ];
    assert_eq!(a.links, expected, "{:#?}", urls(&a));
    assert_eq!(a.links_dropped, 0);
    for not_a_link in [
        "from-style",
        "from-script",
        "in-comment",
        "from-noscript",
        "from-textarea",
        "after-comment",
        "ignored-second-base",
    ] {
        assert!(
            !urls(&a).iter().any(|u| u.contains(not_a_link)),
            "{not_a_link}"
        );
    }
}

#[test]
fn hostile_page_visible_text() {
    let a = parse(HOSTILE);
    // No-break spaces collapse like other whitespace; NUL is dropped; a stray byte in
    // otherwise valid UTF-8 becomes U+FFFD.
    let expected = "Main heading & more Second heading Tom & Jerry's café ☺ © x \
        Naïve Ünïcödé 日本語, stray byte: \u{FFFD} bold both italic misnested \
        Relative Unquoted & nofollow Legacy entity Normalized js mail top first dup \
        second dup ugc sponsored outer inner tail not a link nulbyte huge attribute \
        spaced href";
    assert_eq!(a.text, expected);
    for hidden in [
        "script",
        "from-style",
        "noscript",
        "template text",
        "typed",
        "Second title",
        "raw",
        "comment",
    ] {
        assert!(!a.text.contains(hidden), "{hidden} in {}", a.text);
    }
    assert_eq!(a.word_count, a.text.split(' ').count() as u64);
}

#[test]
fn truncated_page_keeps_what_came_before_the_cut() {
    let a = parse(TRUNCATED);
    assert_eq!(a.error, None);
    assert_eq!(a.title.as_deref(), Some("Cut short"));
    assert_eq!(a.text, "Some text before the cut. kept");
    assert_eq!(a.word_count, 6);
    assert_eq!(a.links, [link("https://example.test/ok", "kept", false)]);
}

#[test]
fn every_prefix_parses() {
    let product_rules = Rules::from_toml(PRODUCT_RULES).unwrap();
    for (doc, step) in [(TRUNCATED, 1), (PRODUCT, 1), (HOSTILE, 7)] {
        let full = parse_with(doc, None, &product_rules);
        for end in (0..doc.len()).step_by(step) {
            let a = parse_with(&doc[..end], None, &product_rules);
            assert_eq!(a.error, None, "prefix {end}");
            assert!(a.links.len() <= full.links.len(), "prefix {end}");
            assert!(a.word_count <= full.word_count + 1, "prefix {end}");
        }
    }
}

#[test]
fn chunked_input_gives_the_same_annotation() {
    let rules = Rules::from_toml(PRODUCT_RULES).unwrap();
    for doc in [HOSTILE, PRODUCT, TRUNCATED] {
        let whole = parse_chunked(doc, usize::MAX, &rules);
        for chunk in [1, 2, 3, 5, 64] {
            assert_eq!(parse_chunked(doc, chunk, &rules), whole, "chunk {chunk}");
        }
    }
}

#[test]
fn charsets_from_fixtures() {
    let a = parse_with(W1252, None, &Rules::default());
    assert_eq!(a.charset.as_deref(), Some("windows-1252"));
    assert_eq!(a.title.as_deref(), Some("Café “Déjà vu” – 5 €"));
    assert_eq!(a.text, "Crème brûlée: 5 € — “délicieux”.");
    assert_eq!(a.lang.as_deref(), Some("fr"));

    let a = parse_with(SJIS, None, &Rules::default());
    assert_eq!(a.charset.as_deref(), Some("Shift_JIS"));
    assert_eq!(a.title.as_deref(), Some("日本語のページ"));
    assert_eq!(a.h1.as_deref(), Some("こんにちは世界"));
    assert_eq!(a.text, "こんにちは世界 これはテストです。");
    assert_eq!(a.word_count, 2);

    let a = parse_with(GBK, Some("text/html"), &Rules::default());
    assert!(
        matches!(a.charset.as_deref(), Some("GBK" | "gb18030")),
        "{:?}",
        a.charset
    );
    assert_eq!(a.title.as_deref(), Some("中文网页"));
    assert!(
        a.text.starts_with("今天的天气很好，我们一起去公园散步。"),
        "{}",
        a.text
    );

    // Declared UTF-8, written in windows-1252: read as declared, as a browser does.
    let a = parse_with(WRONG, None, &Rules::default());
    assert_eq!(a.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        a.title.as_deref(),
        Some("Caf\u{FFFD} na\u{FFFD}ve r\u{FFFD}sum\u{FFFD}")
    );
    assert_eq!(
        a.text,
        "Fa\u{FFFD}ade \u{FFFD} la cr\u{FFFD}me \u{FFFD} \u{FFFD} 5."
    );

    let a = parse_with(
        BOM,
        Some("text/html; charset=iso-8859-2"),
        &Rules::default(),
    );
    assert_eq!(a.charset.as_deref(), Some("UTF-8"));
    assert_eq!(a.title.as_deref(), Some("Grüße, 世界"));
    assert_eq!(a.text, "BOM first.");
}

#[test]
fn product_fields_from_rules() {
    let rules = Rules::from_toml(PRODUCT_RULES).unwrap();
    let a = parse_with(PRODUCT, None, &rules);
    let tags = ["blue", "widgets & gadgets", "on sale", "no end tag", "last"];
    let expected = BTreeMap::from([
        ("author".to_string(), one("Ada & Lovelace")),
        (
            "image".to_string(),
            one("https://example.test/images/widget.png?size=large&v=2"),
        ),
        ("price".to_string(), one("19.99")),
        (
            "tags".to_string(),
            Field::All(tags.map(String::from).to_vec()),
        ),
    ]);
    assert_eq!(a.fields, expected);
    assert_eq!(a.title.as_deref(), Some("Blue Widget"));

    let none = Rules::from_toml("[fields.missing]\nselector = \"table td\"\n").unwrap();
    let a = parse_with(PRODUCT, None, &none);
    assert_eq!(
        a.fields,
        BTreeMap::from([("missing".to_string(), Field::One(None))])
    );
}

#[test]
fn field_values_are_capped() {
    let rules = Rules::from_toml(
        "[fields.data]\nselector = \"div\"\nattr = \"data-x\"\n\
         [fields.text]\nselector = \"p\"\nall = true\n",
    )
    .unwrap();
    let mut html = format!("<div data-x=\"{}\"></div>", "é".repeat(3 * MAX_FIELD));
    for i in 0..fields::MAX_FIELD_VALUES + 10 {
        html.push_str(&format!("<p>v{i}</p>"));
    }
    let a = parse_with(html.as_bytes(), None, &rules);
    assert_eq!(a.fields["data"], one(&"é".repeat(MAX_FIELD / 2)));
    let Field::All(text) = &a.fields["text"] else {
        panic!("{:?}", a.fields["text"]);
    };
    assert_eq!(text.len(), fields::MAX_FIELD_VALUES);
    assert_eq!(text[999], "v999");
}

#[test]
fn links_are_capped_and_deduplicated() {
    let mut html = String::new();
    for i in 0..MAX_LINKS + 5 {
        html.push_str(&format!("<a href=/p{i}>x</a><a href=/p{i}#again>y</a>"));
    }
    html.push_str("<a href=/p1>again</a><a href=/p10004>again</a>");
    let a = parse(html.as_bytes());
    assert_eq!(a.links.len(), MAX_LINKS);
    assert_eq!(a.links_dropped, 5);
    assert_eq!(a.links[1], link("https://example.test/p1", "x", false));
}

#[test]
fn base_rules() {
    let a = parse(b"<a href=a>1</a><base href=/b/><a href=a>2</a><base href=/c/><a href=d>3</a>");
    assert_eq!(
        urls(&a),
        [
            "https://example.test/dir/a",
            "https://example.test/b/a",
            "https://example.test/b/d"
        ]
    );
    let a = parse(b"<base href='javascript:x'><a href=a>1</a>");
    assert_eq!(urls(&a), ["https://example.test/dir/a"]);
    let a = parse(b"<base href='https://other.test/x/'><a href=a>1</a><a href=//cdn.test/y>2</a>");
    assert_eq!(urls(&a), ["https://other.test/x/a", "https://cdn.test/y"]);
    // Fragment-only hrefs are the base URL without fragment, before and after a <base>.
    let a = parse(b"<a href=#a>1</a><base href='/b/?q#f'><a href='#b'>2</a><a href=#>3</a>");
    assert_eq!(
        urls(&a),
        [
            "https://example.test/dir/page.html",
            "https://example.test/b/?q"
        ]
    );
    let a = parse(b"<base href='javascript:x'><a href=#a>1</a>");
    assert_eq!(urls(&a), ["https://example.test/dir/page.html"]);
}

#[test]
fn attribute_spellings() {
    // Valueless (the page itself), duplicated (the first counts), odd quoting and
    // whitespace, non-ASCII values, names in any case.
    let a = parse(
        "<a href>0</a><a href=/one href=/two rel=x REL=nofollow>1</a>\
         <a\n\tHref = '/é?q=&quot;' rEl=\"ugc\">2</a><a data-href=/no>3</a>\
         <meta NAME=description content=\"café &amp; thé\">"
            .as_bytes(),
    );
    assert_eq!(
        a.links,
        [
            link("https://example.test/dir/page.html", "0", false),
            link("https://example.test/one", "1", false),
            link("https://example.test/%C3%A9?q=%22", "2", true),
        ]
    );
    assert_eq!(a.description.as_deref(), Some("café & thé"));
}

#[test]
fn robots_and_meta_variants() {
    let a = parse(b"<meta name=robots content=none><meta name=description content='  '>");
    assert!(a.robots_noindex && a.robots_nofollow);
    assert_eq!(a.description, None);
    let a = parse(b"<meta name=robots content='index,follow'><meta name=other content=noindex>");
    assert!(!a.robots_noindex && !a.robots_nofollow);
    let a = parse(b"<meta name=' GoogleBot ' content='NoIndex'>");
    assert!(a.robots_noindex && !a.robots_nofollow);
    let a = parse(b"<link rel=stylesheet href=/s.css><link rel='canonical' href='mailto:x'>");
    assert_eq!(a.canonical, None);
}

#[test]
fn long_values_are_cut_at_char_boundaries() {
    let title = format!("<title>{}</title>", "€".repeat(MAX_FIELD));
    let a = parse(title.as_bytes());
    assert_eq!(
        a.title.as_deref().map(str::len),
        Some(MAX_FIELD - MAX_FIELD % 3)
    );
    let body = format!("<p>{}</p>", "wörd ".repeat(10_000));
    let a = parse(body.as_bytes());
    assert_eq!(a.word_count, 10_000);
    // 341 words of 5 bytes and their spaces are 2045 bytes; " w" fits, "wö" would not.
    assert_eq!(a.text.len(), MAX_TEXT_EXTRACT - 1);
    assert!(a.text.ends_with("wörd wörd w"));
}

#[test]
fn huge_attributes_and_nul_bytes() {
    let mut html = b"<a href=\"/".to_vec();
    html.extend(std::iter::repeat_n(b'x', 5 << 20));
    html.extend_from_slice(b"\">too long</a> <a href=/n\0ul>n\0ul</a><p title=\"\0\">\0</p>ok");
    let a = parse(&html);
    assert_eq!(a.error, None);
    assert_eq!(a.links, [link("https://example.test/n%00ul", "nul", false)]);
    assert_eq!(a.text, "too long nul ok");
}

#[test]
fn deeply_nested_divs_do_not_blow_up() {
    let rules = Rules::from_toml("[fields.d]\nselector = \"div.x a\"\n").unwrap();
    let nested = |depth: usize| {
        let mut html = String::from("<title>Deep</title><a href=/first>first</a>");
        html.push_str(&"<div class=x>".repeat(depth));
        html.push_str("deep text <a href=/deep>deep</a>");
        html
    };
    // 1.3 MB of unclosed divs: parsed completely.
    let a = parse_with(nested(100_000).as_bytes(), None, &rules);
    assert_eq!(a.error, None);
    assert_eq!(
        urls(&a),
        ["https://example.test/first", "https://example.test/deep"]
    );
    assert_eq!(a.fields["d"], one("deep"));
    assert_eq!(a.text, "first deep text deep");
    // 10 MB: lol_html's open-element stack hits the memory limit (no recursion, no
    // unbounded growth); what came before is kept and the error says why.
    let started = std::time::Instant::now();
    let a = parse_with(nested(800_000).as_bytes(), None, &rules);
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    assert_eq!(a.title.as_deref(), Some("Deep"));
    assert_eq!(
        a.links[0],
        link("https://example.test/first", "first", false)
    );
    match &a.error {
        None => assert_eq!(a.links.len(), 2),
        Some(e) => assert!(e.contains("memory limit"), "{e}"),
    }
}

/// The selector limits leave room for lol_html's recursion (compiling a chain, parsing
/// nested `:not(`): rules at every limit at once are applied to a page on a thread with
/// half the stack of a parse thread.
#[test]
fn rules_at_the_selector_limits_fit_in_half_a_parse_threads_stack() {
    use crate::parse::rules::{MAX_SELECTOR_CHAIN, MAX_SELECTOR_NESTING};
    let n = MAX_SELECTOR_NESTING;
    let deep = ":not(".repeat(n) + "span" + &")".repeat(n);
    let chain = "div ".repeat(MAX_SELECTOR_CHAIN - 1) + "span";
    let page = format!(
        "{}<span>x</span>{}",
        "<div>".repeat(500),
        "</div>".repeat(500)
    );
    let a = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let toml = format!(
                "[fields.deep]\nselector = \"{deep}\"\n[fields.chain]\nselector = \"{chain}\"\n"
            );
            let rules = Rules::from_toml(&toml).unwrap();
            parse_with(page.as_bytes(), None, &rules)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(a.fields["chain"], one("x"));
    assert_eq!(
        a.fields["deep"],
        one("x"),
        "an even number of :not( is no :not("
    );
}

#[test]
fn script_and_comment_edge_cases() {
    let html = b"<script>if (a<b) x='</scr'+'ipt><a href=/s1>';</script>\
        <script><!--<script>--></script><a href=/ok>ok</a>\
        <script type=text/template><a href=/s2></a></script>\
        <!--> <a href=/after-empty-comment>c</a> --!> <a href=/x>x</a>";
    let a = parse(html);
    assert_eq!(
        urls(&a),
        [
            "https://example.test/ok",
            "https://example.test/after-empty-comment",
            "https://example.test/x"
        ]
    );
    assert_eq!(a.text, "ok c --!> x");
}

#[test]
fn block_tags_separate_words_and_inline_tags_do_not() {
    let html = b"<p>Hel<b>lo</b> wor<span>ld</span><!-- c -->s</p><p>next</p>\
        <table><tr><td>a</td><td>b</td></tr></table>c<br>d<img src=x>e\
        <a href=/card><h3>Title</h3><p>Desc</p></a>\
        <div class=price><sup>$</sup>19<sup>99</sup></div>";
    let rules = Rules::from_toml("[fields.price]\nselector = \".price\"\n").unwrap();
    for chunk in [usize::MAX, 1, 3] {
        let a = parse_chunked(html, chunk, &rules);
        assert_eq!(
            a.text, "Hello worlds next a b c d e Title Desc $1999",
            "chunk {chunk}"
        );
        assert_eq!(a.word_count, 11);
        assert_eq!(
            a.links,
            [link("https://example.test/card", "Title Desc", false)]
        );
        assert_eq!(a.fields["price"], one("$1999"));
    }
}

#[test]
fn text_cut_off_at_the_end_is_kept() {
    for chunk in [usize::MAX, 1, 4] {
        let a = parse_chunked(
            b"<h1>x &amp; y<p>caf&eacute; &amp",
            chunk,
            &Rules::default(),
        );
        assert_eq!(a.text, "x & y café &amp", "chunk {chunk}");
        assert_eq!(a.h1.as_deref(), Some("x & y café &amp"), "chunk {chunk}");
        let a = parse_chunked(
            b"<h1>x &amp; y<b>caf&eacute; &amp",
            chunk,
            &Rules::default(),
        );
        assert_eq!(a.h1.as_deref(), Some("x & ycafé &amp"), "chunk {chunk}");
    }
}

#[test]
fn ambiguous_markup_does_not_stop_the_parser() {
    let a = parse(b"<select><xmp><script>\"x\";</script></xmp></select><a href=/after>after</a>");
    assert_eq!(a.error, None);
    assert_eq!(urls(&a), ["https://example.test/after"]);
}
