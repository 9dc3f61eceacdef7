//! The build context: the directory a build reads `COPY`/`ADD` sources from, filtered by
//! `.dockerignore`, described file by file and hashed, so that a step's cache key can name
//! exactly the content it reads.
//!
//! - The walk never follows symlinks; they are entries with their targets. Special files
//!   (sockets, FIFOs, devices) are left out, as BuildKit's context transfer leaves sockets out.
//! - A file's digest is the SHA-256 of its content. A [`HashCache`] remembers digests by
//!   (device, inode, size, mtime, ctime), so a second scan of an unchanged tree reads no file.
//! - [`Context::digest`] of a path covers what COPY's result depends on: relative paths, kinds,
//!   permission bits, symlink targets and content — not mtimes or owners (COPY sets `0:0`
//!   unless `--chown`), as BuildKit's content hash. Touching a file leaves the cache valid;
//!   changing its content or mode does not.
//! - Paths are resolved inside the context: `..` that climbs out of it is an error, and symlinks
//!   are followed as if the context were `/` (a link to `/etc` reads the context's `etc`), the
//!   way `openat2(RESOLVE_IN_ROOT)` resolves.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hull_dockerfile::ignore::Matcher;
use hull_oci::{Algorithm, Digest, Digester};
use thiserror::Error;

/// Symlinks followed while resolving one path, at most (Linux's limit).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, Error)]
pub enum ContextError {
    #[error("reading build context {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid .dockerignore: {0}")]
    Ignore(#[from] hull_dockerfile::ignore::IgnoreError),
    #[error("forbidden path outside the build context: {0}")]
    Outside(String),
    #[error("\"/{0}\": not found")]
    NotFound(String),
    #[error("too many levels of symbolic links resolving {0}")]
    Loop(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
}

/// One file, directory or symlink of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Content digest (files only).
    pub digest: Option<Digest>,
}

/// Digests of context files from earlier scans, keyed by relative path.
#[derive(Debug, Clone, Default)]
pub struct HashCache {
    entries: HashMap<String, (FileStamp, Digest)>,
    /// The file that holds exactly these entries (read by `load` or written by `save`, and
    /// no scan changed them since), which `save` then leaves alone.
    saved_at: Option<PathBuf>,
}

/// Caches are equal when they remember the same digests, wherever they were saved.
impl PartialEq for HashCache {
    fn eq(&self, other: &HashCache) -> bool {
        self.entries == other.entries
    }
}

impl Eq for HashCache {}

/// What tells that a file may have changed without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(md: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

impl HashCache {
    /// Reads a cache written by [`HashCache::save`]; a missing or unreadable file is an empty
    /// cache (it only saves work).
    pub fn load(path: &Path) -> HashCache {
        let Ok(text) = fs::read_to_string(path) else {
            return HashCache::default();
        };
        let mut entries = HashMap::new();
        let mut complete = true;
        for line in text.lines() {
            let mut f = line.splitn(7, ' ');
            let parsed = (|| {
                let stamp = FileStamp {
                    dev: f.next()?.parse().ok()?,
                    ino: f.next()?.parse().ok()?,
                    size: f.next()?.parse().ok()?,
                    mtime_ns: f.next()?.parse().ok()?,
                    ctime_ns: f.next()?.parse().ok()?,
                };
                let digest: Digest = f.next()?.parse().ok()?;
                let path = f.next()?.to_string();
                Some((path, (stamp, digest)))
            })();
            match parsed {
                Some((p, v)) => {
                    entries.insert(p, v);
                }
                None => complete = false,
            }
        }
        HashCache {
            entries,
            saved_at: complete.then(|| path.to_path_buf()),
        }
    }

