//! Writers: one resumable ingest each, committed atomically into `blobs/`.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hull_oci::{Algorithm, Digest, Digester};

use crate::lock::{self, Wait};
use crate::{COPY_BUFFER, ContentError, ContentStore};

pub(crate) const DATA_FILE: &str = "data";
pub(crate) const REF_FILE: &str = "ref";
const EXPECTED_FILE: &str = "expected";
const UPDATED_FILE: &str = "updatedat";

/// Committed blobs are read-only, so nothing rewrites a blob in place by accident.
const BLOB_MODE: u32 = 0o444;
const INGEST_MODE: u32 = 0o644;

/// An open ingest. Bytes written are appended to the ingest's `data` file and hashed on the
/// way. Dropping the writer without committing keeps the ingest for a later resume and
/// releases its lock.
pub struct Writer {
    store: ContentStore,
    ingest_ref: String,
    dir: PathBuf,
    data_path: PathBuf,
    data: File,
    hasher: Digester,
    alg: Algorithm,
    offset: u64,
    expected: Option<(Digest, u64)>,
    dir_synced: bool,
    // Held for the writer's lifetime; closing it releases the flock. Declared last so the
    // data file is closed first.
    _lock: File,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("ingest_ref", &self.ingest_ref)
            .field("offset", &self.offset)
            .field("expected", &self.expected)
            .finish()
    }
}

impl Writer {
    pub(crate) fn open(
        store: ContentStore,
        ingest_ref: &str,
        expected: Option<(&Digest, u64)>,
        wait: Wait,
    ) -> Result<Writer, ContentError> {
        let dir = store.ingest_dir(ingest_ref);
        let lock = lock::lock_ingest(&dir, ingest_ref, true, wait)?.ok_or_else(|| {
            ContentError::Locked {
                ingest_ref: ingest_ref.to_string(),
            }
        })?;
        let ref_path = dir.join(REF_FILE);
        if read_small(&ref_path)?.as_deref() != Some(ingest_ref) {
            write_small(&ref_path, ingest_ref)?;
        }
        let stored = read_expected(&dir)?;
        let expected = expected.map(|(d, s)| (d.clone(), s));
        let mut restart = false;
        if let Some(exp) = &expected {
            if stored.as_ref() != Some(exp) {
                // Started for other content (or before the expectation was known): the bytes
                // there cannot be trusted to belong to this digest.
                restart = stored.is_some();
                write_small(&dir.join(EXPECTED_FILE), &format!("{} {}\n", exp.0, exp.1))?;
            }
        }
        let expected = expected.or(stored);

        let data_path = dir.join(DATA_FILE);
        // A crash between making the data read-only and renaming it into blobs/ leaves it
        // mode 0444; make it writable again before opening.
        match std::fs::set_permissions(&data_path, Permissions::from_mode(INGEST_MODE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContentError::io("opening ingest data", &data_path)(e)),
        }
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(ContentError::io("opening ingest data", &data_path))?;
        let len = data
            .metadata()
            .map_err(ContentError::io("inspecting ingest data", &data_path))?
            .len();
        if restart || expected.as_ref().is_some_and(|(_, size)| len > *size) {
            data.set_len(0)
                .map_err(ContentError::io("truncating ingest data", &data_path))?;
        }
        let alg = expected
            .as_ref()
            .map_or(Algorithm::Sha256, |(d, _)| d.algorithm());
        data.seek(SeekFrom::Start(0))
            .map_err(ContentError::io("reading ingest data", &data_path))?;
        let (hasher, offset) = hash_prefix(&mut data, alg)
            .map_err(ContentError::io("reading ingest data", &data_path))?;
        data.seek(SeekFrom::Start(offset))
            .map_err(ContentError::io("reading ingest data", &data_path))?;
        touch(&dir)?;
        Ok(Writer {
            store,
            ingest_ref: ingest_ref.to_string(),
            dir,
            data_path,
            data,
            hasher,
            alg,
            offset,
            expected,
            dir_synced: false,
            _lock: lock,
        })
    }

    /// The ingest ref this writer holds.
    pub fn ingest_ref(&self) -> &str {
        &self.ingest_ref
    }

    /// Bytes in the ingest: those present when it was resumed plus those written since.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// A reader over the bytes already in the ingest, from its start (to replay a resumed
    /// download into a decompressor).
    pub fn existing_reader(&self) -> Result<File, ContentError> {
        File::open(&self.data_path)
            .map_err(ContentError::io("opening ingest data", &self.data_path))
    }

