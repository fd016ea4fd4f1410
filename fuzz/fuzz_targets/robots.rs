//! `cargo fuzz run robots -s none`: see `webspool::fuzz::robots` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::robots(data));
