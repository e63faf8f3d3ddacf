//! The default data set: a class-balanced subset of Fashion-MNIST compiled into the binary.
//!
//! 6,000 training images (the first 600 of each class in the training file) and 1,000 test images (the
//! first 100 of each class in the t10k file), as gzip IDX files made by `scripts/make_embedded_subset.py`.
//! See `assets/fashion-mnist-subset/README.md` and its `LICENSE` (MIT, Copyright (c) 2017 Zalando SE).

use crate::data::idx::{parse_idx_pair, FASHION_CLASS_NAMES};
use crate::data::Splits;

const TRAIN_IMAGES: &[u8] = include_bytes!("../../assets/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../assets/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../assets/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../assets/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

/// Where error messages say the embedded files come from.
const ORIGIN: &str = "embedded fashion-mnist-subset";

/// Decodes the embedded subset: 6,000 training and 1,000 test images of 10 classes.
pub fn load_fashion_mnist_subset() -> anyhow::Result<Splits> {
    let train = parse_idx_pair(
        TRAIN_IMAGES,
        TRAIN_LABELS,
        &format!("{ORIGIN}/train-images-idx3-ubyte.gz"),
        &format!("{ORIGIN}/train-labels-idx1-ubyte.gz"),
    )?;
    let test = parse_idx_pair(
        TEST_IMAGES,
        TEST_LABELS,
        &format!("{ORIGIN}/t10k-images-idx3-ubyte.gz"),
        &format!("{ORIGIN}/t10k-labels-idx1-ubyte.gz"),
    )?;
    let class_names = FASHION_CLASS_NAMES.iter().map(|name| name.to_string()).collect();
    Ok(Splits { train, test, class_names })
}
