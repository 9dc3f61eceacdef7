//! Cross-process behaviour of the content store: crash safety under `SIGKILL` and ingest locks
//! between processes.
//!
//! Child processes are this test binary run again with `HULL_CONTENT_CHILD` set, which turns the
//! `child_process` test into the child's body.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns are test code too"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hull_content::{ContentError, ContentStore};
use hull_oci::Digest;
use rand::Rng;

const CHILD_ENV: &str = "HULL_CONTENT_CHILD";
const DIR_ENV: &str = "HULL_CONTENT_DIR";
const DIGEST_ENV: &str = "HULL_CONTENT_DIGEST";

/// Size of the blob the crash-loop child writes over and over.
const BLOB_SIZE: u64 = 4 << 20;
const CHUNK: u64 = 64 << 10;

/// Deterministic content: 64 KiB chunks of xorshift output seeded by the chunk index, so any
/// range can be produced without the bytes before it.
fn content(start: u64, end: u64) -> Vec<u8> {
    let first = start / CHUNK;
    let mut out = Vec::with_capacity((end.div_ceil(CHUNK) - first) as usize * CHUNK as usize);
    let mut chunk = first;
    while chunk * CHUNK < end {
        let mut x = chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..CHUNK / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        chunk += 1;
    }
    let skip = (start - first * CHUNK) as usize;
    out.truncate((end - first * CHUNK) as usize);
    out.drain(..skip);
    out
}

fn spawn_child(mode: &str, dir: &Path, digest: Option<&Digest>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_process", "--nocapture", "--quiet"])
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(d) = digest {
        cmd.env(DIGEST_ENV, d.to_string());
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until it reports `word`.
fn wait_for(child: &mut Child, word: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(line) if line.as_deref().unwrap() == word => return,
            Some(_) => {}
            None => panic!("child exited before reporting {word:?}"),
        }
    }
}

/// The child's side: does nothing unless run as a child by one of the tests below.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = ContentStore::open(Path::new(&std::env::var(DIR_ENV).unwrap())).unwrap();
    match mode.as_str() {
        "hold" => {
            let mut w = store.writer("shared", None).unwrap();
            w.write_all(b"held bytes").unwrap();
            w.sync().unwrap();
            println!("held");
            std::io::stdout().flush().unwrap();
            // Keep the writer until the parent closes our stdin.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        "crash-loop" => {
            let digest: Digest = std::env::var(DIGEST_ENV).unwrap().parse().unwrap();
            loop {
                let mut w = store.writer("crash", Some((&digest, BLOB_SIZE))).unwrap();
                let mut pos = w.offset();
                while pos < BLOB_SIZE {
                    let end = (pos - pos % CHUNK + CHUNK).min(BLOB_SIZE);
                    w.write_all(&content(pos, end)).unwrap();
                    if end.is_multiple_of(1 << 20) {
                        w.sync().unwrap();
                    }
                    pos = end;
                }
                w.commit(&digest, Some(BLOB_SIZE)).unwrap();
                store.verify(&digest).unwrap();
                store.delete(&digest).unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn sigkill_never_leaves_a_partial_blob_and_ingests_resume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("content");
    let store = ContentStore::open(&root).unwrap();
    let full = content(0, BLOB_SIZE);
    let digest = Digest::sha256_of(&full);
    let mut rng = rand::rng();
    let mut partial_resumes = 0;
    let mut committed_at_kill = 0;

    for round in 0..20 {
        let mut child = spawn_child("crash-loop", &root, Some(&digest));
        std::thread::sleep(Duration::from_millis(rng.random_range(5..300)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child stopped by itself ({status})"
        );

        // No blob is partial: everything listed verifies, and nothing else is in blobs/.
        assert!(store.list_strays().unwrap().is_empty(), "round {round}");
        let blobs = store.list().unwrap();
        if !blobs.is_empty() {
            committed_at_kill += 1;
        }
        for (d, size) in blobs {
            assert_eq!(d, digest, "round {round}: unexpected blob");
            assert_eq!(size, BLOB_SIZE, "round {round}");
            store.verify(&d).unwrap();
        }

        // The dead child's lock is gone, and its bytes are a true prefix of the content.
        let mut w = store.writer("crash", Some((&digest, BLOB_SIZE))).unwrap();
        let offset = w.offset();
        assert!(offset <= BLOB_SIZE, "round {round}");
        let mut existing = Vec::new();
        w.existing_reader()
            .unwrap()
            .read_to_end(&mut existing)
            .unwrap();
        assert_eq!(existing.len() as u64, offset, "round {round}");
        assert!(
            existing[..] == full[..offset as usize],
            "round {round}: ingest bytes differ from what was written"
        );
        if offset > 0 {
            partial_resumes += 1;
        }
        w.write_all(&full[offset as usize..]).unwrap();
        assert_eq!(w.commit(&digest, Some(BLOB_SIZE)).unwrap(), digest);
        store.verify(&digest).unwrap();
        assert!(store.ingests().unwrap().is_empty(), "round {round}");
        // Start the next child from nothing.
        store.delete(&digest).unwrap();
    }
    eprintln!(
        "of 20 kills, {partial_resumes} left a partial ingest and {committed_at_kill} a committed blob"
    );
    assert!(
        partial_resumes >= 5,
        "only {partial_resumes} of 20 kills interrupted a write; the test is not exercising resumes"
    );
}

#[test]
fn another_process_holding_an_ingest_locks_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("content");
    let store = ContentStore::open(&root).unwrap();
    let mut child = spawn_child("hold", &root, None);
    wait_for(&mut child, "held");

    let err = store.writer("shared", None).unwrap_err();
    assert!(
        matches!(&err, ContentError::Locked { ingest_ref } if ingest_ref == "shared"),
        "{err:?}"
    );
    assert!(matches!(
        store.abort("shared"),
        Err(ContentError::Locked { .. })
    ));
    assert_eq!(store.prune_ingests(Duration::ZERO).unwrap(), 0);
    let info = store.ingests().unwrap();
    assert_eq!(info.len(), 1);
    assert!(info[0].locked);
    assert_eq!(info[0].offset, 10);

    // Closing the child's stdin lets it drop the writer and exit.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let w = store.writer("shared", None).unwrap();
    assert_eq!(w.offset(), 10);
    assert!(store.ingests().unwrap()[0].locked);
}

#[test]
fn a_killed_writer_releases_its_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("content");
    let store = ContentStore::open(&root).unwrap();
    let mut child = spawn_child("hold", &root, None);
    wait_for(&mut child, "held");
    assert!(store.writer("shared", None).is_err());
    child.kill().unwrap();
    child.wait().unwrap();

    let mut w = store.writer("shared", None).unwrap();
    assert_eq!(w.offset(), 10);
    w.write_all(b" and more").unwrap();
    let (d, size) = w.commit_computed().unwrap();
    assert_eq!(d, Digest::sha256_of(b"held bytes and more"));
    assert_eq!(size, 19);
}
