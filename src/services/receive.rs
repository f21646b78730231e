//! Receiving a NAR upload: the body is written to a temporary file as it arrives while it is
//! decompressed, validated as a NAR, hashed and listed, all in one streaming pass.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use hibernation::nix::nar::{HashingReader, NarError, validate};
use hibernation::nix::{Compression, NarHash};
use sha2::{Digest, Sha256};

use super::push::PushError;
use crate::storage::{PendingUpload, Storage};

/// A verified NAR in a temporary file, not yet visible.
pub struct ReceivedNar {
    pub pending: PendingUpload,
    pub compression: Compression,
    pub file_hash: NarHash,
    pub file_size: u64,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// The `.ls` listing of the NAR, as JSON; none for NARs with too many entries.
    pub listing: Option<serde_json::Value>,
}

/// What the uploader declared; the NAR must match it exactly.
#[derive(Debug, Clone, Copy)]
pub struct Declared<'a> {
    pub nar_hash: &'a NarHash,
    pub nar_size: u64,
}

fn decoder<'a>(compression: Compression, input: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Brotli => Box::new(brotli::Decompressor::new(input, 64 * 1024)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
    })
}

/// The most compressed bytes accepted for a NAR of at most `max_nar_size` bytes: incompressible
/// data grows a little when compressed, but a body much larger than its NAR is padding
/// (zstd's skippable frames, say) that would fill the disk without ever being served.
pub fn max_file_size(max_nar_size: u64) -> u64 {
    max_nar_size.saturating_add(max_nar_size / 64).saturating_add(1 << 20)
}

/// Reads a compressed NAR body on a blocking thread. `compression: None` with a plain `.nar`
/// name is sniffed, since Nix 2.8 names gzip NARs `.nar` too. A NAR larger than
/// `max_nar_size` (MAX_NAR_SIZE) is refused as soon as it gets there.
pub fn receive_nar(
    storage: &Storage,
    body: impl Read,
    compression: Compression,
    declared: Option<Declared<'_>>,
    max_nar_size: u64,
) -> Result<ReceivedNar, PushError> {
    if let Some(d) = declared
        && d.nar_size > max_nar_size
    {
        return Err(too_large(max_nar_size));
    }
    let pending = storage.begin_upload().map_err(PushError::Storage)?;
    let file = pending.file.try_clone().map_err(PushError::Storage)?;
    let tee = Tee {
        inner: body,
        out: BufWriter::with_capacity(256 * 1024, file),
        hasher: Sha256::new(),
        count: 0,
        limit: max_file_size(max_nar_size),
    };
    let mut input = BufReader::with_capacity(256 * 1024, tee);
    let compression = match compression {
        Compression::None => Compression::sniff(input.fill_buf().map_err(classify_read_error)?),
        other => other,
    };
    let limit = declared.map_or(max_nar_size, |d| d.nar_size).saturating_add(1);
    let (summary, nar_hash, nar_size) = {
        // Reading one byte past the declared size is enough to know it is wrong.
        let mut nar = HashingReader::new(decoder(compression, &mut input).map_err(PushError::Storage)?.take(limit));
        let result = validate(&mut nar);
        let read = nar.count();
        let (nar_hash, nar_size, _) = nar.finish();
        if read > max_nar_size {
            return Err(too_large(max_nar_size));
        }
        if let Some(d) = declared
            && read > d.nar_size
        {
            return Err(PushError::NarMismatch(format!("the NAR is larger than its declared NarSize {}", d.nar_size)));
        }
        let summary = match result {
            Ok(summary) => summary,
            Err(NarError::Io(e)) => return Err(classify_read_error(e)),
            Err(e) => return Err(PushError::MalformedNar(e.to_string())),
        };
        (summary, nar_hash, nar_size)
    };
    if let Some(d) = declared {
        if nar_size != d.nar_size {
            return Err(PushError::NarMismatch(format!("NarSize is {nar_size}, the narinfo says {}", d.nar_size)));
        }
        if nar_hash != *d.nar_hash {
            return Err(PushError::NarMismatch(format!("NarHash is {nar_hash}, the narinfo says {}", d.nar_hash)));
        }
    }
    // Anything after the compressed NAR would be stored but never served: refuse it.
    if !input.fill_buf().map_err(classify_read_error)?.is_empty() {
        return Err(PushError::MalformedNar("data after the end of the compressed NAR".into()));
    }
    let mut tee = input.into_inner();
    tee.out.flush().map_err(PushError::Storage)?;
    Ok(ReceivedNar {
        pending,
        compression,
        file_hash: NarHash::from_hasher(tee.hasher),
        file_size: tee.count,
        nar_hash,
        nar_size,
        listing: summary.listing,
    })
}

