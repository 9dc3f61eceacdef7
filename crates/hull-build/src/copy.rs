//! COPY and ADD with Docker's semantics, performed as a tar stream unpacked into the step's
//! root filesystem: the unpacker (`hull_layer::unpack`) resolves every destination inside the
//! root with `openat2(RESOLVE_IN_ROOT)`, so an image whose `/etc` is a symlink to the host's
//! cannot make a COPY write outside it.
//!
//! The rules (BuildKit's):
//! - a directory source copies its *contents*; the directory itself is not recreated under the
//!   destination (with `--parents`, the source's path is kept);
//! - a file or symlink source lands at the destination when it is a new path, or inside it when
//!   the destination ends with `/` or is an existing directory;
//! - several sources (or a wildcard matching several) need a destination ending with `/`;
//! - everything copied is owned by `0:0` unless `--chown`, keeps its mode unless `--chmod`, and
//!   keeps its modification time; symlinks are copied as symlinks;
//! - `--exclude` patterns (`.dockerignore` syntax) leave matching sources out: a source as
//!   named in the context, and what lies inside a directory source by its path below that
//!   directory (`--exclude=*.md` leaves out `dir/README.md` of `COPY dir /x`).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use hull_dockerfile::ignore::Matcher;
use thiserror::Error;

use crate::context::{Context, ContextError, Entry, EntryKind};
use crate::step::{CopySource, CopyStep};

#[derive(Debug, Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] ContextError),
    #[error(
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    ManySourcesOneFile,
    #[error("invalid --exclude pattern: {0}")]
    Exclude(String),
    #[error("invalid --chmod value {0:?}: expected an octal mode such as 0755")]
    Chmod(String),
    #[error("{name}: file names starting with .wh. are reserved for layer whiteouts")]
    ReservedName { name: String },
    #[error("writing the copy stream: {0}")]
    Write(#[source] io::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What one copied path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    Dir,
    /// A file read from the source tree at this relative path.
    File {
        src: String,
        size: u64,
    },
    Symlink(String),
    /// Inline content (a heredoc source).
    Inline(String),
}

/// One path the copy writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// Destination, relative to the root filesystem (no leading `/`).
    pub dest: String,
    pub kind: ItemKind,
    pub mode: u32,
    pub mtime: i64,
}

/// Ownership and mode overrides of a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyAttrs {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`.
    pub mode: Option<u32>,
}

/// Parses `--chmod` (octal).
pub fn parse_chmod(s: &str) -> Result<u32, CopyError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CopyError::Chmod(s.to_string()))
}

