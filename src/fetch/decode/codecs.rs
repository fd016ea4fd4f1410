//! The decompression algorithms behind the content codings, each fed its input as it
//! arrives and writing into the caller's buffer: gzip, deflate (zlib or raw), brotli and
//! zstd. Each keeps only its algorithm's own state (a window of at most 32 KiB, 16 MiB
//! and 8 MiB); a stream's variable-length header fields are skipped, never buffered.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Operation};

/// Largest zstd window accepted: 2^23 = 8 MiB, the most RFC 9659 lets an HTTP encoder
/// use. zstd's own default would let a frame ask for 128 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// One decompression algorithm, fed input as it comes.
pub(super) trait Codec: Send {
    /// Decodes from `input` into `out`, returning the bytes read and written. It may
    /// stop before the end of `input` (when `out` is full, or a gzip member ended), but
    /// given input it reads or writes something: the caller calls again with the rest.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String>;

    /// Whether the input so far is a complete stream.
    fn complete(&self) -> bool;
}

/// One call of the inflater: bytes read, bytes written, and whether the deflate stream
/// ended.
fn inflate(
    z: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
) -> Result<(usize, usize, bool), String> {
    let (before_in, before_out) = (z.total_in(), z.total_out());
    let status = z
        .decompress(input, out, FlushDecompress::None)
        .map_err(|e| format!("invalid deflate data ({e})"))?;
    let read = (z.total_in() - before_in) as usize;
    let wrote = (z.total_out() - before_out) as usize;
    Ok((read, wrote, status == Status::StreamEnd))
}

fn after_the_end(input: &[u8]) -> Result<(usize, usize), String> {
    match input.is_empty() {
        true => Ok((0, 0)),
        false => Err("data after the end of the stream".into()),
    }
}

/// `deflate`: zlib-wrapped (RFC 1950) or raw (RFC 1951), told apart by the first two
/// bytes.
pub(super) enum Deflate {
    /// Before the first two bytes; the first one, if it came alone.
    Sniffing(Option<u8>),
    Inflating(Decompress),
    Ended,
}

impl Deflate {
    pub(super) fn new() -> Deflate {
        Deflate::Sniffing(None)
    }
}

/// Whether two bytes are a zlib header: method 8 (deflate), a window of at most 32 KiB,
/// and check bits making the pair a multiple of 31. A raw deflate stream rarely starts
/// so: its first block would have to be a non-final stored block with nonzero padding.
fn zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl Codec for Deflate {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        match self {
            Deflate::Ended => after_the_end(input),
            Deflate::Inflating(z) => {
                let (read, wrote, ended) = inflate(z, input, out)?;
                if ended {
                    *self = Deflate::Ended;
                }
                Ok((read, wrote))
            }
            Deflate::Sniffing(first) => match (*first, input) {
                (_, []) => Ok((0, 0)),
                (None, [only]) => {
                    *first = Some(*only);
                    Ok((1, 0))
                }
                (None, [cmf, flg, ..]) => {
                    *self = Deflate::Inflating(Decompress::new(zlib_header(*cmf, *flg)));
                    self.step(input, out)
                }
                (Some(cmf), [flg, ..]) => {
                    let mut z = Decompress::new(zlib_header(cmf, *flg));
                    let (read, early, _) = inflate(&mut z, &[cmf], out)?;
                    if read != 1 {
                        return Err("the decoder did not take the first byte".into());
                    }
                    *self = Deflate::Inflating(z);
                    let (read, wrote) = self.step(input, &mut out[early..])?;
                    Ok((read, early + wrote))
                }
            },
        }
    }

    fn complete(&self) -> bool {
        matches!(self, Deflate::Ended)
    }
}

