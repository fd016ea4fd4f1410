//! Writing WARC/1.1 files: each record its own gzip member, so tools can seek to any
//! record; a new file once the current one would pass its size limit.
//!
//! The first file has the name given; the next ones get `-00001`, `-00002`, ... before
//! `.warc.gz` (or the file's extension). Every file starts with the `warcinfo` record
//! the caller gives. Files are created, never overwritten, and synced when finished.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

/// One record to write: its header fields (without `WARC/1.1` and `Content-Length`,
/// which are added) and its block, in parts written one after the other.
pub struct OutRecord<'a> {
    pub headers: Vec<(&'static str, String)>,
    pub block: &'a [&'a [u8]],
}

impl OutRecord<'_> {
    fn block_len(&self) -> usize {
        self.block.iter().map(|part| part.len()).sum()
    }

    /// The record as one gzip member.
    fn member(&self) -> io::Result<Vec<u8>> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
        gz.write_all(b"WARC/1.1\r\n")?;
        for (name, value) in &self.headers {
            // A value never spans lines (URLs and JSON are written without them).
            let value = value.replace(['\r', '\n'], " ");
            write!(gz, "{name}: {value}\r\n")?;
        }
        write!(gz, "Content-Length: {}\r\n\r\n", self.block_len())?;
        for part in self.block {
            gz.write_all(part)?;
        }
        gz.write_all(b"\r\n\r\n")?;
        gz.finish()
    }
}

/// Writes records to a series of files.
pub struct WarcWriter {
    first: PathBuf,
    max_size: u64,
    file: Option<(PathBuf, BufWriter<File>)>,
    written: u64,
    /// Files finished, the current one last once [`WarcWriter::finish`] ran.
    pub files: Vec<PathBuf>,
}

impl WarcWriter {
    pub fn new(first: &Path, max_size: u64) -> WarcWriter {
        WarcWriter {
            first: first.to_path_buf(),
            max_size,
            file: None,
            written: 0,
            files: Vec::new(),
        }
    }

    /// Appends `record`, starting a new file (with `warcinfo(file name)` first) when
    /// there is none yet or the record would pass the size limit.
    pub fn write(
        &mut self,
        record: &OutRecord<'_>,
        warcinfo: impl Fn(&str) -> io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        let member = record.member()?;
        let full = self.written > 0 && self.written + member.len() as u64 > self.max_size;
        if self.file.is_none() || full {
            self.next_file(&warcinfo)?;
        }
        self.append(&member)
    }

    fn append(&mut self, member: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some((_, out)) => out.write_all(member)?,
            None => return Err(io::Error::other("no WARC file open")),
        }
        self.written += member.len() as u64;
        Ok(())
    }

    fn next_file(&mut self, warcinfo: &impl Fn(&str) -> io::Result<Vec<u8>>) -> io::Result<()> {
        self.close()?;
        let path = numbered(&self.first, self.files.len());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.file = Some((path, BufWriter::new(file)));
        self.written = 0;
        let info = warcinfo(&name)?;
        self.append(&info)
    }

    fn close(&mut self) -> io::Result<()> {
        if let Some((path, out)) = self.file.take() {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            self.files.push(path);
        }
        Ok(())
    }

    /// Syncs and closes the last file; returns every file written.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.close()?;
        Ok(self.files)
    }
}

/// A `warcinfo` record as a gzip member.
pub fn warcinfo_member(headers: Vec<(&'static str, String)>, fields: &str) -> io::Result<Vec<u8>> {
    OutRecord {
        headers,
        block: &[fields.as_bytes()],
    }
    .member()
}

/// The name of the `n`th file (0: `first` itself).
pub fn numbered(first: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return first.to_path_buf();
    }
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.find(".warc") {
        Some(at) => name.split_at(at),
        None => match name.rfind('.') {
            Some(at) => name.split_at(at),
            None => (name.as_str(), ""),
        },
    };
    first.with_file_name(format!("{stem}-{n:05}{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_keep_the_extension() {
        let first = Path::new("/x/crawl.warc.gz");
        assert_eq!(numbered(first, 0), first);
        assert_eq!(numbered(first, 2), Path::new("/x/crawl-00002.warc.gz"));
        assert_eq!(numbered(Path::new("a.gz"), 1), Path::new("a-00001.gz"));
        assert_eq!(numbered(Path::new("a"), 1), Path::new("a-00001"));
    }
}
