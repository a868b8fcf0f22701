//! `advdet merge DIR...`: combines shard reports into the report of an unsharded run.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct MergeArgs {
    /// Shard report folders (OUT/<suite>/shard-I-of-N)
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The merged report goes to OUT/<suite>/
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}

pub fn run(a: MergeArgs) -> Result<i32> {
    let m = advdet::suite::merge(&a.dirs, &a.out)?;
    println!(
        "merged {} jobs from {} shard folders into {}",
        m.jobs,
        a.dirs.len(),
        m.report_dir.join("index.html").display()
    );
    Ok(0)
}
