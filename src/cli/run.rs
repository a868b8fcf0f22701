//! `advdet run SUITE`: runs a suite file end to end and prints a one-screen summary.
use advdet::device::DeviceChoice;
use advdet::suite::{self, RunOptions, Shard};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    /// Suite file (e.g. attacks/smoke.toml)
    pub suite: PathBuf,
    /// Reports go to OUT/<suite>/, the stage cache to OUT/<suite>/cache/
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// auto, cpu or cuda (default: the suite's [suite] device, else auto)
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Run shard I of N (0-based, e.g. 0/4): a deterministic 1/N of the jobs; combine with `advdet merge`
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Drop the suite's stage cache first (the trained-model cache is kept)
    #[arg(long)]
    pub fresh: bool,
    /// After the run, time only the model passes its scoring made (warm, over the image sets it scored) and print the
    /// scoring stage's time as a ratio to that bound; recorded in manifest.json
    #[arg(long)]
    pub bound: bool,
}

pub fn run(a: RunArgs, cpu_mode: Option<advdet::cpu::CpuMode>) -> Result<i32> {
    let suite = suite::load(&a.suite)?;
    let opts = RunOptions {
        out: a.out,
        device: a.device,
        shard: a.shard.unwrap_or_default(),
        fresh: a.fresh,
        cpu_mode,
        bound: a.bound,
    };
    let summary = suite::run(&suite, &opts)?;
    print!("{}", suite::summary_text(&summary));
    Ok(0)
}
