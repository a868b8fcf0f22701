//! The library's typed error: every variant names the file, field or value that was wrong.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error("{what}: sha256 mismatch (expected {expected}, got {actual}); the archive was rejected and not unpacked")]
    Checksum { what: String, expected: String, actual: String },
    #[error("{0}")]
    Missing(String),
    #[error("invalid {field} = {value}: {problem}")]
    Config { field: String, value: String, problem: String },
    #[error("`{cmd}` failed: {problem}")]
    Command { cmd: String, problem: String },
    #[error("{0}")]
    Device(String),
    #[error("{0}")]
    Model(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn format(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }
    pub fn config(field: impl Into<String>, value: impl std::fmt::Display, problem: impl Into<String>) -> Self {
        Error::Config { field: field.into(), value: value.to_string(), problem: problem.into() }
    }
}
