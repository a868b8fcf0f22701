//! Real image datasets: MNIST and Fashion-MNIST (idx files) and CIFAR-10 (binary batches).
pub mod cifar;
pub mod dataset;
pub mod fetch;
pub mod idx;

pub use dataset::Dataset;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    Mnist,
    FashionMnist,
    Cifar10,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl DatasetName {
    pub const ALL: [DatasetName; 3] = [DatasetName::Mnist, DatasetName::FashionMnist, DatasetName::Cifar10];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
        }
    }

    /// `(channels, height, width)`.
    pub fn image_shape(self) -> (i64, i64, i64) {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (1, 28, 28),
            DatasetName::Cifar10 => (3, 32, 32),
        }
    }

    pub fn num_classes(self) -> i64 {
        10
    }

    pub fn how_to_get(self) -> String {
        match self {
            DatasetName::Cifar10 => format!(
                "download the CIFAR-10 binary version (cifar-10-binary.tar.gz), unpack it and put data_batch_1.bin .. \
                 data_batch_5.bin and test_batch.bin in {} or pass --data-dir DIR",
                default_data_dir(self).display()
            ),
            _ => format!(
                "run `advdet data fetch {}` or pass --data-dir DIR holding the standard idx files (raw or .gz)",
                self.as_str()
            ),
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Ok(DatasetName::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            _ => Err(Error::config("dataset", s, "expected mnist, fashion-mnist or cifar10")),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::config("split", s, "expected train or test")),
        }
    }
}

/// The cache root: `$ADVDET_CACHE_DIR`, else `$XDG_CACHE_HOME/advdet`, else `~/.cache/advdet`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ADVDET_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("advdet")
}

/// Where `advdet data fetch` puts a dataset: `$ADVDET_DATA_DIR/<name>`, else `<cache_dir>/data/<name>`.
pub fn default_data_dir(name: DatasetName) -> PathBuf {
    let root = std::env::var_os("ADVDET_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("data"));
    root.join(name.as_str())
}

/// The directory to load `name` from: the user's `--data-dir` when given, else the default.
pub fn resolve_dir(name: DatasetName, data_dir: Option<&Path>) -> PathBuf {
    data_dir.map(Path::to_path_buf).unwrap_or_else(|| default_data_dir(name))
}

/// Loads a split, from `data_dir` or the default location.
pub fn load(name: DatasetName, data_dir: Option<&Path>, split: Split) -> Result<Dataset> {
    Dataset::load(name, &resolve_dir(name, data_dir), split)
}
