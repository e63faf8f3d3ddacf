//! Downloading and unpacking the official CIFAR binary archives.
//!
//! The archive is fetched into `DIR/<archive>.part`, resumed with an HTTP range request when that file
//! already exists, checked against its MD5, renamed to `DIR/<archive>` and unpacked into DIR through a
//! staging folder, so that the unpacked folder only ever appears complete. Each step is skipped when its
//! result is already there, and the unpacked set is read back with [`crate::data::load`] at the end.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use crate::bail_input;
use crate::data::DataSpec;
use crate::error::input_error;

/// Official URL of the CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the CIFAR-10 binary archive, as published on the CIFAR page.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Official URL of the CIFAR-100 binary archive.
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// MD5 of the CIFAR-100 binary archive, as published on the CIFAR page.
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

/// Suffix of the file a download is written to until it is complete and verified.
pub const PART_SUFFIX: &str = ".part";
/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read of the response may wait for data before the transfer counts as broken.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes moved per read while downloading, and per read while hashing.
const COPY_BUFFER_BYTES: usize = 1 << 20;
/// Length of an MD5 digest written in hexadecimal.
pub const MD5_HEX_LEN: usize = 32;

/// An archive `warpnet data download` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Archive {
    /// CIFAR-10, binary version: `cifar-10-batches-bin/`.
    Cifar10,
    /// CIFAR-100, binary version: `cifar-100-binary/`.
    Cifar100,
}

impl Archive {
    /// The archive's file name, as on the server.
    pub fn file_name(self) -> &'static str {
        match self {
            Archive::Cifar10 => "cifar-10-binary.tar.gz",
            Archive::Cifar100 => "cifar-100-binary.tar.gz",
        }
    }

    /// The official URL.
    pub fn url(self) -> &'static str {
        match self {
            Archive::Cifar10 => CIFAR10_URL,
            Archive::Cifar100 => CIFAR100_URL,
        }
    }

    /// The published MD5, lowercase hexadecimal.
    pub fn md5(self) -> &'static str {
        match self {
            Archive::Cifar10 => CIFAR10_MD5,
            Archive::Cifar100 => CIFAR100_MD5,
        }
    }

    /// The folder the archive unpacks to.
    pub fn folder(self) -> &'static str {
        match self {
            Archive::Cifar10 => "cifar-10-batches-bin",
            Archive::Cifar100 => "cifar-100-binary",
        }
    }

    /// The `--data` spec of the set unpacked into `dir`.
    pub fn spec(self, dir: &Path) -> DataSpec {
        let folder = dir.join(self.folder());
        match self {
            Archive::Cifar10 => DataSpec::Cifar10(folder),
            Archive::Cifar100 => DataSpec::Cifar100(folder),
        }
    }
}

/// What to fetch, from where, into which directory, and the checksum it must have.
#[derive(Debug, Clone)]
pub struct Request {
    pub archive: Archive,
    pub dir: PathBuf,
    pub url: String,
    /// Expected MD5, lowercase hexadecimal.
    pub md5: String,
}

/// What [`prepare`] did and what it found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The `--data` spec of the unpacked set.
    pub spec: DataSpec,
    /// Whether bytes were fetched from the server in this run.
    pub downloaded: bool,
    /// Whether the archive was unpacked in this run.
    pub unpacked: bool,
    /// The verified MD5 of the archive, when it was checked in this run.
    pub md5: Option<String>,
    /// Training images read back from the unpacked folder.
    pub train: usize,
    /// Test images read back from the unpacked folder.
    pub test: usize,
    /// Classes of the set.
    pub classes: usize,
}

