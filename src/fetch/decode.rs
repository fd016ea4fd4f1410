//! Content-decoding: undoes the content codings a response names in `Content-Encoding`,
//! streaming, so that the stored body is what the server meant and a bomb stops at the
//! size cap.
//!
//! `Content-Encoding` is read as RFC 9110 has it: a comma-separated list, possibly over
//! several header lines, names case-insensitive, `identity` and empty elements ignored,
//! `x-gzip` the same as `gzip`. The codings are listed in the order they were applied,
//! so they are undone from the last to the first. Decoded: `gzip` (one member or
//! several in a row, CRC-32 and length checked), `deflate` (zlib-wrapped as RFC 9110
//! says, or raw deflate as some servers send and browsers accept, told apart by the
//! zlib header's check bits), `br` and `zstd` (windows up to 8 MiB, as RFC 9659 allows).
//! At most [`MAX_CODINGS`] are undone; more, or a coding not in that list, make the
//! body undecodable. So does a truncated stream, a checksum that does not match or bytes
//! after the end of a stream. A body with no bytes at all stays empty whatever its
//! codings (servers send `Content-Encoding: gzip` on empty 204s and redirects).
//!
//! Each layer decodes into a buffer of its own of [`CHUNK`] bytes and hands each filled
//! buffer on to the next layer before decoding more, so an intermediate layer never
//! holds more than that, and the final output is counted against the cap as it grows.
//! A body with no coding goes straight to the output.

use std::fmt;

use http::header::{self, HeaderMap};

use codecs::{Brotli, Codec, Deflate, Gzip, Zstd};

mod codecs;

/// The `Accept-Encoding` sent with every request: exactly what is decoded here.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// Most content codings undone on one body, as curl. Real servers apply one; a longer
/// stack only multiplies the work a hostile server can ask for.
const MAX_CODINGS: usize = 5;

/// Bytes each layer decodes at a time before passing them on.
const CHUNK: usize = 32 * 1024;

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The decoded body grew past the cap.
    TooLarge,
    /// The codings are not supported, or the data does not decode.
    Invalid(String),
}

/// A content coding webspool decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn named(name: &[u8]) -> Option<Coding> {
        const NAMES: [(&[u8], Coding); 5] = [
            (b"gzip", Coding::Gzip),
            (b"x-gzip", Coding::Gzip),
            (b"deflate", Coding::Deflate),
            (b"br", Coding::Brotli),
            (b"zstd", Coding::Zstd),
        ];
        let found = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, coding)| *coding)
    }

    fn codec(self) -> Result<Box<dyn Codec>, String> {
        Ok(match self {
            Coding::Gzip => Box::new(Gzip::default()),
            Coding::Deflate => Box::new(Deflate::new()),
            Coding::Brotli => Box::new(Brotli::new()),
            Coding::Zstd => Box::new(Zstd::new()?),
        })
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        })
    }
}

/// The codings of a response in the order they were applied, or why it cannot be
/// decoded.
fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for name in value.as_bytes().split(|&b| b == b',') {
            let name = name.trim_ascii();
            if name.is_empty() || name.eq_ignore_ascii_case(b"identity") {
                continue;
            }
            let Some(coding) = Coding::named(name) else {
                return Err(format!(
                    "unsupported content coding `{}` (webspool decodes gzip, x-gzip, \
                     deflate, br and zstd)",
                    shown(name)
                ));
            };
            if codings.len() == MAX_CODINGS {
                return Err(format!(
                    "more than {MAX_CODINGS} content codings stacked (`{}`)",
                    shown(&headers_text(headers))
                ));
            }
            codings.push(coding);
        }
    }
    Ok(codings)
}