/// Works out every path a COPY writes. `dest_is_dir` says whether the step's destination is an
/// existing directory in the root filesystem (see `hull_layer::probe_in_root`).
pub fn plan_copy(
    tree: &Context,
    step: &CopyStep,
    dest_is_dir: bool,
) -> Result<Vec<CopyItem>, CopyError> {
    let exclude = if step.exclude.is_empty() {
        None
    } else {
        Some(Matcher::new(step.exclude.iter()).map_err(|e| CopyError::Exclude(e.to_string()))?)
    };
    let excluded = |rel: &str| exclude.as_ref().is_some_and(|m| m.excluded(rel, false));
    let mut selected: Vec<(Option<String>, &CopySource)> = Vec::new();
    for s in &step.sources {
        match s {
            CopySource::Path(p) => {
                for rel in tree.select(p)? {
                    if !excluded(&rel) {
                        selected.push((Some(rel), s));
                    }
                }
            }
            CopySource::Inline { .. } => selected.push((None, s)),
        }
    }
    let dest = step.dest.trim_start_matches('/').to_string();
    let into_dir = step.dest.ends_with('/') || dest_is_dir;
    let single_file = selected.len() == 1
        && selected.first().is_some_and(|(rel, _)| {
            rel.as_ref()
                .is_none_or(|r| !matches!(tree.entry(r).map(|e| &e.kind), Some(EntryKind::Dir)))
        });
    if (step.sources.len() > 1 || selected.len() > 1) && !into_dir {
        return Err(CopyError::ManySourcesOneFile);
    }
    let dest_dir = dest.trim_end_matches('/').to_string();
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else if b.is_empty() {
            a.to_string()
        } else {
            format!("{a}/{b}")
        }
    };
    let mut items: Vec<CopyItem> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut push = |item: CopyItem, items: &mut Vec<CopyItem>| {
        if seen.insert(item.dest.clone()) {
            items.push(item);
        } else if let Some(old) = items.iter_mut().find(|i| i.dest == item.dest) {
            // A later source wins, as when Docker copies them in order.
            *old = item;
        }
    };
    for (rel, source) in selected {
        match (rel, source) {
            (None, CopySource::Inline { name, content }) => {
                let target = if into_dir || !single_file {
                    join(&dest_dir, name)
                } else {
                    dest_dir.clone()
                };
                push(
                    CopyItem {
                        dest: target,
                        kind: ItemKind::Inline(content.clone()),
                        mode: 0o644,
                        mtime: 0,
                    },
                    &mut items,
                );
            }
            (Some(rel), _) => {
                let Some(entry) = tree.entry(&rel) else {
                    continue;
                };
                let base = match (&entry.kind, step.parents) {
                    (_, true) => join(&dest_dir, &rel),
                    (EntryKind::Dir, false) => dest_dir.clone(),
                    (_, false) => {
                        if into_dir {
                            join(&dest_dir, rel.rsplit('/').next().unwrap_or(&rel))
                        } else {
                            dest_dir.clone()
                        }
                    }
                };
                // A directory's contents go to `base`; `base` itself is made (with the
                // source's mode) only when it is not the existing destination.
                if matches!(entry.kind, EntryKind::Dir) {
                    if !(base.is_empty() || base == dest_dir && dest_is_dir) {
                        push(item(base.clone(), &rel, entry), &mut items);
                    }
                    for (path, e) in tree.below(&rel) {
                        let below = path
                            .get(rel.len()..)
                            .unwrap_or_default()
                            .trim_start_matches('/');
                        // Inside a directory source, patterns match the path below that
                        // directory (BuildKit's copier matches from the source's root).
                        if excluded(below) {
                            continue;
                        }
                        push(item(join(&base, below), path, e), &mut items);
                    }
                } else {
                    push(item(base, &rel, entry), &mut items);
                }
            }
            (None, CopySource::Path(_)) => {}
        }
    }
    for i in &items {
        let name = i.dest.rsplit('/').next().unwrap_or_default();
        if name.starts_with(".wh.") {
            return Err(CopyError::ReservedName {
                name: i.dest.clone(),
            });
        }
    }
    Ok(items)
}

fn item(dest: String, src: &str, e: &Entry) -> CopyItem {
    CopyItem {
        dest,
        kind: match &e.kind {
            EntryKind::Dir => ItemKind::Dir,
            EntryKind::File => ItemKind::File {
                src: src.to_string(),
                size: e.size,
            },
            EntryKind::Symlink(t) => ItemKind::Symlink(t.clone()),
        },
        mode: e.mode,
        mtime: e.mtime.0,
    }
}

/// Writes the copy as a tar stream: the items in order, owned and moded per `attrs`, file
/// content streamed from `tree`. Returns the bytes written.
pub fn write_copy_tar<W: Write>(
    tree: &Context,
    items: &[CopyItem],
    attrs: &CopyAttrs,
    out: W,
) -> Result<(), CopyError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    for i in items {
        let mut h = tar::Header::new_gnu();
        h.set_uid(u64::from(attrs.uid));
        h.set_gid(u64::from(attrs.gid));
        h.set_mtime(u64::try_from(i.mtime).unwrap_or(0));
        let mode = attrs.mode.unwrap_or(i.mode);
        h.set_mode(mode);
        match &i.kind {
            ItemKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", i.dest), io::empty())
                    .map_err(CopyError::Write)?;
            }
            ItemKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &i.dest, target)
                    .map_err(CopyError::Write)?;
            }
            ItemKind::Inline(content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, &i.dest, content.as_bytes())
                    .map_err(CopyError::Write)?;
            }
            ItemKind::File { src, size } => {
                let path = tree.root().join(src);
                let read_err = |source| CopyError::Read {
                    path: path.display().to_string(),
                    source,
                };
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(read_err)?;
                let actual = f.metadata().map_err(read_err)?.len();
                if actual != *size {
                    return Err(read_err(io::Error::other(format!(
                        "changed while the build ran ({size} bytes when scanned, {actual} now)"
                    ))));
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                b.append_data(&mut h, &i.dest, io::Read::take(f, *size))
                    .map_err(CopyError::Write)?;
            }
        }
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(CopyError::Write)
}

