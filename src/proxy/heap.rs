//! The proxy's heap. The proxy holds a few MB for years and, at a full sync, briefly tens
//! of MB (a whole ruleset and its batch, a list of 10,000 objects); the allocator is told so.
//! Both calls are glibc's; musl's allocator returns freed memory by itself and keeps no
//! per-thread arenas.

/// One allocator arena for every thread. The API watch threads decode whole lists; with
/// glibc's per-thread arenas each of those lists grows its thread's arena by tens of MB,
/// and the free top of a thread's arena is not given back by `malloc_trim` (only the main
/// heap's is), so each stayed resident: 6–12 MiB per watch at 10,000 services. The watch
/// threads and the sync loop rarely allocate at the same time, so sharing the arena costs
/// no measurable contention. Call it before any thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's policy for arenas created later; before
    // other threads exist nothing races with it.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Give the heap's free pages back to the system. A sync builds the whole ruleset, and a
/// full one its batch too (tens of MB at 10,000 services), then frees them; a change read
/// from the manifest directory makes a new catalog and frees the old; glibc keeps
/// freed memory inside its heap (and after one large free, serves later large requests
/// from the heap too), so without this the process's RSS stays at the sync's peak.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it touches no memory
    // the program holds and is safe to call at any time.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