/// Downloads, verifies and unpacks `request.archive` into `request.dir`, skipping what is already
/// done, then reads the set back. `log` receives one human-readable line per step.
pub fn prepare(request: &Request, log: &mut dyn FnMut(&str)) -> anyhow::Result<Outcome> {
    let dir = &request.dir;
    fs::create_dir_all(dir).map_err(|e| input_error(format!("{}: cannot create: {e}", dir.display())))?;
    let archive = request.archive;
    let spec = archive.spec(dir);
    let folder = dir.join(archive.folder());
    let archive_path = dir.join(archive.file_name());
    let (mut downloaded, mut unpacked, mut md5) = (false, false, None);
    if folder.is_dir() {
        log(&format!("{}: already unpacked, nothing to download", folder.display()));
    } else {
        if archive_path.is_file() {
            log(&format!("{}: already downloaded, checking its MD5", archive_path.display()));
            md5 = Some(verify_existing(&archive_path, &request.md5)?);
        } else {
            let part = part_path(&archive_path);
            log(&format!("downloading {} to {}", request.url, part.display()));
            fetch(&request.url, &part, log)?;
            md5 = Some(verify_download(&part, &request.url, &request.md5)?);
            fs::rename(&part, &archive_path)
                .with_context(|| format!("{}: cannot rename into place", archive_path.display()))?;
            downloaded = true;
            log(&format!("{}: MD5 {} verified", archive_path.display(), request.md5));
        }
        unpack(&archive_path, dir, archive.folder())?;
        unpacked = true;
        log(&format!("unpacked {} into {}", archive_path.display(), folder.display()));
    }
    let splits = crate::data::load(&spec)?;
    let (train, test, classes) = (splits.train.len(), splits.test.len(), splits.train.classes);
    Ok(Outcome { spec, downloaded, unpacked, md5, train, test, classes })
}

/// `DIR/<archive>.part`.
pub fn part_path(archive_path: &Path) -> PathBuf {
    let mut name = archive_path.file_name().unwrap_or_default().to_os_string();
    name.push(PART_SUFFIX);
    archive_path.with_file_name(name)
}

/// The MD5 of a file, lowercase hexadecimal.
pub fn md5_file(path: &Path) -> anyhow::Result<String> {
    let cannot_read = |e: io::Error| input_error(format!("{}: cannot read: {e}", path.display()));
    let mut file = File::open(path).map_err(cannot_read)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(cannot_read(e)),
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks a freshly downloaded file; on a mismatch deletes it and fails naming both checksums.
fn verify_download(part: &Path, url: &str, expected: &str) -> anyhow::Result<String> {
    let actual = md5_file(part)?;
    if actual != expected {
        let removed = match fs::remove_file(part) {
            Ok(()) => "deleted".to_string(),
            Err(e) => format!("could not be deleted: {e}"),
        };
        bail_input!(
            "{url}: checksum mismatch: expected MD5 {expected}, downloaded file has MD5 {actual} ({} {removed})",
            part.display()
        );
    }
    Ok(actual)
}

/// Checks an archive found in place; on a mismatch fails naming both checksums and leaves it there.
fn verify_existing(archive_path: &Path, expected: &str) -> anyhow::Result<String> {
    let actual = md5_file(archive_path)?;
    if actual != expected {
        bail_input!(
            "{}: checksum mismatch: expected MD5 {expected}, file has MD5 {actual} (delete it to download again)",
            archive_path.display()
        );
    }
    Ok(actual)
}

/// Fetches `url` into `part`, resuming after the bytes already there when the server allows it.
fn fetch(url: &str, part: &Path, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let have = match fs::metadata(part) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => bail_input!("{}: cannot read: {e}", part.display()),
    };
    let agent = ureq::AgentBuilder::new().timeout_connect(CONNECT_TIMEOUT).timeout_read(READ_TIMEOUT).build();
    // The byte offsets of a resume refer to the file itself, never to a compressed transfer of it.
    let mut request = agent.get(url).set("Accept-Encoding", "identity");
    if have > 0 {
        log(&format!("resuming after {have} bytes already in {}", part.display()));
        request = request.set("Range", &format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(416, response)) if have > 0 && range_total(&response) == Some(have) => {
            log(&format!("{}: already complete", part.display()));
            return Ok(());
        }
        Err(ureq::Error::Status(code, response)) => {
            bail_input!("{url}: server answered {code} {}", response.status_text())
        }
        Err(ureq::Error::Transport(transport)) => bail_input!("{url}: {}", describe_transport(&transport)),
    };
    let (start, total) = match response.status() {
        206 => resumed_range(&response, url, have)?,
        200 => {
            if have > 0 {
                log("the server ignored the range request, starting over");
            }
            (0, response.header("Content-Length").and_then(|v| v.trim().parse().ok()))
        }
        code => bail_input!("{url}: unexpected answer {code} {}", response.status_text()),
    };
    let file = if start == 0 { File::create(part) } else { OpenOptions::new().append(true).open(part) };
    let file = file.map_err(|e| input_error(format!("{}: cannot write: {e}", part.display())))?;
    copy_body(response.into_reader(), file, start, total, url, part)
}

