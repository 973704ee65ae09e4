//! The bystander: a connection of its own user, on a thread of its own, sending a JSON `ping`
//! every `interval` (or as soon as the previous `pong` came, when that took longer) and
//! recording each round trip with the time it was sent. An attack's figure is the p99 of the
//! round trips sent within its window; a ping still unanswered when the window closes counts
//! with its age so far (a lower bound), so a gateway stuck in one message shows as stuck.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Client;

#[derive(Default)]
struct Shared {
    samples: Vec<(Instant, Duration)>,
    in_flight: Option<Instant>,
    failed: Option<String>,
}

/// The pinging thread.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// The round trips of one window.
pub struct Window {
    /// Round trips, in µs, sorted.
    pub rtts_us: Vec<f64>,
    /// Whether one was still unanswered at the end (counted with its age).
    pub unanswered: bool,
}

impl Window {
    /// The p99 (nearest rank), in ms; NaN without samples.
    pub fn p99_ms(&self) -> f64 {
        if self.rtts_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.rtts_us.len() as f64) * 0.99).ceil() as usize;
        self.rtts_us[rank.clamp(1, self.rtts_us.len()) - 1] / 1e3
    }
}

impl Bystander {
    /// Connect, authenticate with `token` and start pinging every `interval`.
    pub fn start(url: &str, token: &str, interval: Duration) -> Result<Bystander, String> {
        let mut client = Client::authed(url, token)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread = {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    shared.lock().unwrap().in_flight = Some(sent);
                    let rtt = client.ping(sent + Duration::from_secs(120));
                    let mut s = shared.lock().unwrap();
                    s.in_flight = None;
                    match rtt {
                        Ok(rtt) => s.samples.push((sent, rtt)),
                        Err(e) => {
                            s.failed = Some(format!("{e:?}"));
                            return;
                        }
                    }
                    drop(s);
                    let next = sent + interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        };
        Ok(Bystander {
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The round trips of pings sent from `from` to now.
    pub fn window(&self, from: Instant) -> Window {
        let now = Instant::now();
        let s = self.shared.lock().unwrap();
        let mut rtts_us: Vec<f64> = s
            .samples
            .iter()
            .filter(|(sent, _)| *sent >= from)
            .map(|(_, rtt)| rtt.as_secs_f64() * 1e6)
            .collect();
        let unanswered = match s.in_flight {
            Some(sent) if sent >= from && now - sent > Duration::from_millis(10) => {
                rtts_us.push((now - sent).as_secs_f64() * 1e6);
                true
            }
            _ => false,
        };
        rtts_us.sort_by(f64::total_cmp);
        Window {
            rtts_us,
            unanswered,
        }
    }

    /// Wait (at most `limit`) until a ping sent after `after` has been answered: the gateway
    /// is responsive again. False when it is not, or the bystander's connection failed.
    pub fn wait_responsive(&self, after: Instant, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            {
                let s = self.shared.lock().unwrap();
                if s.failed.is_some() {
                    return false;
                }
                if s.samples.last().is_some_and(|(sent, _)| *sent >= after) {
                    return true;
                }
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread ends after its current ping (or when the gateway is killed).
        if let Some(thread) = self.thread.take() {
            if self.shared.lock().unwrap().in_flight.is_none() {
                let _ = thread.join();
            }
        }
    }
}
