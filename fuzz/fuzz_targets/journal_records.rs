//! `cargo fuzz run journal_records -s none`: see `webspool::fuzz::journal_records`.
#![no_main]

// The check bounds the memory a decode takes: it measures it with this allocator.
#[global_allocator]
static ALLOCATOR: webspool::fuzz::CountingAlloc = webspool::fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::journal_records(data));
