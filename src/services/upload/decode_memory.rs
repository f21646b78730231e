//! Memory for decompressing uploads. A compressed stream says in its first header how large a
//! window its decoder must keep: up to 2 GiB for zstd, 4 GiB for xz. Left to the decoder, a
//! body of a few hundred KiB makes the server hold that much for as long as the upload lasts,
//! once per upload at a time. So each upload's need is read from its header before a byte is
//! decompressed, refused past [`MAX_WINDOW`], and reserved from a budget that every upload of
//! this process shares (DECOMPRESSION_MEMORY); the decoder is then held to what was reserved,
//! so a later frame or stream that wants more is refused instead of served.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use hibernation::human::human_bytes;
use hibernation::nix::Compression;

use super::push_error::PushError;

/// The largest window one upload may decompress with: what zstd's level 22 and xz's `-9e`
/// (64 MiB) need, and zstd's own default limit.
pub const MAX_WINDOW: u64 = 128 << 20;

/// Memory an upload holds besides the window: the body's pieces in flight between the HTTP
/// layer, the storing thread and the check, and the decoder's buffers (about 2.5 MiB measured
/// for a zstd upload with a 2 MiB window).
const IN_FLIGHT: u64 = 3 << 20;

/// liblzma's own state beside the dictionary, which its memory limit counts.
const XZ_STATE: u64 = 1 << 20;

/// The most a single upload reserves; a budget must hold at least this much.
pub const MAX_RESERVATION: u64 = MAX_WINDOW + IN_FLIGHT;

/// How long an upload waits for memory other uploads hold before it is answered 503.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// How many bytes of a body [`needed`] looks at: a zstd frame header, or an xz stream header
/// and its first block header (at most 1 KiB).
pub const HEAD_BYTES: usize = 12 + 1024;

/// What decompressing a stream needs: its window, and the limit to hold its decoder to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeMemory {
    /// The window the stream's first header asks for, rounded up to what the decoder's limit
    /// can express (a power of two for zstd).
    pub window: u64,
}

impl DecodeMemory {
    /// What to reserve for the whole check.
    pub fn reservation(self) -> u64 {
        self.window + IN_FLIGHT
    }

    /// The zstd decoder's `window_log_max` that admits this window and nothing larger.
    pub fn zstd_window_log(self) -> u32 {
        self.window.max(1 << ZSTD_MIN_WINDOW_LOG).next_power_of_two().trailing_zeros()
    }

    /// The memory limit for liblzma: the dictionary and the decoder's own state.
    pub fn xz_memlimit(self) -> u64 {
        self.window + XZ_STATE
    }

    /// The most any stream may ask for, for the streams whose need is not read from a header.
    pub fn at_most() -> Self {
        Self { window: MAX_WINDOW }
    }
}

const ZSTD_MIN_WINDOW_LOG: u32 = 10;

/// What decompressing a body in `compression` needs, from its first bytes (`head`: at least
/// [`HEAD_BYTES`] of them, fewer only when the body is shorter). A header that cannot be read
/// here is left to the decoder, held to [`MAX_WINDOW`]; one that asks for more is refused.
pub fn needed(compression: Compression, head: &[u8]) -> Result<DecodeMemory, PushError> {
    let window = match compression {
        Compression::Zstd => zstd_window(head).map(|w| w.max(1 << ZSTD_MIN_WINDOW_LOG).next_power_of_two()),
        Compression::Xz => xz_dictionary(head),
        Compression::Brotli => brotli_window(head),
        // bzip2's blocks are at most 900 kB (about 3.6 MiB to decode), gzip's window 32 KiB.
        Compression::Bzip2 => Some(4 << 20),
        Compression::Gzip | Compression::None => Some(0),
    };
    let Some(window) = window else {
        return Ok(DecodeMemory::at_most());
    };
    if window > MAX_WINDOW {
        let kind = if compression == Compression::Brotli { "brotli" } else { compression.name() };
        return Err(PushError::InvalidInput(format!(
            "the {kind} stream needs {} of memory to decompress (its window), more than the {} this server allows an upload",
            human_bytes(window),
            human_bytes(MAX_WINDOW)
        )));
    }
    Ok(DecodeMemory { window })
}

/// The window a zstd frame header declares (RFC 8878, 3.1.1.1), or None when the body does not
/// start with one (a skippable frame first, or too short to tell).
fn zstd_window(head: &[u8]) -> Option<u64> {
    if head.get(..4)? != [0x28, 0xB5, 0x2F, 0xFD] {
        return None;
    }
    let descriptor = *head.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let window_descriptor = *head.get(5)?;
        let log = 10 + u64::from(window_descriptor >> 3);
        let base = 1u64 << log;
        return Some(base + (base / 8) * u64::from(window_descriptor & 7));
    }
    // A single segment's window is its content size, after the dictionary ID.
    let dictionary_id_bytes = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let start = 5 + dictionary_id_bytes;
    let content_size = |n: usize| -> Option<u64> {
        let bytes = head.get(start..start + n)?;
        Some(bytes.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    };
    match descriptor >> 6 {
        0 => content_size(1),
        1 => content_size(2).map(|size| size + 256),
        2 => content_size(4),
        _ => content_size(8),
    }
}

