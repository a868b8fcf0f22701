//! manifest.json of a suite report (the benchmark of Wang, Su, Zhang, Hu, arXiv 1910.02673): which code, libtorch,
//! device, seeds and inputs produced the results, and the wall time of every stage.
use crate::error::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// Wall time of one stage in this run, and how many of its instances were computed or taken from the cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub computed: usize,
    pub cached: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub advdet_version: String,
    pub git_commit: String,
    pub libtorch_version: String,
    pub device: String,
    /// The CPU mode, the host's ISA level and vendor, and the pinned settings.
    pub cpu: crate::cpu::CpuNumerics,
    pub suite: String,
    pub suite_file: String,
    /// The shards this report was made from (`0/1` for an unsharded run).
    pub shards: Vec<String>,
    pub seeds: BTreeMap<String, u64>,
    /// sha256 of every input: suite file, data, model weights, subnetworks.
    pub inputs: BTreeMap<String, String>,
    pub stages: Vec<StageTime>,
    pub wall_seconds: f64,
    /// Always true here: no detector is fitted on adversarial examples.
    pub detectors_oblivious_to_attacks: bool,
    pub protocol: String,
}

impl Manifest {
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_json(path, self)
    }
}

/// `git rev-parse HEAD` of the working directory, or "unknown" outside a git checkout.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The protocol statement every report carries.
pub const PROTOCOL_NOTE: &str = "Negatives: clean test images the model classifies correctly. Positives (protocol \
    `successful`): their adversarial versions that the model misclassifies; protocol `all`: every adversarial version. \
    The detectors are oblivious to the attacks: they are never fitted on adversarial examples (the fitted baselines use \
    held-out clean training images only).";
