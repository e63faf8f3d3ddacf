//! CIFAR-10 and CIFAR-100, binary version.
//!
//! A CIFAR-10 record is one label byte (0..10) followed by 3072 pixel bytes: the 32x32 R plane, then G,
//! then B, which is exactly our (3, 32, 32) layout. A CIFAR-100 record is a coarse label byte (0..20), a
//! fine label byte (0..100) and the same 3072 pixel bytes; we train on the fine label.

use crate::bail_input;
use crate::data::idx::{missing_files, missing_files_error, read_data_file, require_dir};
use crate::data::{Dataset, Splits, IMAGE_BYTES};
use crate::error::input_error;
use std::path::Path;

/// Bytes per CIFAR-10 record: label + image.
pub const CIFAR10_RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Bytes per CIFAR-100 record: coarse label + fine label + image.
pub const CIFAR100_RECORD_BYTES: usize = 2 + IMAGE_BYTES;
/// Number of CIFAR-10 classes.
pub const CIFAR10_CLASSES: usize = 10;
/// Number of CIFAR-100 fine classes.
pub const CIFAR100_CLASSES: usize = 100;
/// Number of CIFAR-100 coarse classes (superclasses).
pub const CIFAR100_COARSE_CLASSES: usize = 20;
/// Number of CIFAR-10 training batch files, data_batch_1.bin ..= data_batch_5.bin.
const CIFAR10_TRAIN_BATCHES: usize = 5;

/// The standard CIFAR-10 class names, by label.
pub const CIFAR10_CLASS_NAMES: [&str; CIFAR10_CLASSES] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The standard CIFAR-100 fine class names, by label (alphabetical, as in `fine_label_names.txt`).
pub const CIFAR100_CLASS_NAMES: [&str; CIFAR100_CLASSES] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Where the labels sit in a record and how many classes each may take.
struct RecordLayout {
    /// Bytes per record.
    record_bytes: usize,
    /// (description, number of classes) of each label byte before the image, in record order.
    labels: &'static [(&'static str, usize)],
    /// Index into `labels` of the label we train on.
    kept_label: usize,
    /// Number of classes of the kept label.
    classes: usize,
}

const CIFAR10_LAYOUT: RecordLayout = RecordLayout {
    record_bytes: CIFAR10_RECORD_BYTES,
    labels: &[("label", CIFAR10_CLASSES)],
    kept_label: 0,
    classes: CIFAR10_CLASSES,
};

const CIFAR100_LAYOUT: RecordLayout = RecordLayout {
    record_bytes: CIFAR100_RECORD_BYTES,
    labels: &[("coarse label", CIFAR100_COARSE_CLASSES), ("fine label", CIFAR100_CLASSES)],
    kept_label: 1,
    classes: CIFAR100_CLASSES,
};

/// Reads CIFAR-10 from `dir`: data_batch_1.bin ..= data_batch_5.bin for training, test_batch.bin for test.
pub fn load_cifar10(dir: &Path) -> anyhow::Result<Splits> {
    let train_names: Vec<String> =
        (1..=CIFAR10_TRAIN_BATCHES).map(|i| format!("data_batch_{i}.bin")).collect();
    let test_names = vec!["test_batch.bin".to_string()];
    let class_names = class_names(dir, "batches.meta.txt", &CIFAR10_CLASS_NAMES)?;
    let (train, test) = load_splits(dir, &train_names, &test_names, &CIFAR10_LAYOUT)?;
    Ok(Splits { train, test, class_names })
}

/// Reads CIFAR-100 from `dir`: train.bin and test.bin, keeping the fine labels.
pub fn load_cifar100(dir: &Path) -> anyhow::Result<Splits> {
    let train_names = vec!["train.bin".to_string()];
    let test_names = vec!["test.bin".to_string()];
    let class_names = class_names(dir, "fine_label_names.txt", &CIFAR100_CLASS_NAMES)?;
    let (train, test) = load_splits(dir, &train_names, &test_names, &CIFAR100_LAYOUT)?;
    Ok(Splits { train, test, class_names })
}

/// Parses the bytes of one CIFAR-10 batch file; `name` is how errors name it.
pub fn parse_cifar10(bytes: &[u8], name: &str) -> anyhow::Result<Dataset> {
    parse_records(bytes, name, &CIFAR10_LAYOUT)
}

/// Parses the bytes of one CIFAR-100 file (fine labels); `name` is how errors name it.
pub fn parse_cifar100(bytes: &[u8], name: &str) -> anyhow::Result<Dataset> {
    parse_records(bytes, name, &CIFAR100_LAYOUT)
}

/// Checks that every file is present, then reads the training files and the test files in order.
fn load_splits(
    dir: &Path,
    train_names: &[String],
    test_names: &[String],
    layout: &RecordLayout,
) -> anyhow::Result<(Dataset, Dataset)> {
    require_dir(dir)?;
    let all: Vec<String> = train_names.iter().chain(test_names).cloned().collect();
    let missing = missing_files(dir, &all);
    if !missing.is_empty() {
        return Err(missing_files_error(dir, &missing));
    }
    Ok((load_files(dir, train_names, layout)?, load_files(dir, test_names, layout)?))
}

/// Reads and concatenates the record files `names` in `dir`.
fn load_files(dir: &Path, names: &[String], layout: &RecordLayout) -> anyhow::Result<Dataset> {
    let mut all = Dataset { images: Vec::new(), labels: Vec::new(), classes: layout.classes };
    for name in names {
        let path = dir.join(name);
        let bytes = read_data_file(&path)?;
        all.extend(parse_records(&bytes, &path.display().to_string(), layout)?);
    }
    Ok(all)
}

/// Checks the size and every label of a record file and splits it into images and kept labels.
fn parse_records(bytes: &[u8], name: &str, layout: &RecordLayout) -> anyhow::Result<Dataset> {
    let record = layout.record_bytes;
    if bytes.is_empty() {
        bail_input!("{name}: empty file (expected whole {record}-byte records)");
    }
    if !bytes.len().is_multiple_of(record) {
        bail_input!("{name}: size {} is not a whole number of {record}-byte records", bytes.len());
    }
    let count = bytes.len() / record;
    let header = layout.labels.len();
    let mut images = Vec::with_capacity(count * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(count);
    for (index, chunk) in bytes.chunks_exact(record).enumerate() {
        for (&value, &(what, classes)) in chunk.iter().zip(layout.labels) {
            if value as usize >= classes {
                bail_input!("{name}: record {index} has {what} {value}, outside 0..{classes}");
            }
        }
        labels.push(u16::from(chunk[layout.kept_label]));
        images.extend_from_slice(&chunk[header..]);
    }
    Ok(Dataset { images, labels, classes: layout.classes })
}

/// Class names from `dir/file` when that file exists (one name a line, blank lines ignored), else the
/// standard names. A names file with the wrong number of names is an error naming it.
fn class_names(dir: &Path, file: &str, standard: &[&str]) -> anyhow::Result<Vec<String>> {
    let path = dir.join(file);
    if !path.is_file() {
        return Ok(standard.iter().map(|name| name.to_string()).collect());
    }
    let bytes = read_data_file(&path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| input_error(format!("{}: class names file is not UTF-8 text", path.display())))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_string).collect();
    if names.len() != standard.len() {
        bail_input!("{}: holds {} class names, expected {}", path.display(), names.len(), standard.len());
    }
    Ok(names)
}
