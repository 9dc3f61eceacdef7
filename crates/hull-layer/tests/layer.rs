//! hull-layer end to end through its public API: compression, unpacking in both whiteout
//! modes, flattening a stack, archiving a tree, and the hostile corpus.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "layer/hostile.rs"]
mod hostile;
#[path = "layer/rawtar.rs"]
mod rawtar;
#[path = "layer/tree.rs"]
mod tree;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use hull_layer::{
    Compression, LayerError, LayerSource, UnpackOptions, WhiteoutMode, compress, decompress,
    decompress_detected, detect_compression, export_flattened, unpack, write_tar_from_dir,
};
use hull_oci::{Algorithm, Digester};
use rawtar::RawTar;
use tree::{Node, snapshot};

/// Three layers exercising replacement, whiteouts and opaque directories.
fn stack() -> Vec<Vec<u8>> {
    let base = RawTar::new()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0\n")
        .file("etc/shadow", b"root:*\n")
        .dir("opt/")
        .dir("opt/app/")
        .file("opt/app/v1.bin", b"v1")
        .file("opt/app/config", b"old")
        .symlink("opt/current", "app/v1.bin")
        .file("usr/bin/tool", b"tool v1")
        .hardlink("usr/bin/tool-alias", "usr/bin/tool")
        .file("var/cache/junk", b"junk")
        .end();
    let middle = RawTar::new()
        .file("etc/.wh.shadow", b"")
        .dir("opt/app/")
        .file("opt/app/.wh..wh..opq", b"")
        .file("opt/app/v2.bin", b"v2")
        .symlink("opt/current", "app/v2.bin")
        .file("var/.wh.cache", b"")
        .file("var/log/new.log", b"log")
        .end();
    let top = RawTar::new()
        .file("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n")
        .file("usr/bin/.wh.tool", b"")
        .file("var/cache/fresh", b"fresh")
        .end();
    vec![base, middle, top]
}

fn file(content: &[u8]) -> Node {
    Node::File {
        mode: 0o644,
        content: content.to_vec(),
    }
}

fn dir() -> Node {
    Node::Dir { mode: 0o755 }
}

/// The merged view of [`stack`].
fn expected_merged() -> BTreeMap<String, Node> {
    [
        ("etc", dir()),
        ("etc/passwd", file(b"root:x:0:0\nuser:x:1000:1000\n")),
        ("opt", dir()),
        ("opt/app", dir()),
        ("opt/app/v2.bin", file(b"v2")),
        (
            "opt/current",
            Node::Symlink {
                target: "app/v2.bin".into(),
            },
        ),
        ("usr", dir()),
        ("usr/bin", dir()),
        ("usr/bin/tool-alias", file(b"tool v1")),
        ("var", dir()),
        ("var/log", dir()),
        ("var/log/new.log", file(b"log")),
        ("var/cache", dir()),
        ("var/cache/fresh", file(b"fresh")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn opts(mode: WhiteoutMode) -> UnpackOptions {
    UnpackOptions::for_current_user(mode)
}

#[test]
fn gzip_and_zstd_layers_are_detected_decompressed_and_unpacked() {
    let layers = stack();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let blobs: Vec<Vec<u8>> = layers
            .iter()
            .map(|l| {
                let mut out = Vec::new();
                compress(&l[..], &mut out, c, None).unwrap();
                out
            })
            .collect();
        let t = tempfile::tempdir().unwrap();
        for blob in &blobs {
            let mut r = io::BufReader::new(&blob[..]);
            assert_eq!(detect_compression(&mut r).unwrap(), c);
            let stats = unpack(
                decompress(r, c).unwrap(),
                t.path(),
                &opts(WhiteoutMode::Apply),
            )
            .unwrap();
            assert!(stats.entries > 0);
        }
        assert_eq!(snapshot(t.path()), expected_merged(), "{c}");
    }
}

#[test]
fn unpack_reads_the_whole_stream_so_a_wrapping_hasher_sees_every_byte() {
    struct Hashing<R> {
        inner: R,
        d: Digester,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.d.update(&buf[..n]);
            Ok(n)
        }
    }
    let mut layer = stack().remove(0);
    // Record padding after the end-of-archive blocks, as GNU tar writes.
    layer.extend_from_slice(&[0u8; 10240 - 1024]);
    let mut blob = Vec::new();
    compress(&layer[..], &mut blob, Compression::Gzip, None).unwrap();
    let t = tempfile::tempdir().unwrap();
    let (c, r) = decompress_detected(&blob[..]).unwrap();
    assert_eq!(c, Compression::Gzip);
    let mut h = Hashing {
        inner: r,
        d: Digester::new(Algorithm::Sha256),
    };
    unpack(&mut h, t.path(), &opts(WhiteoutMode::Apply)).unwrap();
    assert_eq!(h.d.finish(), hull_oci::Digest::sha256_of(&layer));
}

#[test]
fn overlay_mode_keeps_each_layer_as_an_overlay_directory() {
    hull_test::require_root!();
    let layers = stack();
    let t = tempfile::tempdir().unwrap();
    let middle = t.path().join("middle");
    std::fs::create_dir(&middle).unwrap();
    unpack(&layers[1][..], &middle, &opts(WhiteoutMode::Overlay)).unwrap();
    let md = std::fs::symlink_metadata(middle.join("etc/shadow")).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    let md = std::fs::symlink_metadata(middle.join("var/cache")).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(
        middle.join("opt/app").as_path(),
        "trusted.overlay.opaque",
        &mut v[..],
    )
    .unwrap();
    assert_eq!(&v[..n], b"y");
    assert!(!middle.join("opt/app/.wh..wh..opq").exists());
    assert_eq!(tree::names(&middle.join("opt/app")), vec!["v2.bin"]);
}

#[test]
fn overlay_layers_mounted_by_the_kernel_show_the_applied_stack() {
    hull_test::require_root!();
    let t = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for (i, layer) in stack().iter().enumerate() {
        let d = t.path().join(format!("layer{i}"));
        std::fs::create_dir(&d).unwrap();
        unpack(&layer[..], &d, &opts(WhiteoutMode::Overlay)).unwrap();
        lowers.push(d.to_string_lossy().into_owned());
    }
    // overlayfs lists the uppermost lower first.
    lowers.reverse();
    let data = std::ffi::CString::new(format!("lowerdir={}", lowers.join(":"))).unwrap();
    let mnt = t.path().join("merged");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = rustix::mount::mount(
        "overlay",
        &mnt,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        data.as_c_str(),
    );
    if let Err(e) = mounted {
        assert!(!hull_test::peers::in_ci(), "mounting overlayfs: {e}");
        eprintln!("SKIPPED: mounting overlayfs is not permitted here: {e}");
        return;
    }
    let seen = snapshot(&mnt);
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH).unwrap();
    assert_eq!(seen, expected_merged());
}