/// The window a brotli stream's first bits declare (RFC 7932, 9.1, and the large windows of
/// up to 1 GiB the decoder accepts), or None for a stream too short to tell. A brotli stream
/// has one window for all of it, so the decoder needs no limit of its own.
fn brotli_window(head: &[u8]) -> Option<u64> {
    let first = *head.first()?;
    let window_bits = if first & 1 == 0 {
        16
    } else if (first >> 1) & 7 != 0 {
        17 + u32::from((first >> 1) & 7)
    } else {
        match (first >> 4) & 7 {
            0 => 17,
            1 => u32::from(*head.get(1)? & 0x3F),
            n => 8 + u32::from(n),
        }
    };
    Some(1u64 << window_bits)
}

/// The LZMA2 dictionary the first block of an xz stream declares (the xz file format, 3.1),
/// or None when the body does not start with a stream and a block header.
fn xz_dictionary(head: &[u8]) -> Option<u64> {
    const MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
    if head.get(..6)? != MAGIC {
        return None;
    }
    let block = head.get(12..)?;
    let header_size = (usize::from(*block.first()?) + 1) * 4;
    if block[0] == 0 {
        return Some(0); // No block: the index of an empty stream.
    }
    let header = block.get(..header_size)?;
    let flags = header[1];
    let mut at = 2;
    if flags & 0x40 != 0 {
        read_vli(header, &mut at)?; // compressed size
    }
    if flags & 0x80 != 0 {
        read_vli(header, &mut at)?; // uncompressed size
    }
    let mut dictionary = None;
    for _ in 0..=(flags & 3) {
        let id = read_vli(header, &mut at)?;
        let properties = usize::try_from(read_vli(header, &mut at)?).ok()?;
        if id == 0x21 && properties == 1 {
            dictionary = Some(lzma2_dictionary(*header.get(at)?)?);
        }
        at = at.checked_add(properties)?;
    }
    dictionary
}

/// An xz variable-length integer at `at`, moving past it.
fn read_vli(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The dictionary size an LZMA2 properties byte encodes; None for an invalid one.
fn lzma2_dictionary(byte: u8) -> Option<u64> {
    match byte {
        0..40 => Some(u64::from(2 | (byte & 1)) << (byte / 2 + 11)),
        40 => Some(u64::from(u32::MAX)),
        _ => None,
    }
}

/// Whether a decoder failed because a later frame or stream wanted more memory than the
/// first header declared (and the decoder was held to).
pub fn exceeded(e: &std::io::Error) -> bool {
    let lzma = e.get_ref().and_then(|inner| inner.downcast_ref::<liblzma::stream::Error>());
    // zstd reports its errors by name only.
    matches!(lzma, Some(liblzma::stream::Error::MemLimit)) || e.to_string().contains("too much memory")
}

/// Memory shared by the uploads of this process: each upload reserves what its stream needs
/// before its body is read further than its first header, and gives it back when its check
/// ends. Waiting takes no thread: only the header has been read.
#[derive(Clone)]
pub struct DecodeBudget {
    total: u64,
    wait: Duration,
    /// One permit per KiB.
    permits: Arc<Semaphore>,
}

impl DecodeBudget {
    /// A budget of `total` bytes (at least [`MAX_RESERVATION`]) that an upload waits up to
    /// `wait` for.
    pub fn new(total: u64, wait: Duration) -> Self {
        let total = total.max(MAX_RESERVATION).min((Semaphore::MAX_PERMITS as u64).saturating_mul(1024));
        Self { total, wait, permits: Arc::new(Semaphore::new((total / 1024) as usize)) }
    }

    /// Reserves `bytes`, waiting for other uploads to give memory back, first come first
    /// served; past the budget's wait, the upload is answered 503 to come back later.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, PushError> {
        let kib = bytes.min(self.total).div_ceil(1024).min(u64::from(u32::MAX)) as u32;
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Reservation { _permit: permit }),
            _ => Err(PushError::Busy(format!(
                "the server is decompressing as many uploads as its DECOMPRESSION_MEMORY ({}) allows; try again later",
                human_bytes(self.total)
            ))),
        }
    }
}