/// `gzip` (RFC 1952): members in a row, each a header, deflate data and a trailer with
/// the CRC-32 and length of its data, both checked.
#[derive(Default)]
pub(super) struct Gzip {
    part: Part,
    header: GzipHeader,
    z: Option<Decompress>,
    crc: Crc,
    trailer: [u8; 8],
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Part {
    #[default]
    Header,
    Data,
    /// The trailer, with this many of its 8 bytes in.
    Trailer(usize),
    /// A member ended; another may follow.
    Ended,
}

impl Codec for Gzip {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        let mut read = 0;
        loop {
            let rest = &input[read..];
            match self.part {
                Part::Header => {
                    let (n, done) = self.header.parse(rest)?;
                    read += n;
                    if !done {
                        return Ok((read, 0));
                    }
                    self.part = Part::Data;
                }
                Part::Data => {
                    let z = self.z.get_or_insert_with(|| Decompress::new(false));
                    let (n, wrote, ended) = inflate(z, rest, out)?;
                    read += n;
                    self.crc.update(&out[..wrote]);
                    if ended {
                        self.part = Part::Trailer(0);
                    }
                    if wrote > 0 || !ended {
                        return Ok((read, wrote));
                    }
                }
                Part::Trailer(have) => {
                    let take = (8 - have).min(rest.len());
                    self.trailer[have..have + take].copy_from_slice(&rest[..take]);
                    read += take;
                    if have + take < 8 {
                        self.part = Part::Trailer(have + take);
                        return Ok((read, 0));
                    }
                    self.check_trailer()?;
                    self.part = Part::Ended;
                }
                Part::Ended if rest.is_empty() => return Ok((read, 0)),
                Part::Ended => {
                    self.header = GzipHeader::default();
                    if let Some(z) = &mut self.z {
                        z.reset(false);
                    }
                    self.crc.reset();
                    self.part = Part::Header;
                }
            }
        }
    }

    fn complete(&self) -> bool {
        self.part == Part::Ended
    }
}

impl Gzip {
    fn check_trailer(&self) -> Result<(), String> {
        let [c0, c1, c2, c3, l0, l1, l2, l3] = self.trailer;
        if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
            return Err("CRC-32 mismatch".into());
        }
        // ISIZE is the length modulo 2^32, as `amount` counts.
        if u32::from_le_bytes([l0, l1, l2, l3]) != self.crc.amount() {
            return Err("length mismatch".into());
        }
        Ok(())
    }
}

/// Header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// A gzip member header, parsed as it comes without keeping its variable fields (a
/// name or comment may be endless; it is skipped, never buffered).
#[derive(Default)]
struct GzipHeader {
    /// The fixed 10 bytes, then the 2 of the extra field's length.
    bytes: [u8; 12],
    have: usize,
    field: Field,
}

#[derive(Clone, Copy, Default)]
enum Field {
    #[default]
    Fixed,
    ExtraLength,
    /// Extra field bytes still to skip.
    Extra(usize),
    Name,
    Comment,
    /// Header CRC bytes still to skip (not checked, as browsers do not).
    HeaderCrc(usize),
    Done,
}

impl GzipHeader {
    /// Consumes header bytes from `input`: how many, and whether the header is complete.
    fn parse(&mut self, input: &[u8]) -> Result<(usize, bool), String> {
        let mut read = 0;
        loop {
            let rest = &input[read..];
            let flags = self.bytes[3];
            let (taken, field) = match self.field {
                Field::Fixed => {
                    let taken = self.fill(10, rest);
                    match self.have {
                        10 => (taken, self.check_fixed()?),
                        _ => (taken, Field::Fixed),
                    }
                }
                Field::ExtraLength => {
                    let taken = self.fill(12, rest);
                    let length = u16::from_le_bytes([self.bytes[10], self.bytes[11]]);
                    match self.have {
                        12 => (taken, Field::Extra(length.into())),
                        _ => (taken, Field::ExtraLength),
                    }
                }
                Field::Extra(left) => skip(left, rest, Field::Extra, next_field(flags, 1)),
                Field::Name => until_nul(rest, Field::Name, next_field(flags, 2)),
                Field::Comment => until_nul(rest, Field::Comment, next_field(flags, 3)),
                Field::HeaderCrc(left) => skip(left, rest, Field::HeaderCrc, Field::Done),
                Field::Done => return Ok((read, true)),
            };
            read += taken;
            self.field = field;
            if read == input.len() && !matches!(field, Field::Done) {
                return Ok((read, false));
            }
        }
    }

    /// Copies from `rest` until `bytes` holds `want` bytes; returns how many it took.
    fn fill(&mut self, want: usize, rest: &[u8]) -> usize {
        let take = (want - self.have).min(rest.len());
        self.bytes[self.have..self.have + take].copy_from_slice(&rest[..take]);
        self.have += take;
        take
    }

