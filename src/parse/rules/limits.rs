//! Size limits on extraction rules, checked before any parser sees them.
//!
//! The parsers recurse on selectors: the selectors crate once per `:not(` nesting level
//! while parsing, lol_html once per compound selector of a chain while compiling the
//! selector for each page (and again when dropping it). Unbounded, `:not(` nested a
//! few hundred deep or a chain of a few thousand `div`s overflows a thread's stack and
//! aborts the process, and a resumed run aborts again on the same rules. The limits
//! here sit far below where a 2 MiB thread stack overflows in a debug build (about 130
//! nested `:not(` and 1,500 chained compounds), and leave room for real selectors.
//! The chain limit is lower than the stack alone would need because it also bounds
//! matching: lol_html keeps, for every open element of a page, a jump for each step of
//! a descendant chain that could still match below it, memory its own limit does not
//! count (a 10 MB page of nested `<div>`s costs about 8 MB more per step of a chain of
//! `*`).
//! The toml crate bounds its own nesting (arrays, inline tables, dotted keys), so a
//! rules file cannot recurse there.

/// Largest rules file read, in bytes.
pub const MAX_RULES_FILE: u64 = 1024 * 1024;
/// Most fields in one rule set.
pub const MAX_FIELDS: usize = 256;
/// Longest selector, in bytes.
pub const MAX_SELECTOR_LEN: usize = 4096;
/// Deepest nesting of parentheses and brackets in a selector (`:not(:not([x]))` is 3).
pub const MAX_SELECTOR_NESTING: usize = 32;
/// Most compound selectors chained by combinators in one selector of a list
/// (`div.a > p span, b` is 3).
pub const MAX_SELECTOR_CHAIN: usize = 64;

/// Checks a selector against [`MAX_SELECTOR_NESTING`], [`MAX_SELECTOR_CHAIN`] and
/// [`MAX_SELECTOR_LEN`], in that order, before any parser sees it; a failure says what
/// was found and the limit it passed.
pub(super) fn check_selector_size(selector: &str) -> Result<(), (String, usize)> {
    let shape = Shape::of(selector);
    if shape.nesting > MAX_SELECTOR_NESTING {
        let what = format!("parentheses or brackets nested {} deep", shape.nesting);
        return Err((what, MAX_SELECTOR_NESTING));
    }
    if shape.chain > MAX_SELECTOR_CHAIN {
        let what = format!("{} compound selectors in one chain", shape.chain);
        return Err((what, MAX_SELECTOR_CHAIN));
    }
    if selector.len() > MAX_SELECTOR_LEN {
        return Err((format!("{} bytes long", selector.len()), MAX_SELECTOR_LEN));
    }
    Ok(())
}

/// How deep and how long a selector is, from one pass over it that skips what the CSS
/// tokenizer skips or reads as one token (comments, strings, escaped characters). Both
/// figures are at least what the parsers will see, whatever the input.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    /// Deepest nesting of `(`, `[` and `{` (function tokens such as `:not(` included). A
    /// closer only closes the innermost block when it matches it, as in CSS.
    nesting: usize,
    /// Most compound selectors in one comma-separated item, counting the combinators
    /// (whitespace, `>`, `+`, `~`) between them outside any block.
    chain: usize,
}

impl Shape {
    fn of(selector: &str) -> Shape {
        let b = selector.as_bytes();
        let mut open: Vec<u8> = Vec::new();
        let mut shape = Shape {
            nesting: 0,
            chain: 0,
        };
        // The current item: compounds so far, and a combinator seen after the last one.
        let (mut compounds, mut combinator) = (0usize, false);
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            i += 1;
            let part_of_compound = match c {
                b'/' if b.get(i) == Some(&b'*') => {
                    i += 1;
                    while b.get(i..).is_some_and(|rest| !rest.starts_with(b"*/")) {
                        i += 1;
                    }
                    i += 2;
                    false
                }
                b'"' | b'\'' => {
                    // A string ends at its quote or, unterminated, before a newline.
                    while let Some(&s) = b.get(i) {
                        match s {
                            b'\\' => i += 2,
                            b'\n' | b'\r' | b'\x0C' => break,
                            s => {
                                i += 1;
                                if s == c {
                                    break;
                                }
                            }
                        }
                    }
                    open.is_empty()
                }
                b'\\' => {
                    i += 1;
                    open.is_empty()
                }
                b'(' | b'[' | b'{' => {
                    let closer = match c {
                        b'(' => b')',
                        b'[' => b']',
                        _ => b'}',
                    };
                    open.push(closer);
                    shape.nesting = shape.nesting.max(open.len());
                    open.len() == 1
                }
                b')' | b']' | b'}' if open.last() == Some(&c) => {
                    open.pop();
                    false
                }
                _ if !open.is_empty() => false,
                b',' => {
                    (compounds, combinator) = (0, false);
                    false
                }
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'>' | b'+' | b'~' => {
                    combinator = compounds > 0;
                    false
                }
                _ => true,
            };
            if part_of_compound && (compounds == 0 || combinator) {
                compounds += 1;
                combinator = false;
                shape.chain = shape.chain.max(compounds);
            }
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(selector: &str) -> (usize, usize) {
        let s = Shape::of(selector);
        (s.nesting, s.chain)
    }

    #[test]
    fn shape_counts_nesting_and_chains_as_the_tokenizer_sees_them() {
        for (selector, want) in [
            ("", (0, 0)),
            ("span", (0, 1)),
            ("div span", (0, 2)),
            ("  div\t>\np+a ~ b  ", (0, 4)),
            ("div.a > p span, b", (0, 3)),
            ("a, b c d,e", (0, 3)),
            ("a[title='x y > z'] b", (1, 2)),
            ("a[title=\"x\\\" y\"] b", (1, 2)),
            (":not(a b c d) e", (1, 2)),
            (":not(:not([x]))", (3, 1)),
            ("a:nth-child(2n + 1)", (1, 1)),
            ("a /* b c */ d", (0, 2)),
            ("a/**/d", (0, 1)),
            ("a /* never closed b c d", (0, 1)),
            ("a[x=\\[] b", (1, 2)),
            ("a[x=\")]\"] b", (1, 2)),
            ("a:not(]:not(]", (2, 1)),
            ("a[x=\"unterminated\n b c", (1, 1)),
            ("a ) b", (0, 3)),
            ("a\\ b c", (0, 2)),
        ] {
            assert_eq!(shape(selector), want, "{selector:?}");
        }
    }

    #[test]
    fn selectors_at_the_limits_are_accepted() {
        let deep = ":not(".repeat(MAX_SELECTOR_NESTING) + "a" + &")".repeat(MAX_SELECTOR_NESTING);
        let chain = "div ".repeat(MAX_SELECTOR_CHAIN - 1) + "span";
        let long = "a".repeat(MAX_SELECTOR_LEN);
        assert_eq!(shape(&deep), (MAX_SELECTOR_NESTING, 1));
        assert_eq!(shape(&chain), (0, MAX_SELECTOR_CHAIN));
        let text = format!(
            "[fields.deep]\nselector = \"{deep}\"\n[fields.chain]\nselector = \"{chain}\"\n\
             [fields.long]\nselector = \"{long}\"\n"
        );
        assert_eq!(
            crate::parse::Rules::from_toml(&text)
                .unwrap()
                .fields()
                .len(),
            3
        );
    }
}
