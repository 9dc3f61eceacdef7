//! Flattening a stack of layers into one tar, whiteouts applied, as `crane export` does.
//!
//! Layers are walked top-down (go-containerregistry's `mutate.Extract`): an entry is written
//! unless a layer above decided its path already, replaced an ancestor with a non-directory,
//! whited it out or made an ancestor opaque. Unlike `mutate.Extract`, a layer's own whiteouts
//! and opaque markers only take effect below it (OCI image-spec: same-layer entries survive),
//! opaque directories are honoured, and every occurrence of a path within one layer is written,
//! so the last wins on extraction as it did in the layer.
//!
//! A hardlink whose target an upper layer replaced or removed would point at the wrong file
//! (or nothing) in the output; such a link is written as a regular file with the target's
//! content, read by opening the layer once more, and later links to the same file link to it.
//! Memory holds paths, never file contents.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use tar::EntryType;

use crate::error::{LayerError, lossy};
use crate::guard::{GuardState, Guarded, HEADER_BUDGET, Trip};
use crate::names::{self, Marker};
use crate::tarout::{AppendError, OutEntry, TarWriter};

/// Opens one layer as an uncompressed tar stream. Called once per layer, and again for a layer
/// holding a hardlink that must be materialised, so it must yield the same bytes each time.
pub type LayerSource = Box<dyn FnMut() -> io::Result<Box<dyn Read + Send>> + Send>;

type Res<T> = Result<T, LayerError>;

/// Writes the flattened filesystem of `layers` (bottom first) to `out` as one tar, returning
/// the bytes written. Directories have a trailing `/`; the root entry itself is not written.
pub fn export_flattened<W: Write>(mut layers: Vec<LayerSource>, out: W) -> Res<u64> {
    let mut w = TarWriter::new(out);
    let mut upper = Upper::default();
    for (index, open) in layers.iter_mut().enumerate().rev() {
        export_layer(index, open, &mut upper, &mut w)?;
    }
    w.finish().map_err(|source| LayerError::Write {
        path: "(end of archive)".into(),
        source,
    })
}

/// What the layers above decided.
#[derive(Default)]
struct Upper {
    /// Paths decided above: `true` when that hides everything below the path too (a
    /// non-directory or a whiteout), `false` for a directory.
    decided: HashMap<Vec<u8>, bool>,
    /// Directories whose contents below are hidden.
    opaque: HashSet<Vec<u8>>,
}

impl Upper {
    fn hides(&self, path: &[u8]) -> bool {
        if self.decided.contains_key(path) || self.opaque.contains(&b""[..]) {
            return true;
        }
        names::ancestors(path)
            .any(|a| self.decided.get(a) == Some(&true) || self.opaque.contains(a))
    }
}

/// An entry as read, owning what the tar crate lends.
struct Info {
    path: Vec<u8>,
    kind: EntryType,
    size: u64,
    link: Option<Vec<u8>>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    dev: (u32, u32),
    uname: Vec<u8>,
    gname: Vec<u8>,
    /// PAX records carried to the output: xattrs, times, long user/group names.
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

impl Info {
    fn out(&self) -> OutEntry<'_> {
        OutEntry {
            path: &self.path,
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            size: if self.kind == EntryType::Regular {
                self.size
            } else {
                0
            },
            link: self.link.as_deref(),
            dev: self.dev,
            uname: &self.uname,
            gname: &self.gname,
            pax: &self.pax,
        }
    }
}

struct Reader {
    index: usize,
    current: Option<String>,
}

impl Reader {
    fn path(&self) -> String {
        self.current.clone().unwrap_or_default()
    }

    fn invalid(&self, reason: String) -> LayerError {
        LayerError::InvalidEntry {
            path: self.path(),
            reason,
        }
    }

    fn stream_error(&self, e: io::Error, state: &GuardState) -> LayerError {
        match state.tripped() {
            Some(Trip::Headers(limit)) => LayerError::HeadersTooLarge {
                after: self.current.clone(),
                limit,
            },
            Some(Trip::MaxBytes(limit)) => LayerError::TooLarge {
                path: self.path(),
                limit,
            },
            None => LayerError::Header {
                after: self.current.clone(),
                source: e,
            },
        }
    }

