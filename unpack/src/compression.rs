use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// By magic bytes, as containerd's `compression.DetectCompression`.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `r` in the decompressor its first bytes call for.
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let kind = Compression::detect(br.fill_buf()?);
    Ok(match kind {
        Compression::None => (kind, Box::new(br)),
        Compression::Gzip => (kind, Box::new(flate2::bufread::MultiGzDecoder::new(br))),
        Compression::Zstd => (
            kind,
            Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        ),
    })
}
