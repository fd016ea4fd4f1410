//! `cargo fuzz run warc_records -s none`: see `webspool::fuzz::warc_records` for what it
//! checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::warc_records(data));
