//! A TCP proxy that breaks the first connection carrying more than `cut_after` response bytes,
//! to exercise resumption after a connection drop.

// Test helpers: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct CuttingProxy {
    pub port: u16,
    cuts: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl CuttingProxy {
    pub fn start(upstream_port: u16, cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let (c, n) = (Arc::clone(&cuts), Arc::clone(&connections));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let (c, armed) = (Arc::clone(&c), Arc::clone(&armed));
                std::thread::spawn(move || pipe(client, upstream, cut_after, &armed, &c));
            }
        });
        CuttingProxy {
            port,
            cuts,
            connections,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn pipe(
    client: TcpStream,
    upstream: TcpStream,
    cut_after: usize,
    armed: &AtomicBool,
    cuts: &AtomicUsize,
) {
    let mut c2u_from = client.try_clone().unwrap();
    let mut c2u_to = upstream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match c2u_from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if c2u_to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = c2u_to.shutdown(Shutdown::Write);
    });
    let (mut from, mut to) = (upstream, client);
    let mut sent = 0usize;
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if sent + n > cut_after && armed.swap(false, Ordering::SeqCst) {
            let keep = cut_after.saturating_sub(sent);
            let _ = to.write_all(&buf[..keep]);
            cuts.fetch_add(1, Ordering::SeqCst);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Both);
}
