//! Gzip-compressed sitemaps (`sitemap.xml.gz`), inflated with a hard output cap.

use std::io::{ErrorKind, Read};

use flate2::read::MultiGzDecoder;

/// Whether the body starts with the gzip magic bytes `1f 8b`.
pub fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b])
}

/// Inflates a gzip body (all members, as `gzip -d` does), failing as soon as the
/// output would exceed `cap` bytes (a sitemap is at most 50 MiB uncompressed; the
/// caller passes the cap), or if the data is not gzip, corrupt (bad deflate data,
/// CRC or length) or truncated. Never holds more than `cap` bytes of output plus
/// the growth slack of one `Vec`.
pub fn gunzip_capped(body: &[u8], cap: u64) -> Result<Vec<u8>, String> {
    if !is_gzip(body) {
        return Err("not gzip data (no 1f 8b magic)".into());
    }
    let mut decoder = MultiGzDecoder::new(body);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("corrupt or truncated gzip: {e}")),
        };
        if out.len() as u64 + n as u64 > cap {
            return Err(format!("gzip inflates to more than {cap} bytes"));
        }
        let data = chunk.get(..n).ok_or("gzip decoder overran its buffer")?;
        out.extend_from_slice(data);
    }
}