    /// Writes the cache atomically (temp file, fsync, rename); a cache unchanged since it was
    /// loaded from or saved to `path` is not written again.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        if self.saved_at.as_deref() == Some(path) {
            return Ok(());
        }
        write_atomic(path, |w| {
            for (p, (s, d)) in &self.entries {
                if p.contains('\n') {
                    continue;
                }
                writeln!(
                    w,
                    "{} {} {} {} {} {d} {p}",
                    s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
                )?;
            }
            Ok(())
        })?;
        self.saved_at = Some(path.to_path_buf());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Writes a file durably: `fill` writes into a buffered temp file beside `path`, which is then
/// fsynced and renamed over `path` (the build's small state files: hash cache, step keys).
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A scanned build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    /// Relative `/`-separated paths (`""` is the root directory).
    entries: BTreeMap<String, Entry>,
    /// Files whose content was read by the scan (not found in the hash cache).
    pub files_hashed: usize,
}

impl Context {
    /// Scans `root`, leaving out what `ignore` excludes, hashing every file (on every core)
    /// unless `cache` knows it unchanged; `cache` is updated to the files now present.
    pub fn scan(
        root: &Path,
        ignore: &Matcher,
        cache: &mut HashCache,
    ) -> Result<Context, ContextError> {
        let md = fs::metadata(root).map_err(io_err(root))?;
        if !md.is_dir() {
            return Err(ContextError::Io {
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), entry_of(&md, EntryKind::Dir));
        let mut files: Vec<(String, FileStamp)> = Vec::new();
        walk(root, "", ignore, &mut entries, &mut files)?;

        let mut todo: Vec<(String, FileStamp)> = Vec::new();
        let mut next = HashCache::default();
        for (rel, stamp) in files {
            match cache.entries.get(&rel) {
                Some((s, d)) if *s == stamp => {
                    next.entries.insert(rel, (stamp, d.clone()));
                }
                _ => todo.push((rel, stamp)),
            }
        }
        let files_hashed = todo.len();
        // Every file found known and unchanged, and none gone: the cache stays as it was.
        if files_hashed == 0 && next.entries.len() == cache.entries.len() {
            next.saved_at = cache.saved_at.take();
        }
        for (rel, stamp, digest) in hash_files(root, todo)? {
            next.entries.insert(rel, (stamp, digest));
        }
        for (rel, (_, d)) in &next.entries {
            if let Some(e) = entries.get_mut(rel) {
                e.digest = Some(d.clone());
            }
        }
        *cache = next;
        Ok(Context {
            root: root.to_path_buf(),
            entries,
            files_hashed,
        })
    }

    /// Lists a tree without hashing (a stage's or image's root filesystem that `COPY --from`
    /// reads: its cache key is the stage's, so content digests are not needed). Symlinks are
    /// entries, never followed, so an image's links cannot lead the copy out of its root.
    pub fn list(root: &Path) -> Result<Context, ContextError> {
        let md = fs::metadata(root).map_err(io_err(root))?;
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), entry_of(&md, EntryKind::Dir));
        let mut files = Vec::new();
        walk(root, "", &Matcher::default(), &mut entries, &mut files)?;
        Ok(Context {
            root: root.to_path_buf(),
            entries,
            files_hashed: 0,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Entries strictly below `rel`, in path order.
    pub fn below<'a>(&'a self, rel: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        self.entries
            .range(prefix.clone()..)
            .filter(|(p, _)| !p.is_empty())
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .map(|(p, e)| (p.as_str(), e))
    }

    pub fn entry(&self, rel: &str) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Resolves a source path as COPY reads it: lexically inside the context, then symlinks
    /// followed inside it (the last component too when `follow_last`). Returns the relative
    /// path of the entry it names.
    pub fn resolve(&self, source: &str, follow_last: bool) -> Result<String, ContextError> {
        let clean = clean_inside(source).ok_or_else(|| ContextError::Outside(source.into()))?;
        let mut todo: Vec<String> = clean
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(comp);
            let path = cur.join("/");
            let last = todo.is_empty();
            match self.entries.get(&path).map(|e| &e.kind) {
                Some(EntryKind::Symlink(target)) if follow_last || !last => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ContextError::Loop(source.into()));
                    }
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(
                        target
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(str::to_string),
                    );
                }
                Some(_) => {}
                None => return Err(ContextError::NotFound(clean.clone())),
            }
        }
        Ok(cur.join("/"))
    }

    /// The entries a COPY source names: the one path it resolves to, or for a pattern with
    /// `*`, `?` or `[`, every topmost entry it matches (Docker's wildcard rules, `**` too).
    pub fn select(&self, source: &str) -> Result<Vec<String>, ContextError> {
        if !source.contains(['*', '?', '[']) {
            return Ok(vec![self.resolve(source, true)?]);
        }
        let clean = clean_inside(source).ok_or_else(|| ContextError::Outside(source.into()))?;
        let m = Matcher::new([clean.as_str()])?;
        let mut out: Vec<String> = Vec::new();
        let mut chosen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for path in self.entries.keys() {
            let under_chosen = path
                .match_indices('/')
                .any(|(i, _)| path.get(..i).is_some_and(|a| chosen.contains(a)));
            if path.is_empty() || under_chosen {
                continue;
            }
            if m.excluded(path, false) {
                chosen.insert(path);
                out.push(path.clone());
            }
        }
        if out.is_empty() {
            return Err(ContextError::NotFound(clean));
        }
        Ok(out)
    }

    /// The digest of `rel` and everything below it: relative names, kinds, permission bits,
    /// symlink targets and content digests.
    pub fn digest(&self, rel: &str) -> Digest {
        let mut h = Digester::new(Algorithm::Sha256);
        // The entry itself, then what lies below it (`a/…` sorts after `a-b`, so the two ranges
        // are taken apart).
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let below = self.entries.get_key_value(rel).into_iter().chain(
            self.entries
                .range(prefix.clone()..)
                .filter(|(p, _)| !p.is_empty())
                .take_while(|(p, _)| p.starts_with(&prefix)),
        );
        for (path, e) in below {
            let name = if path == rel {
                "."
            } else if rel.is_empty() {
                path.as_str()
            } else {
                path.get(rel.len() + 1..).unwrap_or_default()
            };
            let (kind, extra) = match &e.kind {
                EntryKind::File => ("f", e.digest.as_ref().map(|d| d.to_string())),
                EntryKind::Dir => ("d", None),
                EntryKind::Symlink(t) => ("l", Some(t.clone())),
            };
            // Lengths first, so no choice of names can make two listings hash alike.
            let line = format!(
                "{}:{name} {kind} {:o} {}\n",
                name.len(),
                e.mode & 0o7777,
                extra.unwrap_or_default()
            );
            h.update(line.as_bytes());
        }
        h.finish()
    }
}

