//! Receiving a NAR upload: the body is written to a temporary file as it arrives while it is
//! decompressed, validated as a NAR, hashed and listed, all in one streaming pass.

use std::io::{self, BufRead, BufReader, Read, Write};

use bytes::Bytes;

use hibernation::nix::nar::{HashingReader, NarError, validate};
use hibernation::nix::{Compression, NarHash};
use sha2::{Digest, Sha256};

use super::decode_memory::{self, DecodeBudget, DecodeMemory, Reservation};
use super::push_error::PushError;
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

/// What bounds receiving a NAR: its size, and the memory decompressing it may take.
#[derive(Clone)]
pub struct ReceiveLimits {
    /// MAX_NAR_SIZE.
    pub max_nar_size: u64,
    /// DECOMPRESSION_MEMORY, shared by every upload of this process.
    pub decode_budget: DecodeBudget,
}

/// An upload let in: how its body is compressed, and the memory set aside to decompress it
/// (held until the upload has been checked).
struct Admitted {
    compression: Compression,
    memory: DecodeMemory,
    _reservation: Reservation,
}

/// Reads the first bytes of a body and, from them, how it is compressed (`None` with a plain
/// `.nar` name is sniffed, since Nix 2.8 names gzip NARs `.nar` too) and how much memory
/// decompressing it needs; waits until the budget has that much. Returns the body whole again.
/// Nothing else of the body is read before, so a waiting upload holds no thread and no data.
async fn admit<R: tokio::io::AsyncRead + Unpin>(
    mut body: R,
    compression: Compression,
    limits: &ReceiveLimits,
) -> Result<(Admitted, tokio::io::Chain<io::Cursor<Vec<u8>>, R>), PushError> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(decode_memory::HEAD_BYTES);
    (&mut body).take(decode_memory::HEAD_BYTES as u64).read_to_end(&mut head).await.map_err(classify_body_error)?;
    let compression = match compression {
        Compression::None => Compression::sniff(&head),
        other => other,
    };
    let memory = decode_memory::needed(compression, &head)?;
    let reservation = limits.decode_budget.reserve(memory.reservation()).await?;
    Ok((Admitted { compression, memory, _reservation: reservation }, AsyncReadExt::chain(io::Cursor::new(head), body)))
}

/// What the uploader declared; the NAR must match it exactly.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub nar_hash: NarHash,
    pub nar_size: u64,
}

/// A decoder for `compression` held to `memory`: a frame or stream that needs a larger window
/// fails instead of taking it.
pub(crate) fn decoder<'a>(
    compression: Compression,
    input: impl BufRead + 'a,
    memory: DecodeMemory,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
            decoder.window_log_max(memory.zstd_window_log())?;
            Box::new(decoder)
        }
        Compression::Xz => {
            let stream =
                liblzma::stream::Stream::new_stream_decoder(memory.xz_memlimit(), liblzma::stream::CONCATENATED)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, stream))
        }
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

/// The largest piece of a body handed from one stage to the next (read-ahead, storing thread,
/// NAR check; pieces that have arrived are joined up to it), and how many pieces wait at
/// each hand-off.
const CHUNK: usize = 128 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Receives an upload's body: [`admit`], then [`receive_nar`] on a blocking thread, fed by
/// [`read_ahead`].
pub async fn receive_upload(
    storage: &Storage,
    limits: &ReceiveLimits,
    body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    compression: Compression,
    declared: Option<Declared>,
) -> Result<ReceivedNar, PushError> {
    let (admitted, body) = admit(body, compression, limits).await?;
    let reader = read_ahead(body);
    let (storage, limits) = (storage.clone(), limits.clone());
    tokio::task::spawn_blocking(move || receive_nar(&storage, &limits, admitted, reader, declared))
        .await
        .map_err(|e| PushError::Internal(format!("the upload task failed: {e}")))?
}