    /// Checks the fixed part, returning the field after it.
    fn check_fixed(&self) -> Result<Field, String> {
        let [id1, id2, method, flags, ..] = self.bytes;
        if (id1, id2) != (0x1f, 0x8b) {
            return Err("not gzip data (bad magic bytes)".into());
        }
        if method != 8 {
            return Err(format!("unknown compression method {method}"));
        }
        if flags & FRESERVED != 0 {
            return Err("reserved header flags set".into());
        }
        Ok(next_field(flags, 0))
    }
}

/// Skips `left` bytes of a field: the bytes taken from `rest` and the field after.
fn skip(left: usize, rest: &[u8], more: fn(usize) -> Field, then: Field) -> (usize, Field) {
    match left.checked_sub(rest.len()) {
        Some(more_left) if more_left > 0 => (rest.len(), more(more_left)),
        _ => (left, then),
    }
}

/// Skips a zero-terminated field: the bytes taken from `rest` and the field after.
fn until_nul(rest: &[u8], field: Field, then: Field) -> (usize, Field) {
    match rest.iter().position(|&b| b == 0) {
        Some(nul) => (nul + 1, then),
        None => (rest.len(), field),
    }
}

/// The first optional header field, from the `from`-th on, that `flags` announce.
fn next_field(flags: u8, from: usize) -> Field {
    let order = [
        (FEXTRA, Field::ExtraLength),
        (FNAME, Field::Name),
        (FCOMMENT, Field::Comment),
        (FHCRC, Field::HeaderCrc(2)),
    ];
    let next = order[from..].iter().find(|(flag, _)| flags & flag != 0);
    next.map_or(Field::Done, |(_, field)| *field)
}

/// `br` (RFC 7932), without the large-window extension: windows up to 16 MiB.
pub(super) struct Brotli {
    state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
    ended: bool,
}

impl Brotli {
    pub(super) fn new() -> Brotli {
        let alloc = StandardAlloc::default();
        Brotli {
            state: Box::new(BrotliState::new_strict(alloc, alloc, alloc)),
            ended: false,
        }
    }
}

impl Codec for Brotli {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        if self.ended {
            return after_the_end(input);
        }
        let (mut available_in, mut read) = (input.len(), 0);
        let (mut available_out, mut wrote, mut total) = (out.len(), 0, 0);
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut read,
            input,
            &mut available_out,
            &mut wrote,
            out,
            &mut total,
            &mut *self.state,
        );
        match result {
            BrotliResult::ResultFailure => Err("invalid brotli data".into()),
            BrotliResult::ResultSuccess => {
                self.ended = true;
                Ok((read, wrote))
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => Ok((read, wrote)),
        }
    }

    fn complete(&self) -> bool {
        self.ended
    }
}

/// `zstd` (RFC 8878): frames in a row, windows up to [`ZSTD_WINDOW_LOG_MAX`].
pub(super) struct Zstd {
    z: zstd::stream::raw::Decoder<'static>,
    /// Inside a frame (or with output of one still held).
    open: bool,
}

impl Zstd {
    pub(super) fn new() -> Result<Zstd, String> {
        let start = |e: std::io::Error| format!("cannot start the zstd decoder: {e}");
        let mut z = zstd::stream::raw::Decoder::new().map_err(start)?;
        z.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
            .map_err(start)?;
        Ok(Zstd { z, open: false })
    }
}

