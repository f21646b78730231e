//! Streams a store path as a zstd-compressed NAR into an HTTP body without holding it in
//! memory: a blocking thread serialises and compresses into a bounded channel.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::nix::nar::dump_path;

const CHUNK: usize = 256 * 1024;
/// zstd's default level: fast, and a good ratio for store paths.
const ZSTD_LEVEL: i32 = 3;
/// The largest window a frame asks the server to decompress with: 1 MiB instead of level 3's
/// 2 MiB. A server holds a window per upload it checks (Hibernation reserves memory by it),
/// and so does every client that substitutes the NAR; the ratio barely moves.
const ZSTD_WINDOW_LOG: u32 = 20;

struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload was cancelled"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the zstd-compressed NAR of `path`, whose NAR is `nar_size` bytes: the frame says so,
/// so a NAR smaller than the window is decompressed with a window no larger than itself.
fn write_compressed_nar(path: &Path, nar_size: u64, out: impl Write) -> io::Result<()> {
    let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    encoder.window_log(ZSTD_WINDOW_LOG)?;
    encoder.set_pledged_src_size(Some(nar_size))?;
    encoder.include_contentsize(true)?;
    dump_path(path, &mut encoder)?;
    encoder.finish()?.flush()
}

/// The compressed NAR of `path` (`nar_size` bytes uncompressed) as a streaming request body.
pub fn compressed_nar_body(path: PathBuf, nar_size: u64) -> reqwest::Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let out = io::BufWriter::with_capacity(CHUNK, ChannelWriter { tx });
        let result = write_compressed_nar(&path, nar_size, out);
        if let Err(e) = result {
            // Ends the body with an error so the request fails instead of sending a short NAR.
            let _ = errors.blocking_send(Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window a zstd frame asks for, proven by decoding with no more than `window_log`.
    fn decodes_within(compressed: &[u8], window_log: u32) -> bool {
        let mut decoder = zstd::stream::read::Decoder::new(compressed).unwrap();
        decoder.window_log_max(window_log).unwrap();
        io::copy(&mut decoder, &mut io::sink()).is_ok()
    }

    #[test]
    fn frames_ask_for_a_window_no_larger_than_the_nar_or_1_mib() {
        let dir = tempfile::tempdir().unwrap();
        for size in [3000usize, 3 << 20] {
            let file = dir.path().join(format!("f{size}"));
            // What the frame declares does not depend on how well the data compresses.
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&file, &data).unwrap();
            let mut nar = Vec::new();
            dump_path(&file, &mut nar).unwrap();
            let mut compressed = Vec::new();
            write_compressed_nar(&file, nar.len() as u64, &mut compressed).unwrap();
            assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), nar);
            // The frame says the NAR's size: one smaller than the window is its own window.
            let declared = zstd::zstd_safe::get_frame_content_size(&compressed).unwrap();
            assert_eq!(declared, Some(nar.len() as u64));
            if size > 1 << 20 {
                assert!(decodes_within(&compressed, 20), "the window is 1 MiB");
                assert!(!decodes_within(&compressed, 19), "the window is 1 MiB");
            }
            // A wrong size is an error, never a short or padded NAR.
            assert!(write_compressed_nar(&file, nar.len() as u64 - 1, &mut Vec::new()).is_err());
        }
    }
}