    /// Discards everything written so far (e.g. the registry ignored a Range request).
    pub fn truncate(&mut self) -> Result<(), ContentError> {
        self.data
            .set_len(0)
            .map_err(ContentError::io("truncating ingest data", &self.data_path))?;
        self.data
            .seek(SeekFrom::Start(0))
            .map_err(ContentError::io("truncating ingest data", &self.data_path))?;
        self.hasher = Digester::new(self.alg);
        self.offset = 0;
        Ok(())
    }

    /// Makes the bytes written so far durable, so a resume after a power loss finds them. Call
    /// it now and then during long downloads; skipping it only costs resumability.
    pub fn sync(&mut self) -> Result<(), ContentError> {
        self.data
            .sync_data()
            .map_err(ContentError::io("syncing ingest data", &self.data_path))?;
        if !self.dir_synced {
            sync_dir(&self.dir)?;
            sync_dir(self.store.ingest_root())?;
            self.dir_synced = true;
        }
        touch(&self.dir)
    }

    /// Verifies the content against `expected` (and `expected_size` when given) and commits it
    /// atomically as a blob. If the blob is already present, succeeds and drops the ingest.
    ///
    /// On [`ContentError::DigestMismatch`], [`ContentError::SizeMismatch`] or any other error
    /// the ingest is removed: nothing half-written stays visible, and the next attempt starts
    /// from zero.
    pub fn commit(
        mut self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        if self.store.exists(expected) {
            self.discard();
            return Ok(expected.clone());
        }
        if let Some(size) = expected_size {
            if size != self.offset {
                let actual = self.offset;
                self.discard();
                return Err(ContentError::SizeMismatch {
                    digest: expected.clone(),
                    expected: size,
                    actual,
                });
            }
        }
        let actual = if expected.algorithm() == self.alg {
            self.hasher.clone().finish()
        } else {
            // The writer was opened without knowing the algorithm: hash again with the right one.
            let rehashed = self
                .data
                .seek(SeekFrom::Start(0))
                .and_then(|_| hash_stream(&mut self.data, expected.algorithm()));
            match rehashed {
                Ok((d, _)) => d,
                Err(e) => {
                    let err = ContentError::io("reading ingest data", &self.data_path)(e);
                    self.discard();
                    return Err(err);
                }
            }
        };
        if &actual != expected {
            self.discard();
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.publish(expected)?;
        Ok(actual)
    }

    /// Commits under whatever digest the content has, for imports where it is not known in
    /// advance (sha256, unless the writer was opened with an expected digest, which is then
    /// verified). Returns the digest and size.
    pub fn commit_computed(self) -> Result<(Digest, u64), ContentError> {
        let size = self.offset;
        match self.expected.clone() {
            Some((d, s)) => self.commit(&d, Some(s)).map(|d| (d, s)),
            None => {
                let digest = self.hasher.clone().finish();
                self.commit(&digest, Some(size)).map(|d| (d, size))
            }
        }
    }

    /// Appends all of `buf`, with typed errors (the `io::Write` impl wraps these).
    pub(crate) fn append_all(&mut self, mut buf: &[u8]) -> Result<(), ContentError> {
        while !buf.is_empty() {
            let n = self.append(buf)?;
            buf = buf.get(n..).unwrap_or_default();
        }
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> Result<usize, ContentError> {
        let len = buf.len() as u64;
        if let Some((_, size)) = &self.expected {
            if self.offset.checked_add(len).is_none_or(|end| end > *size) {
                return Err(ContentError::Overflow {
                    ingest_ref: self.ingest_ref.clone(),
                    expected: *size,
                });
            }
        }
        let n = loop {
            match self.data.write(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ContentError::io("writing ingest data", &self.data_path)(e)),
            }
        };
        if n == 0 && !buf.is_empty() {
            return Err(ContentError::io("writing ingest data", &self.data_path)(
                io::ErrorKind::WriteZero.into(),
            ));
        }
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        self.offset += n as u64;
        Ok(n)
    }

    /// Syncs the data, makes it read-only, renames it into `blobs/` and removes the ingest.
    fn publish(self, digest: &Digest) -> Result<(), ContentError> {
        let target = self.store.blob_path(digest);
        let result = self
            .data
            .sync_all()
            .and_then(|()| self.data.set_permissions(Permissions::from_mode(BLOB_MODE)))
            .map_err(ContentError::io("syncing ingest data", &self.data_path))
            .and_then(|()| {
                std::fs::rename(&self.data_path, &target)
                    .map_err(ContentError::io("committing blob", &target))
            });
        if let Err(e) = result {
            self.discard();
            return Err(e);
        }
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
        remove_ingest_dir(&self.dir)?;
        // Best effort: a lost ingest-dir removal only leaves an empty ingest for pruning.
        let _ = sync_dir(self.store.ingest_root());
        Ok(())
    }

    /// Removes the ingest while still holding its lock. Best effort: this runs on error paths
    /// where the first error is the one to report, and a leftover ingest is pruned later.
    pub fn discard(self) {
        let _ = remove_ingest_dir(&self.dir);
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf).map_err(|e| match e {
            ContentError::Io { ref source, .. } => io::Error::new(source.kind(), e),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        })
    }

