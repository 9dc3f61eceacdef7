//! Clients that lie or stall: a `Content-Length` that is not what comes, bodies cut off, request
//! heads and bodies sent a byte at a time, blobs read slowly. Each gets the spec's error or
//! nothing, no half-written blob becomes visible, sessions keep only whole chunks, and the
//! server goes on serving everyone else.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hull_oci::Digest;
use hull_oci::media_type as mt;

use crate::support::*;

/// Sends a request head and `body` (which may be shorter or longer than the head's
/// `Content-Length`), then half-closes; returns the status line's code, if any answer came.
fn send_raw(addr: SocketAddr, head: &str, body: &[u8], close_write: bool) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (and stop reading) before all of a lying body is sent.
    let _ = s.write_all(body);
    if close_write {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                // One response is enough (the connection may stay open).
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break;
                    }
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

fn head(method: &str, path: &str, addr: SocketAddr, len: usize, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

/// Waits (up to 5 s) until the storage's `tmp/` is empty; returns what is left.
fn temps_left(dir: &Path) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn blob_status(base: &str, repo: &str, d: &Digest) -> u16 {
    client()
        .head(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// The number of bytes an upload session holds (its `Range`, `0-0` being empty).
fn held(base: &str, loc: &str) -> u64 {
    let resp = client().get(format!("{base}{loc}")).send().unwrap();
    assert_eq!(resp.status(), 204, "{loc}");
    let end: u64 = header(&resp, "range")
        .unwrap()
        .strip_prefix("0-")
        .unwrap()
        .parse()
        .unwrap();
    if end == 0 { 0 } else { end + 1 }
}

fn new_session(base: &str, repo: &str) -> String {
    let resp = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    header(&resp, "location").unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn lying_content_length_stores_nothing_and_keeps_sessions_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let (base, addr) = (server.url(), server.addr);
    let blob = data(256 * 1024, 1);
    let d = Digest::sha256_of(&blob);

    // Monolithic, Content-Length larger than the body: the body ends early, nothing is stored.
    let path = format!("/v2/lie/blobs/uploads/?digest={d}");
    let answer = send_raw(
        addr,
        &head("POST", &path, addr, blob.len() + 1000, ""),
        &blob,
        true,
    );
    if let Some((code, text)) = &answer {
        assert!(
            (400..500).contains(code),
            "a cut-off body was accepted: {text}"
        );
    }
    assert_eq!(blob_status(&base, "lie", &d), 404);

    // Content-Length smaller than what follows: the blob is the first bytes only, whose digest
    // is not the one claimed.
    let answer = send_raw(
        addr,
        &head(
            "POST",
            &path,
            addr,
            blob.len() - 10,
            "Connection: close\r\n",
        ),
        &blob,
        false,
    );
    let (code, text) = answer.expect("no answer to a short Content-Length");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("DIGEST_INVALID"), "{text}");
    assert_eq!(blob_status(&base, "lie", &d), 404);

    // A PATCH whose body ends before its Content-Length: the session keeps what it had.
    let loc = new_session(&base, "lie");
    let resp = client()
        .patch(format!("{base}{loc}"))
        .header("content-range", format!("0-{}", 1024 * 64 - 1))
        .body(blob[..64 * 1024].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = header(&resp, "location").unwrap();
    send_raw(
        addr,
        &head("PATCH", &loc, addr, 128 * 1024, ""),
        &blob[64 * 1024..100 * 1024],
        true,
    );
    assert_eq!(held(&base, &loc), 64 * 1024, "a partial chunk was kept");
    // The same for a PUT carrying the last chunk: not committed, the session goes on.
    let put = format!("{loc}?digest={d}");
    let answer = send_raw(
        addr,
        &head("PUT", &put, addr, blob.len() - 64 * 1024, ""),
        &blob[64 * 1024..200 * 1024],
        true,
    );
    if let Some((code, text)) = &answer {
        assert!((400..500).contains(code), "{text}");
    }
    assert_eq!(blob_status(&base, "lie", &d), 404);
    assert_eq!(held(&base, &loc), 64 * 1024);
    // Told the truth, the same session completes with the right blob.
    let resp = client()
        .put(format!("{base}{put}"))
        .body(blob[64 * 1024..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text());
    let got = client()
        .get(format!("{base}/v2/lie/blobs/{d}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got[..] == blob[..], "the resumed upload differs");
    let left = temps_left(dir.path());
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[test]
fn slow_and_aborted_clients_do_not_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let (base, addr) = (server.url(), server.addr);
    let big = data(8 * 1024 * 1024, 7);
    let big_digest = push_blob(&base, "served", &big);
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();

    // Request heads sent a byte at a time, never finished.
    for i in 0..6 {
        let stop = Arc::clone(&stop);
        slow.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let text =
                format!("GET /v2/slow/head{i}/tags/list HTTP/1.1\r\nHost: {addr}\r\nX-Pad: ");
            for b in text.bytes().chain(std::iter::repeat(b'x')) {
                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Chunks trickled a byte at a time into sessions of their own, then abandoned.
    let mut sessions = Vec::new();
    for i in 0..6 {
        let loc = new_session(&base, &format!("slow/body{i}"));
        sessions.push(loc.clone());
        let stop = Arc::clone(&stop);
        slow.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(head("PATCH", &loc, addr, 1024 * 1024, "").as_bytes())
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(b"z").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // dropped: the connection is cut mid-body
        }));
    }
    // Monolithic uploads cut off half-way.
    let aborted = data(4 * 1024 * 1024, 9);
    let aborted_digest = Digest::sha256_of(&aborted);
    for _ in 0..4 {
        let path = format!("/v2/slow/aborted/blobs/uploads/?digest={aborted_digest}");
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head("POST", &path, addr, aborted.len(), "").as_bytes())
            .unwrap();
        s.write_all(&aborted[..aborted.len() / 2]).unwrap();
        drop(s);
    }
    // Blobs read slowly.
    for _ in 0..4 {
        let stop = Arc::clone(&stop);
        let path = format!("/v2/served/blobs/{big_digest}");
        slow.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));

    // Meanwhile, everyone else is served promptly.
    let t = Instant::now();
    for i in 0..5 {
        let repo = format!("busy/app{i}");
        let m = push_image(&base, &repo, "v1", &format!("busy {i}"));
        let resp = client()
            .get(format!("{base}/v2/{repo}/manifests/v1"))
            .header("accept", mt::OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().unwrap()[..], &m[..]);
    }
    let got = client()
        .get(format!("{base}/v2/served/blobs/{big_digest}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(Digest::sha256_of(&got), big_digest);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "serving others took {took:?} while slow clients were connected"
    );

    stop.store(true, Ordering::Relaxed);
    for h in slow {
        h.join().unwrap();
    }
    // Nothing half-written is visible: aborted uploads left no blob, abandoned chunks left
    // their sessions empty, and no temp file stays behind.
    assert_eq!(blob_status(&base, "slow/aborted", &aborted_digest), 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    for loc in &sessions {
        loop {
            let n = held(&base, loc);
            if n == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{loc} kept {n} bytes of an abandoned chunk"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let left = temps_left(dir.path());
    assert!(left.is_empty(), "temp files left: {left:?}");
    // and the server still answers
    assert_eq!(
        client().get(format!("{base}/v2/")).send().unwrap().status(),
        200
    );
}