/// Reads a compressed NAR body, as [`admit`] let it in, on a blocking thread. A NAR larger
/// than `max_nar_size` (MAX_NAR_SIZE) is refused as soon as it gets there.
///
/// Two threads share the work, so an upload costs about the slower half instead of the sum:
/// this one writes the body to a temporary file (made durable when committed) and hashes it;
/// a second one decompresses, validates, hashes and lists the NAR.
fn receive_nar(
    storage: &Storage,
    limits: &ReceiveLimits,
    admitted: Admitted,
    body: impl BodyPieces,
    declared: Option<Declared>,
) -> Result<ReceivedNar, PushError> {
    let (max_nar_size, compression) = (limits.max_nar_size, admitted.compression);
    if let Some(d) = declared
        && d.nar_size > max_nar_size
    {
        return Err(too_large(max_nar_size));
    }
    let pending = storage.begin_upload().map_err(PushError::Storage)?;
    let file = pending.file.try_clone().map_err(PushError::Storage)?;
    let (chunks, received) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (stored, inspected) = std::thread::scope(|scope| {
        let inspector = scope.spawn(move || {
            let input = Chunks::new(move || received.recv().ok().map(Ok));
            inspect_nar(input, &admitted, declared, max_nar_size)
        });
        let stored = store_body(body, file, max_file_size(max_nar_size), chunks);
        let inspected =
            inspector.join().unwrap_or_else(|_| Err(PushError::MalformedNar("the NAR check failed".into())));
        (stored, inspected)
    });
    // A body that broke off explains why the NAR ended early: report the body's error first,
    // unless the NAR check stopped reading (and so the body) on purpose.
    let (file_hash, file_size) = match stored {
        Ok(stored) => stored,
        Err(StoreError::NarRejected) => return Err(inspected.err().unwrap_or_else(|| too_large(max_nar_size))),
        Err(StoreError::Failed(e)) => return Err(e),
    };
    let nar = inspected?;
    Ok(ReceivedNar {
        pending,
        compression,
        file_hash,
        file_size,
        nar_hash: nar.nar_hash,
        nar_size: nar.nar_size,
        listing: nar.listing,
    })
}

enum StoreError {
    /// The NAR check stopped listening: its error says why.
    NarRejected,
    Failed(PushError),
}

/// Copies the body into `file` and to the NAR check, hashing it, up to `limit`
/// bytes, piece by piece as it arrives (a piece is handed on as it is, not copied). Returns
/// the hash and size of the body.
fn store_body(
    mut body: impl BodyPieces,
    file: std::fs::File,
    limit: u64,
    chunks: std::sync::mpsc::SyncSender<Bytes>,
) -> Result<(NarHash, u64), StoreError> {
    let mut out = file;
    let mut writeback = WriteBack::default();
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Some(piece) = body.next_piece() {
        let piece = piece.map_err(|e| StoreError::Failed(classify_body_error(e)))?;
        let n = piece.len();
        if count + n as u64 > limit {
            return Err(StoreError::Failed(PushError::TooLarge(format!(
                "the upload is larger than {limit} bytes, more than a NAR within this server's MAX_NAR_SIZE needs"
            ))));
        }
        count += n as u64;
        out.write_all(&piece).map_err(|e| StoreError::Failed(PushError::Storage(e)))?;
        writeback.wrote(&out, count);
        hasher.update(&piece);
        chunks.send(piece).map_err(|_| StoreError::NarRejected)?;
    }
    // The end of the body: the NAR check sees the end of its input. The file is made durable
    // when it is committed (a spool file that is uploaded elsewhere or refused never needs it).
    drop(chunks);
    Ok((NarHash::from_hasher(hasher), count))
}

/// Starts writing the file to disk while the body still arrives, so that making it durable
/// when it is committed waits for the last stretch only.
#[derive(Default)]
struct WriteBack {
    started: u64,
}

impl WriteBack {
    const STRETCH: u64 = 256 << 10;

