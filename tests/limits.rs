//! Bounded before trusted: oversized bodies, compressed bombs and uploads past the limits are
//! refused (HTTP 413 naming the limit), nothing is read for callers without the right, nothing
//! is stored, and the server's memory stays flat.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Backend, Keys, NixClient, RawUpload, Server, output_text};

on_every_backend!(uploads_past_max_nar_size_max_log_size_and_the_quota_are_refused);

/// Memory the server may gain over the whole test: far below any of the bodies sent.
const RSS_MARGIN_KIB: u64 = 96 * 1024;

/// Sends `head` (request line and headers, without the blank line) and then up to
/// `body_bytes` of zeros (chunked when `chunked`), stopping when the server stops reading;
/// returns the status code of the answer.
fn raw_request(server: &Server, head: &str, body_bytes: u64, chunked: bool) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let framing = if chunked { "Transfer-Encoding: chunked\r\n" } else { "" };
    stream.write_all(format!("{head}\r\n{framing}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        let written = if chunked {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).and_then(|_| {
                stream.write_all(&chunk)?;
                stream.write_all(b"\r\n")
            })
        } else {
            stream.write_all(&chunk)
        };
        if written.is_err() {
            break; // The server answered and closed: it read no further.
        }
        sent += chunk.len() as u64;
    }
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).unwrap();
    status_line.split_whitespace().nth(1).unwrap_or_default().parse().unwrap_or(0)
}

/// Sends a whole request with `body`, but stops sending when the server stops reading (it
/// may refuse before the end, which a normal client reports as a broken pipe); returns the
/// status and the body of the answer.
fn send_raw(server: &Server, method_and_path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method_and_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(64 * 1024) {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).unwrap_or_default().parse().unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `size` bytes of zeros, compressed: a few KiB that decode to a lot.
fn zstd_bomb(size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::copy_encode(std::io::repeat(0).take(size), &mut out, 3).unwrap();
    out
}

fn xz_bomb(size: u64) -> Vec<u8> {
    let mut encoder = liblzma::read::XzEncoder::new(std::io::repeat(0).take(size), 1);
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn oversized_and_compressed_bodies_cost_no_memory() {
    let keys = Keys::generate("limits-1");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    server.admin(&["create-user", "reader"]);
    server.admin(&["grant", "reader", "main"]);
    let reader = server.admin(&["create-token", "reader", "--name", "laptop"]);
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&token)).status(), 200);
    let baseline = server.peak_rss_kib();
    let host = format!("Host: 127.0.0.1:{}", server.port);

    // A declared 1 GiB form is refused before anything is read; a 256 MiB one that does not
    // declare its length is cut off at the 1 MiB limit.
    let declared = format!(
        "POST /sign-in HTTP/1.1\r\n{host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        1u64 << 30
    );
    assert_eq!(raw_request(&server, &declared, 0, false), 413);
    let streamed = format!("POST /sign-in HTTP/1.1\r\n{host}\r\nContent-Type: application/x-www-form-urlencoded");
    let status = raw_request(&server, &streamed, 256 << 20, true);
    assert!((400..500).contains(&status), "got {status}");

    // A push plan is not read without push rights, and not past 64 MiB with them.
    let plan = |auth: &str| {
        format!(
            "POST /api/v1/caches/main/push-plan HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json"
        )
    };
    assert_eq!(raw_request(&server, &plan(&reader), 32 << 20, true), 403);
    assert_eq!(raw_request(&server, &plan(&token), 256 << 20, true), 413);

    // Narinfos in a Content-Encoding decode as they stream, to at most 1 MiB; without push
    // rights nothing is decoded at all.
    // Sent raw: the server refuses before the end of the body, which a normal client may
    // report as a reset connection instead of the answer.
    let narinfo_path = "/api/nix/main/00000000000000000000000000000000.narinfo";
    for (encoding, bomb) in [("zstd", zstd_bomb(4 << 30)), ("xz", xz_bomb(512 << 20))] {
        assert!(bomb.len() < 4 << 20, "{encoding} bomb is small: {}", bomb.len());
        let put = |auth: Option<&str>| {
            let basic = auth.map(|token| {
                use base64::Engine;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("nix:{token}")))
            });
            let mut headers = vec![("Content-Encoding", encoding)];
            if let Some(basic) = &basic {
                headers.push(("Authorization", basic.as_str()));
            }
            send_raw(&server, &format!("PUT {narinfo_path}"), &headers, &bomb)
        };
        assert_eq!(put(None).0, 401);
        assert_eq!(put(Some(&reader)).0, 403);
        let (status, error) = put(Some(&token));
        assert_eq!(status, 413, "{error}");
        assert!(error.contains("narinfo is larger than 1 MiB"), "{error}");
    }
    let gained = server.peak_rss_kib().saturating_sub(baseline);
    assert!(gained < RSS_MARGIN_KIB, "the server's peak memory grew by {gained} KiB");
    assert_eq!(server.get("/health", None).status(), 200);
}

