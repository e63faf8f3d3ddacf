//! `warpnet data download` and `warpnet data info` through the binary, against a small HTTP/1.1 server
//! on 127.0.0.1 that serves a CIFAR-10-shaped archive built here: complete and broken transfers, resume
//! with a range request, checksum mismatch, skipping work already done, and bad paths.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use flate2::write::GzEncoder;
use md5::{Digest, Md5};

use crate::binary;
use binary::warpnet;

/// Path the test server serves the archive under.
const ARCHIVE_PATH: &str = "/cifar-10-binary.tar.gz";
/// Folder inside the archive.
const FOLDER: &str = "cifar-10-batches-bin";
/// Records in every batch file of the test archive.
const RECORDS_PER_FILE: usize = 4;
/// Training batch files, data_batch_1.bin ..= data_batch_5.bin.
const TRAIN_FILES: usize = 5;
/// Bytes per image and per record (one label byte before the image).
const IMAGE_BYTES: usize = 3 * 32 * 32;
const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
const CLASSES: usize = 10;
/// Standard CIFAR-10 class names, as the real archive's batches.meta.txt lists them.
const CLASS_NAMES: [&str; CLASSES] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// One request the server saw: its path and its Range header, if any.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    path: String,
    range: Option<String>,
}

/// A server answering GET with the archive (200, or 206 for `Range: bytes=N-`), one connection at a
/// time. With `cut` set it announces the full length but sends only that many body bytes, then closes.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    cut: Arc<Mutex<Option<usize>>>,
}

impl Server {
    fn start(body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(Mutex::new(None));
        let (seen_log, cut_mode) = (seen.clone(), cut.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let cut = *cut_mode.lock().unwrap();
                if let Some(request) = answer(stream, &body, cut) {
                    seen_log.lock().unwrap().push(request);
                }
            }
        });
        Server { port, seen, cut }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Takes the requests seen so far, leaving the log empty.
    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn set_cut(&self, cut: Option<usize>) {
        *self.cut.lock().unwrap() = cut;
    }
}

/// Reads one request and answers it; returns what was asked.
fn answer(mut stream: TcpStream, body: &[u8], cut: Option<usize>) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let total = body.len();
    let start = range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
    let head = match (path == ARCHIVE_PATH, start) {
        (false, _) => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".to_string(),
        (true, Some(start)) if start >= total => {
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n")
        }
        (true, Some(start)) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\n",
            total - start,
            total - 1
        ),
        (true, None) => format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n"),
    };
    let payload = match (path == ARCHIVE_PATH, start.unwrap_or(0)) {
        (true, start) if start < total => &body[start..],
        _ => &[][..],
    };
    let sent = cut.map_or(payload.len(), |cut| cut.min(payload.len()));
    let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let _ = stream.write_all(&payload[..sent]);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
    Some(Seen { path, range })
}

/// The label of record `i` of batch file `file` (files 0..5 train, 5 test): spread over all classes.
fn label(file: usize, i: usize) -> u8 {
    ((file * RECORDS_PER_FILE + i * 3) % CLASSES) as u8
}

/// The bytes of batch file `file`: whole records of pseudo-random pixels (so gzip cannot shrink them).
fn batch_file(file: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (file as u64 + 1);
    let mut bytes = Vec::with_capacity(RECORDS_PER_FILE * RECORD_BYTES);
    for i in 0..RECORDS_PER_FILE {
        bytes.push(label(file, i));
        for _ in 0..IMAGE_BYTES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push((state >> 32) as u8);
        }
    }
    bytes
}

/// Name of batch file `file` in the archive.
fn batch_name(file: usize) -> String {
    if file < TRAIN_FILES {
        format!("data_batch_{}.bin", file + 1)
    } else {
        "test_batch.bin".to_string()
    }
}

/// A gzipped tar holding `cifar-10-batches-bin/` with every batch file and batches.meta.txt.
fn test_archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let meta = CLASS_NAMES.join("\n") + "\n";
    let mut files: Vec<(String, Vec<u8>)> =
        (0..=TRAIN_FILES).map(|file| (batch_name(file), batch_file(file))).collect();
    files.push(("batches.meta.txt".to_string(), meta.into_bytes()));
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("{FOLDER}/{name}"), bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// `warpnet data download cifar10 --dir DIR --url <server> --md5 MD5`.
fn download(dir: &Path, server: &Server, md5: &str) -> Output {
    let url = server.url(ARCHIVE_PATH);
    warpnet(&["data", "download", "cifar10", "--dir", dir.to_str().unwrap(), "--url", &url, "--md5", md5])
}

/// Asserts success and returns stdout.
fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts exit code `code` and exactly one stderr line, starting "error:"; returns it.
fn one_error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error:") && !stderr.contains("panicked"), "{stderr:?}");
    lines[0].to_string()
}

/// The spec the download should print for `dir`.
fn spec_of(dir: &Path) -> String {
    format!("cifar10:{}", dir.join(FOLDER).display())
}

