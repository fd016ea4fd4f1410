//! Unit tests of the text plumbing: whitespace collapsing, word boundaries, attributes.

use super::*;

fn collapse(parts: &[&str], cap: usize) -> (String, u64) {
    let mut c = Collapse::new(cap);
    for p in parts {
        c.push(p);
    }
    let words = c.words;
    (c.finish(), words)
}

#[test]
fn collapses_whitespace_and_counts_words() {
    assert_eq!(collapse(&["  a \n\t b  "], 100), ("a b".into(), 2));
    assert_eq!(
        collapse(&["Hel", "lo", " world"], 100),
        ("Hello world".into(), 2)
    );
    assert_eq!(collapse(&["a\u{a0}b\u{3000}c"], 100), ("a b c".into(), 3));
    assert_eq!(collapse(&["nul\0byte \0 x"], 100), ("nulbyte x".into(), 2));
    assert_eq!(collapse(&["", " ", "\0"], 100), (String::new(), 0));
}

/// The definition [`Collapse::push`] implements, a char at a time.
fn reference(parts: &[&str], cap: usize) -> (String, u64) {
    let (mut words, mut in_word, mut text) = (0, false, String::new());
    for c in parts.iter().flat_map(|p| p.chars()).filter(|&c| c != '\0') {
        if c.is_whitespace() {
            in_word = false;
            continue;
        }
        if !in_word {
            words += 1;
            if !text.is_empty() {
                text.push(' ');
            }
        }
        in_word = true;
        text.push(c);
    }
    (
        text[..floor_char_boundary(&text, cap)]
            .trim_end()
            .to_string(),
        words,
    )
}

#[test]
fn every_whitespace_and_lookalike_character() {
    // Unicode White_Space, characters sharing their lead bytes, CJK, NUL.
    let pieces = [
        "a", " ", "\t", "\u{b}", "\u{c}", "\r\n", "\u{1c}", "\u{85}", "\u{a0}", "\u{a9}",
        "\u{1680}", "\u{1681}", "\u{2000}", "\u{200a}", "\u{200b}", "\u{2028}", "\u{2029}",
        "\u{202f}", "\u{205f}", "\u{2060}", "\u{3000}", "\u{3001}", "\u{3042}", "\0", "é",
    ];
    for a in pieces {
        for b in pieces {
            for c in pieces {
                let parts = [a, b, c, a];
                assert_eq!(collapse(&parts, 100), reference(&parts, 100), "{parts:?}");
                let joined = parts.concat();
                assert_eq!(
                    collapse(&[&joined], 5),
                    reference(&[&joined], 5),
                    "{joined:?}"
                );
            }
        }
    }
}

#[test]
fn boundary_splits_words() {
    let mut c = Collapse::new(100);
    c.push("one");
    c.boundary();
    c.push("two");
    c.push("three");
    assert_eq!((c.words, c.finish()), (2, "one twothree".to_string()));
}

#[test]
fn caps_at_a_char_boundary_but_keeps_counting() {
    assert_eq!(collapse(&["ab cd"], 3), ("ab".into(), 2));
    assert_eq!(collapse(&["ab cd"], 4), ("ab c".into(), 2));
    assert_eq!(collapse(&["é", "é", " x y"], 3), ("é".into(), 3));
    assert_eq!(collapse(&["€€"], 5), ("€".into(), 1));
    let (text, words) = collapse(&["w "; 10_000], 2048);
    assert_eq!((text.len(), words), (2047, 10_000));
}

#[test]
fn separating_markup() {
    let separating = [
        "</p>",
        "<br>",
        "<BR/>",
        "</td>\n<td class=x>",
        "<b></b><div>",
        "<img src=x>",
        "<pre",
        // A plain scan: tags in comments count too.
        "<!-- <p> -->",
    ];
    for gap in separating {
        assert!(markup_separates(gap.as_bytes()), "{gap}");
    }
    for gap in [
        "",
        "<b>",
        "</span><em>",
        "<!-- x -->",
        "<a href='/p'>",
        "<brr>",
        "< p>",
    ] {
        assert!(!markup_separates(gap.as_bytes()), "{gap}");
    }
}

#[test]
fn attribute_values() {
    assert_eq!(attr_value("  a &amp;  b&copy=1 ", 100), "a &  b&copy=1");
    assert_eq!(attr_value("&eacute;&eacute;", 3), "é");
    assert_eq!(attr_text(" A &quot;x&quot;\n  y ", 100), "A \"x\" y");
    assert_eq!(floor_char_boundary("aé", 2), 1);
    assert_eq!(floor_char_boundary("aé", 9), 3);
}
