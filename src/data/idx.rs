//! IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
//!
//! An images file is a big-endian header (magic 0x00000803, count, rows, cols) followed by `count * rows *
//! cols` grey bytes; a labels file is (magic 0x00000801, count) followed by `count` label bytes. Each 28x28
//! grey image is zero-padded by 2 pixels on every side to 32x32 and repeated to three planes, giving the
//! (N, 3, 32, 32) layout every reader produces.
//!
//! This module also holds the small file helpers the other readers share.

use crate::bail_input;
use crate::data::{Dataset, Splits, IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
use crate::error::input_error;
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned-byte images with three dimensions.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels with one dimension.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Bytes of the magic number that opens every IDX file.
const MAGIC_BYTES: usize = 4;
/// Header bytes of an images file: magic, count, rows, cols.
const IMAGES_HEADER_BYTES: usize = 16;
/// Header bytes of a labels file: magic, count.
const LABELS_HEADER_BYTES: usize = 8;
/// Side of an MNIST / Fashion-MNIST image.
pub const MNIST_SIDE: usize = 28;
/// Zero pixels added on every side to go from 28x28 to 32x32.
const PAD: usize = (IMAGE_SIDE - MNIST_SIDE) / 2;
/// Number of Fashion-MNIST classes.
pub const FASHION_CLASSES: usize = 10;

/// Fashion-MNIST class names, by label.
pub const FASHION_CLASS_NAMES: [&str; FASHION_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// File stems of the four Fashion-MNIST files: (train images, train labels, test images, test labels).
const FASHION_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Reads the full Fashion-MNIST set from `dir`, where each of the four IDX files may be plain or `.gz`.
pub fn load_fashion_mnist(dir: &Path) -> anyhow::Result<Splits> {
    require_dir(dir)?;
    let paths: Vec<Option<PathBuf>> = FASHION_FILES.iter().map(|stem| find_plain_or_gz(dir, stem)).collect();
    let missing: Vec<String> = FASHION_FILES
        .iter()
        .zip(&paths)
        .filter(|(_, path)| path.is_none())
        .map(|(stem, _)| format!("{stem} (or {stem}.gz)"))
        .collect();
    if !missing.is_empty() {
        return Err(missing_files_error(dir, &missing));
    }
    let paths: Vec<PathBuf> = paths.into_iter().flatten().collect();
    let train = load_pair(&paths[0], &paths[1])?;
    let test = load_pair(&paths[2], &paths[3])?;
    Ok(Splits { train, test, class_names: FASHION_CLASS_NAMES.iter().map(|s| s.to_string()).collect() })
}

/// Parses an images file and its labels file (each gzip or plain) into a Fashion-MNIST [`Dataset`].
///
/// `images_name` and `labels_name` are how errors name the two inputs (usually their paths).
pub fn parse_idx_pair(
    images: &[u8],
    labels: &[u8],
    images_name: &str,
    labels_name: &str,
) -> anyhow::Result<Dataset> {
    let images = decompress_if_gzip(images, images_name)?;
    let labels = decompress_if_gzip(labels, labels_name)?;
    let (count, pixels) = parse_images(&images, images_name)?;
    let labels = parse_labels(&labels, labels_name)?;
    if labels.len() != count {
        bail_input!("{labels_name}: holds {} labels but {images_name} holds {count} images", labels.len());
    }
    Ok(Dataset { images: pad_and_repeat(pixels), labels, classes: FASHION_CLASSES })
}

/// Reads and parses one images / labels file pair.
fn load_pair(images: &Path, labels: &Path) -> anyhow::Result<Dataset> {
    let image_bytes = read_data_file(images)?;
    let label_bytes = read_data_file(labels)?;
    parse_idx_pair(&image_bytes, &label_bytes, &images.display().to_string(), &labels.display().to_string())
}

/// `dir/stem` if it is a file, else `dir/stem.gz` if that is, else `None`.
fn find_plain_or_gz(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))].into_iter().find(|path| path.is_file())
}

/// The bytes themselves, or their gzip decompression when they start with the gzip magic.
fn decompress_if_gzip<'a>(bytes: &'a [u8], name: &str) -> anyhow::Result<Cow<'a, [u8]>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| input_error(format!("{name}: starts like gzip but cannot be decompressed: {e}")))?;
    Ok(Cow::Owned(out))
}

/// Big-endian u32 at `offset` (the caller has checked the length).
fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(word)
}