impl Codec for Zstd {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        if input.is_empty() && !self.open {
            return Ok((0, 0));
        }
        let status = self
            .z
            .run_on_buffers(input, out)
            .map_err(|e| format!("invalid zstd data ({e})"))?;
        // 0: a frame just ended and all of it was written out.
        self.open = status.remaining != 0;
        Ok((status.bytes_read, status.bytes_written))
    }

    fn complete(&self) -> bool {
        !self.open
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::tests::{decode, decode_all, gzip, page, raw_deflate, zlib};
    use super::super::DecodeError;
    use super::*;

    fn message(result: Result<Vec<u8>, DecodeError>) -> String {
        match result {
            Err(DecodeError::Invalid(message)) => message,
            other => panic!("expected an invalid body, got {other:?}"),
        }
    }

    /// A gzip member of `data` with every optional header field: extra, name, comment
    /// and header CRC.
    fn gzip_with_every_field(data: &[u8]) -> Vec<u8> {
        let plain = gzip(data);
        let mut member = plain[..10].to_vec();
        member[3] = FEXTRA | FNAME | FCOMMENT | FHCRC;
        member.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        member.extend_from_slice(&[b'n'; 300]);
        member.push(0);
        member.extend_from_slice(b"a comment\0");
        member.extend_from_slice(&[0xaa, 0xbb]);
        member.extend_from_slice(&plain[10..]);
        member
    }

    #[test]
    fn gzip_header_fields_are_skipped_and_members_follow_each_other() {
        let page = page();
        let full = gzip_with_every_field(&page);
        assert_eq!(decode_all(&["gzip"], &full), Ok(page.clone()));
        // RFC 1952: a gzip file is a series of members, decoded one after the other.
        let (a, b) = page.split_at(1000);
        let members = [gzip(a), gzip_with_every_field(b), gzip(b"")].concat();
        assert_eq!(decode_all(&["gzip"], &members), Ok(page));
    }

    #[test]
    fn gzip_checksums_flags_and_methods_are_checked() {
        let member = gzip(&page());
        let n = member.len();
        let mut bad_crc = member.clone();
        bad_crc[n - 8] ^= 1;
        assert!(message(decode_all(&["gzip"], &bad_crc)).contains("CRC-32 mismatch"));
        let mut bad_length = member.clone();
        bad_length[n - 1] ^= 1;
        assert!(message(decode_all(&["gzip"], &bad_length)).contains("length mismatch"));
        let mut reserved = member.clone();
        reserved[3] = 0x20;
        assert!(message(decode_all(&["gzip"], &reserved)).contains("reserved"));
        let mut method = member;
        method[2] = 7;
        assert!(message(decode_all(&["gzip"], &method)).contains("method 7"));
    }

    #[test]
    fn deflate_tells_zlib_from_raw_by_the_header_check_bits() {
        let page = page();
        let (wrapped, raw) = (zlib(&page), raw_deflate(&page));
        assert!(zlib_header(wrapped[0], wrapped[1]));
        assert!(!zlib_header(raw[0], raw[1]));
        // 0x78 0x9c with a broken check: not zlib, and no valid raw stream either.
        assert!(!zlib_header(0x78, 0x9d));
        let mut broken = wrapped.clone();
        broken[1] ^= 1;
        assert!(message(decode(&["deflate"], &broken, 4096, u64::MAX)).starts_with("deflate"));
        // The zlib trailer (Adler-32) is checked.
        let mut adler = wrapped;
        let last = adler.len() - 1;
        adler[last] ^= 1;
        assert!(message(decode_all(&["deflate"], &adler)).starts_with("deflate"));
    }

    #[test]
    fn zstd_frames_follow_each_other_and_windows_over_8_mib_are_refused() {
        let page = page();
        let (a, b) = page.split_at(3000);
        let frames = [
            zstd::encode_all(a, 1).unwrap(),
            zstd::encode_all(b, 19).unwrap(),
        ];
        assert_eq!(decode_all(&["zstd"], &frames.concat()), Ok(page.clone()));
        let framed = |window_log: u32| {
            let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
            e.set_parameter(zstd::stream::raw::CParameter::WindowLog(window_log))
                .unwrap();
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(
            decode_all(&["zstd"], &framed(ZSTD_WINDOW_LOG_MAX)),
            Ok(page.clone())
        );
        let wide = message(decode_all(&["zstd"], &framed(ZSTD_WINDOW_LOG_MAX + 1)));
        assert!(wide.starts_with("zstd content coding: "), "{wide}");
    }

    #[test]
    fn brotli_large_window_streams_are_refused() {
        let page = page();
        let params = |large_window: bool| brotli::enc::BrotliEncoderParams {
            large_window,
            lgwin: if large_window { 26 } else { 22 },
            quality: 5,
            ..Default::default()
        };
        let encode = |large_window| {
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &page[..], &mut out, &params(large_window)).unwrap();
            out
        };
        assert_eq!(decode_all(&["br"], &encode(false)), Ok(page.clone()));
        let large = message(decode_all(&["br"], &encode(true)));
        assert!(large.starts_with("br content coding: "), "{large}");
    }
}