/// A source path cleaned to a relative path inside the context, or `None` when `..` climbs
/// out of it. A leading `/` means the context root.
fn clean_inside(source: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in source.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn entry_of(md: &fs::Metadata, kind: EntryKind) -> Entry {
    Entry {
        kind,
        mode: md.permissions().mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if md.is_file() { md.size() } else { 0 },
        mtime: (md.mtime(), u32::try_from(md.mtime_nsec()).unwrap_or(0)),
        digest: None,
    }
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &Matcher,
    entries: &mut BTreeMap<String, Entry>,
    files: &mut Vec<(String, FileStamp)>,
) -> Result<(), ContextError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            // Paths are `/`-separated UTF-8 in image layers; anything else is skipped.
            continue;
        };
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let path = root.join(&child);
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = md.file_type();
        let excluded = ignore.excluded(&child, ft.is_dir());
        if ft.is_dir() {
            if excluded && !ignore.could_match_inside(&child) {
                continue;
            }
            let before = entries.len();
            walk(root, &child, ignore, entries, files)?;
            // An excluded directory appears only for what an exception keeps inside it.
            if !excluded || entries.len() > before {
                entries.insert(child, entry_of(&md, EntryKind::Dir));
            }
            continue;
        }
        if excluded {
            continue;
        }
        if ft.is_file() {
            files.push((child.clone(), FileStamp::of(&md)));
            entries.insert(child, entry_of(&md, EntryKind::File));
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            let target = target.to_string_lossy().into_owned();
            entries.insert(child, entry_of(&md, EntryKind::Symlink(target)));
        }
    }
    Ok(())
}