/// Checks the `Content-Range` of a 206 answer starts at `have`; returns (start, total length).
fn resumed_range(response: &ureq::Response, url: &str, have: u64) -> anyhow::Result<(u64, Option<u64>)> {
    let header = response.header("Content-Range").unwrap_or("");
    match parse_content_range(header) {
        Some((first, total)) if first == have => Ok((have, total)),
        _ => bail_input!("{url}: asked for bytes {have}- but the server sent Content-Range '{header}'"),
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) into (FIRST, TOTAL).
pub fn parse_content_range(header: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = header.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    Some((first.parse().ok()?, total))
}

/// The total length a 416 answer reports (`Content-Range: bytes */TOTAL`).
fn range_total(response: &ureq::Response) -> Option<u64> {
    response.header("Content-Range")?.trim().strip_prefix("bytes */")?.parse().ok()
}

/// A transport failure without the URL (the caller names it): kind, message and cause.
fn describe_transport(transport: &ureq::Transport) -> String {
    let mut text = transport.kind().to_string();
    if let Some(message) = transport.message() {
        text.push_str(&format!(": {message}"));
    }
    if let Some(source) = std::error::Error::source(transport) {
        text.push_str(&format!(": {source}"));
    }
    text
}

/// Appends the response body to `file` (which holds `start` bytes), with a progress bar on stderr.
/// A broken transfer keeps what arrived, for a later resume.
fn copy_body(
    mut body: impl Read,
    file: File,
    start: u64,
    total: Option<u64>,
    url: &str,
    part: &Path,
) -> anyhow::Result<()> {
    let cannot_write = |e: io::Error| input_error(format!("{}: cannot write: {e}", part.display()));
    let bar = progress_bar(part, start, total);
    let mut writer = BufWriter::with_capacity(COPY_BUFFER_BYTES, file);
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut written = start;
    let broken = loop {
        match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                writer.write_all(&buf[..n]).map_err(cannot_write)?;
                written += n as u64;
                bar.set_position(written);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        }
    };
    writer.flush().map_err(cannot_write)?;
    writer.get_ref().sync_all().map_err(cannot_write)?;
    bar.finish_and_clear();
    let short =
        total.filter(|&total| written < total).map(|_| "the server closed the connection".to_string());
    if let Some(cause) = broken.or(short) {
        let of_total = total.map(|t| format!(" of {t}")).unwrap_or_default();
        bail_input!(
            "{url}: transfer broken after {written}{of_total} bytes ({cause}); {} kept, run again to resume",
            part.display()
        );
    }
    Ok(())
}

/// Bytes, rate and ETA on stderr; indicatif hides it when stderr is not a terminal.
fn progress_bar(part: &Path, start: u64, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {binary_bytes_per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(part.file_name().unwrap_or_default().to_string_lossy().into_owned());
    bar.set_position(start);
    bar.tick();
    // The rate counts this run's bytes only, not those resumed from an earlier run.
    bar.reset_eta();
    bar
}

/// Unpacks the gzipped tar `archive_path` into a staging folder in `dir`, then moves its `folder`
/// into `dir`.
fn unpack(archive_path: &Path, dir: &Path, folder: &str) -> anyhow::Result<()> {
    let staging = dir.join(format!(".{folder}.unpacking"));
    let cannot =
        |what: &str, path: &Path, e: io::Error| input_error(format!("{}: {what}: {e}", path.display()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| cannot("cannot remove", &staging, e))?;
    }
    fs::create_dir_all(&staging).map_err(|e| cannot("cannot create", &staging, e))?;
    let file = File::open(archive_path).map_err(|e| cannot("cannot read", archive_path, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let result = tar.unpack(&staging).map_err(|e| cannot("cannot unpack", archive_path, e)).and_then(|()| {
        let unpacked = staging.join(folder);
        if !unpacked.is_dir() {
            bail_input!("{}: holds no {folder}/ folder", archive_path.display());
        }
        let target = dir.join(folder);
        fs::rename(&unpacked, &target).map_err(|e| cannot("cannot move into place", &target, e))
    });
    // Best effort: a leftover staging folder is removed by the next run anyway.
    let _ = fs::remove_dir_all(&staging);
    result
}
