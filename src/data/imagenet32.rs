//! Downsampled ImageNet 32x32 (Chrabaszcz, Loshchilov and Hutter, 2017), npz version.
//!
//! The directory holds train_data_batch_1.npz ..= train_data_batch_10.npz and val_data.npz. Each is a zip
//! archive (`np.savez`, stored entries, or `np.savez_compressed`, deflate entries) holding `data.npy`
//! (uint8, shape (N, 3072): the R, G and B planes of a 32x32 image, which is our (3, 32, 32) layout),
//! `labels.npy` (integers 1..=1000, one per image) and possibly `mean.npy`, which we ignore. Labels are
//! shifted to 0..1000.

use crate::bail_input;
use crate::data::idx::{missing_files, missing_files_error, read_data_file, require_dir};
use crate::data::npy::{self, NpyArray};
use crate::data::{Dataset, Splits, IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
use crate::error::input_error;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Number of ImageNet classes.
pub const IMAGENET_CLASSES: usize = 1000;
/// Number of training batch files, train_data_batch_1.npz ..= train_data_batch_10.npz.
const TRAIN_BATCHES: usize = 10;
/// The validation file, used as the test split.
const VAL_FILE: &str = "val_data.npz";
/// Optional file mapping WordNet ids to 1-based class indices and names.
const CLASS_MAP_FILE: &str = "map_clsloc.txt";
/// The first label value in the files (labels are 1-based).
const FIRST_LABEL: i64 = 1;
/// The most bytes reserved up front for one archive entry, whatever size the archive declares.
const MAX_RESERVE_BYTES: u64 = 256 << 20;

/// Reads the training batches and the validation file from `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Splits> {
    require_dir(dir)?;
    let train_names: Vec<String> = (1..=TRAIN_BATCHES).map(|i| format!("train_data_batch_{i}.npz")).collect();
    let all: Vec<String> = train_names.iter().cloned().chain([VAL_FILE.to_string()]).collect();
    let missing = missing_files(dir, &all);
    if !missing.is_empty() {
        return Err(missing_files_error(dir, &missing));
    }
    let class_names = class_names(dir)?;
    let mut train = load_npz(&dir.join(&train_names[0]))?;
    for name in &train_names[1..] {
        train.extend(load_npz(&dir.join(name))?);
    }
    let test = load_npz(&dir.join(VAL_FILE))?;
    Ok(Splits { train, test, class_names })
}

/// Reads one npz file into a [`Dataset`] with labels shifted to 0..1000.
pub fn load_npz(path: &Path) -> anyhow::Result<Dataset> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| input_error(format!("{name}: cannot read: {e}")))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| input_error(format!("{name}: not a readable npz (zip) archive: {e}")))?;
    let data = read_array(&mut archive, &name, "data")?;
    let labels = read_array(&mut archive, &name, "labels")?;
    let count = check_images(&data, &name)?;
    let labels = convert_labels(&labels, &name, count)?;
    Ok(Dataset { images: data.data, labels, classes: IMAGENET_CLASSES })
}

/// Reads and parses the entry `{array}.npy` of an npz archive.
fn read_array<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    array: &str,
) -> anyhow::Result<NpyArray> {
    let mut entry = match archive.by_name(&format!("{array}.npy")) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => bail_input!("{name}: no '{array}' array"),
        Err(e) => bail_input!("{name}: cannot open the '{array}' array: {e}"),
    };
    let mut bytes = Vec::with_capacity(entry.size().min(MAX_RESERVE_BYTES) as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| input_error(format!("{name}: cannot read the '{array}' array: {e}")))?;
    npy::parse(bytes).map_err(|e| input_error(format!("{name}: '{array}' {e}")))
}

/// Checks the dtype and shape of the image array and returns the number of images.
fn check_images(data: &NpyArray, name: &str) -> anyhow::Result<usize> {
    let is_bytes = npy::int_type(&data.descr).is_some_and(|ty| ty.bytes == 1 && !ty.signed);
    if !is_bytes {
        bail_input!("{name}: 'data' has dtype '{}', expected '|u1'", data.descr);
    }
    let count = match data.shape[..] {
        [count, IMAGE_BYTES] => count,
        [count, IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE] => count,
        _ => bail_input!("{name}: 'data' has shape {}, expected (N, {IMAGE_BYTES})", data.shape_text()),
    };
    if count == 0 {
        bail_input!("{name}: 'data' holds no images (shape {})", data.shape_text());
    }
    Ok(count)
}

/// Checks the label array against the image count and range 1..=1000, and shifts it to 0..1000.
fn convert_labels(labels: &NpyArray, name: &str, count: usize) -> anyhow::Result<Vec<u16>> {
    let values = labels.to_i64().ok_or_else(|| {
        input_error(format!(
            "{name}: 'labels' has dtype '{}', expected an integer dtype such as '<i8', '<i4' or '|u1'",
            labels.descr
        ))
    })?;
    let length = match labels.shape[..] {
        [length] | [length, 1] => length,
        _ => bail_input!("{name}: 'labels' has shape {}, expected (N,)", labels.shape_text()),
    };
    if length != count {
        bail_input!("{name}: holds {length} labels but {count} images");
    }
    let last = FIRST_LABEL + IMAGENET_CLASSES as i64 - 1;
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| match shift_label(value) {
            Some(label) => Ok(label),
            _ => bail_input!("{name}: label {index} is {value}, outside {FIRST_LABEL}..={last}"),
        })
        .collect()
}

/// A 1-based label shifted to 0..1000, or `None` when it is out of range.
fn shift_label(value: i64) -> Option<u16> {
    let label = u16::try_from(value.checked_sub(FIRST_LABEL)?).ok()?;
    (usize::from(label) < IMAGENET_CLASSES).then_some(label)
}

/// "class 0" .. "class 999", or the names from `map_clsloc.txt` when the directory has one.
fn class_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join(CLASS_MAP_FILE);
    if !path.is_file() {
        return Ok((0..IMAGENET_CLASSES).map(|i| format!("class {i}")).collect());
    }
    let name = path.display().to_string();
    let text = String::from_utf8(read_data_file(&path)?)
        .map_err(|_| input_error(format!("{name}: not UTF-8 text")))?;
    parse_class_map(&text, &name)
}

/// Parses lines `n02119789 1 kit_fox` into the names ordered by their 1-based index; every index
/// 1..=1000 must appear exactly once.
fn parse_class_map(text: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<Option<String>> = vec![None; IMAGENET_CLASSES];
    for (line_number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line)) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (index, class) = match fields[..] {
            [] => continue,
            [_, index, class] => (index, class),
            _ => bail_input!("{name}: line {line_number}: expected 'WNID INDEX NAME'"),
        };
        let slot = index
            .parse::<usize>()
            .ok()
            .and_then(|index| index.checked_sub(1))
            .and_then(|index| names.get_mut(index))
            .ok_or_else(|| {
                input_error(format!(
                    "{name}: line {line_number}: index '{index}' is not in 1..={IMAGENET_CLASSES}"
                ))
            })?;
        if slot.is_some() {
            bail_input!("{name}: line {line_number}: index {index} appears twice");
        }
        *slot = Some(class.to_string());
    }
    match names.iter().position(Option::is_none) {
        Some(gap) => bail_input!("{name}: no line for class index {}", gap + 1),
        None => Ok(names.into_iter().flatten().collect()),
    }
}
