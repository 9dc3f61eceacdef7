//! The hostile corpus: each case is a table row that generates its tar(s) reproducibly; the
//! same bytes are kept in `tests/hostile/` at the workspace root with a README generated from
//! this table (`HULL_REGENERATE_HOSTILE=1` rewrites them; otherwise a drift fails the test).
//!
//! Every case unpacks into `<tmp>/root` beside `<tmp>/canary/file` and must either fail with
//! the expected error or extract safely; either way the canary is untouched, nothing appears
//! beside `root`, and [`HOST_DIR`], which absolute symlinks in the cases aim at, is untouched.

use std::io::Read;
use std::path::{Path, PathBuf};

use hull_layer::{Compression, UnpackOptions, WhiteoutMode, compress, decompress_detected, unpack};

use crate::rawtar::{Header, RawTar};
use crate::tree::names;

/// A directory outside every test root that absolute symlinks in the cases point at.
pub const HOST_DIR: &str = "/tmp/hull-hostile-abs";
const HOST_CONTENT: &[u8] = b"host file, must survive\n";
const CANARY: &[u8] = b"canary\n";

pub enum Want {
    File(&'static [u8]),
    Symlink(&'static str),
    Dir,
    Char,
    Absent,
}

pub enum Expect {
    /// Fails with this `LayerError` variant.
    Error(&'static str),
    /// Succeeds, and these paths inside the root look like this.
    Safe(Vec<(&'static str, Want)>),
}

pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    /// Uncompressed tars, applied in order.
    pub layers: Vec<Vec<u8>>,
    /// Kept gzip-compressed in the corpus (too big otherwise).
    pub gzip: bool,
    pub mode: WhiteoutMode,
    pub max_bytes: Option<u64>,
    pub expect: Expect,
}

fn case(name: &'static str, about: &'static str, layers: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        about,
        layers,
        gzip: false,
        mode: WhiteoutMode::Apply,
        max_bytes: Some(16 << 20),
        expect,
    }
}

const PWNED: &[u8] = b"pwned\n";

pub fn cases() -> Vec<Case> {
    use Expect::*;
    use Want::*;
    let mut v = vec![
        case(
            "dotdot-traversal",
            "names climbing out with `../`",
            vec![
                RawTar::new()
                    .file("../../canary/file", PWNED)
                    .file("a/../../canary/new", PWNED)
                    .end(),
            ],
            Safe(vec![
                ("canary/file", File(PWNED)),
                ("canary/new", File(PWNED)),
            ]),
        ),
        case(
            "absolute-path",
            "an absolute name aimed at a host file",
            vec![
                RawTar::new()
                    .file("/tmp/hull-hostile-abs/passwd", PWNED)
                    .end(),
            ],
            Safe(vec![("tmp/hull-hostile-abs/passwd", File(PWNED))]),
        ),
        case(
            "symlink-escape-relative",
            "a symlink to `../canary`, then a file written through it",
            vec![
                RawTar::new()
                    .symlink("evil", "../canary")
                    .file("evil/file", PWNED)
                    .end(),
            ],
            Safe(vec![
                ("evil", Symlink("../canary")),
                ("canary/file", File(PWNED)),
            ]),
        ),
        case(
            "symlink-escape-absolute",
            "a symlink to a host directory, then a file written through it",
            vec![
                RawTar::new()
                    .symlink("evil", HOST_DIR)
                    .file("evil/passwd", PWNED)
                    .end(),
            ],
            Safe(vec![
                ("evil", Symlink(HOST_DIR)),
                ("tmp/hull-hostile-abs/passwd", File(PWNED)),
            ]),
        ),
        case(
            "symlink-chain",
            "a chain of symlinks ending in `../../..`, written through",
            vec![
                RawTar::new()
                    .symlink("a", "b")
                    .symlink("b", "c/d")
                    .symlink("c", "../../..")
                    .file("a/escape", PWNED)
                    .end(),
            ],
            Safe(vec![("d/escape", File(PWNED))]),
        ),
        case(
            "symlink-loop",
            "two symlinks pointing at each other, written through",
            vec![
                RawTar::new()
                    .symlink("l1", "l2")
                    .symlink("l2", "l1")
                    .file("l1/x", PWNED)
                    .end(),
            ],
            Error("Io"),
        ),
        case(
            "symlink-to-proc",
            "a symlink to `/proc/self/root`, written through",
            vec![
                RawTar::new()
                    .symlink("p", "/proc/self/root")
                    .file("p/tmp/hull-hostile-abs/passwd", PWNED)
                    .end(),
            ],
            Safe(vec![(
                "proc/self/root/tmp/hull-hostile-abs/passwd",
                File(PWNED),
            )]),
        ),
        case(
            "hardlink-escape",
            "a hardlink to `../canary/file`",
            vec![RawTar::new().hardlink("x", "../canary/file").end()],
            Error("HardlinkTarget"),
        ),
        case(
            "hardlink-via-symlink-dir",
            "a hardlink to a file below a symlink to `../canary`",
            vec![
                RawTar::new()
                    .symlink("d", "../canary")
                    .hardlink("x", "d/file")
                    .end(),
            ],
            Error("HardlinkTarget"),
        ),
        case(
            "hardlink-via-absolute-symlink-dir",
            "a hardlink to a file below a symlink to a host directory",
            vec![
                RawTar::new()
                    .symlink("d", HOST_DIR)
                    .hardlink("x", "d/passwd")
                    .end(),
            ],
            Error("HardlinkTarget"),
        ),
        case(
            "hardlink-to-escaping-symlink",
            "a hardlink to a symlink aimed at a host file, then a file written at the link",
            vec![
                RawTar::new()
                    .symlink("s", "/tmp/hull-hostile-abs/passwd")
                    .hardlink("h", "s")
                    .end(),
                RawTar::new().file("h", PWNED).end(),
            ],
            Safe(vec![
                ("s", Symlink("/tmp/hull-hostile-abs/passwd")),
                ("h", File(PWNED)),
            ]),
        ),
        case(
            "whiteout-through-symlink",
            "whiteouts below symlinks to a host directory and to `../canary`",
            vec![
                RawTar::new()
                    .symlink("evil", HOST_DIR)
                    .symlink("evil2", "../canary")
                    .end(),
                RawTar::new()
                    .file("evil/.wh.passwd", b"")
                    .file("evil2/.wh.file", b"")
                    .end(),
            ],
            Safe(vec![("evil", Symlink(HOST_DIR))]),
        ),
        case(
            "whiteout-dotdot",
            "a whiteout of `..`",
            vec![RawTar::new().dir("d/").file("d/.wh...", b"").end()],
            Error("InvalidEntry"),
        ),
        case(
            "opaque-in-symlinked-dir",
            "an opaque marker in a directory that is a symlink to `../canary`",
            vec![
                RawTar::new().symlink("link", "../canary").end(),
                RawTar::new().file("link/.wh..wh..opq", b"").end(),
            ],
            Safe(vec![("link", Symlink("../canary"))]),
        ),
        Case {
            mode: WhiteoutMode::Overlay,
            ..case(
                "whiteout-in-symlinked-dir-overlay",
                "overlay whiteouts and opaque markers below symlinks to host directories",
                vec![
                    RawTar::new()
                        .symlink("link", HOST_DIR)
                        .symlink("link2", "../canary")
                        .file("link/.wh.passwd", b"")
                        .file("link2/.wh..wh..opq", b"")
                        .end(),
                ],
                Safe(vec![("tmp/hull-hostile-abs/passwd", Char), ("canary", Dir)]),
            )
        },
        case(
            "device-not-allowed",
            "device nodes while devices are off",
            vec![
                RawTar::new()
                    .device("dev/mem", b'3', 1, 1)
                    .device("dev/sda", b'4', 8, 0)
                    .end(),
            ],
            Safe(vec![("dev/mem", Absent), ("dev/sda", Absent)]),
        ),
        Case {
            gzip: true,
            ..case(
                "huge-header-name",
                "a 2 MiB GNU long name (read into memory by a naive reader)",
                vec![
                    RawTar::new()
                        .gnu_long_name(&vec![b'a'; 2 << 20])
                        .file("short", PWNED)
                        .end(),
                ],
                Error("HeadersTooLarge"),
            )
        },
        case(
            "long-pax-path",
            "a 5000-byte PAX path",
            vec![
                RawTar::new()
                    .pax(&[("path", "a/".repeat(2500).as_bytes())])
                    .file("short", PWNED)
                    .end(),
            ],
            Error("InvalidPath"),
        ),
        case(
            "long-component",
            "a 300-byte path component",
            vec![
                RawTar::new()
                    .pax(&[("path", "c".repeat(300).as_bytes())])
                    .file("short", PWNED)
                    .end(),
            ],
            Error("InvalidPath"),
        ),
        case(
            "truncated",
            "a stream cut in the middle of a file's data",
            vec![{
                let mut t = RawTar::new().file("big", &[b'x'; 10_000]).end();
                t.truncate(3_000);
                t
            }],
            Error("Truncated"),
        ),
        case(
            "truncated-at-entry-boundary",
            "a stream cut exactly after an entry, without end-of-archive blocks",
            vec![RawTar::new().file("f", PWNED).unterminated()],
            Error("MissingEnd"),
        ),
        case(
            "size-lie",
            "a header declaring 1 MiB followed by 6 bytes and the end blocks",
            vec![
                RawTar::new()
                    .entry(&Header::new(b"liar", b'0', 1 << 20), PWNED)
                    .end(),
            ],
            Error("Truncated"),
        ),
        Case {
            gzip: true,
            max_bytes: Some(1 << 20),
            ..case(
                "gzip-bomb",
                "32 MiB of zeros gzipped to a few KiB, unpacked with a 1 MiB limit",
                vec![RawTar::new().file("bomb", &vec![0u8; 32 << 20]).end()],
                Error("TooLarge"),
            )
        },
        case(
            "file-replaced-by-symlink",
            "a file, replaced by a symlink to `../canary` in the next layer, written through in the third",
            vec![
                RawTar::new().file("x", b"plain\n").end(),
                RawTar::new().symlink("x", "../canary").end(),
                RawTar::new().file("x/file", PWNED).end(),
            ],
            Safe(vec![
                ("x", Symlink("../canary")),
                ("canary/file", File(PWNED)),
            ]),
        ),
        case(
            "dir-replaced-by-symlink",
            "a directory, replaced by a symlink to a host directory, then written through",
            vec![
                RawTar::new().dir("d/").file("d/f", b"1\n").end(),
                RawTar::new()
                    .symlink("d", HOST_DIR)
                    .file("d/passwd", PWNED)
                    .end(),
            ],
            Safe(vec![
                ("d", Symlink(HOST_DIR)),
                ("tmp/hull-hostile-abs/passwd", File(PWNED)),
            ]),
        ),
        case(
            "symlink-replaced-by-dir",
            "a symlink to `../canary` replaced by a directory entry of the same name",
            vec![
                RawTar::new()
                    .symlink("d", "../canary")
                    .dir("d/")
                    .file("d/file", PWNED)
                    .end(),
            ],
            Safe(vec![
                ("d", Dir),
                ("d/file", File(PWNED)),
                ("canary", Absent),
            ]),
        ),
        case(
            "root-as-file",
            "a regular file named `/`",
            vec![RawTar::new().file("/", PWNED).end()],
            Error("InvalidEntry"),
        ),
        case(
            "pax-sparse",
            "a PAX (GNU 1.0) sparse file",
            vec![
                RawTar::new()
                    .pax(&[
                        ("GNU.sparse.major", b"1"),
                        ("GNU.sparse.minor", b"0"),
                        ("GNU.sparse.name", b"sparse"),
                        ("GNU.sparse.realsize", b"1099511627776"),
                    ])
                    .file("GNUSparseFile.0/sparse", b"1\n0\n1\nx")
                    .end(),
            ],
            Error("Unsupported"),
        ),
    ];
    v.sort_by_key(|c| c.name);
    v
}

/// The corpus file names of a case, in layer order.
pub fn file_names(c: &Case) -> Vec<String> {
    let ext = if c.gzip { "tar.gz" } else { "tar" };
    if c.layers.len() == 1 {
        vec![format!("{}.{ext}", c.name)]
    } else {
        (1..=c.layers.len())
            .map(|i| format!("{}.{i}.{ext}", c.name))
            .collect()
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hostile")
}

pub fn readme(cases: &[Case]) -> String {
    let mut s = String::from(
        "# Hostile layer tars\n\n\
         Generated from the table in `crates/hull-layer/tests/layer/hostile.rs`; the `layer` test\n\
         fails when these files drift from it. Regenerate with\n\
         `HULL_REGENERATE_HOSTILE=1 cargo test -p hull-layer --test layer hostile`.\n\n\
         Each case is unpacked by `hull_layer::unpack` into `<tmp>/root`, beside a canary\n\
         directory `<tmp>/canary` holding a file. A case either fails with the error named below\n\
         or extracts safely, with the paths listed (relative to the root); in every case the\n\
         canary stays byte-for-byte the same, nothing appears beside `root`, and the host\n\
         directory `/tmp/hull-hostile-abs` that absolute symlinks aim at is untouched.\n\
         Multi-layer cases are `NAME.1.tar`, `NAME.2.tar`, ... applied in order;\n\
         `.tar.gz` files are gzip-compressed to keep the corpus small.\n\
         Cases whose name ends in `-overlay` use overlay whiteouts; all others apply them.\n\n\
         | file(s) | case | expected |\n|---|---|---|\n",
    );
    for c in cases {
        let files = file_names(c)
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(" ");
        let expected = match &c.expect {
            Expect::Error(v) => format!("refused: `LayerError::{v}`"),
            Expect::Safe(wants) => {
                let parts: Vec<String> = wants
                    .iter()
                    .map(|(p, w)| match w {
                        Want::File(data) => format!(
                            "`{p}` is a file holding {:?}",
                            String::from_utf8_lossy(data)
                        ),
                        Want::Symlink(t) => format!("`{p}` is a symlink to `{t}`"),
                        Want::Dir => format!("`{p}` is a directory"),
                        Want::Char => format!("`{p}` is a whiteout device"),
                        Want::Absent => format!("`{p}` does not exist"),
                    })
                    .collect();
                format!("extracted safely: {}", parts.join("; "))
            }
        };
        s.push_str(&format!("| {files} | {} | {expected} |\n", c.about));
    }
    s
}

/// The bytes a layer has in the corpus.
pub fn stored(c: &Case, layer: &[u8]) -> Vec<u8> {
    if !c.gzip {
        return layer.to_vec();
    }
    let mut out = Vec::new();
    compress(layer, &mut out, Compression::Gzip, None).unwrap();
    out
}

/// A scratch area: `root/` to unpack into, `canary/file` beside it.
pub struct Arena {
    pub dir: tempfile::TempDir,
}

impl Arena {
    pub fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::create_dir(dir.path().join("canary")).unwrap();
        std::fs::write(dir.path().join("canary/file"), CANARY).unwrap();
        ensure_host_dir();
        Arena { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The canary is byte-for-byte intact, nothing appeared beside the root, and the host
    /// directory holds only its file, unchanged.
    pub fn assert_untouched(&self, what: &str) {
        let t = self.dir.path();
        assert_eq!(names(t), vec!["canary", "root"], "{what}: beside the root");
        assert_eq!(
            names(&t.join("canary")),
            vec!["file"],
            "{what}: canary listing"
        );
        let canary = std::fs::read(t.join("canary/file"))
            .unwrap_or_else(|e| panic!("{what}: canary file: {e}"));
        assert_eq!(canary, CANARY, "{what}: canary content");
        assert!(
            !std::fs::symlink_metadata(t.join("canary/file"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            names(Path::new(HOST_DIR)),
            vec!["passwd"],
            "{what}: host dir"
        );
        let host = std::fs::read(Path::new(HOST_DIR).join("passwd"))
            .unwrap_or_else(|e| panic!("{what}: host file: {e}"));
        assert_eq!(host, HOST_CONTENT, "{what}: host file");
    }
}

fn ensure_host_dir() {
    std::fs::create_dir_all(HOST_DIR).unwrap();
    let f = Path::new(HOST_DIR).join("passwd");
    if std::fs::read(&f).ok().as_deref() != Some(HOST_CONTENT) {
        std::fs::write(&f, HOST_CONTENT).unwrap();
    }
}

pub fn options(mode: WhiteoutMode, max_bytes: Option<u64>) -> UnpackOptions {
    UnpackOptions {
        whiteouts: mode,
        apply_ownership: rustix::process::geteuid().is_root(),
        create_devices: false,
        max_bytes,
    }
}

/// Unpacks one stored layer (gzip detected from its bytes).
pub fn unpack_stored(
    bytes: &[u8],
    root: &Path,
    opts: &UnpackOptions,
) -> Result<hull_layer::UnpackStats, hull_layer::LayerError> {
    let (_, r) = decompress_detected(bytes).unwrap();
    unpack(r, root, opts)
}

pub fn check_wants(root: &Path, wants: &[(&str, Want)], what: &str) {
    for (p, want) in wants {
        let path = root.join(p);
        let md = std::fs::symlink_metadata(&path);
        let present = || {
            std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("{what}: {p} should exist inside the root: {e}"))
        };
        match want {
            Want::Absent => assert!(md.is_err(), "{what}: {p} exists"),
            Want::File(data) => {
                assert!(present().is_file(), "{what}: {p} is not a file");
                let mut got = Vec::new();
                std::fs::File::open(&path)
                    .unwrap()
                    .read_to_end(&mut got)
                    .unwrap();
                assert_eq!(&got, data, "{what}: {p} content");
            }
            Want::Symlink(t) => {
                assert!(
                    present().file_type().is_symlink(),
                    "{what}: {p} is not a symlink"
                );
                assert_eq!(
                    std::fs::read_link(&path).unwrap(),
                    Path::new(t),
                    "{what}: {p}"
                );
            }
            Want::Dir => assert!(present().is_dir(), "{what}: {p} is not a directory"),
            Want::Char => {
                use std::os::unix::fs::FileTypeExt;
                let md = present();
                // Without the privilege for mknod, overlay whiteouts are marked files.
                assert!(
                    md.file_type().is_char_device() || md.is_file(),
                    "{what}: {p} is not a whiteout"
                );
            }
        }
    }
}