/// A NAR of one file of `size` zeros, as a reader: what a decompression bomb decodes to
/// when it must also pass as a NAR.
fn zero_file_nar(size: u64) -> impl Read {
    let token = |bytes: &[u8]| {
        let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(8), 0);
        out
    };
    let mut head = Vec::new();
    for part in [&b"nix-archive-1"[..], b"(", b"type", b"regular", b"contents"] {
        head.extend(token(part));
    }
    head.extend(size.to_le_bytes());
    std::io::Cursor::new(head).chain(std::io::repeat(0).take(size)).chain(std::io::Cursor::new(token(b")")))
}

/// An xz stream of `input`, compressed with a 1 MiB dictionary but declaring 1.5 GiB in its
/// block header (its CRC fixed): valid, and a decoder that trusts it keeps all it decodes.
fn xz_declaring_a_huge_dictionary(mut input: impl Read) -> Vec<u8> {
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma2(liblzma::stream::LzmaOptions::new_preset(1).unwrap().dict_size(1 << 20));
    let stream = liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc64).unwrap();
    let mut encoder = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    std::io::copy(&mut input, &mut encoder).unwrap();
    let mut out = encoder.finish().unwrap();
    let header_end = 12 + (usize::from(out[12]) + 1) * 4;
    assert_eq!(&out[14..16], &[0x21, 1], "one LZMA2 filter");
    out[16] = 37; // 3 << 29 bytes
    let mut crc = flate2::Crc::new();
    crc.update(&out[12..header_end - 4]);
    out[header_end - 4..header_end].copy_from_slice(&crc.sum().to_le_bytes());
    out
}

#[test]
fn uploads_that_would_decompress_into_gigabytes_of_memory_are_refused_unread() {
    let keys = Keys::generate("limits-3");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let baseline = server.peak_rss_kib();
    let bearer = format!("Bearer {token}");
    // 256 MiB of zeros that would stay in the decoder's window, from a few MiB at most.
    let size = 256 << 20;
    let mut brotli_bomb = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 1, lgwin: 30, large_window: true, ..Default::default() };
    brotli::BrotliCompress(&mut zero_file_nar(size), &mut brotli_bomb, &params).unwrap();
    let xz_bomb = xz_declaring_a_huge_dictionary(zero_file_nar(size));
    for (extension, bomb, needs) in [("br", brotli_bomb, "1.0 GiB"), ("xz", xz_bomb, "1.5 GiB")] {
        assert!(bomb.len() < 4 << 20, "{extension} bomb is small: {}", bomb.len());
        let nar_path = format!("PUT /api/nix/main/nar/{}.nar.{extension}", "0".repeat(52));
        let (status, error) = send_raw(&server, &nar_path, &[("Authorization", &bearer)], &bomb);
        assert_eq!(status, 400, "{error}");
        assert!(error.contains(&format!("needs {needs} of memory to decompress")), "{error}");
    }
    let gained = server.peak_rss_kib().saturating_sub(baseline);
    assert!(gained < RSS_MARGIN_KIB, "the server's peak memory grew by {gained} KiB");
    assert!(nar_objects(&server).is_empty(), "nothing was stored: {:?}", nar_objects(&server));
    assert_eq!(server.get("/health", None).status(), 200);
}

/// A store path of `size` bytes of pseudo-random data (so that compression cannot shrink it).
fn store_file(size: usize, tag: &str) -> String {
    support::nix::add_random_file(size, 0x2545_f491_4f6c_dd1d ^ size as u64, &format!("blob-{tag}"))
}

fn nar_objects(server: &Server) -> Vec<std::path::PathBuf> {
    server.stored_files().into_iter().filter(|f| !f.to_string_lossy().contains("/tmp/")).collect()
}