fn too_large(max_nar_size: u64) -> PushError {
    PushError::TooLarge(format!(
        "the NAR is larger than this server's MAX_NAR_SIZE ({})",
        hibernation::format::gib(max_nar_size)
    ))
}

/// Errors from the body are interruptions; errors from the decoder mean a bad stream.
pub(crate) fn classify_read_error(e: io::Error) -> PushError {
    if let Some(limit) = SizeLimitExceeded::in_error(&e) {
        return PushError::TooLarge(limit.to_string());
    }
    if e.get_ref().is_some_and(|inner| inner.is::<BodyError>()) {
        return PushError::Interrupted(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => PushError::MalformedNar("the upload ended before the NAR did".into()),
        _ => PushError::MalformedNar(format!("the body is not a valid compressed stream: {e}")),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the request body failed: {0}")]
struct BodyError(String);

/// A body cut off at a size limit (here or by the HTTP layer); says which limit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SizeLimitExceeded(pub String);

impl SizeLimitExceeded {
    /// The limit error carried by an I/O error, if that is what it is.
    pub fn in_error(e: &io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// A body cut off because it stalled or trickled (CLIENT_TIMEOUT); says which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyStalled(pub String);

impl BodyStalled {
    pub fn in_error(e: &io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// Copies everything read from the body into the temporary file and hashes it, up to `limit`
/// bytes.
struct Tee<R> {
    inner: R,
    out: BufWriter<std::fs::File>,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| match SizeLimitExceeded::in_error(&e) {
            Some(_) => e,
            None => io::Error::other(BodyError(e.to_string())),
        })?;
        if self.count + n as u64 > self.limit {
            return Err(io::Error::other(SizeLimitExceeded(format!(
                "the upload is larger than {} bytes, more than a NAR within this server's MAX_NAR_SIZE needs",
                self.limit
            ))));
        }
        self.out.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        (dir, storage)
    }

    fn sample_nar() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello\n").unwrap();
        let mut nar = Vec::new();
        hibernation::nix::nar::dump_path(&dir.path().join("f"), &mut nar).unwrap();
        nar
    }

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::None => data.to_vec(),
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Brotli => {
                let mut out = Vec::new();
                brotli::BrotliCompress(&mut &data[..], &mut out, &Default::default()).unwrap();
                out
            }
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }

    #[test]
    fn accepts_every_compression_and_hashes_the_compressed_bytes() {
        let (_dir, storage) = storage();
        let nar = sample_nar();
        let hash = NarHash::digest(&nar);
        for c in Compression::ALL {
            let body = compress(c, &nar);
            // A gzip body named plain `.nar` is recognised by its magic bytes.
            let named = if c == Compression::Gzip { Compression::None } else { c };
            let declared = Declared { nar_hash: &hash, nar_size: nar.len() as u64 };
            let received = receive_nar(&storage, body.as_slice(), named, Some(declared), u64::MAX / 2).unwrap();
            assert_eq!(received.compression, c);
            assert_eq!(received.file_size, body.len() as u64, "{c:?}");
            assert_eq!(received.file_hash, NarHash::digest(&body));
            assert_eq!(received.nar_hash, hash);
            assert_eq!(received.listing.unwrap()["root"]["type"], "regular");
        }
    }

    #[test]
    fn names_what_is_wrong_with_a_body() {
        let (dir, storage) = storage();
        let nar = sample_nar();
        let hash = NarHash::digest(&nar);
        let size = nar.len() as u64;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"definitely not zstd".to_vec(), "not a valid compressed stream"),
            (zstd::encode_all(&nar[..size as usize / 2], 3).unwrap(), "ended"),
            (zstd::encode_all(&b"not a nar at all, but long enough"[..], 3).unwrap(), "malformed"),
            (Vec::new(), "not a NAR"),
        ];
        for (body, expected) in cases {
            let declared = Some(Declared { nar_hash: &hash, nar_size: size });
            let err = receive_nar(&storage, body.as_slice(), Compression::Zstd, declared, u64::MAX / 2)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
    }
}