    /// Data goes straight to the file; durability is [`Writer::sync`]'s job.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes everything `r` yields with `alg`; returns the digest and the byte count.
pub(crate) fn hash_stream(r: &mut impl Read, alg: Algorithm) -> io::Result<(Digest, u64)> {
    let (hasher, n) = hash_prefix(r, alg)?;
    Ok((hasher.finish(), n))
}

fn hash_prefix(r: &mut impl Read, alg: Algorithm) -> io::Result<(Digester, u64)> {
    let mut hasher = Digester::new(alg);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or(&buf));
        total += n as u64;
    }
    Ok((hasher, total))
}

/// Prefix of ingest directories being removed; see [`remove_ingest_dir`].
pub(crate) const TRASH_PREFIX: &str = ".trash-";

/// Removes an ingest directory; the caller holds its lock.
///
/// The directory is first renamed aside, atomically, so that a writer arriving meanwhile
/// creates a fresh ingest instead of dropping its `lock` file into a directory being emptied
/// (which would make the removal fail with `ENOTEMPTY`). Emptying the renamed directory is
/// best effort; [`crate::ContentStore::prune_ingests`] sweeps what is left.
pub(crate) fn remove_ingest_dir(dir: &Path) -> Result<(), ContentError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = dir.with_file_name(format!(
        "{TRASH_PREFIX}{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    match std::fs::rename(dir, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContentError::io("removing ingest", dir)(e)),
    }
    let _ = std::fs::remove_dir_all(&trash);
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ContentError::io("syncing directory", dir))
}

/// Reads a small metadata file of an ingest; `None` if absent.
pub(crate) fn read_small(path: &Path) -> Result<Option<String>, ContentError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ContentError::io("reading ingest metadata", path)(e)),
    }
}

/// Replaces a small metadata file atomically. Not synced: losing one only makes an ingest
/// start over or be pruned early, never commits wrong content (the digest check sees to that).
fn write_small(path: &Path, contents: &str) -> Result<(), ContentError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(ContentError::io("writing ingest metadata", &tmp))?;
    std::fs::rename(&tmp, path).map_err(ContentError::io("writing ingest metadata", path))
}

/// The expected digest and size recorded for the ingest at `dir`. A file that does not parse
/// (e.g. torn by a crash) counts as absent.
pub(crate) fn read_expected(dir: &Path) -> Result<Option<(Digest, u64)>, ContentError> {
    let Some(text) = read_small(&dir.join(EXPECTED_FILE))? else {
        return Ok(None);
    };
    let mut parts = text.split_whitespace();
    let parsed = parts
        .next()
        .and_then(|d| d.parse::<Digest>().ok())
        .zip(parts.next().and_then(|s| s.parse::<u64>().ok()));
    Ok(parsed)
}

/// Records now as the ingest's last update.
fn touch(dir: &Path) -> Result<(), ContentError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    write_small(&dir.join(UPDATED_FILE), &format!("{nanos}\n"))
}

/// The newer of the `updatedat` record and the data file's mtime (writes update the latter
/// without touching the former); the directory's mtime if neither exists.
pub(crate) fn last_update(dir: &Path) -> SystemTime {
    let recorded = std::fs::read_to_string(dir.join(UPDATED_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|n| UNIX_EPOCH + Duration::from_nanos(n));
    let written = std::fs::metadata(dir.join(DATA_FILE))
        .and_then(|m| m.modified())
        .ok();
    match recorded.max(written) {
        Some(t) => t,
        None => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH),
    }
}
