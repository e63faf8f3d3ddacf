//! Data sets, augmentation and the background batch loader.
//!
//! Every reader returns [`Splits`] of raw (N, 3, 32, 32) bytes and checks what it reads: a missing file, a
//! size that is not a whole number of records, a wrong magic number or a label out of range is one
//! [`InputError`](crate::error::InputError) line naming the file.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod download;
pub mod embedded;
pub mod idx;
pub mod image_file;
pub mod imagenet32;
pub mod loader;
pub mod npy;
pub mod spec;
pub mod text;

pub use dataset::{Dataset, Splits, IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
pub use spec::DataSpec;

/// Reads the data set a spec names.
pub fn load(spec: &DataSpec) -> anyhow::Result<Splits> {
    match spec {
        DataSpec::FashionMnistEmbedded => embedded::load_fashion_mnist_subset(),
        DataSpec::FashionMnist(dir) => idx::load_fashion_mnist(dir),
        DataSpec::Cifar10(dir) => cifar::load_cifar10(dir),
        DataSpec::Cifar100(dir) => cifar::load_cifar100(dir),
        DataSpec::Imagenet32(dir) => imagenet32::load(dir),
    }
}
