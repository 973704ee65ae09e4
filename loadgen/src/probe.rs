//! Server CPU and memory from `/proc`: CPU from `/proc/PID/stat` (a process) or
//! `/proc/PID/task/TID/stat` (one thread), utime + stime in clock ticks turned into seconds
//! with `getconf CLK_TCK` (read once; 100 if that fails); memory is `VmRSS` from
//! `/proc/PID/status`, and `RssAnon`, the part of it that is not a file's pages (heap, stacks:
//! what the process allocated, without the pages of its binary's code it has run so far).
//! Threads are pinned with `taskset`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks per second for `/proc/*/stat` (`getconf CLK_TCK`, read once; 100 if unknown).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime in ticks from a `/proc/.../stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// `RssAnon` of a process in KiB: its resident memory less the pages of files (its binary's
/// code and data, libraries) and shared memory.
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

/// The KiB figure of the line starting with `key` in `/proc/PID/status`.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The calling thread's id (from `/proc/thread-self`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Pin thread (or process) `tid` to `cpu` with `taskset -p`; false when that failed.
pub fn pin(tid: u32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the server is, for CPU and memory readings.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// Nothing known: no server figures.
    None,
    /// A whole process (all its threads).
    Process(u32),
    /// One thread of a process (an in-process gateway's loop thread).
    Thread {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
    },
}

impl Probe {
    /// The calling thread.
    pub fn this_thread() -> Probe {
        match current_tid() {
            Some(tid) => Probe::Thread {
                pid: std::process::id(),
                tid,
            },
            None => Probe::None,
        }
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let ticks = match *self {
            Probe::None => return None,
            Probe::Process(pid) => stat_ticks(&format!("/proc/{pid}/stat"))?,
            Probe::Thread { pid, tid } => stat_ticks(&format!("/proc/{pid}/task/{tid}/stat"))?,
        };
        Some(ticks as f64 / clock_ticks())
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        match *self {
            Probe::None => None,
            Probe::Process(pid) | Probe::Thread { pid, .. } => rss_kib(pid),
        }
    }

    /// Anonymous resident memory of the process (`RssAnon`), in KiB.
    pub fn rss_anon_kib(&self) -> Option<u64> {
        match *self {
            Probe::None => None,
            Probe::Process(pid) | Probe::Thread { pid, .. } => rss_anon_kib(pid),
        }
    }

    /// Wait until the server has used less than one clock tick of CPU in 200 ms (at most
    /// `limit`), so that one measurement does not pay for the previous one's teardown.
    pub fn wait_quiet(&self, limit: Duration) {
        let end = Instant::now() + limit;
        let Some(mut last) = self.cpu_seconds() else {
            return;
        };
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            let Some(now) = self.cpu_seconds() else {
                return;
            };
            if now - last < 1.0 / clock_ticks() {
                return;
            }
            last = now;
        }
    }
}
