//! A global allocator that counts what the calling thread holds, so that a check can
//! bound the memory one decode takes ([`peak_during`]). The fuzz targets that need it
//! and the integration test binary install it with `#[global_allocator]`; it must never
//! be used outside them (it slows every allocation a little, and that is all it does).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting per thread the bytes live and their peak.
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    // `try_with`: an allocation during the thread's teardown is not counted, and never
    // panics inside the allocator. The cells have no destructor, so this is only caution.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    // Saturating: memory allocated by another thread may be freed by this one.
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed on to `System` unchanged; the counting only reads and
// writes two thread-local integers and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every method passes on).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as both at once: a moving realloc holds both for a moment.
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

/// Runs `f` and returns the most bytes the calling thread held during it beyond what it
/// held before. Panics when [`CountingAlloc`] is not the global allocator, so that a
/// check bounding memory can never pass by measuring nothing.
pub fn peak_during(f: impl FnOnce()) -> usize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let probe = std::hint::black_box(vec![0u8; 64]);
    let counted = PEAK.with(Cell::get) >= start + probe.len();
    drop(probe);
    assert!(counted, "CountingAlloc is not the global allocator");
    PEAK.with(|peak| peak.set(LIVE.with(Cell::get)));
    f();
    PEAK.with(Cell::get).saturating_sub(start)
}
