//! What a bench prints about the machine it ran on (the load average, the CPU model), and the
//! open-file limit a bench with many connections needs.

/// The 1, 5 and 15 minute load averages from `/proc/loadavg` (`n/a` when unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// The first `model name` of `/proc/cpuinfo` (`unknown CPU` when there is none).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Raise this process's soft open-file limit to its hard one; the soft limit then in force
/// (1024 when it cannot be read).
pub fn raise_fd_limit() -> usize {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) != 0 {
            return 1024;
        }
        if rlim.rlim_cur < rlim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rlim.rlim_max,
                rlim_max: rlim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rlim = raised;
            }
        }
    }
    usize::try_from(rlim.rlim_cur).unwrap_or(usize::MAX)
}
