//! Reading WARC files (ISO 28500, WARC/1.0 and 1.1), plain or gzip, streaming.
//!
//! A `.warc.gz` is a series of gzip members, by convention one record each (tools seek
//! to a member's offset); a single member holding every record is read too. Members
//! are decoded one at a time from a counting reader, so a record is placed by the file
//! offset of the member it starts in, which is what an error names (for a plain file,
//! the record's own offset). A record's header block is capped at [`MAX_HEADER_BYTES`];
//! its block is held in memory only up to the caller's cap and skipped past beyond it,
//! so any file is read in bounded memory. A `WARC-Block-Digest` in `sha1:` (base32 or
//! hex) is checked against the block; other algorithms are not checked.
//!
//! Never: trust a length before reading it (a `Content-Length` is a promise the file may
//! break: a block read short is an error, not an allocation of that size).

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::GzDecoder;

use super::digest::{sha1_base32, Sha1Digest};

/// Most bytes of a record's version line and header fields.
pub const MAX_HEADER_BYTES: u64 = 256 * 1024;

/// Where a record starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    /// In the file: the start of the gzip member the record starts in, or (plain WARC)
    /// of the record.
    pub file: u64,
    /// In the decompressed stream (the same as `file` for a plain WARC).
    pub stream: u64,
}

/// Why a file could not be read on: what was wrong, and where.
#[derive(Debug, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct ReadError {
    /// The file offset of the member (or, plain, the record) that holds the fault.
    pub offset: u64,
    pub what: String,
}

/// One WARC record.
#[derive(Clone, Debug)]
pub struct Record {
    pub offset: Offset,
    /// `WARC/1.1`, ...
    pub version: String,
    /// Header fields in order, names as written.
    pub headers: Vec<(String, String)>,
    /// The block, unless it was longer than the reader's cap.
    pub block: Option<Vec<u8>>,
    /// The block's length (its `Content-Length`).
    pub block_len: u64,
}

impl Record {
    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `WARC-Type`, lowercased (`response`, `revisit`, ...).
    pub fn kind(&self) -> String {
        self.header("WARC-Type")
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
}

/// A reader that counts the bytes taken from it.
struct Counting<B> {
    inner: B,
    at: u64,
}

impl<B: BufRead> Read for Counting<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Counting<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.at += amt as u64;
        self.inner.consume(amt);
    }
}

enum Source<R> {
    Plain(Counting<BufReader<R>>),
    /// The member being decoded; `None` once the input is over.
    Gzip(Option<GzDecoder<Counting<BufReader<R>>>>),
}

/// The decompressed stream. One `read` never returns bytes of two members, so the
/// buffer above it holds bytes of one member at a time.
struct Members<R> {
    source: Source<R>,
    /// File offset of the current member.
    member_at: u64,
    /// Decompressed bytes handed out.
    out: u64,
}

impl<R: Read> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.source {
            Source::Plain(input) => {
                self.member_at = input.at;
                input.read(buf)?
            }
            Source::Gzip(slot) => loop {
                let Some(decoder) = slot.as_mut() else {
                    return Ok(0);
                };
                let n = decoder.read(buf)?;
                if n > 0 || buf.is_empty() {
                    break n;
                }
                // The member ended: the next one, if the file goes on.
                let Some(decoder) = slot.take() else {
                    return Ok(0);
                };
                let mut input = decoder.into_inner();
                if input.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                self.member_at = input.at;
                *slot = Some(GzDecoder::new(input));
            },
        };
        self.out += n as u64;
        Ok(n)
    }
}

/// Reads the records of one WARC file in order.
pub struct WarcReader<R> {
    input: BufReader<Members<R>>,
    gzip: bool,
    cap: u64,
}

