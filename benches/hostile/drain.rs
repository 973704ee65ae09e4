//! Members that read and discard everything sent to them, on a thread of their own, so that
//! a fan-out attack is not cut short by the gateway closing slow consumers.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The draining thread.
pub struct Drain {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    /// Read `streams` until dropped.
    pub fn start(streams: Vec<TcpStream>) -> Drain {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || {
                for s in &streams {
                    let _ = s.set_nonblocking(true);
                }
                let mut buf = vec![0u8; 256 * 1024];
                let mut streams: Vec<Option<TcpStream>> = streams.into_iter().map(Some).collect();
                while !stop.load(Ordering::Relaxed) {
                    let mut got = 0;
                    for slot in &mut streams {
                        let Some(s) = slot else { continue };
                        match s.read(&mut buf) {
                            Ok(0) => *slot = None,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => *slot = None,
                        }
                    }
                    bytes.fetch_add(got as u64, Ordering::Relaxed);
                    if got == 0 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            })
        };
        Drain {
            stop,
            bytes,
            thread: Some(thread),
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