/// Hashes files on every core.
fn hash_files(
    root: &Path,
    files: Vec<(String, FileStamp)>,
) -> Result<Vec<(String, FileStamp, Digest)>, ContextError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queue = std::sync::Mutex::new(files.into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..threads {
            workers.push(s.spawn(|| -> Result<(), ContextError> {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((rel, stamp)) = next else {
                        return Ok(());
                    };
                    let path = root.join(&rel);
                    let mut f = fs::File::open(&path).map_err(io_err(&path))?;
                    let mut h = Digester::new(Algorithm::Sha256);
                    loop {
                        let n = f.read(&mut buf).map_err(io_err(&path))?;
                        if n == 0 {
                            break;
                        }
                        h.update(buf.get(..n).unwrap_or_default());
                    }
                    let d = h.finish();
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((rel, stamp, d));
                }
            }));
        }
        for w in workers {
            w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        }
        Ok::<(), ContextError>(())
    })?;
    Ok(results.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "Dockerfile", "FROM scratch\n");
        write(r, "src/main.rs", "fn main() {}\n");
        write(r, "src/lib.rs", "pub fn f() {}\n");
        write(r, "docs/a.md", "a");
        write(r, "docs/keep.md", "keep");
        write(r, "target/debug/big", "binary");
        write(r, "notes.txt", "n");
        write(r, "src-other/x", "x");
        symlink("/etc", r.join("etc-link")).unwrap();
        symlink("src", r.join("src-link")).unwrap();
        symlink("../../outside", r.join("src/escape")).unwrap();
        dir
    }

    fn scan(root: &Path, ignore: &str) -> Context {
        Context::scan(
            root,
            &Matcher::parse(ignore).unwrap(),
            &mut HashCache::default(),
        )
        .unwrap()
    }

    #[test]
    fn dockerignore_filters_with_exceptions() {
        let dir = tree();
        let c = scan(dir.path(), "target\ndocs\n!docs/keep.md\n*.txt\n");
        let paths: Vec<&str> = c.entries().map(|(p, _)| p).collect();
        assert!(paths.contains(&"docs/keep.md"), "{paths:?}");
        assert!(paths.contains(&"docs"), "{paths:?}");
        for gone in ["docs/a.md", "target", "target/debug/big", "notes.txt"] {
            assert!(!paths.contains(&gone), "{gone}: {paths:?}");
        }
        assert_eq!(
            c.entry("src-link").unwrap().kind,
            EntryKind::Symlink("src".into())
        );
    }

    #[test]
    fn digests_follow_content_and_mode_not_times() {
        let dir = tree();
        let mut cache = HashCache::default();
        let m = Matcher::default();
        let a = Context::scan(dir.path(), &m, &mut cache).unwrap();
        assert_eq!(a.files_hashed, 8);
        let src = a.digest("src");
        let all = a.digest("");
        // unchanged: nothing is read again, and the digests are the same
        let b = Context::scan(dir.path(), &m, &mut cache).unwrap();
        assert_eq!(b.files_hashed, 0);
        assert_eq!(b.digest("src"), src);
        // a new mtime alone changes nothing
        let f = fs::File::options()
            .write(true)
            .open(dir.path().join("src/lib.rs"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let c = Context::scan(dir.path(), &m, &mut cache).unwrap();
        assert_eq!(c.files_hashed, 1);
        assert_eq!(c.digest("src"), src);
        // content changes the file's directory and the root, not its siblings
        let docs = c.digest("docs");
        write(dir.path(), "src/lib.rs", "pub fn g() {}\n");
        let d = Context::scan(dir.path(), &m, &mut cache).unwrap();
        assert_ne!(d.digest("src"), src);
        assert_ne!(d.digest(""), all);
        assert_eq!(d.digest("docs"), docs);
        // so does a mode change
        let before = d.digest("notes.txt");
        fs::set_permissions(
            dir.path().join("notes.txt"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let e = Context::scan(dir.path(), &m, &mut cache).unwrap();
        assert_ne!(e.digest("notes.txt"), before);
        // the cache survives a save and a load
        let file = dir.path().join("cache/hashes");
        cache.save(&file).unwrap();
        assert_eq!(HashCache::load(&file), cache);
        assert!(HashCache::load(&dir.path().join("nope")).is_empty());
    }

    #[test]
    fn an_unchanged_cache_is_not_written_again() {
        let dir = tree();
        let elsewhere = tempfile::tempdir().unwrap();
        let file = elsewhere.path().join("hashes");
        let m = Matcher::default();
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        let mut first = HashCache::default();
        Context::scan(dir.path(), &m, &mut first).unwrap();
        first.save(&file).unwrap();
        let written = inode(&file);

        let mut loaded = HashCache::load(&file);
        let c = Context::scan(dir.path(), &m, &mut loaded).unwrap();
        assert_eq!(c.files_hashed, 0);
        loaded.save(&file).unwrap();
        assert_eq!(
            inode(&file),
            written,
            "nothing changed: the file is left alone"
        );
        // elsewhere, the same cache is written
        let copy = elsewhere.path().join("copy");
        loaded.save(&copy).unwrap();
        assert_eq!(HashCache::load(&copy), loaded);

        // a changed file, or a file gone, is saved
        write(dir.path(), "notes.txt", "changed");
        Context::scan(dir.path(), &m, &mut loaded).unwrap();
        loaded.save(&file).unwrap();
        let rewritten = inode(&file);
        assert_ne!(rewritten, written);
        assert_eq!(HashCache::load(&file), loaded);
        fs::remove_file(dir.path().join("docs/a.md")).unwrap();
        Context::scan(dir.path(), &m, &mut loaded).unwrap();
        loaded.save(&file).unwrap();
        assert_ne!(inode(&file), rewritten);
        assert_eq!(HashCache::load(&file), loaded);
        assert_eq!(loaded.len(), 7);
    }

    #[test]
    fn paths_resolve_inside_the_context() {
        let dir = tree();
        let c = scan(dir.path(), "");
        assert_eq!(c.resolve("src-link/main.rs", true).unwrap(), "src/main.rs");
        assert_eq!(c.resolve("/src/../src/lib.rs", true).unwrap(), "src/lib.rs");
        assert_eq!(c.resolve("src-link", false).unwrap(), "src-link");
        assert_eq!(c.resolve("src-link", true).unwrap(), "src");
        // a link out of the context reads inside it: /etc here is the context's etc
        assert_eq!(
            c.resolve("etc-link/passwd", true).unwrap_err().to_string(),
            "\"/etc-link/passwd\": not found"
        );
        assert!(matches!(
            c.resolve("src/escape", true),
            Err(ContextError::NotFound(_))
        ));
        assert_eq!(
            c.resolve("../x", true).unwrap_err().to_string(),
            "forbidden path outside the build context: ../x"
        );
        assert!(matches!(
            c.resolve("src/../../x", true),
            Err(ContextError::Outside(_))
        ));
        assert_eq!(
            c.resolve("missing.txt", true).unwrap_err().to_string(),
            "\"/missing.txt\": not found"
        );
    }

    #[test]
    fn wildcards_select_topmost_matches() {
        let dir = tree();
        let c = scan(dir.path(), "");
        assert_eq!(
            c.select("src/*.rs").unwrap(),
            vec!["src/lib.rs", "src/main.rs"]
        );
        assert_eq!(c.select("do*").unwrap(), vec!["docs"]);
        assert_eq!(
            c.select("**/*.md").unwrap(),
            vec!["docs/a.md", "docs/keep.md"]
        );
        assert_eq!(c.select("Dockerfile").unwrap(), vec!["Dockerfile"]);
        assert!(matches!(c.select("*.go"), Err(ContextError::NotFound(_))));
    }

    #[test]
    fn symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let c = scan(dir.path(), "");
        assert!(matches!(c.resolve("a/x", true), Err(ContextError::Loop(_))));
    }
}