#[test]
fn complete_download_verifies_unpacks_and_info_counts() {
    let archive = test_archive();
    let server = Server::start(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeeded(&download(dir.path(), &server, &md5_hex(&archive)));
    assert_eq!(stdout.lines().last(), Some(spec_of(dir.path()).as_str()));
    assert_eq!(server.take_seen(), vec![Seen { path: ARCHIVE_PATH.into(), range: None }]);
    assert_eq!(std::fs::read(dir.path().join("cifar-10-binary.tar.gz")).unwrap(), archive);
    assert!(!dir.path().join("cifar-10-binary.tar.gz.part").exists());
    assert!(dir.path().join(FOLDER).join("test_batch.bin").is_file());

    let out = warpnet(&["data", "info", &spec_of(dir.path()), "--json"]);
    let stdout = succeeded(&out);
    let info: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(info["train"], TRAIN_FILES * RECORDS_PER_FILE);
    assert_eq!(info["test"], RECORDS_PER_FILE);
    assert_eq!(info["classes"], CLASSES);
    let per_class = info["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), CLASSES);
    for (class, entry) in per_class.iter().enumerate() {
        let count = |files: std::ops::Range<usize>| {
            files
                .flat_map(|f| (0..RECORDS_PER_FILE).map(move |i| label(f, i)))
                .filter(|&l| l as usize == class)
                .count()
        };
        assert_eq!(entry["name"], CLASS_NAMES[class]);
        assert_eq!(entry["train"], count(0..TRAIN_FILES), "class {class}");
        assert_eq!(entry["test"], count(TRAIN_FILES..TRAIN_FILES + 1), "class {class}");
    }
    // Red-plane mean of the training pixels, in pixel/255 units.
    let red: Vec<f64> = (0..TRAIN_FILES)
        .flat_map(|f| {
            let bytes = batch_file(f);
            (0..RECORDS_PER_FILE)
                .flat_map(|i| bytes[i * RECORD_BYTES + 1..][..IMAGE_BYTES / 3].to_vec())
                .collect::<Vec<u8>>()
        })
        .map(|p| p as f64 / 255.0)
        .collect();
    let red_mean = red.iter().sum::<f64>() / red.len() as f64;
    assert!((info["mean"][0].as_f64().unwrap() - red_mean).abs() < 1e-4, "{}", info["mean"]);
    for c in 0..3 {
        assert!(info["std"][c].as_f64().unwrap() > 0.2, "{}", info["std"]);
    }
    assert!(stdout.contains("airplane"), "the table names the classes: {stdout}");
}

#[test]
fn interrupted_transfer_keeps_part_and_resumes_with_range() {
    let archive = test_archive();
    let server = Server::start(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("cifar-10-binary.tar.gz.part");
    let cut = archive.len() / 2;
    server.set_cut(Some(cut));
    let line = one_error_line(&download(dir.path(), &server, &md5_hex(&archive)), 2);
    assert!(line.contains(&server.url(ARCHIVE_PATH)), "{line}");
    assert!(line.contains(".part"), "{line}");
    let kept = std::fs::metadata(&part).expect("the .part file is kept").len();
    assert_eq!(kept, cut as u64, "every byte received is kept");
    assert!(!dir.path().join(FOLDER).exists());
    server.take_seen();

    server.set_cut(None);
    let stdout = succeeded(&download(dir.path(), &server, &md5_hex(&archive)));
    let seen = server.take_seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range.as_deref(), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(std::fs::read(dir.path().join("cifar-10-binary.tar.gz")).unwrap(), archive);
    assert!(!part.exists());
    assert_eq!(stdout.lines().last(), Some(spec_of(dir.path()).as_str()));
}

#[test]
fn wrong_md5_fails_and_leaves_no_archive() {
    let archive = test_archive();
    let server = Server::start(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    let wrong = "00112233445566778899aabbccddeeff";
    let line = one_error_line(&download(dir.path(), &server, wrong), 2);
    assert!(line.contains(wrong) && line.contains(&md5_hex(&archive)), "{line}");
    assert!(line.contains(&server.url(ARCHIVE_PATH)), "{line}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn work_already_done_is_skipped() {
    let archive = test_archive();
    let server = Server::start(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    let md5 = md5_hex(&archive);
    succeeded(&download(dir.path(), &server, &md5));
    assert_eq!(server.take_seen().len(), 1);

    let stdout = succeeded(&download(dir.path(), &server, &md5));
    assert!(server.take_seen().is_empty(), "no request when everything is there");
    assert!(stdout.contains("already unpacked"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some(spec_of(dir.path()).as_str()));

    // The verified archive alone: unpacked again, still without a request.
    std::fs::remove_dir_all(dir.path().join(FOLDER)).unwrap();
    let stdout = succeeded(&download(dir.path(), &server, &md5));
    assert!(server.take_seen().is_empty(), "no request when the archive is there");
    assert!(stdout.contains("already downloaded"), "{stdout}");
    assert!(dir.path().join(FOLDER).join("data_batch_5.bin").is_file());
}

#[test]
fn http_error_is_one_line_naming_the_url() {
    let server = Server::start(test_archive());
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/no-such-archive.tar.gz");
    let out = warpnet(&["data", "download", "cifar10", "--dir", dir.path().to_str().unwrap(), "--url", &url]);
    let line = one_error_line(&out, 2);
    assert!(line.contains(&url) && line.contains("404"), "{line}");
}

#[test]
fn info_on_missing_directory_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-cifar-here");
    let line = one_error_line(&warpnet(&["data", "info", &format!("cifar10:{}", missing.display())]), 2);
    assert!(line.contains(&missing.display().to_string()), "{line}");
}

#[test]
fn complete_part_file_is_verified_without_a_body() {
    let archive = test_archive();
    let server = Server::start(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cifar-10-binary.tar.gz.part"), &archive).unwrap();
    let stdout = succeeded(&download(dir.path(), &server, &md5_hex(&archive)));
    let seen = server.take_seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range.as_deref(), Some(format!("bytes={}-", archive.len()).as_str()));
    assert!(stdout.contains("already complete"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some(spec_of(dir.path()).as_str()));
}