fn sources(layers: Vec<Vec<u8>>) -> Vec<LayerSource> {
    layers
        .into_iter()
        .map(|bytes| -> LayerSource {
            Box::new(move || Ok(Box::new(io::Cursor::new(bytes.clone())) as Box<dyn Read + Send>))
        })
        .collect()
}

#[test]
fn export_flattened_equals_applying_the_stack() {
    let mut flat = Vec::new();
    let n = export_flattened(sources(stack()), &mut flat).unwrap();
    assert_eq!(n, flat.len() as u64);

    // No whiteout markers survive flattening.
    let mut ar = tar::Archive::new(&flat[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path_bytes().into_owned();
        assert!(
            !p.windows(4).any(|w| w == b".wh."),
            "{}",
            String::from_utf8_lossy(&p)
        );
    }

    let t = tempfile::tempdir().unwrap();
    unpack(&flat[..], t.path(), &opts(WhiteoutMode::Apply)).unwrap();
    assert_eq!(snapshot(t.path()), expected_merged());
}

#[test]
fn export_flattened_reports_which_layer_failed_to_open() {
    let mut layers = sources(stack());
    layers[1] = Box::new(|| Err(io::Error::other("blob missing")));
    let err = export_flattened(layers, io::sink()).unwrap_err();
    assert!(
        matches!(err, LayerError::OpenLayer { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn write_tar_from_dir_round_trips_an_unpacked_tree() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    std::fs::create_dir(&a).unwrap();
    for l in stack() {
        unpack(&l[..], &a, &opts(WhiteoutMode::Apply)).unwrap();
    }
    let mut tar = Vec::new();
    write_tar_from_dir(&a, &mut tar).unwrap();
    let b = t.path().join("b");
    std::fs::create_dir(&b).unwrap();
    unpack(&tar[..], &b, &opts(WhiteoutMode::Apply)).unwrap();
    assert_eq!(snapshot(&b), snapshot(&a));
    let mut again = Vec::new();
    write_tar_from_dir(&b, &mut again).unwrap();
    assert_eq!(tar, again, "archiving is deterministic");
}

#[test]
fn hostile_corpus_matches_the_table() {
    let cases = hostile::cases();
    let dir = hostile::corpus_dir();
    let regenerate = std::env::var_os("HULL_REGENERATE_HOSTILE").is_some();
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "tar" || x == "gz") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    let readme = hostile::readme(&cases);
    let readme_path = dir.join("README.md");
    if regenerate {
        std::fs::write(&readme_path, &readme).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&readme_path).unwrap(),
        readme,
        "tests/hostile/README.md drifted from the table; rerun with HULL_REGENERATE_HOSTILE=1"
    );
    for c in &cases {
        for (name, layer) in hostile::file_names(c).iter().zip(&c.layers) {
            let path = dir.join(name);
            if regenerate {
                std::fs::write(&path, hostile::stored(c, layer)).unwrap();
            }
            let on_disk = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; regenerate the corpus", path.display()));
            // Compare uncompressed bytes: gzip output may differ between zlib versions.
            let mut plain = Vec::new();
            decompress_detected(&on_disk[..])
                .unwrap()
                .1
                .read_to_end(&mut plain)
                .unwrap();
            assert!(plain == *layer, "{name} drifted from the table");
        }
    }
}

#[test]
fn hostile_cases_are_refused_or_contained() {
    for c in hostile::cases() {
        let arena = hostile::Arena::new();
        let root = arena.root();
        let o = hostile::options(c.mode, c.max_bytes);
        let last = c.layers.len() - 1;
        let mut result = None;
        for (i, layer) in c.layers.iter().enumerate() {
            let stored = hostile::stored(&c, layer);
            let r = hostile::unpack_stored(&stored, &root, &o);
            if i < last {
                if let Err(e) = &r {
                    panic!("{}: layer {} failed: {e:?}", c.name, i + 1);
                }
            } else {
                result = Some(r);
            }
        }
        match (&c.expect, result.unwrap()) {
            (hostile::Expect::Error(variant), Err(e)) => {
                let dbg = format!("{e:?}");
                assert!(
                    dbg.starts_with(variant),
                    "{}: expected {variant}, got {dbg}",
                    c.name
                );
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && msg == msg.trim_end_matches('.'),
                    "{}: {msg}",
                    c.name
                );
            }
            (hostile::Expect::Error(variant), Ok(stats)) => {
                panic!("{}: expected {variant}, unpacked {stats:?}", c.name)
            }
            (hostile::Expect::Safe(wants), Ok(_)) => hostile::check_wants(&root, wants, c.name),
            (hostile::Expect::Safe(_), Err(e)) => panic!("{}: expected success, got {e:?}", c.name),
        }
        arena.assert_untouched(c.name);
    }
}

#[test]
fn every_stored_hostile_tar_stays_inside_the_root() {
    let dir = hostile::corpus_dir();
    let mut groups: BTreeMap<String, Vec<(u32, std::path::PathBuf)>> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_suffix(".tar.gz")
            .or_else(|| name.strip_suffix(".tar"))
        else {
            continue;
        };
        let (case, n) = match stem.rsplit_once('.') {
            Some((case, n)) if n.parse::<u32>().is_ok() => (case.to_string(), n.parse().unwrap()),
            _ => (stem.to_string(), 0),
        };
        groups.entry(case).or_default().push((n, p));
    }
    assert!(
        groups.len() >= 20,
        "corpus at {} looks empty",
        dir.display()
    );
    for (case, mut files) in groups {
        files.sort();
        let mode = if case.ends_with("-overlay") {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Apply
        };
        let arena = hostile::Arena::new();
        let o = hostile::options(mode, Some(16 << 20));
        for (_, f) in &files {
            let bytes = std::fs::read(f).unwrap();
            if hostile::unpack_stored(&bytes, &arena.root(), &o).is_err() {
                break;
            }
        }
        arena.assert_untouched(&case);
        // Whatever was extracted is inside the root and holds no device the options forbade.
        for (p, node) in snapshot(&arena.root()) {
            let whiteout = matches!(node, Node::Char { rdev: 0 });
            assert!(
                whiteout || !matches!(node, Node::Char { .. } | Node::Block { .. }),
                "{case}: device {p}"
            );
        }
    }
}

#[test]
fn errors_name_the_entry_and_read_as_one_line() {
    let t = tempfile::tempdir().unwrap();
    let layer = RawTar::new().hardlink("bin/sh", "bin/busybox").end();
    let err = unpack(&layer[..], t.path(), &opts(WhiteoutMode::Apply)).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "hardlink \"bin/sh\": resolving its target \"bin/busybox\" inside the root"
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("No such file"), "{source}");
}
