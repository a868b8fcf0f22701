//! manifest.json of a suite report (the benchmark of Wang, Hu, Su, arXiv 1910.02673): which code, libtorch,
//! device, seeds and inputs produced the results, and where the time went: every stage, every job, every (detector,
//! route).
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

/// Seconds of one attack job in this run, by stage; `computed` is false when its record came from the cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobTime {
    pub index: usize,
    pub attack: String,
    pub params: String,
    pub computed: bool,
    pub attack_seconds: f64,
    pub scores_seconds: f64,
    pub metrics_seconds: f64,
}

impl JobTime {
    pub fn seconds(&self) -> f64 {
        self.attack_seconds + self.scores_seconds + self.metrics_seconds
    }

    /// One line: the job, its seconds per stage, and whether it was computed.
    pub fn line(&self) -> String {
        format!(
            "{} {}: {:.1} s (attack {:.1}, scores {:.1}, metrics {:.1}){}",
            self.attack,
            self.params,
            self.seconds(),
            self.attack_seconds,
            self.scores_seconds,
            self.metrics_seconds,
            if self.computed { "" } else { ", from the cache" }
        )
    }
}

/// Seconds one detector spent scoring on one route in this run, clean and adversarial image sets together, not
/// counting the route's own pass (`Manifest::route_passes`), which every detector on the route shares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreTime {
    pub detector: String,
    pub route: String,
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
    /// Seconds per attack job, in suite order.
    #[serde(default)]
    pub jobs: Vec<JobTime>,
    /// With `advdet run --bound`: seconds of only the model passes the scoring stage made (its lower bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores_bound_seconds: Option<f64>,
    /// Seconds per (detector, route) of the scoring stage.
    #[serde(default)]
    pub scoring: Vec<ScoreTime>,
    /// Batched forward and backward calls of the model in the scoring stage (`forwards`, `backwards`).
    #[serde(default)]
    pub scoring_calls: BTreeMap<String, usize>,
    /// Seconds of each route's own pass in the scoring stage, shared by the detectors on it.
    #[serde(default)]
    pub route_passes: BTreeMap<String, f64>,
    pub wall_seconds: f64,
    /// Whether no detector of the suite is fitted on adversarial examples (false with a supervised one, which sees
    /// the training attack's: `train_attack`).
    pub detectors_oblivious_to_attacks: bool,
    /// The supervised detectors' training attack (`attack params`), when the suite scores one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_attack: Option<String>,
    pub protocol: String,
}

/// The file names a manifest writes into a report folder: itself, and its stage times as a bar chart (index.html shows
/// the chart; both change from run to run, unlike every other report file).
pub const MANIFEST_FILE: &str = "manifest.json";
pub const STAGE_CHART_FILE: &str = "stages.svg";

impl Manifest {
    /// Writes `manifest.json` and `stages.svg` into the report folder `dir`.
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let title = format!("Stage seconds of suite {} ({:.1} s wall)", self.suite, self.wall_seconds);
        crate::report::plot::stage_chart(&dir.join(STAGE_CHART_FILE), &title, &self.stages)?;
        crate::io::write_json(&dir.join(MANIFEST_FILE), self)
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
