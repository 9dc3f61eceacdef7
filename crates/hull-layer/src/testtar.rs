//! Building small tars for unit tests.

use tar::{EntryType, Header};

pub(crate) const MTIME: u64 = 1_600_000_000;

pub(crate) struct Tar(tar::Builder<Vec<u8>>);

fn header(kind: EntryType, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

impl Tar {
    pub(crate) fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    pub(crate) fn file(self, path: &str, data: &[u8]) -> Tar {
        self.file_full(path, data, 0o644, 0, 0, MTIME)
    }

    pub(crate) fn file_full(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Tar {
        let mut h = header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub(crate) fn dir(self, path: &str, mode: u32) -> Tar {
        self.dir_full(path, mode, MTIME)
    }

    pub(crate) fn dir_full(mut self, path: &str, mode: u32, mtime: u64) -> Tar {
        let mut h = header(EntryType::Directory, mode);
        h.set_mtime(mtime);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = header(EntryType::Symlink, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = header(EntryType::Link, 0o644);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> Tar {
        let mut h = header(kind, 0o640);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// PAX records for the next entry.
    pub(crate) fn pax(mut self, records: &[(&str, &[u8])]) -> Tar {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    pub(crate) fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}
