//! The loopback TCP floor: raw ping-pong against an echo thread, with the same I/O pattern as
//! the WebSocket latency client, for the latency to be compared to.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::probe::current_tid;
use crate::results::LatencyResult;
use crate::{READ_CHUNK, REPLY_TIMEOUT};

/// Start a blocking echo thread on 127.0.0.1:0 (one client at a time); returns its address
/// and the thread's id.
pub fn spawn_echo() -> io::Result<(SocketAddr, Option<u32>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tcp-echo".into())
        .spawn(move || {
            let _ = tx.send(current_tid());
            let mut buf = vec![0u8; READ_CHUNK];
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        })?;
    let tid = rx.recv().ok().flatten();
    Ok((addr, tid))
}

/// `count` round trips of `size` bytes (after `warmup`) against an echo server, with the same
/// I/O pattern as the WebSocket latency client: nonblocking write, poll, read.
pub fn run_floor(
    addr: SocketAddr,
    size: usize,
    warmup: usize,
    count: usize,
) -> Result<LatencyResult, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(16);
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    poll.registry()
        .register(
            &mut stream,
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while stream.peer_addr().is_err() {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        if let Ok(Some(e)) = stream.take_error() {
            return Err(format!("connect {addr}: {e}"));
        }
        if Instant::now() > deadline {
            return Err(format!("connect {addr}: timed out"));
        }
    }
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let msg = vec![0x5au8; size.max(1)];
    let mut buf = vec![0u8; READ_CHUNK];
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        let mut written = 0;
        let mut got = 0;
        while got < msg.len() {
            if written < msg.len() {
                match stream.write(&msg[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err("echo closed".into()),
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            poll.poll(&mut events, Some(REPLY_TIMEOUT))
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err("echo timed out".into());
            }
        }
        if i >= warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}
