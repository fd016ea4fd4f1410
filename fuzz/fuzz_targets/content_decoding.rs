//! `cargo fuzz run content_decoding -s none`: see `webspool::fuzz::content_decoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::content_decoding(data));
