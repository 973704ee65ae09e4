//! The release `gateway` binary (or `HOSTILE_BIN`) in a child process, optionally under `prlimit --as=BYTES`:
//! its effective configuration (`--print-config`), the memory bound `--check` states (when it
//! states one), its address once it logs `listening on`, its RSS from `/proc/PID/status`, and
//! whether it is still alive.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary cargo built for this bench, or `HOSTILE_BIN`.
pub fn binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("HOSTILE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gateway").to_owned())
    })
}

/// Run the binary with `args` and `extra` (e.g. `--check`) and return what it printed on
/// stdout and stderr.
fn run_once(args: &[String], extra: &str) -> Result<String, String> {
    let out = Command::new(binary())
        .args(args)
        .arg(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} {extra}: {e}", binary()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{} {extra} failed: {}", binary(), text.trim()));
    }
    Ok(text)
}

/// The effective configuration for `args`, key → value, from `--print-config`.
pub fn effective_config(args: &[String]) -> Result<HashMap<String, String>, String> {
    let text = run_once(args, "--print-config")?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// The `memory bound: N UNIT` that `--check` prints for `args`, in bytes; `None` while the
/// binary prints none.
pub fn memory_bound(args: &[String]) -> Option<u64> {
    let text = run_once(args, "--check").ok()?;
    let at = text.find("memory bound:")?;
    let mut words = text[at + "memory bound:".len()..].split_whitespace();
    let number: f64 = words.next()?.replace(',', "").parse().ok()?;
    let unit = match words.next().unwrap_or("") {
        u if u.starts_with("GiB") => 1u64 << 30,
        u if u.starts_with("MiB") => 1 << 20,
        u if u.starts_with("KiB") => 1 << 10,
        _ => 1,
    };
    Some((number * unit as f64) as u64)
}

/// A running gateway.
pub struct Gateway {
    child: Child,
    /// `ws://127.0.0.1:PORT/ws`.
    pub url: String,
}

impl Gateway {
    /// Spawn the binary with `args`, under `prlimit --as=AS` when `address_space` is set, and
    /// wait until it logs its address.
    pub fn spawn(args: &[String], address_space: Option<u64>) -> Result<Gateway, String> {
        let mut cmd = match address_space {
            Some(bytes) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--as={bytes}")).arg("--").arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                    }
                } else if !line.contains("WARN") {
                    eprintln!("   gateway: {line}");
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(url) => Ok(Gateway { child, url }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{} did not log its address within 10 s", binary()))
            }
        }
    }

    /// The process id (prlimit execs the binary, so it is the gateway's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` in bytes (0 once the process is gone).
    pub fn rss(&self) -> u64 {
        loadgen::rss_kib(self.pid()).unwrap_or(0) * 1024
    }

    /// `None` while it runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("unknown ({e})")),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
