//! Bulk work yields to interactive work: a thread doing an import's CPU work runs at a lower
//! scheduling priority (nice 10), so on busy cores the scheduler gives other tenants' calls
//! about ten times its share, and on idle cores it still runs at full speed.

/// How much lower than the server's other threads bulk work runs.
const BULK_NICE: i32 = 10;

/// Lowers the calling thread's priority (Linux: a thread's nice value is its own). Best effort:
/// where it cannot be lowered, the thread runs as before.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, current.max(0) + BULK_NICE);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_bulk_thread_runs_nicer_than_the_others() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let nice = std::thread::spawn(|| {
            super::lower_this_thread();
            unsafe {
                libc::getpriority(
                    libc::PRIO_PROCESS,
                    libc::syscall(libc::SYS_gettid) as libc::id_t,
                )
            }
        })
        .join()
        .unwrap();
        assert_eq!(nice, before.max(0) + super::BULK_NICE);
        // The calling thread is untouched.
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
