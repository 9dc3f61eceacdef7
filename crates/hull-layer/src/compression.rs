//! Layer compression: judged by media type or by magic bytes, undone and applied as streams.

use std::io::{self, BufRead, BufReader, Read, Write};

use hull_oci::media_type::{self, LayerCompression};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type declares; `None` for a media type that is not a layer.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        media_type::layer_compression(mt).map(Compression::from)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl From<LayerCompression> for Compression {
    fn from(c: LayerCompression) -> Self {
        match c {
            LayerCompression::None => Compression::None,
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sniffs the magic bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, anything else is taken for a plain
/// tar) without consuming them. An empty stream is a plain (empty) tar.
///
/// Decides on what one `fill_buf` returns: if a reader hands out fewer than 4 bytes that could
/// still be the start of the zstd magic, this fails rather than guess.
pub fn detect_compression<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let buf = loop {
        match r.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if buf.starts_with(&GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if buf.starts_with(&ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    if !buf.is_empty() && buf.len() < ZSTD_MAGIC.len() && ZSTD_MAGIC.starts_with(buf) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "detecting layer compression: only {} bytes available, too few to tell zstd from tar",
                buf.len()
            ),
        ));
    }
    Ok(Compression::None)
}

/// A streaming decompressor for `c`: gzip through flate2 (zlib-rs; concatenated members are
/// read as one stream, as `gzip -d` does), zstd through libzstd (concatenated frames likewise,
/// with libzstd's default window limit of 128 MiB as a memory guard).
pub fn decompress<'a, R: Read + Send + 'a>(
    r: R,
    c: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Detects the compression of `r` from its first bytes and returns it with a decompressing
/// reader over the whole stream.
pub fn decompress_detected<'a, R: Read + Send + 'a>(
    r: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let c = detect_compression(&mut r)?;
    Ok((c, decompress(r, c)?))
}

/// Compresses all of `input` into `output` with `c` at the tools' default levels (gzip 6,
/// zstd 3), returning the number of uncompressed bytes read. `output` receives a complete
/// stream (gzip trailer, zstd frame end) when this returns `Ok`.
pub fn compress<R: Read, W: Write>(mut input: R, output: W, c: Compression) -> io::Result<u64> {
    match c {
        Compression::None => {
            let mut output = output;
            let n = io::copy(&mut input, &mut output)?;
            output.flush()?;
            Ok(n)
        }
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(output, flate2::Compression::new(6));
            let n = io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
            Ok(n)
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(output, 3)?;
            let n = io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_compression() {
        assert_eq!(
            Compression::from_media_type(media_type::OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type(media_type::DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type(media_type::OCI_LAYER),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_media_type(media_type::OCI_CONFIG), None);
    }

    #[test]
    fn detection_does_not_consume() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut blob = Vec::new();
            compress(&b"hello layer"[..], &mut blob, c).unwrap();
            let mut r = BufReader::new(&blob[..]);
            assert_eq!(detect_compression(&mut r).unwrap(), c);
            let mut out = Vec::new();
            decompress(r, c).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, b"hello layer");
        }
    }

    #[test]
    fn empty_stream_is_plain() {
        let mut r = BufReader::new(&b""[..]);
        assert_eq!(detect_compression(&mut r).unwrap(), Compression::None);
    }

    #[test]
    fn short_ambiguous_prefix_is_an_error() {
        let mut r = BufReader::new(&[0x28u8, 0xb5][..]);
        assert!(detect_compression(&mut r).is_err());
    }

    #[test]
    fn concatenated_gzip_members_are_one_stream() {
        let mut blob = Vec::new();
        compress(&b"one "[..], &mut blob, Compression::Gzip).unwrap();
        compress(&b"two"[..], &mut blob, Compression::Gzip).unwrap();
        let (c, mut r) = decompress_detected(&blob[..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "one two");
    }

    #[test]
    fn truncated_compressed_streams_fail() {
        let data = vec![7u8; 100_000];
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut blob = Vec::new();
            let mut state = 1u32;
            let noisy: Vec<u8> = data
                .iter()
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            compress(&noisy[..], &mut blob, c).unwrap();
            blob.truncate(blob.len() / 2);
            let mut out = Vec::new();
            let res = decompress(&blob[..], c).unwrap().read_to_end(&mut out);
            assert!(res.is_err(), "{c}: truncated stream decoded without error");
        }
    }
}
