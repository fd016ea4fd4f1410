//! Streams a URL list (a file or stdin), one URL per line, without ever holding the
//! whole list: lines are read one at a time with a length cap.
//!
//! Blank lines and lines starting with `#` are skipped; a line that is not a valid
//! http(s) URL is returned as [`Line::Invalid`] with its line number, for the caller to
//! report and count. The list is UTF-8: a byte order mark at the start of a line is
//! skipped (it starts each file of `cat a.txt b.txt`), and a list in UTF-16 (or a binary
//! file) is one error before any line, not one per line.
//! [`UrlLines::ready`] tells whether the next line can be had without reading, so that
//! the caller can store what it holds before it waits for input that may be slow to come.

use std::io::{self, BufRead, BufReader, Read};

use url::Url;

use crate::urls::{normalize_given, redact_text, Userinfo, MAX_URL_LEN};

/// Bytes kept of one line; the rest of a longer line is skipped.
const MAX_LINE: usize = MAX_URL_LEN + 1024;
/// The UTF-8 byte order mark, which some editors put at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug)]
pub enum Line {
    Url {
        line: u64,
        /// Without userinfo (see [`crate::urls::normalize_given`]).
        url: Url,
        /// The userinfo written in the line's URL, if any.
        userinfo: Option<Userinfo>,
    },
    Invalid {
        line: u64,
        text: String,
        reason: String,
    },
}

pub struct UrlLines<R> {
    reader: BufReader<R>,
    line: u64,
    buf: Vec<u8>,
    /// Whether a line with content has been read. Until then each line is checked for
    /// the input's encoding: a UTF-16 list can start with lines that look blank in UTF-8.
    content_seen: bool,
    /// Bytes of the input before the current line, while the encoding is checked.
    offset: usize,
}

impl<R: Read> UrlLines<R> {
    pub fn new(reader: BufReader<R>) -> Self {
        UrlLines {
            reader,
            line: 0,
            buf: Vec::new(),
            content_seen: false,
            offset: 0,
        }
    }

    /// Whether `next` will return an item from what is already buffered, without reading
    /// and so without waiting for input: a complete line that is neither blank nor a
    /// comment is in the buffer (and the input's encoding has been checked).
    pub fn ready(&self) -> bool {
        if !self.content_seen {
            return false;
        }
        let mut rest = self.reader.buffer();
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            // `next` judges a cut line by the part it keeps.
            if !skipped(&rest[..end.min(MAX_LINE)]) {
                return true;
            }
            rest = &rest[end + 1..];
        }
        false
    }

    /// Reads one line of at most `MAX_LINE` bytes; returns whether it was cut.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let n = <&mut BufReader<R> as Read>::take(&mut self.reader, MAX_LINE as u64)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') || n < MAX_LINE {
            return Ok(Some(false));
        }
        // Skip the rest of an over-long line without storing it.
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(Some(true));
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(Some(true));
                }
                None => {
                    let len = chunk.len();
                    self.reader.consume(len);
                }
            }
        }
    }

    /// Until the first line with content (`len` bytes as read): refuses input that is
    /// UTF-16 or binary, before any line is taken.
    fn check_encoding(&mut self, len: usize) -> io::Result<()> {
        let start = self.offset;
        self.offset = self.offset.saturating_add(len);
        if let Some(problem) = encoding_problem(&self.buf, start) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, problem));
        }
        self.content_seen = !self.buf.trim_ascii().is_empty();
        Ok(())
    }
}

impl<R: Read> Iterator for UrlLines<R> {
    type Item = io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let cut = match self.read_line() {
                Ok(None) => return None,
                Ok(Some(cut)) => cut,
                Err(e) => return Some(Err(e)),
            };
            self.line += 1;
            let line = self.line;
            let len = self.buf.len();
            // At the start of the input, or of each file concatenated into it.
            if self.buf.starts_with(UTF8_BOM) {
                self.buf.drain(..UTF8_BOM.len());
            }
            if !self.content_seen {
                if let Err(e) = self.check_encoding(len) {
                    return Some(Err(e));
                }
            }
            if skipped(&self.buf) {
                continue;
            }
            let text = String::from_utf8_lossy(&self.buf);
            let text = text.trim();
            let shown: String = redact_text(text).chars().take(200).collect();
            if cut {
                // The limit a URL has (README: 8 KiB), not how much of the line is read.
                return Some(Ok(Line::Invalid {
                    line,
                    text: shown,
                    reason: format!("line longer than {MAX_URL_LEN} bytes"),
                }));
            }
            return Some(Ok(match normalize_given(text) {
                Ok((url, userinfo)) => Line::Url {
                    line,
                    url,
                    userinfo,
                },
                Err(reason) => Line::Invalid {
                    line,
                    text: shown,
                    reason,
                },
            }));
        }
    }
}

