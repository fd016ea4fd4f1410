//! Streams a URL list (a file or stdin), one URL per line, without ever holding the
//! whole list: lines are read one at a time with a length cap.
//!
//! Blank lines and lines starting with `#` are skipped; a line that is not a valid
//! http(s) URL is returned as [`Line::Invalid`] with its line number, for the caller to
//! report and count.

use std::io::{self, BufRead, Read};

use url::Url;

use crate::urls::{normalize_given, redact_text, Userinfo, MAX_URL_LEN};

/// Bytes kept of one line; the rest of a longer line is skipped.
const MAX_LINE: usize = MAX_URL_LEN + 1024;

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
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> UrlLines<R> {
    pub fn new(reader: R) -> Self {
        UrlLines {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Reads one line of at most `MAX_LINE` bytes; returns whether it was cut.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let n = <&mut R as Read>::take(&mut self.reader, MAX_LINE as u64)
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
}

impl<R: BufRead> Iterator for UrlLines<R> {
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
            let text = String::from_utf8_lossy(&self.buf);
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let shown: String = redact_text(text).chars().take(200).collect();
            if cut {
                return Some(Ok(Line::Invalid {
                    line,
                    text: shown,
                    reason: format!("line longer than {MAX_LINE} bytes"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str) -> Vec<Line> {
        UrlLines::new(input.as_bytes())
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn skips_comments_and_blanks_and_numbers_lines() {
        let got = lines("# list\n\nhttp://a.test/\n  \nnot a url\r\nhttps://b.test/x#y");
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
    fn over_long_lines_are_reported_and_skipped_whole() {
        let long = format!("http://a.test/{}", "x".repeat(3 * MAX_LINE));
        let got = lines(&format!("{long}\nhttp://b.test/\n"));
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[0], Line::Invalid { line: 1, reason, .. } if reason.contains("longer"))
        );
        assert!(matches!(&got[1], Line::Url { line: 2, .. }));
    }

    #[test]
    fn userinfo_is_taken_out_of_the_url_and_never_shown() {
        let got = lines("http://u:s%2Fcret@a.test/x\nhttp://user:ab/SECRET@host/x\n");
        assert!(
            matches!(&got[0], Line::Url { url, userinfo: Some(info), .. }
            if url.as_str() == "http://a.test/x" && info.as_str() == "u:s%2Fcret")
        );
        assert!(matches!(&got[1], Line::Invalid { text, .. } if !text.contains("SECRET")));
    }
}
