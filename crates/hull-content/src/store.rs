//! The store: committed blobs and the ingests that lead to them.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hull_oci::{Algorithm, Digest};

use crate::lock::{self, Wait};
use crate::writer::{self, Writer};
use crate::{COPY_BUFFER, ContentError};

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

type Strays = Vec<PathBuf>;

/// A content-addressed blob store rooted at one directory. Cheap to clone; clones share the
/// same directory. Several processes may open the same directory at once: ingests are guarded
/// by advisory locks and commits are atomic renames.
#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
}

/// An ingest in progress (or abandoned), as listed by [`ContentStore::ingests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestInfo {
    pub ingest_ref: String,
    /// Bytes written so far.
    pub offset: u64,
    /// Expected digest and size, when the writer was opened with them.
    pub expected: Option<(Digest, u64)>,
    /// Last time a writer opened, synced or wrote to the ingest.
    pub updated_at: SystemTime,
    /// Whether a writer (in any process) holds the ingest now.
    pub locked: bool,
}

impl std::fmt::Debug for ContentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl ContentStore {
    /// Opens the store at `dir`, creating its directories if needed.
    pub fn open(dir: &Path) -> Result<ContentStore, ContentError> {
        let blobs = dir.join("blobs");
        let ingest = dir.join("ingest");
        for alg in ALGORITHMS {
            let d = blobs.join(alg.as_str());
            std::fs::create_dir_all(&d)
                .map_err(ContentError::io("creating content store directory", &d))?;
        }
        std::fs::create_dir_all(&ingest).map_err(ContentError::io(
            "creating content store directory",
            &ingest,
        ))?;
        Ok(ContentStore {
            inner: Arc::new(Inner {
                root: dir.to_path_buf(),
                blobs,
                ingest,
            }),
        })
    }

