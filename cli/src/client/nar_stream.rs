//! Streams a store path as a zstd-compressed NAR into an HTTP body without holding it in
//! memory: a blocking thread serialises and compresses into a bounded channel.

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::nix::nar::dump_path;

const CHUNK: usize = 256 * 1024;
/// zstd's default level: fast, and a good ratio for store paths.
const ZSTD_LEVEL: i32 = 3;

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

/// The compressed NAR of `path` as a streaming request body.
pub fn compressed_nar_body(path: PathBuf) -> reqwest::Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let result = (|| {
            let out = io::BufWriter::with_capacity(CHUNK, ChannelWriter { tx });
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            dump_path(&path, &mut encoder)?;
            encoder.finish()?.flush()
        })();
        if let Err(e) = result {
            // Ends the body with an error so the request fails instead of sending a short NAR.
            let _ = errors.blocking_send(Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    reqwest::Body::wrap_stream(stream)
}
