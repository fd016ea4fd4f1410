//! `cargo fuzz run url -s none`: see `webspool::fuzz::url` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::url(data));
