//! A short training run on the full Fashion-MNIST (60,000 / 10,000 images) from Debian's
//! dataset-fashion-mnist package (`./scripts/setup.sh --test-data` installs it), or from the folder in
//! WARPNET_FASHION_MNIST_DIR.

use std::path::PathBuf;

use crate::common;
use warpnet::data::{self, DataSpec};
use warpnet::train::{self, TrainConfig, Verbosity};

const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn short_run_on_full_fashion_mnist_reaches_72_percent() {
    let dir = std::env::var_os("WARPNET_FASHION_MNIST_DIR").map(PathBuf::from).unwrap_or(DEBIAN_DIR.into());
    assert!(
        dir.is_dir(),
        "{} missing: run ./scripts/setup.sh --test-data (Debian's dataset-fashion-mnist) \
         or set WARPNET_FASHION_MNIST_DIR",
        dir.display()
    );
    let spec = DataSpec::FashionMnist(dir);
    let splits = data::load(&spec).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));

    let out = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        data: spec,
        iters: Some(500), // 500 x 64 = 32,000 images, about half of one pass
        batch: 64,
        milestones: vec![],
        lr: 0.05,
        k: 1, // WRN-7-1, the demo's network cut to one unit per stage: the figure below is its
        ..TrainConfig::demo()
    };
    // Training seeds libtorch's global generator: one run at a time (see warp_training.rs).
    let _generator = common::seed_exclusively(0);
    let summary = train::train(&config, splits, out.path(), Verbosity::Quiet).unwrap();
    // Chance is 10 %. This WRN-7-1 measured 81.2 % on the 10,000 test images after these steps. At a
    // constant learning rate the eval-mode BatchNorm statistics lag the weights, and the test accuracy
    // moves by several points from one checkpoint to the next; 72 % leaves that room and still fails a
    // pipeline that scrambles pixels or labels (which stays near 10 %).
    assert!(summary.test_accuracy > 0.72, "test accuracy {}", summary.test_accuracy);
}
