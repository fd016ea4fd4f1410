//! `cargo fuzz run segment_entries -s none`: see `webspool::fuzz::segment_entries`.
#![no_main]

// The check bounds the memory a decode takes: it measures it with this allocator.
#[global_allocator]
static ALLOCATOR: webspool::fuzz::CountingAlloc = webspool::fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| webspool::fuzz::segment_entries(data));