fn uploads_past_max_nar_size_max_log_size_and_the_quota_are_refused(backend: Backend) {
    let keys = Keys::generate("limits-2");
    let server = Server::builder(backend).env(&[("MAX_NAR_SIZE", "1M"), ("MAX_LOG_SIZE", "64K")]).start();
    let token = server.bootstrap(&keys, false);
    let tag = support::unique_tag("limits");
    let big = store_file(2 << 20, &tag);

    // The CLI's upload declares its NarSize: refused before the body is read.
    let upload = RawUpload::of(&big, keys.secret_path());
    let bearer = format!("Bearer {token}");
    let path_upload = |upload: &RawUpload, body: &[u8]| {
        let header = upload.header();
        let headers = [("Authorization", bearer.as_str()), (hibernation::api::PATH_INFO_HEADER, header.as_str())];
        send_raw(&server, &format!("PUT /api/v1/caches/main/paths/{}", upload.hash_part()), &headers, body)
    };
    let (status, error) = path_upload(&upload, &upload.compressed());
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("MAX_NAR_SIZE"), "{error}");

    // `nix copy` sends the NAR first without saying its size: refused once it gets there.
    let nar = upload.nar.clone();
    let file_hash = hibernation::nix::NarHash::digest(&nar).to_nix32();
    let nar_path = format!("PUT /api/nix/main/nar/{file_hash}.nar");
    let (status, error) = send_raw(&server, &nar_path, &[("Authorization", &bearer)], &nar);
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("MAX_NAR_SIZE"), "{error}");

    // Padding a small NAR with zstd skippable frames (which decode to nothing) is refused too.
    let small = store_file(4096, &tag);
    let small_upload = RawUpload::of(&small, keys.secret_path());
    let mut padded = Vec::new();
    for _ in 0..4 {
        padded.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        padded.extend_from_slice(&(1u32 << 20).to_le_bytes());
        padded.extend(std::iter::repeat_n(0u8, 1 << 20));
    }
    padded.extend(small_upload.compressed());
    let (status, error) = path_upload(&small_upload, &padded);
    assert_eq!(status, 413, "{error}");

    // A build log past MAX_LOG_SIZE.
    let log_path = format!("PUT /api/nix/main/log/{}-x.drv", &small[11..43]);
    let (status, error) = send_raw(&server, &log_path, &[("Authorization", &bearer)], &[b'x'; 128 * 1024]);
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("MAX_LOG_SIZE"), "{error}");
    assert!(nar_objects(&server).is_empty(), "nothing was stored: {:?}", nar_objects(&server));

    // A cache with a 2 KiB quota: real `nix copy` cannot fill it past that (NARs waiting for
    // their narinfo count too).
    server.admin(&["create-cache", "tiny", "--no-upstream", "--public-key", &keys.public, "--quota-gib", "0.000002"]);
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let url = format!("{}?compression=none&secret-key={}", server.cache_url("tiny"), keys.secret_path());
    let out = nix.run(&["nix", "copy", "--to", &url, &small]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("413"), "{}", output_text(&out));
    assert_eq!(server.get(&format!("/api/nix/tiny/{}.narinfo", &small[11..43]), Some(&token)).status(), 404);
    assert!(nar_objects(&server).is_empty(), "nothing was stored: {:?}", nar_objects(&server));
}

/// Reads until the server closes the connection; false when it is still open after `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        // A reset is closed too; only running out of time means it is still open.
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// The status of the answer on `stream`, read within `wait`.
fn status_within(stream: TcpStream, wait: Duration) -> u16 {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).expect("an answer before the test's own timeout");
    status_line.split_whitespace().nth(1).unwrap_or_default().parse().unwrap_or(0)
}

#[test]
fn half_sent_stalled_and_trickling_requests_are_cut_off() {
    let keys = Keys::generate("limits-3");
    let server = Server::builder(Backend::Sqlite).env(&[("CLIENT_TIMEOUT", "2")]).start();
    let token = server.bootstrap(&keys, false);
    let connect = || TcpStream::connect(("127.0.0.1", server.port)).unwrap();

    // Fifty requests that never finish their headers are closed, not kept open.
    let mut half_sent: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = connect();
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            stream
        })
        .collect();
    for stream in &mut half_sent {
        assert!(closed_within(stream, Duration::from_secs(15)), "a half-sent request stayed open");
    }

    // Trickling the headers in a byte at a time does not keep a connection open either.
    let mut trickled = connect();
    let mut feed = trickled.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if feed.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    assert!(closed_within(&mut trickled, Duration::from_secs(15)), "a trickling request stayed open");
    feeder.join().unwrap();

    // A body that stops arriving is cut off with 408.
    let head = |length: usize| {
        format!(
            "PUT /api/nix/main/00000000000000000000000000000000.narinfo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let mut stalled = connect();
    stalled.write_all(format!("{}StorePath: /nix/st", head(1000)).as_bytes()).unwrap();
    assert_eq!(status_within(stalled, Duration::from_secs(15)), 408);

    // A body that trickles in (a byte a second) is cut off too.
    let mut trickling = connect();
    trickling.write_all(head(100).as_bytes()).unwrap();
    let writer = trickling.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..8 {
            if writer.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(status_within(trickling, Duration::from_secs(15)), 408);
    trickle.join().unwrap();
    assert_eq!(server.get("/health", None).status(), 200);
}