    fn info<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Res<Info> {
        let raw = entry.path_bytes().into_owned();
        self.current = Some(lossy(&raw));
        let path = names::clean(&raw).map_err(|reason| LayerError::InvalidPath {
            path: self.path(),
            reason,
        })?;
        let mut kind = entry.header().entry_type();
        if entry.header().as_old().linkflag == [0] && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        if kind == EntryType::Continuous {
            kind = EntryType::Regular;
        }
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let link = match (kind, link) {
            (EntryType::Link, Some(l)) => {
                Some(names::clean(&l).map_err(|reason| LayerError::InvalidPath {
                    path: lossy(&l),
                    reason,
                })?)
            }
            (EntryType::Symlink, Some(l)) => Some(l),
            (EntryType::Link | EntryType::Symlink, None) => {
                return Err(self.invalid("link without a target".into()));
            }
            _ => None,
        };
        let mut pax = Vec::new();
        let mut sparse = false;
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.invalid(format!("reading PAX records: {e}")))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| self.invalid(format!("reading PAX records: {e}")))?;
                let k = ext.key_bytes();
                sparse |= k.starts_with(b"GNU.sparse.");
                if k.starts_with(b"SCHILY.xattr.")
                    || matches!(k, b"mtime" | b"atime" | b"uname" | b"gname")
                {
                    pax.push((k.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = entry.header();
        let bad = |what: &str, e: io::Error| self.invalid(format!("bad {what} field: {e}"));
        Ok(Info {
            path,
            kind,
            size: entry.size(),
            link,
            mode: h.mode().map_err(|e| bad("mode", e))?,
            uid: h.uid().map_err(|e| bad("uid", e))?,
            gid: h.gid().map_err(|e| bad("gid", e))?,
            mtime: h.mtime().map_err(|e| bad("mtime", e))?,
            dev: (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            ),
            uname: h.username_bytes().unwrap_or_default().to_vec(),
            gname: h.groupname_bytes().unwrap_or_default().to_vec(),
            pax,
            sparse: sparse || kind == EntryType::GNUSparse,
        })
    }

    /// Reads the rest of an entry's data, which must be `size` bytes.
    fn drain(&self, data: &mut dyn Read, size: u64, state: &GuardState) -> Res<()> {
        let n = io::copy(data, &mut io::sink()).map_err(|e| self.stream_error(e, state))?;
        if n != size {
            return Err(LayerError::Truncated {
                path: self.path(),
                expected: size,
                actual: n,
            });
        }
        Ok(())
    }

    fn append<W: Write>(
        &self,
        w: &mut TarWriter<W>,
        e: &OutEntry<'_>,
        data: &mut dyn Read,
        state: &GuardState,
    ) -> Res<()> {
        w.append(e, data).map_err(|err| match err {
            AppendError::Write(source) => LayerError::Write {
                path: lossy(e.path),
                source,
            },
            AppendError::Read(source) => self.stream_error(source, state),
            AppendError::Short { actual } => LayerError::Truncated {
                path: self.path(),
                expected: e.size,
                actual,
            },
        })
    }

    fn open(&self, open: &mut LayerSource) -> Res<Box<dyn Read + Send>> {
        open().map_err(|source| LayerError::OpenLayer {
            index: self.index,
            source,
        })
    }
}

/// What one layer contributes, merged into [`Upper`] once the layer is done.
#[derive(Default)]
struct ThisLayer {
    decided: HashMap<Vec<u8>, bool>,
    whiteouts: Vec<Vec<u8>>,
    opaque: Vec<Vec<u8>>,
    /// Path → index of the regular-file entry holding its content (through hardlinks).
    data: HashMap<Vec<u8>, u64>,
    /// Data entry index → output path of the file materialised from it.
    materialised: HashMap<u64, Vec<u8>>,
}

fn export_layer<W: Write>(
    index: usize,
    open: &mut LayerSource,
    upper: &mut Upper,
    w: &mut TarWriter<W>,
) -> Res<()> {
    let mut rd = Reader {
        index,
        current: None,
    };
    let state = GuardState::new(None, HEADER_BUDGET);
    let mut archive = tar::Archive::new(Guarded::new(rd.open(open)?, state.clone()));
    let mut entries = archive.entries().map_err(|e| rd.stream_error(e, &state))?;
    let mut layer = ThisLayer::default();
    let mut idx: u64 = 0;
    loop {
        state.header_phase();
        let next = entries.next();
        state.data_phase();
        let mut entry = match next {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(rd.stream_error(e, &state)),
        };
        let this = idx;
        idx += 1;
        let info = rd.info(&mut entry)?;
        if info.sparse {
            return Err(LayerError::Unsupported {
                path: rd.path(),
                what: "a sparse file".into(),
            });
        }
        let visible = match info.kind {
            EntryType::XGlobalHeader => false,
            EntryType::Regular
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => !info.path.is_empty(),
            other => {
                return Err(LayerError::Unsupported {
                    path: rd.path(),
                    what: format!("entry type {:?}", other.as_byte() as char),
                });
            }
        };
        if !visible {
            rd.drain(&mut entry, info.size, &state)?;
            continue;
        }
        let (parent, name) = names::split_parent(&info.path);
        if names::in_meta_dir(parent) {
            rd.drain(&mut entry, info.size, &state)?;
            continue;
        }
        match names::marker(name) {
            Marker::None => {}
            Marker::Meta => {}
            Marker::Opaque => layer.opaque.push(parent.to_vec()),
            Marker::Whiteout(t) => {
                if !names::valid_whiteout_target(t) {
                    return Err(rd.invalid("whiteout of `.`, `..` or an empty name".into()));
                }
                layer.whiteouts.push(names::join(parent, t));
            }
        }
        if names::marker(name) != Marker::None {
            rd.drain(&mut entry, info.size, &state)?;
            continue;
        }

        // Where this path's content lives in the layer, hidden or not: a later hardlink may
        // need it.
        match (info.kind, &info.link) {
            (EntryType::Regular, _) => {
                layer.data.insert(info.path.clone(), this);
            }
            (EntryType::Link, Some(t)) => match layer.data.get(t).copied() {
                Some(d) => {
                    layer.data.insert(info.path.clone(), d);
                }
                None => {
                    layer.data.remove(&info.path);
                }
            },
            _ => {
                layer.data.remove(&info.path);
            }
        }

        if upper.hides(&info.path) {
            rd.drain(&mut entry, info.size, &state)?;
            continue;
        }
        layer
            .decided
            .insert(info.path.clone(), info.kind != EntryType::Directory);

        if info.kind == EntryType::Link
            && let Some(target) = &info.link
            && upper.hides(target)
            && let Some(d) = layer.data.get(target).copied()
        {
            rd.drain(&mut entry, info.size, &state)?;
            if let Some(first) = layer.materialised.get(&d) {
                let mut e = info.out();
                e.link = Some(first);
                rd.append(w, &e, &mut io::empty(), &state)?;
            } else {
                materialise(&rd, open, d, &info.path, w)?;
                layer.materialised.insert(d, info.path.clone());
            }
            continue;
        }

        let e = info.out();
        if info.kind == EntryType::Regular {
            rd.append(w, &e, &mut entry, &state)?;
        } else {
            rd.drain(&mut entry, info.size, &state)?;
            rd.append(w, &e, &mut io::empty(), &state)?;
        }
    }
    if state.eof() {
        return Err(LayerError::MissingEnd { after: rd.current });
    }
    for (k, v) in layer.decided {
        upper.decided.entry(k).or_insert(v);
    }
    for p in layer.whiteouts {
        upper.decided.entry(p).or_insert(true);
    }
    upper.opaque.extend(layer.opaque);
    Ok(())
}

/// Writes entry number `want` of the layer (a regular file) again, as a regular file at `path`.
fn materialise<W: Write>(
    rd: &Reader,
    open: &mut LayerSource,
    want: u64,
    path: &[u8],
    w: &mut TarWriter<W>,
) -> Res<()> {
    let mut again = Reader {
        index: rd.index,
        current: rd.current.clone(),
    };
    let state = GuardState::new(None, HEADER_BUDGET);
    let mut archive = tar::Archive::new(Guarded::new(rd.open(open)?, state.clone()));
    let entries = archive
        .entries()
        .map_err(|e| again.stream_error(e, &state))?;
    for (idx, next) in (0u64..).zip(entries) {
        let mut entry = next.map_err(|e| again.stream_error(e, &state))?;
        if idx != want {
            continue;
        }
        let info = again.info(&mut entry)?;
        if info.kind != EntryType::Regular {
            break;
        }
        let mut e = info.out();
        e.path = path;
        return again.append(w, &e, &mut entry, &state);
    }
    Err(LayerError::InvalidEntry {
        path: lossy(path),
        reason: "the layer changed while it was read again for a hardlink's content".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testtar::Tar;

    fn source(bytes: Vec<u8>) -> LayerSource {
        Box::new(move || Ok(Box::new(io::Cursor::new(bytes.clone())) as Box<dyn Read + Send>))
    }

    /// Path → (kind, content or link target) of a tar.
    fn listing(tar: &[u8]) -> BTreeMap<String, (char, String)> {
        let mut out = BTreeMap::new();
        let mut ar = tar::Archive::new(tar);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let kind = e.header().entry_type().as_byte() as char;
            let v = match e.link_name_bytes() {
                Some(l) => String::from_utf8(l.into_owned()).unwrap(),
                None => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    s
                }
            };
            assert!(out.insert(p.clone(), (kind, v)).is_none(), "{p} twice");
        }
        out
    }

    fn export(layers: Vec<Vec<u8>>) -> BTreeMap<String, (char, String)> {
        let mut out = Vec::new();
        let n = export_flattened(layers.into_iter().map(source).collect(), &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        listing(&out)
    }

    fn f(s: &str) -> (char, String) {
        ('0', s.to_string())
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers_only() {
        let l0 = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", b"root")
            .file("etc/shadow", b"x")
            .file("opt/a/old", b"old")
            .file("keep", b"k")
            .file("x/inner", b"i")
            .bytes();
        let l1 = Tar::new()
            .file("etc/.wh.shadow", b"")
            .file("opt/a/.wh..wh..opq", b"")
            .file("opt/a/new", b"new")
            .file("x", b"now a file")
            .file("same", b"s")
            .file(".wh.same", b"")
            .bytes();
        let l2 = Tar::new().file("etc/passwd", b"root2").bytes();
        let got = export(vec![l0, l1, l2]);
        let want: BTreeMap<String, (char, String)> = [
            ("etc/", ('5', String::new())),
            ("etc/passwd", f("root2")),
            ("opt/a/new", f("new")),
            ("keep", f("k")),
            ("x", f("now a file")),
            ("same", f("s")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn hardlinks_to_replaced_targets_are_materialised() {
        let l0 = Tar::new()
            .file("bin/perl", b"perl5")
            .hardlink("bin/perl5.36", "bin/perl")
            .hardlink("bin/perl-again", "bin/perl")
            .file("lib/a", b"a")
            .hardlink("lib/b", "lib/a")
            .bytes();
        let l1 = Tar::new().file("bin/.wh.perl", b"").bytes();
        let got = export(vec![l0, l1]);
        assert_eq!(got.get("bin/perl"), None);
        assert_eq!(got.get("bin/perl5.36"), Some(&f("perl5")));
        assert_eq!(
            got.get("bin/perl-again"),
            Some(&('1', "bin/perl5.36".to_string()))
        );
        assert_eq!(got.get("lib/b"), Some(&('1', "lib/a".to_string())));
    }

    #[test]
    fn a_bad_layer_names_its_entry() {
        let mut l0 = Tar::new().file("a", b"1").file("b", b"2").bytes();
        l0.truncate(1536);
        let mut out = Vec::new();
        let err = export_flattened(vec![source(l0)], &mut out).unwrap_err();
        assert!(
            matches!(err, LayerError::Truncated { ref path, .. } if path == "b"),
            "{err:?}"
        );
    }
}