impl<R: Read> WarcReader<R> {
    /// A reader of `input` (plain or gzip, told by its first bytes) that keeps blocks
    /// of at most `cap` bytes.
    pub fn new(input: R, cap: u64) -> Result<WarcReader<R>, ReadError> {
        let mut raw = Counting {
            inner: BufReader::with_capacity(64 * 1024, input),
            at: 0,
        };
        let head = raw
            .fill_buf()
            .map_err(|e| at(0, format!("cannot read: {e}")))?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let source = match gzip {
            true => Source::Gzip(Some(GzDecoder::new(raw))),
            false => Source::Plain(raw),
        };
        let members = Members {
            source,
            member_at: 0,
            out: 0,
        };
        Ok(WarcReader {
            input: BufReader::with_capacity(64 * 1024, members),
            gzip,
            cap,
        })
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        // Blank lines between records are tolerated (some writers add more).
        let (offset, version) = loop {
            let here = self.offset();
            let more = match self.input.fill_buf() {
                Ok(more) => !more.is_empty(),
                Err(e) => return Err(self.io_error(here, e)),
            };
            if !more {
                return Ok(None);
            }
            let offset = self.offset();
            let line = self.raw_line(offset)?;
            if line.trim().is_empty() && line.ends_with('\n') {
                continue;
            }
            if !line.starts_with("WARC/") {
                return Err(at(
                    offset.file,
                    format!(
                        "not a WARC record: it begins with {:?}, not a WARC/ version line",
                        clip(&line)
                    ),
                ));
            }
            if !line.ends_with('\n') {
                return Err(self.cut_short(offset));
            }
            break (offset, line.trim_end().to_string());
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut header_bytes = version.len() as u64;
        loop {
            let line = self.line(offset)?;
            header_bytes += line.len() as u64;
            if header_bytes > MAX_HEADER_BYTES {
                return Err(at(
                    offset.file,
                    format!("malformed record: header longer than {MAX_HEADER_BYTES} bytes"),
                ));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                match headers.last_mut() {
                    Some((_, value)) => {
                        let more = line.trim();
                        if !value.is_empty() && !more.is_empty() {
                            value.push(' ');
                        }
                        value.push_str(more);
                        continue;
                    }
                    None => return Err(malformed(offset, "a continuation line comes first")),
                }
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(malformed(
                    offset,
                    &format!("header line without a colon: {:?}", clip(line)),
                ));
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let block_len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .ok_or_else(|| malformed(offset, "no Content-Length"))?
            .1
            .parse::<u64>()
            .map_err(|_| malformed(offset, "Content-Length is not a number"))?;
        let block = self.block(offset, block_len)?;
        self.end_of_record(offset)?;
        let record = Record {
            offset,
            version,
            headers,
            block,
            block_len,
        };
        check_block_digest(&record)?;
        Ok(Some(record))
    }

    /// Where the next unread byte is.
    fn offset(&self) -> Offset {
        let members = self.input.get_ref();
        let stream = members.out - self.input.buffer().len() as u64;
        Offset {
            file: if self.gzip { members.member_at } else { stream },
            stream,
        }
    }

    /// One whole line, `\n` included, capped.
    fn line(&mut self, offset: Offset) -> Result<String, ReadError> {
        let line = self.raw_line(offset)?;
        match line.ends_with('\n') {
            true => Ok(line),
            false => Err(self.cut_short(offset)),
        }
    }

    /// One line, `\n` included (none at the end of the file), capped.
    fn raw_line(&mut self, offset: Offset) -> Result<String, ReadError> {
        let mut line = Vec::new();
        let mut capped = (&mut self.input).take(MAX_HEADER_BYTES + 1);
        if let Err(e) = capped.read_until(b'\n', &mut line) {
            return Err(self.io_error(offset, e));
        }
        if line.len() as u64 > MAX_HEADER_BYTES {
            return Err(malformed(offset, "a header line longer than the cap"));
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// The block of `len` bytes: kept when within the cap, else skipped.
    fn block(&mut self, offset: Offset, len: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let mut limited = (&mut self.input).take(len);
        if len > self.cap {
            let skipped = io::copy(&mut limited, &mut io::sink());
            return match skipped {
                Ok(n) if n == len => Ok(None),
                Ok(_) => Err(self.cut_short(offset)),
                Err(e) => Err(self.io_error(offset, e)),
            };
        }
        let mut block = Vec::with_capacity(len.min(1 << 20) as usize);
        match limited.read_to_end(&mut block) {
            Ok(_) if block.len() as u64 == len => Ok(Some(block)),
            Ok(_) => Err(self.cut_short(offset)),
            Err(e) => Err(self.io_error(offset, e)),
        }
    }

    /// The `CRLF CRLF` that ends every record.
    fn end_of_record(&mut self, offset: Offset) -> Result<(), ReadError> {
        let mut end = [0u8; 4];
        match self.input.read_exact(&mut end) {
            Ok(()) if &end == b"\r\n\r\n" => Ok(()),
            Ok(()) => Err(malformed(
                offset,
                "the block is not followed by CRLF CRLF (a wrong Content-Length?)",
            )),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.cut_short(offset)),
            Err(e) => Err(self.io_error(offset, e)),
        }
    }

    fn cut_short(&self, offset: Offset) -> ReadError {
        at(
            offset.file,
            match self.gzip {
                true => "truncated gzip member: the file ends inside a record".into(),
                false => "truncated record: the file ends inside it".into(),
            },
        )
    }

    fn io_error(&self, offset: Offset, e: io::Error) -> ReadError {
        // A gzip member cut short or damaged shows as an error of the decoder.
        let file = match self.gzip {
            true => self.input.get_ref().member_at.max(offset.file),
            false => offset.file,
        };
        match (self.gzip, e.kind()) {
            (true, io::ErrorKind::UnexpectedEof) => at(
                file,
                "truncated gzip member: the file ends inside a record".into(),
            ),
            (true, io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) => {
                at(file, format!("corrupt gzip member: {e}"))
            }
            _ => at(file, format!("cannot read: {e}")),
        }
    }
}

/// Checks a `sha1:` block digest (base32, or hex as some tools write it).
fn check_block_digest(record: &Record) -> Result<(), ReadError> {
    let (Some(claimed), Some(block)) = (record.header("WARC-Block-Digest"), &record.block) else {
        return Ok(());
    };
    let Some(claimed) = Sha1Digest::parse(claimed) else {
        return Ok(());
    };
    let actual = Sha1Digest::of(block);
    if claimed == actual {
        return Ok(());
    }
    Err(at(
        record.offset.file,
        format!(
            "bad digest: WARC-Block-Digest says sha1:{}, the block's is sha1:{}",
            sha1_base32(&claimed.0),
            sha1_base32(&actual.0)
        ),
    ))
}

fn at(offset: u64, what: String) -> ReadError {
    ReadError { offset, what }
}

fn malformed(offset: Offset, what: &str) -> ReadError {
    at(offset.file, format!("malformed record header: {what}"))
}

/// At most 40 characters of `text`, for a message.
fn clip(text: &str) -> String {
    text.trim_end().chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn record(n: usize) -> Vec<u8> {
        let block = format!("block {n}");
        format!(
            "WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: {}\r\n\r\n{block}\r\n\r\n",
            block.len()
        )
        .into_bytes()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn read_all(bytes: &[u8], cap: u64) -> Result<Vec<Record>, ReadError> {
        let mut reader = WarcReader::new(bytes, cap)?;
        let mut all = Vec::new();
        while let Some(record) = reader.next_record()? {
            all.push(record);
        }
        Ok(all)
    }

    #[test]
    fn members_are_placed_at_their_file_offsets() {
        let members: Vec<Vec<u8>> = (0..3).map(|n| gz(&record(n))).collect();
        let file = members.concat();
        let records = read_all(&file, 100).unwrap();
        let starts = [0, members[0].len(), members[0].len() + members[1].len()];
        for (n, (record, start)) in records.iter().zip(starts).enumerate() {
            assert_eq!(record.offset.file, start as u64);
            assert_eq!(
                record.block.as_deref(),
                Some(format!("block {n}").as_bytes())
            );
        }
        // One member holding every record: all at offset 0, read in order.
        let whole = gz(&[record(0), record(1), record(2)].concat());
        let records = read_all(&whole, 100).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| r.offset.file == 0));
        assert_eq!(records[2].offset.stream, 2 * record(0).len() as u64);
    }

    #[test]
    fn plain_files_blank_lines_caps_and_faults() {
        let plain = [record(0), b"\r\n".to_vec(), record(1)].concat();
        let records = read_all(&plain, 100).unwrap();
        assert_eq!(records[1].offset.file, record(0).len() as u64 + 2);
        // Over the cap: skipped past, its length kept.
        let records = read_all(&plain, 3).unwrap();
        assert_eq!((records[0].block.as_ref(), records[0].block_len), (None, 7));

        let cut = &plain[..plain.len() - 5];
        let e = read_all(cut, 100).unwrap_err();
        assert_eq!(e.offset, record(0).len() as u64 + 2);
        assert!(e.what.starts_with("truncated record"), "{e}");

        let members = [gz(&record(0)), gz(&record(1))].concat();
        let e = read_all(&members[..members.len() - 10], 100).unwrap_err();
        assert_eq!(e.offset, gz(&record(0)).len() as u64);
        assert!(e.what.contains("truncated gzip member"), "{e}");

        let e = read_all(b"<html>", 100).unwrap_err();
        assert!(e.what.starts_with("not a WARC record"), "{e}");
        let e = read_all(b"WARC/1.1\r\nWARC-Type: x\r\n\r\n", 100).unwrap_err();
        assert!(e.what.contains("no Content-Length"), "{e}");
        let wrong = b"WARC/1.1\r\nContent-Length: 2\r\n\r\nabc\r\n\r\n";
        let e = read_all(wrong, 100).unwrap_err();
        assert!(e.what.contains("not followed by CRLF CRLF"), "{e}");
    }
}
