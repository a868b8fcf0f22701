//! The stage cache of a suite run: one folder per stage instance, named by a hash of everything that determines its
//! output, done exactly when its final `done.json` exists (the benchmark pipeline of Wang et al., arXiv 1910.02673).
use crate::error::{Error, Result};
use crate::io::{read_json, sha256_file, write_json};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Bumped whenever a change to the runner changes what a cached stage holds.
pub const CACHE_VERSION: u32 = 1;

/// sha256 of the running executable: any change to the code that computes a stage (attacks, detectors, extraction)
/// changes every key, so a rebuilt advdet never reuses results an older build computed.
pub fn code_identity() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| sha256_file(&exe).ok())
            .unwrap_or_else(|| format!("advdet-{}", env!("CARGO_PKG_VERSION")))
    })
}

/// Builds a stage key from named parts; the same parts in the same order give the same key on every platform.
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    pub fn new(stage: &str) -> Self {
        let mut h = Sha256::new();
        h.update(format!(
            "advdet-stage:{stage}:v{CACHE_VERSION}:{}:{}\n",
            crate::train::tch_version(),
            code_identity()
        ));
        KeyBuilder(h)
    }

    /// Adds `name = value` (a value with a newline cannot collide with another field: lengths are hashed too).
    pub fn part(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        let v = value.to_string();
        self.0.update(format!("{}:{name}={}:{v}\n", name.len(), v.len()));
        self
    }

    /// Adds a serialisable value as canonical JSON.
    pub fn json<T: Serialize>(self, name: &str, value: &T) -> Self {
        let v = serde_json::to_string(value).unwrap_or_else(|e| format!("<unserialisable: {e}>"));
        self.part(name, v)
    }

    /// The first 16 hex digits of the sha256.
    pub fn finish(self) -> String {
        format!("{:x}", self.0.finalize())[..16].to_string()
    }
}

/// The cache root of one suite, `<out>/<suite>/cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// One stage instance: `<root>/<stage>-<key>/`.
#[derive(Debug, Clone)]
pub struct StageDir {
    pub stage: String,
    pub key: String,
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn stage(&self, stage: &str, key: &str) -> StageDir {
        StageDir { stage: stage.to_string(), key: key.to_string(), dir: self.root.join(format!("{stage}-{key}")) }
    }

    /// Removes the whole cache (`--fresh`).
    pub fn clear(&self) -> Result<()> {
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        }
        Ok(())
    }
}

impl StageDir {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn done_path(&self) -> PathBuf {
        self.dir.join("done.json")
    }

    /// True when the stage finished: its final file exists (every other artifact was renamed into place before it).
    pub fn is_done(&self) -> bool {
        self.done_path().is_file()
    }

    /// Creates the folder for the stage's artifacts.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }

    /// Marks the stage done, recording what it was computed from and how long it took.
    pub fn finish<T: Serialize>(&self, info: &T) -> Result<()> {
        write_json(&self.done_path(), info)
    }

    /// Reads back what `finish` recorded.
    pub fn info<T: DeserializeOwned>(&self) -> Result<T> {
        read_json(&self.done_path())
    }
}
