//! `cargo fuzz run page -s none`: see `webspool::fuzz::page` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::page(data));