/// A server-sent name, made printable and cut short for an error message.
fn shown(name: &[u8]) -> String {
    const MOST: usize = 60;
    let text: String = String::from_utf8_lossy(name).escape_debug().collect();
    match text.char_indices().nth(MOST) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

fn headers_text(headers: &HeaderMap) -> Vec<u8> {
    let values = headers.get_all(header::CONTENT_ENCODING).iter();
    let values: Vec<&[u8]> = values.map(|v| v.as_bytes()).collect();
    values.join(&b", "[..])
}

/// Decodes one response body, frame by frame, into a capped output.
pub(crate) struct Decoder {
    /// In decoding order: the coding applied last comes first.
    layers: Vec<Layer>,
    /// Why the body cannot be decoded, told as soon as it turns out not to be empty.
    refused: Option<String>,
    cap: u64,
}

impl Decoder {
    /// A decoder for the body of a response with these headers, whose decoded bytes may
    /// not exceed `cap`.
    pub(crate) fn new(headers: &HeaderMap, cap: u64) -> Decoder {
        let layers = codings(headers).and_then(|codings| {
            let reversed = codings.into_iter().rev();
            reversed.map(Layer::new).collect::<Result<Vec<_>, _>>()
        });
        let (layers, refused) = match layers {
            Ok(layers) => (layers, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        Decoder {
            layers,
            refused,
            cap,
        }
    }

    /// Whether the body is stored as sent (no coding to undo).
    pub(crate) fn identity(&self) -> bool {
        self.layers.is_empty() && self.refused.is_none()
    }

    /// Decodes the next piece of the body onto `body`.
    pub(crate) fn push(&mut self, data: &[u8], body: &mut Vec<u8>) -> Result<(), DecodeError> {
        if let Some(why) = self.refused.as_ref().filter(|_| !data.is_empty()) {
            return Err(DecodeError::Invalid(why.clone()));
        }
        feed(&mut self.layers, data, body, self.cap)
    }

    /// Ends the body: flushes every layer and checks that each stream is complete.
    pub(crate) fn finish(mut self, body: &mut Vec<u8>) -> Result<(), DecodeError> {
        let cap = self.cap;
        let mut layers = &mut self.layers[..];
        while let Some((layer, inner)) = layers.split_first_mut() {
            layer.finish(&mut |chunk| feed(inner, chunk, body, cap))?;
            layers = inner;
        }
        Ok(())
    }
}

/// Passes `data` through `layers` onto `body`.
fn feed(
    layers: &mut [Layer],
    data: &[u8],
    body: &mut Vec<u8>,
    cap: u64,
) -> Result<(), DecodeError> {
    match layers.split_first_mut() {
        Some((layer, inner)) => layer.decode(data, &mut |chunk| feed(inner, chunk, body, cap)),
        None if (body.len() + data.len()) as u64 > cap => Err(DecodeError::TooLarge),
        None => {
            body.extend_from_slice(data);
            Ok(())
        }
    }
}

type Emit<'a> = dyn FnMut(&[u8]) -> Result<(), DecodeError> + 'a;

/// One coding being undone: its codec and the buffer it decodes into.
struct Layer {
    coding: Coding,
    codec: Box<dyn Codec>,
    out: Box<[u8]>,
    /// Whether any input arrived.
    fed: bool,
}

impl Layer {
    fn new(coding: Coding) -> Result<Layer, String> {
        Ok(Layer {
            coding,
            codec: coding.codec()?,
            out: vec![0; CHUNK].into_boxed_slice(),
            fed: false,
        })
    }

    /// Decodes all of `input`, emitting the output a buffer at a time.
    fn decode(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<(), DecodeError> {
        self.fed |= !input.is_empty();
        loop {
            let (read, wrote) = self
                .codec
                .step(input, &mut self.out)
                .map_err(|why| invalid(self.coding, &why))?;
            input = &input[read..];
            if wrote > 0 {
                emit(&self.out[..wrote])?;
            }
            // A full buffer may leave more output inside the codec.
            if input.is_empty() && wrote < self.out.len() {
                return Ok(());
            }
            if read == 0 && wrote == 0 {
                return Err(invalid(self.coding, "the decoder made no progress"));
            }
        }
    }

    /// Flushes what the codec holds and checks that the stream ended.
    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<(), DecodeError> {
        if !self.fed {
            return Ok(());
        }
        self.decode(&[], emit)?;
        match self.codec.complete() {
            true => Ok(()),
            false => Err(invalid(self.coding, "the stream is truncated")),
        }
    }
}

fn invalid(coding: Coding, why: &str) -> DecodeError {
    DecodeError::Invalid(format!("{coding} content coding: {why}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http::HeaderValue;

    use super::*;

    /// The headers of a response with these `Content-Encoding` lines.
    fn with_codings(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            let value = HeaderValue::from_bytes(line.as_bytes()).unwrap();
            headers.append(header::CONTENT_ENCODING, value);
        }
        headers
    }

    /// Decodes `data` sent with these `Content-Encoding` lines, `piece` bytes at a time.
    pub(super) fn decode(
        lines: &[&str],
        data: &[u8],
        piece: usize,
        cap: u64,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut decoder = Decoder::new(&with_codings(lines), cap);
        let mut body = Vec::new();
        for chunk in data.chunks(piece) {
            decoder.push(chunk, &mut body)?;
        }
        decoder.finish(&mut body)?;
        Ok(body)
    }

    /// Decodes `data` whole, then a byte at a time, and checks both agree.
    pub(super) fn decode_all(lines: &[&str], data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let whole = decode(lines, data, data.len().max(1), u64::MAX);
        let bytewise = decode(lines, data, 1, u64::MAX);
        assert_eq!(whole, bytewise, "{lines:?}: whole and byte by byte differ");
        whole
    }

    fn invalid_message(result: Result<Vec<u8>, DecodeError>) -> String {
        match result {
            Err(DecodeError::Invalid(message)) => message,
            other => panic!("expected an invalid body, got {other:?}"),
        }
    }

    pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(super) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(super) fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        e.write_all(data).unwrap();
        e.into_inner()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    /// Some text that compresses, longer than a layer's buffer once decoded.
    pub(super) fn page() -> Vec<u8> {
        (0..4000)
            .flat_map(|i| format!("<p>line {i} of the page</p>\n").into_bytes())
            .collect()
    }

    fn parsed(lines: &[&str]) -> Result<Vec<Coding>, String> {
        codings(&with_codings(lines))
    }

    #[test]
    fn content_encoding_lists_parse_as_rfc_9110_has_them() {
        use Coding::*;
        let cases: [(&[&str], &[Coding]); 12] = [
            (&[], &[]),
            (&["gzip"], &[Gzip]),
            (&["x-gzip"], &[Gzip]),
            (&["GZIP"], &[Gzip]),
            (&["X-Gzip"], &[Gzip]),
            (&["gzip, gzip"], &[Gzip, Gzip]),
            (&["gzip", "gzip"], &[Gzip, Gzip]),
            (&[" gzip ,\tidentity "], &[Gzip]),
            (&["identity"], &[]),
            (
                &["deflate,gzip", "Br", ",, zstd ,"],
                &[Deflate, Gzip, Brotli, Zstd],
            ),
            (&["IDENTITY, br"], &[Brotli]),
            (&["gzip, gzip, gzip, gzip", "gzip"], &[Gzip; MAX_CODINGS]),
        ];
        for (lines, want) in cases {
            assert_eq!(parsed(lines).as_deref(), Ok(want), "{lines:?}");
        }
    }

    #[test]
    fn unknown_codings_and_deep_stacks_are_refused_by_name() {
        let unknown = parsed(&["gzip, compress"]).unwrap_err();
        assert!(unknown.contains("`compress`"), "{unknown}");
        // Not registered names: no alias but x-gzip, and parameters are not allowed.
        for name in ["x-deflate", "gzip;q=1", "none", "utf-8"] {
            let why = parsed(&[name]).unwrap_err();
            assert!(why.contains(&format!("`{name}`")), "{why}");
        }
        let deep = parsed(&["gzip, gzip, gzip", "gzip, gzip, gzip"]).unwrap_err();
        assert!(deep.contains("more than 5"), "{deep}");
        assert!(
            deep.contains("`gzip, gzip, gzip, gzip, gzip, gzip`"),
            "{deep}"
        );
        // A server-sent name is shown escaped and cut short.
        let long = format!("\u{e9}{}", "x".repeat(500));
        let why = parsed(&[&long]).unwrap_err();
        assert!(why.len() < 200 && why.contains("\u{e9}xxx"), "{why}");
    }

    #[test]
    fn every_coding_decodes_whole_and_byte_by_byte() {
        let page = page();
        let encoded = [
            ("gzip", gzip(&page)),
            ("x-gzip", gzip(&page)),
            ("deflate", zlib(&page)),
            ("deflate", raw_deflate(&page)),
            ("br", brotli(&page)),
            ("zstd", zstd(&page)),
            ("identity", page.clone()),
        ];
        for (name, data) in &encoded {
            assert!(decode_all(&[name], data) == Ok(page.clone()), "{name}");
        }
    }

    #[test]
    fn stacked_codings_are_undone_last_first() {
        let page = page();
        let stacks: [(&[&str], Vec<u8>); 4] = [
            (&["gzip, gzip"], gzip(&gzip(&page))),
            (&["gzip", "gzip"], gzip(&gzip(&page))),
            (&["deflate, gzip"], gzip(&zlib(&page))),
            (
                &["br", "identity, zstd, deflate"],
                zlib(&zstd(&brotli(&page))),
            ),
        ];
        for (lines, data) in &stacks {
            assert!(decode_all(lines, data) == Ok(page.clone()), "{lines:?}");
        }
        // In the wrong order they do not decode.
        let swapped = decode(&["gzip, deflate"], &stacks[2].1, 4096, u64::MAX);
        assert!(invalid_message(swapped).starts_with("deflate content coding"));
    }

    #[test]
    fn the_cap_counts_the_final_output_of_all_layers() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let bomb = gzip(&gzip(&zeros));
        assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
        let cap = 1024 * 1024;
        assert_eq!(
            decode(&["gzip, gzip"], &bomb, 1024, cap),
            Err(DecodeError::TooLarge)
        );
        let at_cap = gzip(&gzip(&zeros[..cap as usize]));
        let decoded = decode(&["gzip, gzip"], &at_cap, 1024, cap).unwrap();
        assert_eq!(decoded.len() as u64, cap);
        let identity = decode(&[], &zeros[..cap as usize + 1], 4096, cap);
        assert_eq!(identity, Err(DecodeError::TooLarge));
    }

    #[test]
    fn an_empty_body_stays_empty_whatever_its_codings() {
        for lines in [&["gzip"][..], &["br, zstd"], &["compress"], &["gzip"; 6]] {
            assert_eq!(decode_all(lines, b""), Ok(Vec::new()), "{lines:?}");
        }
        let refused = invalid_message(decode(&["compress"], b"x", 1, u64::MAX));
        assert!(refused.contains("`compress`"), "{refused}");
    }

    #[test]
    fn truncated_and_overlong_streams_are_invalid() {
        let page = page();
        let encoded = [
            ("gzip", gzip(&page)),
            ("deflate", zlib(&page)),
            ("deflate", raw_deflate(&page)),
            ("br", brotli(&page)),
            ("zstd", zstd(&page)),
        ];
        for (name, data) in &encoded {
            let cut = decode_all(&[name], &data[..data.len() - 1]);
            let message = invalid_message(cut);
            assert!(
                message.starts_with(&format!("{name} content coding: ")),
                "{message}"
            );
            let longer = [&data[..], b"\0junk"].concat();
            let message = invalid_message(decode_all(&[name], &longer));
            assert!(
                message.starts_with(&format!("{name} content coding: ")),
                "{message}"
            );
        }
        let message = invalid_message(decode_all(&["gzip"], b"<html>not gzip</html>"));
        assert!(message.contains("not gzip data"), "{message}");
    }
}