    fn wrote(&mut self, file: &std::fs::File, written: u64) {
        if written - self.started < Self::STRETCH {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a file descriptor this function borrows; it only
            // asks the kernel to start writeback and touches no memory of ours.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.started = written;
    }
}

/// A request body handed over in the pieces it arrives in.
pub trait BodyPieces {
    /// The next piece (never empty), or None at the end of the body.
    fn next_piece(&mut self) -> Option<io::Result<Bytes>>;
}

/// Any reader, as pieces of up to [`CHUNK`] bytes.
#[cfg(test)]
pub struct ReadPieces<R>(pub R);

#[cfg(test)]
impl<R: Read> BodyPieces for ReadPieces<R> {
    fn next_piece(&mut self) -> Option<io::Result<Bytes>> {
        let mut piece = Vec::with_capacity(CHUNK);
        match self.0.by_ref().take(CHUNK as u64).read_to_end(&mut piece) {
            Ok(0) => None,
            Ok(_) => Some(Ok(piece.into())),
            Err(e) => Some(Err(e)),
        }
    }
}

/// Chunks that arrive one by one, as a reader or as pieces: no next chunk is the end of input.
struct Chunks<F> {
    next: F,
    current: Bytes,
}

impl<F: FnMut() -> Option<io::Result<Bytes>>> Chunks<F> {
    fn new(next: F) -> Self {
        Self { next, current: Bytes::new() }
    }
}

impl<F: FnMut() -> Option<io::Result<Bytes>>> Read for Chunks<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match (self.next)() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl<F: FnMut() -> Option<io::Result<Bytes>>> BodyPieces for Chunks<F> {
    fn next_piece(&mut self) -> Option<io::Result<Bytes>> {
        if !self.current.is_empty() {
            return Some(Ok(std::mem::take(&mut self.current)));
        }
        loop {
            match (self.next)()? {
                Ok(chunk) if chunk.is_empty() => continue,
                other => return Some(other),
            }
        }
    }
}

/// A request body read ahead on the async runtime, as a blocking reader: the HTTP layer fetches
/// the next pieces while the reader's thread works on the last, instead of waiting to be asked
/// for each one (a thread hand-off per piece, which doubled the time of an upload). Must be
/// called within the runtime; reading stops when the reader drops.
pub fn read_ahead(
    mut body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> impl Read + BodyPieces + Send + 'static {
    use tokio::io::AsyncReadExt;
    let (sender, mut chunks) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        loop {
            let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
            let mut failed = match body.read_buf(&mut chunk).await {
                Ok(0) => break,
                Ok(_) => None,
                Err(e) => Some(e),
            };
            // What has arrived already joins this chunk (an HTTP chunked body comes in pieces
            // of a few KiB): fewer hand-offs, and no waiting for more when nothing is there.
            while failed.is_none() && chunk.len() < CHUNK {
                use futures_util::FutureExt;
                match body.read_buf(&mut chunk).now_or_never() {
                    Some(Ok(0)) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => failed = Some(e),
                }
            }
            // The bytes that arrived first, then the error that ended the body.
            if !chunk.is_empty() && sender.send(Ok(chunk.freeze())).await.is_err() {
                break;
            }
            if let Some(e) = failed {
                let _ = sender.send(Err(e)).await;
                break;
            }
        }
    });
    Chunks::new(move || chunks.blocking_recv())
}

/// What the NAR check found.
struct InspectedNar {
    nar_hash: NarHash,
    nar_size: u64,
    listing: Option<serde_json::Value>,
}

/// Decompresses, validates, hashes and lists the NAR as its chunks arrive.
fn inspect_nar(
    input: impl Read,
    admitted: &Admitted,
    declared: Option<Declared>,
    max_nar_size: u64,
) -> Result<InspectedNar, PushError> {
    let compression = admitted.compression;
    let mut input = BufReader::with_capacity(CHUNK, input);
    let limit = declared.map_or(max_nar_size, |d| d.nar_size).saturating_add(1);
    let (summary, nar_hash, nar_size) = {
        // Reading one byte past the declared size is enough to know it is wrong.
        let decoder = decoder(compression, &mut input, admitted.memory).map_err(PushError::Storage)?;
        let mut nar = HashingReader::new(decoder.take(limit));
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
            Err(NarError::Io(e)) => return Err(classify_decode_error(e)),
            Err(e) => return Err(PushError::MalformedNar(e.to_string())),
        };
        (summary, nar_hash, nar_size)
    };
    if let Some(d) = declared {
        if nar_size != d.nar_size {
            return Err(PushError::NarMismatch(format!("NarSize is {nar_size}, the narinfo says {}", d.nar_size)));
        }
        if nar_hash != d.nar_hash {
            return Err(PushError::NarMismatch(format!("NarHash is {nar_hash}, the narinfo says {}", d.nar_hash)));
        }
    }
    // Anything after the compressed NAR would be stored but never served: refuse it.
    if !input.fill_buf().map_err(PushError::Storage)?.is_empty() {
        return Err(PushError::MalformedNar("data after the end of the compressed NAR".into()));
    }
    Ok(InspectedNar { nar_hash, nar_size, listing: summary.listing })
}