/// Copies `items` from `tree` into the root filesystem at `rootfs`, confined to it.
pub fn copy_into(
    tree: &Context,
    items: &[CopyItem],
    attrs: &CopyAttrs,
    rootfs: &Path,
) -> Result<(), CopyError> {
    let (reader, writer) = io::pipe().map_err(CopyError::Write)?;
    let opts = hull_layer::UnpackOptions::for_current_user(hull_layer::WhiteoutMode::Apply);
    std::thread::scope(|s| {
        let producer = s.spawn(move || write_copy_tar(tree, items, attrs, writer));
        let unpacked = hull_layer::unpack(reader, rootfs, &opts)
            .map_err(|e| CopyError::Write(io::Error::other(e.to_string())));
        let produced = producer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        // The producer's error explains an unpack that stopped early.
        produced.and(unpacked.map(|_| ()))
    })
}

/// `path`'s content decompressed as its magic bytes say: bzip2 (`BZh`), xz (`FD 37 7A 58 5A
/// 00`), gzip or zstd (`hull_layer`), else as it is.
fn open_archive(path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
    const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
    let mut f = io::BufReader::with_capacity(64 * 1024, fs::File::open(path)?);
    let head = io::BufRead::fill_buf(&mut f)?;
    if head.starts_with(b"BZh") {
        return Ok(Box::new(bzip2::read::MultiBzDecoder::new(f)));
    }
    if head.starts_with(&XZ_MAGIC) {
        return Ok(Box::new(liblzma::read::XzDecoder::new_multi_decoder(f)));
    }
    Ok(hull_layer::decompress_detected(f)?.1)
}

/// Whether `path` is a tar archive ADD unpacks (plain, gzip, bzip2, xz or zstd compressed, as
/// Docker's `IsArchivePath` decompresses), told by its first header block having a valid
/// checksum.
pub fn is_archive(path: &Path) -> bool {
    let Ok(mut r) = open_archive(path) else {
        return false;
    };
    let mut block = [0u8; 512];
    if io::Read::read_exact(&mut r, &mut block).is_err() {
        return false;
    }
    let header = tar::Header::from_byte_slice(&block);
    let Ok(stored) = header.cksum() else {
        return false;
    };
    // The checksum counts the checksum field itself as spaces.
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum && block.iter().any(|b| *b != 0)
}

/// The tar stream of archive `archive` with every path moved under `dest` (relative to the
/// root filesystem), hard link targets too; `owner` replaces the entries' owners (`--chown`,
/// as BuildKit applies it to unpacked archives since v0.23), `mode` their permission bits.
pub fn write_archive_tar<W: Write>(
    archive: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    out: W,
) -> Result<(), CopyError> {
    let read_err = |source| CopyError::Read {
        path: archive.display().to_string(),
        source,
    };
    let r = open_archive(archive).map_err(read_err)?;
    let mut ar = tar::Archive::new(r);
    let mut b = tar::Builder::new(out);
    let under = |p: &Path| -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                std::path::Component::Normal(n) => parts.push(n.to_str()?.to_string()),
                std::path::Component::ParentDir => {
                    parts.pop()?;
                }
                _ => {}
            }
        }
        let rel = parts.join("/");
        Some(match (dest.trim_matches('/'), rel.as_str()) {
            ("", r) => r.to_string(),
            (d, "") => d.to_string(),
            (d, r) => format!("{d}/{r}"),
        })
    };
    // The destination directory itself, as Docker makes it (0755, root unless --chown); an
    // archive's `./` entry then gives it that entry's metadata.
    if !dest.trim_matches('/').is_empty() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        let (uid, gid) = owner.unwrap_or((0, 0));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, format!("{}/", dest.trim_matches('/')), io::empty())
            .map_err(CopyError::Write)?;
    }
    for entry in ar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let path = entry.path().map_err(read_err)?.into_owned();
        let Some(target) = under(&path) else {
            // `..` climbing above the archive's root: left out, as Docker's untar refuses it.
            continue;
        };
        if target.is_empty() && dest.trim_matches('/').is_empty() {
            // The archive's `./` over the root directory: the root keeps its metadata.
            continue;
        }
        let mut h = entry.header().clone();
        if let Some((uid, gid)) = owner {
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
        }
        if let Some(m) = mode {
            h.set_mode(m);
        }
        let kind = h.entry_type();
        if kind.is_hard_link() || kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(read_err)?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let link = if kind.is_hard_link() {
                match under(&link) {
                    Some(l) => PathBuf::from(l),
                    None => continue,
                }
            } else {
                link
            };
            h.set_size(0);
            b.append_link(&mut h, &target, &link)
                .map_err(CopyError::Write)?;
        } else if kind.is_dir() {
            b.append_data(&mut h, format!("{target}/"), io::empty())
                .map_err(CopyError::Write)?;
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        } else {
            b.append_data(&mut h, &target, &mut entry)
                .map_err(CopyError::Write)?;
        }
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(CopyError::Write)
}

