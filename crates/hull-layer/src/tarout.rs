//! Writing tar entries in the POSIX pax format: ustar headers, with PAX records for names and
//! link targets longer than the header holds, xattrs and precise times. Data is streamed and
//! must match the declared size exactly.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

const BLOCK: usize = 512;

/// PAX records as key/value byte strings.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// One entry to write. Paths are cleaned and relative; directories get their `/` here.
pub(crate) struct OutEntry<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) kind: EntryType,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: u64,
    pub(crate) size: u64,
    pub(crate) link: Option<&'a [u8]>,
    pub(crate) dev: (u32, u32),
    pub(crate) uname: &'a [u8],
    pub(crate) gname: &'a [u8],
    /// Further PAX records (`SCHILY.xattr.*`, `mtime`, ...).
    pub(crate) pax: &'a [(Vec<u8>, Vec<u8>)],
}

#[derive(Debug)]
pub(crate) enum AppendError {
    /// Reading the entry's data failed.
    Read(io::Error),
    /// Writing the archive failed.
    Write(io::Error),
    /// The data ended after `actual` bytes, short of the declared size.
    Short { actual: u64 },
}

pub(crate) struct TarWriter<W> {
    out: W,
    written: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter {
            out,
            written: 0,
            buf: vec![0; 128 * 1024],
        }
    }

    fn put(&mut self, b: &[u8]) -> Result<(), AppendError> {
        self.out.write_all(b).map_err(AppendError::Write)?;
        self.written = self.written.saturating_add(b.len() as u64);
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), AppendError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            let zeros = [0u8; BLOCK];
            self.put(zeros.get(rem..).unwrap_or_default())?;
        }
        Ok(())
    }

    pub(crate) fn append(
        &mut self,
        e: &OutEntry<'_>,
        data: &mut dyn Read,
    ) -> Result<(), AppendError> {
        let mut name = e.path.to_vec();
        if e.kind == EntryType::Directory {
            name.push(b'/');
        }
        let mut records: Vec<(&[u8], &[u8])> = Vec::new();
        let mut h = Header::new_ustar();
        let invalid = |m: &str| {
            AppendError::Write(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()))
        };
        {
            let ustar = h.as_ustar_mut().ok_or_else(|| invalid("ustar header"))?;
            if !fill(&mut ustar.name, &name) {
                records.push((b"path", &name));
                fill(&mut ustar.name, name.get(..99).unwrap_or(&name));
            }
            if let Some(link) = e.link
                && !fill(&mut ustar.linkname, link)
            {
                records.push((b"linkpath", link));
                fill(&mut ustar.linkname, link.get(..99).unwrap_or(link));
            }
            if !fill(&mut ustar.uname, e.uname) {
                records.push((b"uname", e.uname));
            }
            if !fill(&mut ustar.gname, e.gname) {
                records.push((b"gname", e.gname));
            }
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.size);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0).map_err(AppendError::Write)?;
            h.set_device_minor(e.dev.1).map_err(AppendError::Write)?;
        }
        for (k, v) in e.pax {
            records.push((k, v));
        }
        if !records.is_empty() {
            let body = pax_body(&records);
            let mut ph = Header::new_ustar();
            ph.set_path("././@PaxHeader").map_err(AppendError::Write)?;
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            ph.set_cksum();
            self.put(ph.as_bytes())?;
            self.put(&body)?;
            self.pad(body.len() as u64)?;
        }
        h.set_cksum();
        self.put(h.as_bytes())?;
        let mut left = e.size;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let chunk = self.buf.get_mut(..want).unwrap_or_default();
            let n = match data.read(chunk) {
                Ok(0) => {
                    return Err(AppendError::Short {
                        actual: e.size - left,
                    });
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(AppendError::Read(err)),
            };
            self.out
                .write_all(self.buf.get(..n).unwrap_or_default())
                .map_err(AppendError::Write)?;
            self.written = self.written.saturating_add(n as u64);
            left -= n as u64;
        }
        self.pad(e.size)
    }

    /// Writes the end-of-archive blocks, flushes, and returns the bytes written in all.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.written = self.written.saturating_add(2 * BLOCK as u64);
        self.out.flush()?;
        Ok(self.written)
    }
}

/// Copies `value` into a NUL-padded header field if it fits (a full field needs no NUL).
fn fill(field: &mut [u8], value: &[u8]) -> bool {
    if value.len() > field.len() {
        return false;
    }
    field.fill(0);
    if let Some(dst) = field.get_mut(..value.len()) {
        dst.copy_from_slice(value);
    }
    true
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record itself.
fn pax_body(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = 3 + k.len() + v.len();
        let mut len = rest + 1;
        while len.to_string().len() + rest > len {
            len += 1;
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a [u8], kind: EntryType, size: u64) -> OutEntry<'a> {
        OutEntry {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            size,
            link: None,
            dev: (0, 0),
            uname: b"",
            gname: b"",
            pax: &[],
        }
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let body = pax_body(&[(b"path", b"x")]);
        assert_eq!(body, b"9 path=x\n");
        let v = vec![b'a'; 95];
        let body = pax_body(&[(b"k", &v)]);
        assert_eq!(body.len(), 102);
        assert!(body.starts_with(b"102 k="));
    }

    #[test]
    fn long_names_and_links_round_trip_through_the_tar_crate() {
        let long = "d/".repeat(100) + "file";
        let target = "t/".repeat(80) + "x";
        let mut w = TarWriter::new(Vec::new());
        w.append(
            &entry(long.as_bytes(), EntryType::Regular, 3),
            &mut &b"abc"[..],
        )
        .unwrap();
        let mut l = entry(b"link", EntryType::Symlink, 0);
        l.link = Some(target.as_bytes());
        w.append(&l, &mut io::empty()).unwrap();
        w.append(&entry(b"dir", EntryType::Directory, 0), &mut io::empty())
            .unwrap();
        let bytes_written = w.finish().unwrap();
        let mut w2 = TarWriter::new(Vec::new());
        w2.append(
            &entry(long.as_bytes(), EntryType::Regular, 3),
            &mut &b"abc"[..],
        )
        .unwrap();
        let out = w2.out;
        assert_eq!(out.len() % 512, 0);

        let mut ar = tar::Archive::new(&out[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), long.as_bytes());
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        assert!(bytes_written > out.len() as u64);
    }

    #[test]
    fn short_data_is_reported() {
        let mut w = TarWriter::new(Vec::new());
        let err = w
            .append(&entry(b"f", EntryType::Regular, 10), &mut &b"abc"[..])
            .unwrap_err();
        assert!(matches!(err, AppendError::Short { actual: 3 }));
    }
}