/// Checks an images file and returns (count, the count * 28 * 28 grey bytes).
fn parse_images<'a>(bytes: &'a [u8], name: &str) -> anyhow::Result<(usize, &'a [u8])> {
    check_header(bytes, name, IMAGES_HEADER_BYTES, IDX_IMAGES_MAGIC, "IDX images")?;
    let count = be_u32(bytes, 4) as usize;
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    if rows as usize != MNIST_SIDE || cols as usize != MNIST_SIDE {
        bail_input!("{name}: images are {rows}x{cols}, expected {MNIST_SIDE}x{MNIST_SIDE}");
    }
    if count == 0 {
        bail_input!("{name}: holds no images (count 0)");
    }
    let body = check_body_length(bytes, name, IMAGES_HEADER_BYTES, count, MNIST_SIDE * MNIST_SIDE, "images")?;
    Ok((count, body))
}

/// Checks a labels file and returns its labels.
fn parse_labels(bytes: &[u8], name: &str) -> anyhow::Result<Vec<u16>> {
    check_header(bytes, name, LABELS_HEADER_BYTES, IDX_LABELS_MAGIC, "IDX labels")?;
    let count = be_u32(bytes, 4) as usize;
    let body = check_body_length(bytes, name, LABELS_HEADER_BYTES, count, 1, "labels")?;
    if let Some((index, label)) =
        body.iter().enumerate().find(|(_, &label)| label as usize >= FASHION_CLASSES)
    {
        bail_input!("{name}: entry {index} has label {label}, outside 0..{FASHION_CLASSES}");
    }
    Ok(body.iter().map(|&label| u16::from(label)).collect())
}

/// Checks that the file carries the expected magic number and is at least a header long.
fn check_header(bytes: &[u8], name: &str, header: usize, magic: u32, what: &str) -> anyhow::Result<()> {
    if bytes.is_empty() {
        bail_input!("{name}: empty file (expected {what})");
    }
    if bytes.len() >= MAGIC_BYTES {
        let found = be_u32(bytes, 0);
        if found != magic {
            bail_input!("{name}: wrong magic number 0x{found:08x} (expected 0x{magic:08x} for {what})");
        }
    }
    if bytes.len() < header {
        bail_input!("{name}: truncated: {} bytes, shorter than the {header}-byte {what} header", bytes.len());
    }
    Ok(())
}

/// Checks that the file holds exactly `header + count * item` bytes and returns the part after the header.
fn check_body_length<'a>(
    bytes: &'a [u8],
    name: &str,
    header: usize,
    count: usize,
    item: usize,
    what: &str,
) -> anyhow::Result<&'a [u8]> {
    let expected = count.checked_mul(item).and_then(|body| body.checked_add(header));
    match expected {
        Some(expected) if bytes.len() == expected => Ok(&bytes[header..]),
        Some(expected) if bytes.len() < expected => bail_input!(
            "{name}: truncated: {} bytes, expected {expected} for {count} {what} ({header}-byte header + {count} x {item})",
            bytes.len()
        ),
        Some(expected) => bail_input!(
            "{name}: {} bytes, expected {expected} for {count} {what}: {} trailing bytes",
            bytes.len(),
            bytes.len() - expected
        ),
        None => bail_input!("{name}: header claims {count} {what}, too many to hold"),
    }
}

/// Turns (N, 28, 28) grey bytes into (N, 3, 32, 32): 2 zero pixels on every side, grey repeated to R, G, B.
/// What every Fashion-MNIST image goes through before the network sees it (`warpnet predict` too).
pub fn pad_and_repeat(grey: &[u8]) -> Vec<u8> {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let count = grey.len() / (MNIST_SIDE * MNIST_SIDE);
    let mut out = vec![0u8; count * IMAGE_BYTES];
    for (source, target) in grey.chunks_exact(MNIST_SIDE * MNIST_SIDE).zip(out.chunks_exact_mut(IMAGE_BYTES))
    {
        for (row, pixels) in source.chunks_exact(MNIST_SIDE).enumerate() {
            let start = (row + PAD) * IMAGE_SIDE + PAD;
            for channel in 0..IMAGE_CHANNELS {
                let offset = channel * plane + start;
                target[offset..offset + MNIST_SIDE].copy_from_slice(pixels);
            }
        }
    }
    out
}

// ---- helpers shared by the file readers ----------------------------------------------------------------

/// Reads a whole data file; an unreadable file is an input error naming it.
pub(crate) fn read_data_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))
}

/// Checks that a data directory exists.
pub(crate) fn require_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let problem = if dir.exists() { "not a directory" } else { "no such directory" };
    Err(input_error(format!("{}: {problem}", dir.display())))
}

/// `DIR: missing file NAME` or `DIR: missing files A, B`.
pub(crate) fn missing_files_error(dir: &Path, missing: &[String]) -> anyhow::Error {
    let noun = if missing.len() == 1 { "file" } else { "files" };
    input_error(format!("{}: missing {noun} {}", dir.display(), missing.join(", ")))
}

/// The names in `names` that are not files in `dir`.
pub(crate) fn missing_files(dir: &Path, names: &[String]) -> Vec<String> {
    names.iter().filter(|name| !dir.join(name).is_file()).cloned().collect()
}
