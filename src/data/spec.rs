//! The `--data SPEC` grammar: which data set, and where it lives.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A data set named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSpec {
    /// `fashion-mnist`: the class-balanced subset compiled into the binary (no download, no path).
    FashionMnistEmbedded,
    /// `fashion-mnist:DIR`: the full set as IDX files (gzip or plain).
    FashionMnist(PathBuf),
    /// `cifar10:DIR`: the binary version (data_batch_1..5.bin, test_batch.bin).
    Cifar10(PathBuf),
    /// `cifar100:DIR`: the binary version (train.bin, test.bin).
    Cifar100(PathBuf),
    /// `imagenet32:DIR`: downsampled ImageNet, npz batches.
    Imagenet32(PathBuf),
}

/// The images of a data set as its files hold them, before the loader makes every one (3, 32, 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceImages {
    /// 28x28 grey (Fashion-MNIST): zero-padded to 32x32, grey repeated to R, G, B.
    Grey28,
    /// 32x32 RGB (CIFAR, ImageNet32x32): as they are.
    Rgb32,
}

impl DataSpec {
    pub fn source_images(&self) -> SourceImages {
        match self {
            DataSpec::FashionMnistEmbedded | DataSpec::FashionMnist(_) => SourceImages::Grey28,
            DataSpec::Cifar10(_) | DataSpec::Cifar100(_) | DataSpec::Imagenet32(_) => SourceImages::Rgb32,
        }
    }
}

pub const SPEC_FORMS: &str = "fashion-mnist, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, imagenet32:DIR";

impl FromStr for DataSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if spec == "fashion-mnist" {
            return Ok(DataSpec::FashionMnistEmbedded);
        }
        let (name, dir) = spec
            .split_once(':')
            .ok_or_else(|| format!("unknown data set '{spec}' (expected one of {SPEC_FORMS})"))?;
        if dir.is_empty() {
            return Err(format!("'{spec}' names no directory after ':'"));
        }
        let dir = PathBuf::from(dir);
        match name {
            "fashion-mnist" => Ok(DataSpec::FashionMnist(dir)),
            "cifar10" => Ok(DataSpec::Cifar10(dir)),
            "cifar100" => Ok(DataSpec::Cifar100(dir)),
            "imagenet32" => Ok(DataSpec::Imagenet32(dir)),
            _ => Err(format!("unknown data set '{name}' (expected one of {SPEC_FORMS})")),
        }
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::FashionMnistEmbedded => write!(f, "fashion-mnist"),
            DataSpec::FashionMnist(dir) => write!(f, "fashion-mnist:{}", dir.display()),
            DataSpec::Cifar10(dir) => write!(f, "cifar10:{}", dir.display()),
            DataSpec::Cifar100(dir) => write!(f, "cifar100:{}", dir.display()),
            DataSpec::Imagenet32(dir) => write!(f, "imagenet32:{}", dir.display()),
        }
    }
}

impl TryFrom<String> for DataSpec {
    type Error = String;
    fn try_from(spec: String) -> Result<Self, String> {
        spec.parse()
    }
}

impl From<DataSpec> for String {
    fn from(spec: DataSpec) -> String {
        spec.to_string()
    }
}