/// Memory reserved for one upload's check, given back when dropped.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A zstd frame of `data` with a window of `1 << window_log`, its size unsaid.
    pub(crate) fn zstd_frame(window_log: u32, data: &[u8]) -> Vec<u8> {
        zstd_stream(window_log, data, false)
    }

    fn zstd_stream(window_log: u32, data: &[u8], say_size: bool) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log)).unwrap();
        if say_size {
            encoder.set_pledged_src_size(Some(data.len() as u64)).unwrap();
        }
        encoder.include_contentsize(say_size).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// An xz stream whose block header says `dictionary_byte` (its CRC fixed), compressed
    /// with a 1 MiB dictionary: valid, and decodable with any larger one.
    pub(crate) fn xz_declaring(dictionary_byte: u8, data: &[u8]) -> Vec<u8> {
        let mut options = liblzma::stream::LzmaOptions::new_preset(1).unwrap();
        let mut filters = liblzma::stream::Filters::new();
        filters.lzma2(options.dict_size(1 << 20));
        let stream = liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc64).unwrap();
        let mut out = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        out.write_all(data).unwrap();
        let mut out = out.finish().unwrap();
        let header_size = (usize::from(out[12]) + 1) * 4;
        assert_eq!(&out[14..16], &[0x21, 1], "one LZMA2 filter with one properties byte");
        out[16] = dictionary_byte;
        let mut crc = flate2::Crc::new();
        crc.update(&out[12..12 + header_size - 4]);
        out[12 + header_size - 4..12 + header_size].copy_from_slice(&crc.sum().to_le_bytes());
        out
    }

    #[test]
    fn reads_the_window_zstd_frames_declare() {
        // Streamed (no content size): the window descriptor.
        let streamed = needed(Compression::Zstd, &zstd_frame(23, b"hello")).unwrap();
        assert_eq!(streamed.window, 8 << 20);
        assert_eq!(streamed.zstd_window_log(), 23);
        // A single segment: its content size, rounded up.
        let small = needed(Compression::Zstd, &zstd_stream(23, &[7; 5000], true)).unwrap();
        assert_eq!(small.window, 8192);
        assert_eq!(small.zstd_window_log(), 13);
        assert_eq!(needed(Compression::Zstd, &zstd_frame(27, b"hello")).unwrap().window, MAX_WINDOW);
        let error = needed(Compression::Zstd, &zstd_frame(28, b"hello")).unwrap_err().to_string();
        assert!(error.contains("needs 256.0 MiB of memory to decompress"), "{error}");
        // Not a zstd frame here (a skippable one, or garbage): the decoder judges, within the cap.
        assert_eq!(needed(Compression::Zstd, b"\x50\x2a\x4d\x18....").unwrap(), DecodeMemory::at_most());
    }

    #[test]
    fn reads_the_dictionary_xz_blocks_declare() {
        let mut preset6 = liblzma::write::XzEncoder::new(Vec::new(), 6);
        preset6.write_all(b"hello").unwrap();
        assert_eq!(needed(Compression::Xz, &preset6.finish().unwrap()).unwrap().window, 8 << 20);
        assert_eq!(needed(Compression::Xz, &xz_declaring(16, b"x")).unwrap().window, 1 << 20);
        // 1.5 GiB: a few hundred KiB of zeros that would decode into that much memory.
        let error = needed(Compression::Xz, &xz_declaring(37, b"x")).unwrap_err().to_string();
        assert!(error.contains("needs 1.5 GiB of memory"), "{error}");
        assert!(needed(Compression::Xz, &xz_declaring(41, b"x")).unwrap() == DecodeMemory::at_most());
        assert_eq!(needed(Compression::Xz, b"\xFD7zXZ").unwrap(), DecodeMemory::at_most());
    }

    #[test]
    fn reads_the_window_brotli_streams_declare() {
        let compress = |window_bits: u32, large: bool| {
            let params = brotli::enc::BrotliEncoderParams {
                lgwin: window_bits as i32,
                large_window: large,
                ..Default::default()
            };
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &b"hello hello hello"[..], &mut out, &params).unwrap();
            out
        };
        for bits in [10, 16, 17, 22, 24] {
            assert_eq!(needed(Compression::Brotli, &compress(bits, false)).unwrap().window, 1 << bits, "{bits}");
        }
        assert_eq!(needed(Compression::Brotli, &compress(26, true)).unwrap().window, 64 << 20);
        let error = needed(Compression::Brotli, &compress(30, true)).unwrap_err().to_string();
        assert!(error.contains("brotli stream needs 1.0 GiB"), "{error}");
    }

    #[tokio::test]
    async fn a_reservation_waits_for_memory_given_back_and_gives_up_after_its_wait() {
        let budget = DecodeBudget::new(MAX_RESERVATION, Duration::from_millis(20));
        let first = budget.reserve(MAX_RESERVATION - 10 * 1024).await.unwrap();
        let _small = budget.reserve(10 * 1024).await.unwrap();
        let error = budget.reserve(1).await.err().unwrap();
        assert!(matches!(error, PushError::Busy(_)), "{error}");
        assert!(error.to_string().contains("DECOMPRESSION_MEMORY (131.0 MiB)"), "{error}");
        drop(first);
        assert!(budget.reserve(MAX_RESERVATION - 10 * 1024).await.is_ok(), "given back when dropped");

        let patient = DecodeBudget::new(MAX_RESERVATION, DEFAULT_WAIT);
        let all = patient.reserve(MAX_RESERVATION).await.unwrap();
        let waiting = tokio::spawn({
            let patient = patient.clone();
            async move { patient.reserve(100).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "it waits while the budget is taken");
        drop(all);
        waiting.await.unwrap().unwrap();
        assert_eq!(patient.permits.available_permits() as u64, MAX_RESERVATION / 1024);
    }
}