/// Whether a line is blank or a comment (`#` after leading whitespace). Most lines start
/// with an ASCII character that settles it; the others are judged as decoded text, with
/// Unicode whitespace.
fn skipped(line: &[u8]) -> bool {
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) if b.is_ascii_graphic() => *b == b'#',
        Some(_) => {
            let text = String::from_utf8_lossy(line);
            let text = text.trim();
            text.is_empty() || text.starts_with('#')
        }
    }
}

/// Why the input is not a UTF-8 list, judged by one of its first lines, `line`, which
/// starts at byte `start`: it is UTF-16 (by its byte order mark, or by the NUL bytes that
/// UTF-16 puts beside every ASCII character), or binary (any other NUL).
fn encoding_problem(line: &[u8], start: usize) -> Option<String> {
    let convert = |from: &str| {
        format!("it is {from}; webspool reads UTF-8 (convert it with `iconv -f {from} -t UTF-8`)")
    };
    if start == 0 && (line.starts_with(b"\xFF\xFE") || line.starts_with(b"\xFE\xFF")) {
        return Some(convert("UTF-16"));
    }
    let nuls = |parity: usize| {
        line.iter()
            .enumerate()
            .filter(|(i, b)| **b == 0 && (start + i) % 2 == parity)
            .count()
    };
    let (even, odd) = (nuls(0), nuls(1));
    if even + odd == 0 {
        return None;
    }
    // Mostly ASCII text in UTF-16: the high byte of every other pair is NUL.
    if 4 * (even + odd) >= line.len() && (even == 0 || odd == 0) {
        let from = if odd > 0 { "UTF-16LE" } else { "UTF-16BE" };
        return Some(convert(from));
    }
    Some("it has NUL bytes, so it is not text (webspool reads one URL per line, in UTF-8)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> io::Result<Vec<Line>> {
        UrlLines::new(BufReader::new(input)).collect()
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn skips_comments_and_blanks_and_numbers_lines() {
        let got = lines(b"# list\n\nhttp://a.test/\n  \nnot a url\r\nhttps://b.test/x#y").unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0], Line::Url { line: 3, url, .. } if url.as_str() == "http://a.test/")
        );
        assert!(matches!(&got[1], Line::Invalid { line: 5, text, .. } if text == "not a url"));
        assert!(
            matches!(&got[2], Line::Url { line: 6, url, .. } if url.as_str() == "https://b.test/x")
        );
    }

    #[test]
    fn over_long_lines_are_reported_with_the_documented_limit_and_skipped_whole() {
        let long = format!("http://a.test/{}", "x".repeat(3 * MAX_LINE));
        let got = lines(format!("{long}\nhttp://b.test/\n").as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        // README and `urls::MAX_URL_LEN`: 8 KiB, whatever the read cap is.
        assert!(
            matches!(&got[0], Line::Invalid { line: 1, reason, .. } if reason == "line longer than 8192 bytes"),
            "{got:?}"
        );
        assert!(matches!(&got[1], Line::Url { line: 2, .. }));
    }

    #[test]
    fn userinfo_is_taken_out_of_the_url_and_never_shown() {
        let got = lines(b"http://u:s%2Fcret@a.test/x\nhttp://user:ab/SECRET@host/x\n").unwrap();
        assert!(
            matches!(&got[0], Line::Url { url, userinfo: Some(info), .. }
            if url.as_str() == "http://a.test/x" && info.as_str() == "u:s%2Fcret")
        );
        assert!(matches!(&got[1], Line::Invalid { text, .. } if !text.contains("SECRET")));
    }

    #[test]
    fn a_utf8_byte_order_mark_does_not_cost_the_first_url() {
        let got = lines(b"\xEF\xBB\xBFhttp://a.test/\nhttp://b.test/\n").unwrap();
        assert!(
            matches!(&got[..], [Line::Url { line: 1, url, .. }, Line::Url { line: 2, .. }] if url.as_str() == "http://a.test/"),
            "{got:?}"
        );
        // Nor the first URL of each file in a concatenation (`cat a.txt b.txt`).
        let got = lines(b"http://a.test/\n\xEF\xBB\xBFhttp://b.test/\n").unwrap();
        assert!(
            matches!(&got[..], [Line::Url { .. }, Line::Url { line: 2, url, .. }] if url.as_str() == "http://b.test/"),
            "{got:?}"
        );
        // A mark alone, or before a comment, is no line.
        assert!(lines(b"\xEF\xBB\xBF").unwrap().is_empty());
        assert!(lines(b"\xEF\xBB\xBF# list\n").unwrap().is_empty());
    }

    #[test]
    fn utf16_is_one_clear_error_with_or_without_byte_order_mark() {
        let list = "http://a.test/\r\nhttp://b.test/\r\n";
        let cases = [
            (
                [&b"\xFF\xFE"[..], &utf16(list, false)].concat(),
                "`iconv -f UTF-16 -t UTF-8`",
            ),
            (
                [&b"\xFE\xFF"[..], &utf16(list, true)].concat(),
                "`iconv -f UTF-16 -t UTF-8`",
            ),
            (utf16(list, false), "`iconv -f UTF-16LE -t UTF-8`"),
            (utf16(list, true), "`iconv -f UTF-16BE -t UTF-8`"),
            // Blank first lines look like UTF-8 but are half of a UTF-16 character.
            (
                utf16(&format!("\n\n{list}"), false),
                "`iconv -f UTF-16LE -t UTF-8`",
            ),
        ];
        for (input, said) in cases {
            let mut all = UrlLines::new(BufReader::new(&input[..]));
            let err = match all.next() {
                Some(Err(e)) => e,
                other => panic!("{said}: {other:?}"),
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("webspool reads UTF-8"), "{err}");
            assert!(err.to_string().contains(said), "{said}: {err}");
        }
    }

    #[test]
    fn binary_input_is_one_error_and_a_later_nul_only_spoils_its_line() {
        let err = lines(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xcd\n").unwrap_err();
        assert!(err.to_string().contains("it is not text"), "{err}");
        let got = lines(b"http://a.test/\nhttp://b\0.test/\nhttp://c.test/\n").unwrap();
        assert!(
            matches!(
                &got[..],
                [
                    Line::Url { .. },
                    Line::Invalid { line: 2, .. },
                    Line::Url { .. }
                ]
            ),
            "{got:?}"
        );
    }

    #[test]
    fn ready_only_when_the_next_url_line_is_buffered_whole() {
        // A reader whose every read gives one more piece, as a pipe does.
        struct Pieces(Vec<&'static [u8]>);
        impl Read for Pieces {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let Some(piece) = self.0.first_mut() else {
                    return Ok(0);
                };
                let n = piece.len().min(out.len());
                out[..n].copy_from_slice(&piece[..n]);
                *piece = &piece[n..];
                if piece.is_empty() {
                    self.0.remove(0);
                }
                Ok(n)
            }
        }
        let input = Pieces(vec![
            b"http://a.test/\nhttp://b.test/\n# note\n\n",
            b"http://c.te",
            b"st/\n",
        ]);
        let mut all = UrlLines::new(BufReader::new(input));
        assert!(!all.ready(), "nothing read yet");
        assert!(matches!(all.next(), Some(Ok(Line::Url { line: 1, .. }))));
        assert!(all.ready(), "line 2 is buffered");
        assert!(matches!(all.next(), Some(Ok(Line::Url { line: 2, .. }))));
        // Only a comment, a blank line and half of line 5 are buffered.
        assert!(!all.ready());
        assert!(matches!(all.next(), Some(Ok(Line::Url { line: 5, .. }))));
        assert!(!all.ready());
        assert!(all.next().is_none());
    }

    #[test]
    fn skipped_agrees_with_decoded_text() {
        for (line, want) in [
            (&b""[..], true),
            (b"  \t\r\n", true),
            (b"  # c\n", true),
            (b"http://a/\n", false),
            (b"\x0b# vertical tab first\n", true),
            ("\u{a0}\u{2003}\n".as_bytes(), true),
            ("\u{a0}#x\n".as_bytes(), true),
            ("\u{a0}http://a/\n".as_bytes(), false),
        ] {
            assert_eq!(skipped(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