fn too_large(max_nar_size: u64) -> PushError {
    PushError::TooLarge(format!(
        "the NAR is larger than this server's MAX_NAR_SIZE ({})",
        hibernation::human::gib(max_nar_size)
    ))
}

/// An error reading the body: a size limit (here or in the HTTP layer) or an interruption.
pub(crate) fn classify_body_error(e: io::Error) -> PushError {
    match SizeLimitExceeded::in_error(&e) {
        Some(limit) => PushError::TooLarge(limit.to_string()),
        None => PushError::Interrupted(format!("reading the request body failed: {e}")),
    }
}

/// An error decompressing the NAR: the body is not what its name says, or ends early.
fn classify_decode_error(e: io::Error) -> PushError {
    if decode_memory::exceeded(&e) {
        return PushError::InvalidInput(
            "a later part of the compressed stream needs more memory to decompress than its first header declared"
                .into(),
        );
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => PushError::MalformedNar("the upload ended before the NAR did".into()),
        _ => PushError::MalformedNar(format!("the body is not a valid compressed stream: {e}")),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        (dir, storage)
    }

    /// No size limit to speak of, the smallest decompression budget, and a short wait for it.
    fn limits() -> ReceiveLimits {
        let decode_budget = DecodeBudget::new(decode_memory::MAX_RESERVATION, std::time::Duration::from_millis(50));
        ReceiveLimits { max_nar_size: u64::MAX / 2, decode_budget }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    /// Admits and receives `body`, as the server does.
    fn receive(
        storage: &Storage,
        limits: &ReceiveLimits,
        body: &[u8],
        compression: Compression,
        declared: Option<Declared>,
    ) -> Result<ReceivedNar, PushError> {
        let admitted = block_on(admit(body, compression, limits))?.0;
        receive_nar(storage, limits, admitted, ReadPieces(body), declared)
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
            let declared = Declared { nar_hash: hash, nar_size: nar.len() as u64 };
            let received = receive(&storage, &limits(), &body, named, Some(declared)).unwrap();
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
            let declared = Some(Declared { nar_hash: hash, nar_size: size });
            let err = receive(&storage, &limits(), &body, Compression::Zstd, declared).err().unwrap().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
    }

    #[test]
    fn decompression_memory_is_read_from_the_first_header_and_held_to() {
        use super::decode_memory::tests::{xz_declaring, zstd_frame};
        let (dir, storage) = storage();
        let nar = sample_nar();
        let (first, second) = nar.split_at(nar.len() / 2);
        let refused = |body: Vec<u8>, compression, limits: &ReceiveLimits| {
            receive(&storage, limits, &body, compression, None).err().unwrap()
        };
        // A dictionary past the cap is refused from the header.
        let error = refused(xz_declaring(37, &nar), Compression::Xz, &limits()).to_string();
        assert!(error.contains("the xz stream needs 1.5 GiB of memory to decompress"), "{error}");
        // A second stream or frame that wants more than the first declared is refused too.
        let xz = [xz_declaring(16, first), xz_declaring(30, second)].concat();
        let zstd = [zstd_frame(20, first), zstd_frame(23, second)].concat();
        for (body, compression) in [(xz, Compression::Xz), (zstd, Compression::Zstd)] {
            let error = refused(body, compression, &limits()).to_string();
            assert!(error.contains("needs more memory to decompress than its first header declared"), "{error}");
        }
        // Within what the first header declared, they are fine.
        let same = [xz_declaring(30, first), xz_declaring(16, second)].concat();
        let received = receive(&storage, &limits(), &same, Compression::Xz, None);
        assert_eq!(received.unwrap().nar_hash, NarHash::digest(&nar));
        // With every byte of the budget held by other uploads, the upload gives up: 503.
        let busy = limits();
        let _others = block_on(busy.decode_budget.reserve(decode_memory::MAX_RESERVATION)).unwrap();
        let error = refused(zstd::encode_all(&nar[..], 3).unwrap(), Compression::Zstd, &busy);
        assert!(matches!(error, PushError::Busy(_)), "{error}");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
    }

    /// Yields `data`, then fails as a dropped connection would.
    struct BreaksOff<'a>(&'a [u8]);

    impl Read for BreaksOff<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_body_that_breaks_off_is_an_interruption_not_a_bad_nar() {
        let (dir, storage) = storage();
        // Large enough to cross several chunks between the two threads.
        let nar = {
            let src = tempfile::tempdir().unwrap();
            std::fs::write(src.path().join("f"), vec![7u8; 3 * CHUNK]).unwrap();
            let mut nar = Vec::new();
            hibernation::nix::nar::dump_path(&src.path().join("f"), &mut nar).unwrap();
            nar
        };
        let half = &nar[..nar.len() / 2];
        let admitted = block_on(admit(half, Compression::None, &limits())).unwrap().0;
        let err = receive_nar(&storage, &limits(), admitted, ReadPieces(BreaksOff(half)), None).err().unwrap();
        assert!(matches!(err, PushError::Interrupted(_)), "{err}");
        // Trailing bytes after a complete NAR are refused, whatever the chunking.
        let mut padded = nar.clone();
        padded.extend_from_slice(&[0u8; 100]);
        let err = receive(&storage, &limits(), &padded, Compression::None, None).err().unwrap();
        assert!(err.to_string().contains("data after the end"), "{err}");
        // A NAR over the limit stops the upload as soon as it is seen.
        let small = ReceiveLimits { max_nar_size: CHUNK as u64, ..limits() };
        let err = receive(&storage, &small, &nar, Compression::None, None).err().unwrap();
        assert!(matches!(err, PushError::TooLarge(_)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_ahead_passes_every_byte_and_the_error_that_ends_a_body() {
        let data: Vec<u8> = (0..5 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let copied = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            read_ahead(std::io::Cursor::new(data)).read_to_end(&mut out).map(|_| out)
        });
        assert_eq!(copied.await.unwrap().unwrap(), expected);
        let pieces: Vec<io::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"partial")),
            Err(io::Error::other(SizeLimitExceeded("over the limit".into()))),
        ];
        let failing = tokio_util::io::StreamReader::new(futures_util::stream::iter(pieces));
        let got = tokio::task::spawn_blocking(move || {
            let mut out = [0u8; 64];
            let mut reader = read_ahead(failing);
            let first = reader.read(&mut out).unwrap();
            (out[..first].to_vec(), reader.read(&mut out).unwrap_err())
        });
        let (first, err) = got.await.unwrap();
        assert_eq!(first, b"partial");
        assert!(SizeLimitExceeded::in_error(&err).is_some(), "the limit error reaches the reader: {err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_ahead_joins_small_pieces_that_have_arrived() {
        // A chunked body arrives in pieces of a few KiB; all of these are there at once.
        let small: Vec<io::Result<Bytes>> = (0..300).map(|_| Ok(Bytes::from(vec![7u8; 1024]))).collect();
        let body = tokio_util::io::StreamReader::new(futures_util::stream::iter(small));
        let sizes = tokio::task::spawn_blocking(move || {
            let mut pieces = read_ahead(body);
            std::iter::from_fn(|| pieces.next_piece()).map(|p| p.unwrap().len()).collect::<Vec<_>>()
        });
        assert_eq!(sizes.await.unwrap(), [CHUNK, CHUNK, 300 * 1024 - 2 * CHUNK]);
    }

    #[test]
    fn pieces_are_handed_on_whole_after_what_a_read_left() {
        let mut arrived =
            vec![Ok(Bytes::from_static(b"abcdef")), Ok(Bytes::new()), Ok(Bytes::from_static(b"gh"))].into_iter();
        let mut body = Chunks::new(move || arrived.next());
        let mut start = [0u8; 2];
        assert_eq!(body.read(&mut start).unwrap(), 2);
        assert_eq!(&start, b"ab");
        // The rest of the first piece as it is, the empty one skipped, then the end.
        assert_eq!(body.next_piece().unwrap().unwrap(), &b"cdef"[..]);
        assert_eq!(body.next_piece().unwrap().unwrap(), &b"gh"[..]);
        assert!(body.next_piece().is_none());
    }
}
