//! Suites: a TOML file naming data, model, subnetwork extraction, attacks, detectors and metrics, run end to end with
//! every stage cached, sharded and merged, for the detector comparison of Wang, Hu, Su (arXiv 1910.02673).
pub mod cache;
pub mod expand;
pub mod locate;
pub mod merge;
pub mod runner;
pub mod schema;
pub mod scoring;
pub mod shard;
pub mod stages;

pub use merge::{merge, MergeSummary};
pub use runner::{run, summary_text, RunOptions, RunSummary};
pub use schema::{load, Job, Suite};
pub use shard::Shard;
