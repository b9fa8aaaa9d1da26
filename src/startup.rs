//! What the start leaves behind, given back once ferry is ready (issue 15). The start
//! allocates and frees more than an idle ferry holds (the store's open and checks, the
//! config, the listeners' setup); glibc keeps freed memory in its arenas, so without a
//! trim the idle RSS carries the start's peak. `malloc_trim` returns it (about 0.5 MiB
//! on x86_64). musl returns freed memory by itself.
//!
//! The executable's code pages that ran only at start stay mapped too (the kernel maps
//! code in 64 KiB windows around each page run); they are clean, shared with the page
//! cache and reclaimed under memory pressure, and are left to the kernel: dropping them
//! (`MADV_PAGEOUT`) was measured to bring them back with the first connections.

/// Called once, when ferry is ready.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The future a runtime's `block_on` drives, for the event loop (`main.rs`) and each
/// forwarding thread (`forward/workers.rs`) alike: one type, so that tokio's scheduler
/// loop is compiled once (about 4 KB of the binary less).
pub type Driven<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::process::ExitCode> + 'a>>;
