//! Extraction rules: named fields pulled out of every HTML page by CSS selector.
//!
//! ```toml
//! [fields.price]
//! selector = "span.price"   # CSS selector, lol_html's supported subset
//! attr = "content"          # optional: this attribute's value; default: the element's text
//! all = true                # optional: every match; default: the first match only
//! ```
//!
//! Rules are checked completely when loaded (unknown keys, field names, attribute
//! names, and every selector compiled by lol_html), so a typo is a startup error that
//! names the field, never a silent empty column later. [`Rules::hash`] identifies a rule
//! set in each annotation, so `reparse` can tell which pages were annotated with
//! different rules. Applying rules to a page is [`super::html`]'s job.
//!
//! Sizes are bounded (see `limits.rs`) before any parser sees the rules: the parsers
//! recurse, and a selector nested or chained deep enough overflows a parse thread's
//! stack, an abort that no resume survives.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use lol_html::Selector;
use serde::Deserialize;
use xxhash_rust::xxh3::Xxh3;

mod limits;

use limits::check_selector_size;
pub use limits::{
    MAX_FIELDS, MAX_RULES_FILE, MAX_SELECTOR_CHAIN, MAX_SELECTOR_LEN, MAX_SELECTOR_NESTING,
};

/// Longest accepted attribute name in a rule.
const MAX_ATTR_NAME: usize = 256;

/// One named field: where to find it and what to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRule {
    /// Matches `[A-Za-z_][A-Za-z0-9_]{0,63}` (usable as a column name).
    pub name: String,
    /// The CSS selector as written in the rules file.
    pub selector: String,
    /// Take this attribute (ASCII-lowercased) instead of the element's text.
    pub attr: Option<String>,
    /// Every match instead of the first one.
    pub all: bool,
}

/// A validated rule set, fields sorted by name, selectors compiled once.
///
/// `Send + Sync`: one `Rules` is shared by all parser threads.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    fields: Vec<FieldRule>,
    /// `compiled[i]` is `fields[i].selector`, parsed.
    compiled: Vec<Selector>,
}

impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for Rules {}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("rules file {}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<RulesError>,
    },
    /// Not a `#[from]`: `{:#}` would print the reason twice (see `JournalError::Storage`).
    #[error("invalid rules: {0}")]
    Toml(toml::de::Error),
    #[error("invalid field name `{name}`: must match [A-Za-z_][A-Za-z0-9_]{{0,63}}")]
    FieldName { name: String },
    #[error("field `{field}`: invalid selector `{selector}`: {reason}")]
    Selector {
        field: String,
        selector: String,
        reason: String,
    },
    #[error("field `{field}`: invalid attribute name `{attr}`")]
    Attr { field: String, attr: String },
    /// A size limit passed; `key` is where in the file (`fields.price.selector`).
    #[error("invalid rules: {key}: {what}, more than the limit of {limit}")]
    Limit {
        key: String,
        what: String,
        limit: usize,
    },
    #[error("invalid rules: the file is larger than the limit of {MAX_RULES_FILE} bytes")]
    TooLarge,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    selector: String,
    #[serde(default)]
    attr: Option<String>,
    #[serde(default)]
    all: bool,
}

impl Rules {
    /// Parses and validates rules from TOML text.
    pub fn from_toml(text: &str) -> Result<Rules, RulesError> {
        let raw: RawRules = toml::from_str(text).map_err(RulesError::Toml)?;
        if raw.fields.len() > MAX_FIELDS {
            return Err(RulesError::Limit {
                key: "fields".into(),
                what: format!("{} fields", raw.fields.len()),
                limit: MAX_FIELDS,
            });
        }
        let mut rules = Rules::default();
        // BTreeMap iteration: already sorted by name.
        for (name, field) in raw.fields {
            if !valid_field_name(&name) {
                return Err(RulesError::FieldName { name });
            }
            check_selector_size(&field.selector).map_err(|(what, limit)| RulesError::Limit {
                key: format!("fields.{name}.selector"),
                what,
                limit,
            })?;
            let compiled =
                field
                    .selector
                    .parse::<Selector>()
                    .map_err(|e| RulesError::Selector {
                        field: name.clone(),
                        selector: field.selector.clone(),
                        reason: e.to_string().trim_end_matches('.').to_string(),
                    })?;
            let attr = match field.attr {
                Some(attr) if valid_attr_name(&attr) => Some(attr.to_ascii_lowercase()),
                Some(attr) => return Err(RulesError::Attr { field: name, attr }),
                None => None,
            };
            rules.fields.push(FieldRule {
                name,
                selector: field.selector,
                attr,
                all: field.all,
            });
            rules.compiled.push(compiled);
        }
        Ok(rules)
    }