/// Unpacks archive `archive` into `dest` inside the root filesystem at `rootfs`, confined to
/// it as COPY is.
pub fn extract_into(
    archive: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    rootfs: &Path,
) -> Result<(), CopyError> {
    let (reader, writer) = io::pipe().map_err(CopyError::Write)?;
    let opts = hull_layer::UnpackOptions::for_current_user(hull_layer::WhiteoutMode::Apply);
    std::thread::scope(|s| {
        let producer = s.spawn(move || write_archive_tar(archive, dest, owner, mode, writer));
        let unpacked = hull_layer::unpack(reader, rootfs, &opts)
            .map_err(|e| CopyError::Write(io::Error::other(e.to_string())));
        let produced = producer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        produced.and(unpacked.map(|_| ()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::HashCache;

    fn ctx() -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::write(r.join("src/a.txt"), "a").unwrap();
        fs::write(r.join("src/sub/b.txt"), "b").unwrap();
        fs::write(r.join("one"), "1").unwrap();
        fs::write(r.join("two"), "2").unwrap();
        std::os::unix::fs::symlink("one", r.join("link")).unwrap();
        let c = Context::scan(r, &Matcher::default(), &mut HashCache::default()).unwrap();
        (dir, c)
    }

    fn step(sources: &[&str], dest: &str) -> CopyStep {
        CopyStep {
            add: false,
            from: None,
            sources: sources
                .iter()
                .map(|s| CopySource::Path(s.to_string()))
                .collect(),
            dest: dest.to_string(),
            dest_written: dest.to_string(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: vec![],
            unpack: None,
        }
    }

    fn dests(items: &[CopyItem]) -> Vec<&str> {
        items.iter().map(|i| i.dest.as_str()).collect()
    }

    #[test]
    fn docker_destination_rules() {
        let (_d, c) = ctx();
        // a file to a new path is that path; into a dir (slash or existing) keeps its name
        assert_eq!(
            dests(&plan_copy(&c, &step(&["one"], "/x"), false).unwrap()),
            ["x"]
        );
        assert_eq!(
            dests(&plan_copy(&c, &step(&["one"], "/x/"), false).unwrap()),
            ["x/one"]
        );
        assert_eq!(
            dests(&plan_copy(&c, &step(&["one"], "/x"), true).unwrap()),
            ["x/one"]
        );
        // a directory copies its contents
        assert_eq!(
            dests(&plan_copy(&c, &step(&["src"], "/app"), false).unwrap()),
            ["app", "app/a.txt", "app/sub", "app/sub/b.txt"]
        );
        assert_eq!(
            dests(&plan_copy(&c, &step(&["src"], "/app"), true).unwrap()),
            ["app/a.txt", "app/sub", "app/sub/b.txt"]
        );
        // several sources need a directory destination
        assert!(matches!(
            plan_copy(&c, &step(&["one", "two"], "/x"), false),
            Err(CopyError::ManySourcesOneFile)
        ));
        assert_eq!(
            dests(&plan_copy(&c, &step(&["one", "two"], "/x/"), false).unwrap()),
            ["x/one", "x/two"]
        );
        // wildcards, and a symlink source is followed to what it names
        assert_eq!(
            dests(&plan_copy(&c, &step(&["t*"], "/w/"), false).unwrap()),
            ["w/two"]
        );
        let l = plan_copy(&c, &step(&["link"], "/l"), false).unwrap();
        assert!(matches!(l[0].kind, ItemKind::File { .. }), "{l:?}");
        // --parents keeps the source path, --exclude leaves out
        let mut s = step(&["src/sub/b.txt"], "/p/");
        s.parents = true;
        assert_eq!(
            dests(&plan_copy(&c, &s, false).unwrap()),
            ["p/src/sub/b.txt"]
        );
        let mut s = step(&["src"], "/e");
        s.exclude = vec!["sub".into()];
        assert_eq!(dests(&plan_copy(&c, &s, false).unwrap()), ["e", "e/a.txt"]);
        // missing and escaping sources
        assert!(matches!(
            plan_copy(&c, &step(&["nope"], "/x"), false),
            Err(CopyError::Source(ContextError::NotFound(_)))
        ));
        assert!(matches!(
            plan_copy(&c, &step(&["../x"], "/x"), false),
            Err(CopyError::Source(ContextError::Outside(_)))
        ));
    }

    #[test]
    fn copies_land_inside_the_root_even_through_hostile_symlinks() {
        hull_test::require_root!();
        let (_d, c) = ctx();
        let rootfs = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // the image's /etc points at a directory outside the root
        std::os::unix::fs::symlink(outside.path(), rootfs.path().join("etc")).unwrap();
        let items = plan_copy(&c, &step(&["src"], "/etc/app"), false).unwrap();
        copy_into(
            &c,
            &items,
            &CopyAttrs {
                uid: 1000,
                gid: 1000,
                mode: Some(0o600),
            },
            rootfs.path(),
        )
        .unwrap();
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "wrote outside the root"
        );
        let inside = rootfs
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("app/sub/b.txt");
        assert_eq!(fs::read_to_string(&inside).unwrap(), "b");
        use std::os::unix::fs::MetadataExt as _;
        let md = fs::metadata(&inside).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1000, 0o600)
        );
    }

    #[test]
    fn archives_are_told_from_other_files_and_moved_under_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o640);
        h.set_uid(5);
        h.set_gid(6);
        h.set_size(2);
        b.append_data(&mut h, "a/f", &b"f\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "a/hard", "a/f").unwrap();
        let tar = b.into_inner().unwrap();
        let plain = dir.path().join("t.tar");
        fs::write(&plain, &tar).unwrap();
        let gz = dir.path().join("t.tgz");
        let mut z = Vec::new();
        hull_layer::compress(&tar[..], &mut z, hull_layer::Compression::Gzip, None).unwrap();
        fs::write(&gz, z).unwrap();
        let text = dir.path().join("t.txt");
        fs::write(&text, "just text, long enough to fill a block? no").unwrap();
        assert!(is_archive(&plain));
        assert!(is_archive(&gz));
        assert!(!is_archive(&text));
        assert!(!is_archive(&dir.path().join("missing")));

        let mut out = Vec::new();
        write_archive_tar(&gz, "/opt/x/", Some((7, 8)), None, &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let got: Vec<(String, u64, Option<String>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().uid().unwrap(),
                    e.link_name().unwrap().map(|l| l.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("opt/x/".to_string(), 7, None),
                ("opt/x/a/f".to_string(), 7, None),
                ("opt/x/a/hard".to_string(), 7, Some("opt/x/a/f".to_string())),
            ]
        );
    }

    #[test]
    fn inline_sources_and_chmod() {
        let (_d, c) = ctx();
        let mut s = step(&[], "/etc/app.conf");
        s.sources = vec![CopySource::Inline {
            name: "EOF".into(),
            content: "k=v\n".into(),
        }];
        let items = plan_copy(&c, &s, false).unwrap();
        assert_eq!(dests(&items), ["etc/app.conf"]);
        let mut tar = Vec::new();
        write_copy_tar(&c, &items, &CopyAttrs::default(), &mut tar).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let mut body = String::new();
        io::Read::read_to_string(&mut e, &mut body).unwrap();
        assert_eq!(body, "k=v\n");
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert!(parse_chmod("rwx").is_err());
        assert!(parse_chmod("17777").is_err());
    }
}
