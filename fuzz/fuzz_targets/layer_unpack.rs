//! Unpacks arbitrary bytes as a layer tar: it may fail, but must not panic, and must never
//! touch anything beside its root (a canary directory next to it stays byte-for-byte intact).
//! The first byte picks the whiteout mode.

#![no_main]

use std::os::unix::fs::PermissionsExt;

use hull_layer::{UnpackOptions, WhiteoutMode, unpack};
use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"canary\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, tar)) = data.split_first() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let canary = t.path().join("canary");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("file"), CANARY).unwrap();
    let opts = UnpackOptions {
        whiteouts: if mode & 1 == 0 {
            WhiteoutMode::Apply
        } else {
            WhiteoutMode::Overlay
        },
        apply_ownership: false,
        create_devices: false,
        max_bytes: Some(64 << 20),
    };
    let _ = unpack(tar, &root, &opts);

    let mut beside: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["canary", "root"]);
    let inside: Vec<_> = std::fs::read_dir(&canary)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(inside, ["file"]);
    assert_eq!(std::fs::read(canary.join("file")).unwrap(), CANARY);
    // Give back the permissions a layer may have taken away, so the directory can be removed.
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
    }
});