    /// The directory the store was opened at.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Starts or resumes the ingest named `ingest_ref`.
    ///
    /// Takes an exclusive advisory lock on the ingest, held until the writer is committed or
    /// dropped; if another writer (in this or another process) holds it, fails with
    /// [`ContentError::Locked`]. On resume the bytes already present are re-hashed, so
    /// [`Writer::offset`] tells where to continue. If `expected` differs from what the ingest
    /// was started with, or the ingest already holds more than the expected size, the ingest
    /// starts over from zero. The expected digest's algorithm picks the hasher (sha256 when
    /// none is given).
    pub fn writer(
        &self,
        ingest_ref: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Writer, ContentError> {
        Writer::open(self.clone(), ingest_ref, expected, Wait::No)
    }

    /// Like [`ContentStore::writer`], but waits for another writer of the same ingest to finish
    /// instead of failing.
    pub fn writer_blocking(
        &self,
        ingest_ref: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Writer, ContentError> {
        Writer::open(self.clone(), ingest_ref, expected, Wait::Yes)
    }

    /// Whether the blob `d` is committed.
    pub fn exists(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Size of the committed blob `d`, or `None` if absent.
    pub fn size(&self, d: &Digest) -> Result<Option<u64>, ContentError> {
        let path = self.blob_path(d);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ContentError::io("inspecting blob", &path)(e)),
        }
    }

    /// Opens the committed blob `d` for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        let path = self.blob_path(d);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound { digest: d.clone() }
            } else {
                ContentError::io("opening blob", &path)(e)
            }
        })
    }

    /// Where the blob `d` lives (whether or not it is present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.inner.blobs.join(d.algorithm().as_str()).join(d.hex())
    }

    /// Reads a small blob (a manifest or config) whole, refusing blobs larger than `max`, and
    /// verifies it against its digest.
    pub fn read_capped(&self, d: &Digest, max: u64) -> Result<Vec<u8>, ContentError> {
        let path = self.blob_path(d);
        let file = self.open_blob(d)?;
        let size = file
            .metadata()
            .map_err(ContentError::io("inspecting blob", &path))?
            .len();
        if size > max {
            return Err(ContentError::TooLarge {
                digest: d.clone(),
                size,
                max,
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(ContentError::io("reading blob", &path))?;
        let read = buf.len() as u64;
        if read > max {
            return Err(ContentError::TooLarge {
                digest: d.clone(),
                size: read,
                max,
            });
        }
        let mut hasher = d.digester();
        hasher.update(&buf);
        let actual = hasher.finish();
        if &actual != d {
            return Err(ContentError::Corrupt {
                digest: d.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// Stores small content (a manifest or config) in one go and returns its sha256 digest.
    /// Idempotent: storing present content does nothing.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest, ContentError> {
        let digest = Digest::sha256_of(data);
        if self.exists(&digest) {
            return Ok(digest);
        }
        let size = data.len() as u64;
        let mut w = self.writer_blocking(&format!("put-{digest}"), Some((&digest, size)))?;
        if w.offset() != 0 {
            w.truncate()?;
        }
        if let Err(e) = w.append_all(data) {
            w.discard();
            return Err(e);
        }
        w.commit(&digest, Some(size))
    }

    /// Streams `r` into the store under the ingest `ingest_ref` and commits it, verified
    /// against `expected` when given. Whatever an earlier attempt left in the ingest is
    /// discarded, since `r` supplies the content from its start. If `expected` names a blob
    /// already present, returns at once without reading `r`. On any error the ingest is
    /// removed.
    pub fn ingest_reader<R: Read>(
        &self,
        ingest_ref: &str,
        mut r: R,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64), ContentError> {
        if let Some((d, _)) = expected {
            if let Some(present) = self.size(d)? {
                return Ok((d.clone(), present));
            }
        }
        let mut w = self.writer(ingest_ref, expected)?;
        if w.offset() != 0 {
            w.truncate()?;
        }
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    w.discard();
                    return Err(ContentError::Source {
                        ingest_ref: ingest_ref.to_string(),
                        source,
                    });
                }
            };
            let chunk = buf.get(..n).unwrap_or(&buf);
            if let Err(e) = w.append_all(chunk) {
                w.discard();
                return Err(e);
            }
        }
        match expected {
            Some((d, size)) => w.commit(d, Some(size)).map(|d| (d, size)),
            None => w.commit_computed(),
        }
    }

    /// Re-hashes the committed blob `d`; [`ContentError::Corrupt`] if it no longer matches.
    pub fn verify(&self, d: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(d);
        let mut file = self.open_blob(d)?;
        let (actual, _) = writer::hash_stream(&mut file, d.algorithm())
            .map_err(ContentError::io("reading blob", &path))?;
        if &actual != d {
            return Err(ContentError::Corrupt {
                digest: d.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Deletes the blob `d`; `false` if it was not present. The caller decides what is safe to
    /// delete (garbage collection lives in `hull-metadata`).
    pub fn delete(&self, d: &Digest) -> Result<bool, ContentError> {
        let path = self.blob_path(d);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ContentError::io("deleting blob", &path)(e)),
        }
    }

    /// Every committed blob with its size, sorted by digest. Files in `blobs/` not named by a
    /// valid digest are skipped; [`ContentStore::list_strays`] reports them.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, ContentError> {
        Ok(self.scan()?.0)
    }

    /// Entries under `blobs/` that are not blobs: names that are not valid digests of their
    /// directory's algorithm, non-files, and unknown algorithm directories. Sorted.
    pub fn list_strays(&self) -> Result<Vec<PathBuf>, ContentError> {
        Ok(self.scan()?.1)
    }

    /// Blobs with their sizes, and stray paths.
    fn scan(&self) -> Result<(Vec<(Digest, u64)>, Strays), ContentError> {
        let mut blobs = Vec::new();
        let mut strays = Vec::new();
        for entry in read_dir(&self.inner.blobs)? {
            let path = entry.path();
            let name = entry.file_name();
            let is_dir = entry
                .file_type()
                .map_err(ContentError::io("inspecting", &path))?
                .is_dir();
            let alg = ALGORITHMS
                .into_iter()
                .find(|a| name.to_str() == Some(a.as_str()));
            let Some(alg) = alg.filter(|_| is_dir) else {
                strays.push(path);
                continue;
            };
            for blob in read_dir(&path)? {
                let bpath = blob.path();
                let digest = blob
                    .file_name()
                    .to_str()
                    .and_then(|n| format!("{alg}:{n}").parse::<Digest>().ok());
                let meta = match std::fs::symlink_metadata(&bpath) {
                    Ok(m) => m,
                    // Deleted while we listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ContentError::io("inspecting blob", &bpath)(e)),
                };
                match digest {
                    Some(d) if meta.is_file() => blobs.push((d, meta.len())),
                    _ => strays.push(bpath),
                }
            }
        }
        blobs.sort();
        strays.sort();
        Ok((blobs, strays))
    }

    /// Ingests present in the store, sorted by ref.
    pub fn ingests(&self) -> Result<Vec<IngestInfo>, ContentError> {
        let mut out = Vec::new();
        for entry in read_dir(&self.inner.ingest)? {
            let dir = entry.path();
            if !dir.is_dir() || is_trash(&entry) {
                continue;
            }
            // An ingest without a ref was interrupted before its first byte (or is being
            // removed); prune_ingests collects it.
            let Some(ingest_ref) = writer::read_small(&dir.join(writer::REF_FILE))? else {
                continue;
            };
            let offset = match std::fs::metadata(dir.join(writer::DATA_FILE)) {
                Ok(m) => m.len(),
                Err(_) => 0,
            };
            out.push(IngestInfo {
                ingest_ref,
                offset,
                expected: writer::read_expected(&dir)?,
                updated_at: writer::last_update(&dir),
                locked: lock::is_locked(&dir)?,
            });
        }
        out.sort_by(|a, b| a.ingest_ref.cmp(&b.ingest_ref));
        Ok(out)
    }

    /// Removes the ingest `ingest_ref` (nothing if it does not exist); fails with
    /// [`ContentError::Locked`] while a writer holds it.
    pub fn abort(&self, ingest_ref: &str) -> Result<(), ContentError> {
        let dir = self.ingest_dir(ingest_ref);
        if let Some(_lock) = lock::lock_ingest(&dir, ingest_ref, false, Wait::No)? {
            writer::remove_ingest_dir(&dir)?;
        }
        Ok(())
    }

    /// Removes ingests not updated for `older_than` and not held by a writer (the garbage
    /// collector's grace period for downloads in progress). Returns how many were removed.
    pub fn prune_ingests(&self, older_than: Duration) -> Result<u64, ContentError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in read_dir(&self.inner.ingest)? {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            if is_trash(&entry) {
                // Already unlinked from its ingest ref, so no writer can be using it.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let _lock = match lock::lock_ingest(&dir, &name, false, Wait::No) {
                Ok(Some(l)) => l,
                Ok(None) | Err(ContentError::Locked { .. }) => continue,
                Err(e) => return Err(e),
            };
            let age = now
                .duration_since(writer::last_update(&dir))
                .unwrap_or(Duration::ZERO);
            if age >= older_than {
                writer::remove_ingest_dir(&dir)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub(crate) fn ingest_dir(&self, ingest_ref: &str) -> PathBuf {
        self.inner
            .ingest
            .join(Digest::sha256_of(ingest_ref.as_bytes()).hex())
    }

    pub(crate) fn ingest_root(&self) -> &Path {
        &self.inner.ingest
    }
}

/// Whether an entry of `ingest/` is an ingest renamed aside for removal.
fn is_trash(entry: &std::fs::DirEntry) -> bool {
    entry
        .file_name()
        .to_str()
        .is_some_and(|n| n.starts_with(writer::TRASH_PREFIX))
}

/// The entries of `dir`, skipping ones that vanish while listed.
fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ContentError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(ContentError::io("listing", dir))? {
        match entry {
            Ok(e) => out.push(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContentError::io("listing", dir)(e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::io::{Cursor, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Barrier, mpsc};

    use hull_oci::Digester;

    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("content")).unwrap();
        (dir, store)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
    }

    fn ingest_dirs(s: &ContentStore) -> usize {
        std::fs::read_dir(s.ingest_root()).unwrap().count()
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<ContentStore>();
        send_sync::<Writer>();
    }

    #[test]
    fn write_commit_read() {
        let (_t, s) = store();
        let bytes = data(3 << 20);
        let len = bytes.len() as u64;
        let d = Digest::sha256_of(&bytes);
        let mut w = s.writer("layer", Some((&d, len))).unwrap();
        w.write_all(&bytes).unwrap();
        assert_eq!(w.offset(), len);
        assert_eq!(w.commit(&d, Some(len)).unwrap(), d);

        assert!(s.exists(&d));
        assert_eq!(s.size(&d).unwrap(), Some(len));
        let mut back = Vec::new();
        s.open_blob(&d).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
        let path = s.blob_path(&d);
        assert_eq!(path, s.root().join("blobs/sha256").join(d.hex()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        s.verify(&d).unwrap();
        assert_eq!(s.list().unwrap(), vec![(d, len)]);
        assert!(s.ingests().unwrap().is_empty());
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn wrong_digest_leaves_no_blob_and_no_ingest() {
        let (_t, s) = store();
        let bytes = data(1000);
        let real = Digest::sha256_of(&bytes);
        let claimed = Digest::sha256_of(b"something else");
        let mut w = s.writer("pull", None).unwrap();
        w.write_all(&bytes).unwrap();
        match w.commit(&claimed, None) {
            Err(ContentError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, real);
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(!s.exists(&claimed));
        assert!(!s.exists(&real));
        assert!(s.list().unwrap().is_empty());
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn wrong_size_leaves_no_blob_and_no_ingest() {
        let (_t, s) = store();
        let bytes = data(1000);
        let d = Digest::sha256_of(&bytes);
        let mut w = s.writer("pull", None).unwrap();
        w.write_all(&bytes).unwrap();
        let err = w.commit(&d, Some(1001)).unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::SizeMismatch {
                    expected: 1001,
                    actual: 1000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&d.to_string()), "{err}");
        assert!(!s.exists(&d));
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn resume_after_drop_continues_at_the_offset() {
        let (_t, s) = store();
        let bytes = data(2_500_000);
        let len = bytes.len() as u64;
        let d = Digest::sha256_of(&bytes);
        let (first, second) = bytes.split_at(1_234_567);
        let mut w = s.writer("resume", Some((&d, len))).unwrap();
        w.write_all(first).unwrap();
        drop(w);

        let info = s.ingests().unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].ingest_ref, "resume");
        assert_eq!(info[0].offset, first.len() as u64);
        assert_eq!(info[0].expected, Some((d.clone(), len)));
        assert!(!info[0].locked);

        let mut w = s.writer("resume", Some((&d, len))).unwrap();
        assert_eq!(w.offset(), first.len() as u64);
        let mut existing = Vec::new();
        w.existing_reader()
            .unwrap()
            .read_to_end(&mut existing)
            .unwrap();
        assert_eq!(existing, first);
        w.write_all(second).unwrap();
        assert_eq!(w.commit(&d, Some(len)).unwrap(), d);
        s.verify(&d).unwrap();
    }

    #[test]
    fn resume_without_expectation_then_commit_computed() {
        let (_t, s) = store();
        let bytes = data(100_000);
        let (first, second) = bytes.split_at(40_000);
        let mut w = s.writer("import", None).unwrap();
        w.write_all(first).unwrap();
        drop(w);
        let mut w = s.writer("import", None).unwrap();
        assert_eq!(w.offset(), 40_000);
        w.write_all(second).unwrap();
        let (d, size) = w.commit_computed().unwrap();
        assert_eq!(d, Digest::sha256_of(&bytes));
        assert_eq!(size, 100_000);
        assert!(s.exists(&d));
    }

    #[test]
    fn a_different_expectation_starts_the_ingest_over() {
        let (_t, s) = store();
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let mut w = s.writer("x", Some((&a, 100))).unwrap();
        w.write_all(&[7; 50]).unwrap();
        drop(w);
        let w = s.writer("x", Some((&b, 100))).unwrap();
        assert_eq!(w.offset(), 0);
    }

    #[test]
    fn an_ingest_longer_than_expected_starts_over() {
        let (_t, s) = store();
        let mut w = s.writer("x", None).unwrap();
        w.write_all(&[7; 50]).unwrap();
        drop(w);
        let d = Digest::sha256_of(b"abc");
        let w = s.writer("x", Some((&d, 3))).unwrap();
        assert_eq!(w.offset(), 0);
    }

    #[test]
    fn truncate_discards_what_was_written() {
        let (_t, s) = store();
        let bytes = data(10_000);
        let d = Digest::sha256_of(&bytes);
        let mut w = s.writer("t", None).unwrap();
        w.write_all(b"garbage from a registry that ignored Range")
            .unwrap();
        w.truncate().unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(&bytes).unwrap();
        assert_eq!(w.commit(&d, Some(10_000)).unwrap(), d);
        let mut back = Vec::new();
        s.open_blob(&d).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn writing_past_the_expected_size_fails() {
        let (_t, s) = store();
        let d = Digest::sha256_of(b"abcd");
        let mut w = s.writer("endless", Some((&d, 4))).unwrap();
        w.write_all(b"abc").unwrap();
        let err = w.write_all(b"de").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("endless"), "{err}");
        assert_eq!(w.offset(), 3);
    }

    #[test]
    fn put_bytes_is_idempotent() {
        let (_t, s) = store();
        let d1 = s.put_bytes(b"{\"schemaVersion\":2}").unwrap();
        assert_eq!(d1, Digest::sha256_of(b"{\"schemaVersion\":2}"));
        let ino =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(s.blob_path(&d1)).unwrap());
        let d2 = s.put_bytes(b"{\"schemaVersion\":2}").unwrap();
        assert_eq!(d1, d2);
        let ino2 =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(s.blob_path(&d1)).unwrap());
        assert_eq!(ino, ino2, "the present blob was rewritten");
        assert_eq!(s.list().unwrap(), vec![(d1, 19)]);
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn verify_detects_a_corrupted_blob() {
        let (_t, s) = store();
        let d = s.put_bytes(b"config bytes").unwrap();
        s.verify(&d).unwrap();
        let path = s.blob_path(&d);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"config bytez").unwrap();
        match s.verify(&d) {
            Err(ContentError::Corrupt { digest, actual }) => {
                assert_eq!(digest, d);
                assert_eq!(actual, Digest::sha256_of(b"config bytez"));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(matches!(
            s.read_capped(&d, 1024),
            Err(ContentError::Corrupt { .. })
        ));
    }

    #[test]
    fn read_capped_refuses_large_blobs() {
        let (_t, s) = store();
        let d = s.put_bytes(&[1; 100]).unwrap();
        assert_eq!(s.read_capped(&d, 100).unwrap(), vec![1; 100]);
        let err = s.read_capped(&d, 99).unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::TooLarge {
                    size: 100,
                    max: 99,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn missing_blobs_are_reported_by_digest() {
        let (_t, s) = store();
        let d = Digest::sha256_of(b"nothing");
        assert!(!s.exists(&d));
        assert_eq!(s.size(&d).unwrap(), None);
        let err = s.open_blob(&d).unwrap_err();
        assert!(matches!(err, ContentError::NotFound { .. }));
        assert!(err.to_string().contains(&d.to_string()), "{err}");
        assert!(s.verify(&d).is_err());
        assert!(!s.delete(&d).unwrap());
    }

    #[test]
    fn delete_removes_the_blob() {
        let (_t, s) = store();
        let d = s.put_bytes(b"x").unwrap();
        assert!(s.delete(&d).unwrap());
        assert!(!s.exists(&d));
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn list_skips_and_list_strays_reports_foreign_files() {
        let (_t, s) = store();
        let a = s.put_bytes(b"a").unwrap();
        let b = s.put_bytes(b"b").unwrap();
        let blobs = s.root().join("blobs");
        let strays = vec![
            blobs.join("md5"),
            blobs.join("sha256").join("not-a-digest"),
            blobs.join("sha256").join(a.hex().to_uppercase()),
            blobs.join("sha512").join(a.hex()),
        ];
        std::fs::create_dir(&strays[0]).unwrap();
        for p in &strays[1..] {
            std::fs::write(p, b"?").unwrap();
        }
        let mut expected = vec![(a, 1), (b, 1)];
        expected.sort();
        assert_eq!(s.list().unwrap(), expected);
        let mut want = strays.clone();
        want.sort();
        assert_eq!(s.list_strays().unwrap(), want);
    }

    #[test]
    fn two_threads_cannot_write_one_ingest() {
        let (_t, s) = store();
        let barrier = Barrier::new(2);
        let results: Vec<Result<Writer, ContentError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let w = s.writer("shared", None);
                        // Hold the writer until both threads have tried.
                        barrier.wait();
                        w
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let locked: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(ok, 1);
        assert_eq!(locked.len(), 1);
        assert!(
            matches!(locked[0], ContentError::Locked { ingest_ref } if ingest_ref == "shared"),
            "{:?}",
            locked[0]
        );
    }

    #[test]
    fn writer_blocking_waits_for_the_holder_to_commit() {
        let (_t, s) = store();
        let bytes = data(5000);
        let d = Digest::sha256_of(&bytes);
        let mut first = s.writer("wait", Some((&d, 5000))).unwrap();
        first.write_all(&bytes).unwrap();
        let (tx, rx) = mpsc::channel();
        let s2 = s.clone();
        let d2 = d.clone();
        let waiter = std::thread::spawn(move || {
            let w = s2.writer_blocking("wait", Some((&d2, 5000))).unwrap();
            tx.send(w.offset()).unwrap();
            // The blob appeared meanwhile: committing an empty ingest succeeds.
            w.commit(&d2, Some(5000)).unwrap()
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(rx.try_recv().is_err(), "the second writer did not wait");
        first.commit(&d, Some(5000)).unwrap();
        // The first ingest was removed on commit; the waiter got a fresh one.
        assert_eq!(rx.recv().unwrap(), 0);
        assert_eq!(waiter.join().unwrap(), d);
        assert_eq!(ingest_dirs(&s), 0);
    }

    fn backdate(s: &ContentStore, ingest_ref: &str, by: Duration) {
        let dir = s.ingest_dir(ingest_ref);
        let then = SystemTime::now() - by;
        let nanos = then
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::fs::write(dir.join("updatedat"), format!("{nanos}\n")).unwrap();
        let data = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("data"))
            .unwrap();
        data.set_modified(then).unwrap();
    }

    #[test]
    fn prune_ingests_respects_age_and_locks() {
        let (_t, s) = store();
        let mut old = s.writer("old", None).unwrap();
        old.write_all(b"partial").unwrap();
        drop(old);
        let mut held = s.writer("held", None).unwrap();
        held.write_all(b"in progress").unwrap();
        backdate(&s, "held", Duration::from_secs(7200));

        // Nothing is an hour old yet.
        assert_eq!(s.prune_ingests(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(s.ingests().unwrap().len(), 2);

        backdate(&s, "old", Duration::from_secs(7200));
        let before = s.ingests().unwrap();
        let old_info = before.iter().find(|i| i.ingest_ref == "old").unwrap();
        assert!(old_info.updated_at < SystemTime::now() - Duration::from_secs(3600));
        assert!(!old_info.locked);
        assert!(
            before
                .iter()
                .find(|i| i.ingest_ref == "held")
                .unwrap()
                .locked
        );

        // "held" is as old but locked.
        assert_eq!(s.prune_ingests(Duration::from_secs(3600)).unwrap(), 1);
        let after = s.ingests().unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].ingest_ref, "held");
        assert!(after[0].locked);
        assert_eq!(s.prune_ingests(Duration::ZERO).unwrap(), 0);

        // The survivor is still usable.
        held.write_all(b"!").unwrap();
        let (d, _) = held.commit_computed().unwrap();
        assert_eq!(d, Digest::sha256_of(b"in progress!"));
    }

    #[test]
    fn leftovers_of_removed_ingests_are_swept() {
        let (_t, s) = store();
        let trash = s.ingest_root().join(".trash-abc-1-0");
        std::fs::create_dir(&trash).unwrap();
        std::fs::write(trash.join("ref"), "gone").unwrap();
        assert!(s.ingests().unwrap().is_empty());
        assert_eq!(s.prune_ingests(Duration::from_secs(3600)).unwrap(), 0);
        assert!(!trash.exists());
    }

    #[test]
    fn many_threads_taking_turns_on_one_ingest_all_commit() {
        let (_t, s) = store();
        let bytes = data(50_000);
        let d = Digest::sha256_of(&bytes);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        let mut w = s.writer_blocking("hot", Some((&d, 50_000))).unwrap();
                        assert_eq!(w.offset(), 0, "a committed ingest was left behind");
                        w.write_all(&bytes).unwrap();
                        assert_eq!(w.commit(&d, Some(50_000)).unwrap(), d);
                        s.delete(&d).unwrap();
                    }
                });
            }
        });
        assert!(s.ingests().unwrap().is_empty());
        s.prune_ingests(Duration::ZERO).unwrap();
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn abort_removes_unlocked_ingests_only() {
        let (_t, s) = store();
        let mut w = s.writer("a", None).unwrap();
        w.write_all(b"x").unwrap();
        let err = s.abort("a").unwrap_err();
        assert!(matches!(err, ContentError::Locked { .. }), "{err:?}");
        drop(w);
        s.abort("a").unwrap();
        assert!(s.ingests().unwrap().is_empty());
        assert_eq!(ingest_dirs(&s), 0);
        s.abort("never existed").unwrap();
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn commit_succeeds_when_the_blob_exists() {
        let (_t, s) = store();
        let d = s.put_bytes(b"already here").unwrap();
        let w = s.writer("again", None).unwrap();
        assert_eq!(w.commit(&d, Some(12)).unwrap(), d);
        assert_eq!(ingest_dirs(&s), 0);
        assert_eq!(s.list().unwrap(), vec![(d, 12)]);
    }

    fn sha512_of(bytes: &[u8]) -> Digest {
        let mut h = Digester::new(Algorithm::Sha512);
        h.update(bytes);
        h.finish()
    }

    #[test]
    fn sha512_blobs() {
        let (_t, s) = store();
        let bytes = data(70_000);
        let d = sha512_of(&bytes);
        let mut w = s.writer("512", Some((&d, 70_000))).unwrap();
        w.write_all(&bytes).unwrap();
        assert_eq!(w.commit(&d, Some(70_000)).unwrap(), d);
        assert_eq!(s.blob_path(&d), s.root().join("blobs/sha512").join(d.hex()));
        s.verify(&d).unwrap();

        // Opened without knowing the algorithm, committed as sha512.
        let other = data(1000);
        let d2 = sha512_of(&other);
        let mut w = s.writer("512b", None).unwrap();
        w.write_all(&other).unwrap();
        assert_eq!(w.commit(&d2, None).unwrap(), d2);

        let mut want = vec![(d, 70_000), (d2, 1000)];
        want.sort();
        assert_eq!(s.list().unwrap(), want);
    }

    #[test]
    fn commit_computed_checks_the_opening_expectation() {
        let (_t, s) = store();
        let d = Digest::sha256_of(b"right");
        let mut w = s.writer("c", Some((&d, 5))).unwrap();
        w.write_all(b"wrong").unwrap();
        assert!(matches!(
            w.commit_computed(),
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn ingest_reader_streams_and_verifies() {
        let (_t, s) = store();
        let bytes = data(3_000_000);
        let d = Digest::sha256_of(&bytes);
        let got = s
            .ingest_reader("load-1", Cursor::new(&bytes), None)
            .unwrap();
        assert_eq!(got, (d.clone(), 3_000_000));
        s.verify(&d).unwrap();

        // Present already: the reader is not consumed.
        let mut cur = Cursor::new(&bytes);
        let got = s
            .ingest_reader("load-2", &mut cur, Some((&d, 3_000_000)))
            .unwrap();
        assert_eq!(got, (d, 3_000_000));
        assert_eq!(cur.position(), 0);

        // A stale partial ingest under the same ref is replaced, not appended to.
        let mut w = s.writer("load-3", None).unwrap();
        w.write_all(b"stale").unwrap();
        drop(w);
        let (d3, n) = s
            .ingest_reader("load-3", Cursor::new(b"fresh"), None)
            .unwrap();
        assert_eq!((d3, n), (Digest::sha256_of(b"fresh"), 5));

        let wrong = Digest::sha256_of(b"other");
        let err = s
            .ingest_reader("load-4", Cursor::new(b"abc"), Some((&wrong, 3)))
            .unwrap_err();
        assert!(
            matches!(err, ContentError::DigestMismatch { .. }),
            "{err:?}"
        );
        assert_eq!(ingest_dirs(&s), 0);
    }

    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("connection reset"))
        }
    }

    #[test]
    fn ingest_reader_source_errors_remove_the_ingest() {
        let (_t, s) = store();
        let err = s.ingest_reader("broken", FailingReader, None).unwrap_err();
        assert!(
            matches!(&err, ContentError::Source { ingest_ref, .. } if ingest_ref == "broken"),
            "{err:?}"
        );
        assert_eq!(ingest_dirs(&s), 0);
    }

    #[test]
    fn a_crash_after_making_the_data_read_only_is_recovered() {
        let (_t, s) = store();
        let mut w = s.writer("ro", None).unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        let data = s.ingest_dir("ro").join("data");
        std::fs::set_permissions(&data, Permissions::from_mode(0o444)).unwrap();
        let mut w = s.writer("ro", None).unwrap();
        assert_eq!(w.offset(), 4);
        w.write_all(b" done").unwrap();
        let (d, _) = w.commit_computed().unwrap();
        assert_eq!(d, Digest::sha256_of(b"half done"));
    }
}
