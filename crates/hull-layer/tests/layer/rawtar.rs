//! A byte-level tar writer for tests: names are written as given (`..`, absolute), sizes may
//! lie, and the output is the same bytes on every run.

const BLOCK: usize = 512;
pub const MTIME: u64 = 1_700_000_000;

#[derive(Clone)]
pub struct Header {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The size the header declares, whatever data follows.
    pub size: u64,
    pub link: Vec<u8>,
    pub major: u32,
    pub minor: u32,
}

impl Header {
    pub fn new(name: &[u8], typeflag: u8, size: u64) -> Header {
        Header {
            name: name.to_vec(),
            typeflag,
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size,
            link: Vec::new(),
            major: 0,
            minor: 0,
        }
    }

    pub fn bytes(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        put(&mut b[0..100], &self.name);
        octal(&mut b[100..108], u64::from(self.mode));
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], MTIME);
        b[148..156].copy_from_slice(b"        ");
        b[156] = self.typeflag;
        put(&mut b[157..257], &self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        put(&mut b[265..297], b"root");
        put(&mut b[297..329], b"root");
        octal(&mut b[329..337], u64::from(self.major));
        octal(&mut b[337..345], u64::from(self.minor));
        let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        b
    }
}

fn put(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    assert!(s.len() <= w, "{v} does not fit a {w}-digit field");
    field[..w].copy_from_slice(s.as_bytes());
    field[w] = 0;
}

#[derive(Default)]
pub struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// A header followed by `data`, padded to a block (the header may declare another size).
    pub fn entry(mut self, h: &Header, data: &[u8]) -> RawTar {
        self.out.extend_from_slice(&h.bytes());
        self.out.extend_from_slice(data);
        let rem = data.len() % BLOCK;
        if rem != 0 {
            self.out.extend(std::iter::repeat_n(0u8, BLOCK - rem));
        }
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.entry(&Header::new(name.as_bytes(), b'0', data.len() as u64), data)
    }

    pub fn dir(self, name: &str) -> RawTar {
        self.entry(&Header::new(name.as_bytes(), b'5', 0), b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> RawTar {
        let mut h = Header::new(name.as_bytes(), b'2', 0);
        h.mode = 0o777;
        h.link = target.as_bytes().to_vec();
        self.entry(&h, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> RawTar {
        let mut h = Header::new(name.as_bytes(), b'1', 0);
        h.link = target.as_bytes().to_vec();
        self.entry(&h, b"")
    }

    pub fn device(self, name: &str, typeflag: u8, major: u32, minor: u32) -> RawTar {
        let mut h = Header::new(name.as_bytes(), typeflag, 0);
        h.major = major;
        h.minor = minor;
        self.entry(&h, b"")
    }

    /// A GNU long-name record for the next entry.
    pub fn gnu_long_name(self, name: &[u8]) -> RawTar {
        let mut data = name.to_vec();
        data.push(0);
        let h = Header::new(b"././@LongLink", b'L', data.len() as u64);
        self.entry(&h, &data)
    }

    /// PAX records for the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> RawTar {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = 3 + k.len() + v.len();
            let mut len = rest + 1;
            while len.to_string().len() + rest > len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = Header::new(b"././@PaxHeader", b'x', body.len() as u64);
        self.entry(&h, &body)
    }

    /// With the two end-of-archive blocks.
    pub fn end(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.out
    }

    /// Without end-of-archive blocks.
    pub fn unterminated(self) -> Vec<u8> {
        self.out
    }
}
