//! A TCP proxy that breaks one upload request on its way to the registry: either before the
//! registry sees any of it (a connection lost between two chunks), or halfway through its body.

// Test helpers: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// Drop the connection when the `nth` PATCH (1-based) starts, forwarding none of it.
    BeforeRequest { nth: usize },
    /// Forward the `nth` PATCH's first `bytes` bytes, then drop the connection.
    MidBody { nth: usize, bytes: usize },
}

pub struct UploadCutter {
    pub port: u16,
    cuts: Arc<AtomicUsize>,
}

struct Shared {
    cut: Cut,
    patches: AtomicUsize,
    armed: AtomicBool,
    cuts: Arc<AtomicUsize>,
}

impl UploadCutter {
    pub fn start(upstream_port: u16, cut: Cut) -> UploadCutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            cut,
            patches: AtomicUsize::new(0),
            armed: AtomicBool::new(true),
            cuts: Arc::clone(&cuts),
        });
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || pipe(client, upstream, &shared));
            }
        });
        UploadCutter { port, cuts }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

fn pipe(client: TcpStream, upstream: TcpStream, shared: &Shared) {
    let mut back_from = upstream.try_clone().unwrap();
    let mut back_to = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match back_from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if back_to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = back_to.shutdown(Shutdown::Both);
    });
    let (mut from, mut to) = (client, upstream);
    let mut buf = [0u8; 16384];
    // Bytes forwarded of the request being cut halfway, once it started.
    let mut cutting: Option<usize> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if chunk.starts_with(b"PATCH ") {
            let nth = shared.patches.fetch_add(1, Ordering::SeqCst) + 1;
            match shared.cut {
                Cut::BeforeRequest { nth: at }
                    if at == nth && shared.armed.swap(false, Ordering::SeqCst) =>
                {
                    shared.cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                Cut::MidBody { nth: at, .. } if at == nth => cutting = Some(0),
                _ => {}
            }
        }
        if let (Some(sent), Cut::MidBody { bytes, .. }) = (cutting, shared.cut)
            && sent + n > bytes
            && shared.armed.swap(false, Ordering::SeqCst)
        {
            let _ = to.write_all(&chunk[..bytes.saturating_sub(sent)]);
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            // Give the registry a moment to read what it got before the connection drops.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if let Some(sent) = cutting.as_mut() {
            *sent += n;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