    /// Reads and validates a rules file (at most [`MAX_RULES_FILE`] bytes of it); every
    /// error names the file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        Rules::load_text(path).map(|(rules, _)| rules)
    }

    /// [`Rules::load`], and the file's text, which the journal keeps.
    pub fn load_text(path: &Path) -> Result<(Rules, String), RulesError> {
        let read_error = |error| RulesError::Read {
            path: path.to_path_buf(),
            error,
        };
        let in_file = |error| RulesError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_RULES_FILE + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_RULES_FILE {
            return Err(in_file(RulesError::TooLarge));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let rules = Rules::from_toml(&text).map_err(in_file)?;
        Ok((rules, text))
    }

    /// The fields, sorted by name.
    pub fn fields(&self) -> &[FieldRule] {
        &self.fields
    }

    /// Each field with its compiled selector.
    pub(crate) fn compiled(&self) -> impl Iterator<Item = (&FieldRule, &Selector)> {
        self.fields.iter().zip(&self.compiled)
    }

    /// xxh3-64 of a canonical, length-prefixed encoding of the sorted rules: equal for
    /// equal rule sets however the file was formatted, different when any name,
    /// selector, attribute or `all` changes. Stable across versions of this program
    /// unless the encoding's version tag below changes.
    pub fn hash(&self) -> u64 {
        fn put(h: &mut Xxh3, bytes: &[u8]) {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        let mut h = Xxh3::new();
        put(&mut h, b"webspool-rules-v1");
        h.update(&(self.fields.len() as u64).to_le_bytes());
        for f in &self.fields {
            put(&mut h, f.name.as_bytes());
            put(&mut h, f.selector.as_bytes());
            match &f.attr {
                Some(attr) => {
                    h.update(&[1]);
                    put(&mut h, attr.as_bytes());
                }
                None => h.update(&[0]),
            }
            h.update(&[u8::from(f.all)]);
        }
        h.digest()
    }
}

fn valid_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'_')
        && b.len() <= 64
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// An HTML attribute name lol_html can look up: no whitespace, quotes, `/`, `>`, `=`,
/// or control characters.
fn valid_attr_name(attr: &str) -> bool {
    !attr.is_empty()
        && attr.len() <= MAX_ATTR_NAME
        && !attr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'/>=".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = include_str!("../../tests/fixtures/rules/rules.toml");

    /// As `main` prints errors (`{:#}`, the whole chain): the reason once.
    #[test]
    fn a_toml_error_is_told_once() {
        let err = Rules::from_toml("[fields.x]\nselector = 3").unwrap_err();
        let reason = match &err {
            RulesError::Toml(e) => e.message().to_string(),
            other => panic!("{other}"),
        };
        let shown = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
    }

    #[test]
    fn loads_valid_rules_sorted_by_name() {
        let rules = Rules::from_toml(VALID).unwrap();
        let got: Vec<_> = rules
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.selector.as_str(),
                    f.attr.as_deref(),
                    f.all,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("author", "div.byline a[rel=author]", None, false),
                ("image", "div.product img.main", Some("src"), false),
                ("price", "span.price", Some("content"), false),
                ("tags", "ul.tags li", None, true),
            ]
        );
        assert_eq!(rules.compiled().count(), 4);
    }

    #[test]
    fn default_rules_are_empty_with_a_fixed_hash() {
        let rules = Rules::default();
        assert!(rules.fields().is_empty());
        assert_eq!(rules.hash(), 0x55c0_fb95_1f5a_a9fb);
        assert_eq!(Rules::from_toml("").unwrap().hash(), rules.hash());
        assert_eq!(Rules::from_toml("[fields]\n").unwrap(), rules);
    }

    #[test]
    fn hash_ignores_formatting_and_sees_every_change() {
        let base = Rules::from_toml(VALID).unwrap();
        let reordered = "[fields.tags]\nall = true\nselector = \"ul.tags li\"\n\
            [fields.price]\nselector = \"span.price\"\nattr = \"CONTENT\"\n\
            [fields.image]\nselector = \"div.product img.main\"\nattr = \"src\"\n\
            [fields.author]\nselector = \"div.byline a[rel=author]\"\n";
        assert_eq!(Rules::from_toml(reordered).unwrap().hash(), base.hash());
        let changed = [
            VALID.replace("span.price", "span.cost"),
            VALID.replace("\"content\"", "\"data-price\""),
            VALID.replace("all = true", "all = false"),
            VALID.replace("[fields.price]", "[fields.prices]"),
            VALID.replace("attr = \"content\"\n", ""),
        ];
        for text in changed {
            let rules = Rules::from_toml(&text).unwrap();
            assert_ne!(rules.hash(), base.hash(), "{text}");
        }
    }

    #[test]
    fn bad_selector_names_field_and_selector() {
        let text = include_str!("../../tests/fixtures/rules/bad-selector.toml");
        let err = Rules::from_toml(text).unwrap_err();
        assert!(matches!(err, RulesError::Selector { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "field `price`: invalid selector `span.price >`: Dangling combinator in selector"
        );
    }

    #[test]
    fn unknown_keys_are_errors_at_every_level() {
        let text = include_str!("../../tests/fixtures/rules/unknown-key.toml");
        let err = Rules::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("unknown field `attribute`"), "{err}");
        let err = Rules::from_toml("[field.price]\nselector = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `field`"), "{err}");
        let err = Rules::from_toml("[fields.price]\nall = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `selector`"), "{err}");
        let err = Rules::from_toml("[fields.price]\nselector = \"a\"\nall = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn field_and_attr_names_are_checked() {
        for name in ["1price", "price-usd", "\"\"", &"x".repeat(65), "\"pr ice\""] {
            let err =
                Rules::from_toml(&format!("[fields.{name}]\nselector = \"a\"\n")).unwrap_err();
            assert!(
                matches!(err, RulesError::FieldName { .. }),
                "{name}: {err:?}"
            );
        }
        for name in ["_x", "Price2", &"x".repeat(64)] {
            let text = format!("[fields.{name}]\nselector = \"a\"\n");
            assert_eq!(Rules::from_toml(&text).unwrap().fields()[0].name, name);
        }
        for attr in [r#""""#, r#""a b""#, r#""a=b""#, r#""a>""#, r#""x\u0001""#] {
            let text = format!("[fields.f]\nselector = \"a\"\nattr = {attr}\n");
            let err = Rules::from_toml(&text).unwrap_err();
            assert!(matches!(err, RulesError::Attr { .. }), "{attr:?}: {err:?}");
        }
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("webspool-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let err = Rules::load(&missing).unwrap_err().to_string();
        assert!(err.starts_with("cannot read rules file ") && err.contains("missing.toml"));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[fields.x]\nselector = \"\"\n").unwrap();
        let err = Rules::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("field `x`"),
            "{err}"
        );
        let good = dir.join("good.toml");
        std::fs::write(&good, VALID).unwrap();
        assert_eq!(
            Rules::load(&good).unwrap(),
            Rules::from_toml(VALID).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The selectors from the hostile-input review, which overflowed the stack (exit
    /// 134) of `reparse` and `crawl --rules`: refused before lol_html sees them.
    #[test]
    fn selector_bombs_are_refused_naming_the_field() {
        let chain = "div ".repeat(3000) + "span";
        let not = ":not(".repeat(4000) + "a" + &")".repeat(4000);
        let cases = [
            (
                chain,
                "3001 compound selectors in one chain, more than the limit of 64",
            ),
            (
                not,
                "parentheses or brackets nested 4000 deep, more than the limit of 32",
            ),
            (
                ":not(".repeat(33) + "a",
                "nested 33 deep, more than the limit of 32",
            ),
            ("a ".repeat(65), "65 compound selectors in one chain"),
            (
                "a,".repeat(2049),
                "4098 bytes long, more than the limit of 4096",
            ),
        ];
        for (selector, want) in cases {
            let text = format!(
                "[fields.ok]\nselector = \"a\"\n[fields.price]\nselector = \"{selector}\"\n"
            );
            let err = Rules::from_toml(&text).unwrap_err();
            assert!(matches!(err, RulesError::Limit { .. }), "{err:?}");
            let err = err.to_string();
            assert!(
                err.starts_with("invalid rules: fields.price.selector: "),
                "{err}"
            );
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn field_count_and_file_size_are_bounded() {
        let fields = |n: usize| -> String {
            (0..n)
                .map(|i| format!("[fields.f{i}]\nselector = \"a\"\n"))
                .collect()
        };
        assert_eq!(
            Rules::from_toml(&fields(MAX_FIELDS))
                .unwrap()
                .fields()
                .len(),
            MAX_FIELDS
        );
        let err = Rules::from_toml(&fields(MAX_FIELDS + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid rules: fields: 257 fields, more than the limit of 256"
        );

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        let padding = "#".repeat(MAX_RULES_FILE as usize);
        std::fs::write(&big, format!("{padding}\n")).unwrap();
        let err = Rules::load(&big).unwrap_err().to_string();
        assert!(
            err.contains("big.toml") && err.contains("larger than the limit of 1048576 bytes"),
            "{err}"
        );
        // Cut by the limit inside a character: still too large, not invalid UTF-8.
        std::fs::write(&big, format!("{}é", &padding[1..])).unwrap();
        let err = Rules::load(&big).unwrap_err().to_string();
        assert!(err.contains("larger than the limit"), "{err}");
        std::fs::write(&big, &padding).unwrap();
        assert_eq!(Rules::load(&big).unwrap(), Rules::default());
        std::fs::write(&big, b"# \xFF\n").unwrap();
        let err = Rules::load(&big).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read rules file ") && err.contains("utf-8"),
            "{err}"
        );
    }

    #[test]
    fn rules_are_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Rules>();
    }
}
