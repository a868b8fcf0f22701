//! The advdet command line: parse, validate, call the library, print. Errors exit with code 2
//! (`advdet check` uses 1 for "a metric regressed").
mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "advdet",
    version,
    about = "Benchmark harness for adversarial-example detection with class-specific subnetworks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU kernels: `reproducible` (the default: pinned, the same bytes on any x86-64 machine with AVX2) or `native`
    /// (libtorch's own choice for this processor: faster, reproducible on this machine only); overrides a suite's
    /// `cpu_mode`
    #[arg(long, global = true, value_name = "MODE")]
    cpu_mode: Option<advdet::cpu::CpuMode>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a suite file end to end: data, model, subnetworks, attacks, detectors, metrics, report.
    Run(cli::run::RunArgs),
    /// Compare a results.csv with a baseline: exit 1 when a metric fell by more than the tolerance.
    Check(cli::check::CheckArgs),
    /// Combine the reports of a suite's shards into one report.
    Merge(cli::merge::MergeArgs),
    /// Fetch datasets and print what they hold.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Train a classifier and save .safetensors weights with a JSON sidecar.
    Train(cli::train::TrainArgs),
    /// Clean test accuracy, overall and per class.
    Eval(cli::train::EvalArgs),
    /// Extract the class-specific subnetworks of a trained model (gates, masks, summary and analysis).
    Extract(cli::extract::ExtractArgs),
    /// Score clean and adversarial images with each detector, full model vs. class subnetwork, and tabulate the metrics.
    Detect(cli::detect::DetectArgs),
    /// Detection metrics (AUROC, AP, TPR@5%FPR, ...) of a label,score CSV, with bootstrap intervals and a ROC plot.
    Roc(cli::roc::RocArgs),
    /// Adversarial examples for a split: FGSM, BIM, PGD, MI-FGSM, CW-L2, DeepFool or subnet-ce.
    Attack(cli::attack::AttackArgs),
}

fn main() {
    let cli = Cli::parse();
    // The commands that run tensors fix the CPU numerics first (`run` once it has read the suite's own choice).
    let computes = matches!(
        cli.command,
        Command::Train(_) | Command::Eval(_) | Command::Extract(_) | Command::Detect(_) | Command::Attack(_)
    );
    if computes {
        if let Err(err) = advdet::cpu::pin(cli.cpu_mode.unwrap_or_default()) {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    }
    let result = match cli.command {
        Command::Run(a) => cli::run::run(a, cli.cpu_mode),
        Command::Check(a) => cli::check::run(a),
        Command::Merge(a) => cli::merge::run(a),
        Command::Data(c) => cli::data::run(c),
        Command::Train(a) => cli::train::run_train(a),
        Command::Eval(a) => cli::train::run_eval(a),
        Command::Extract(a) => cli::extract::run(a),
        Command::Detect(a) => cli::detect::run(a),
        Command::Roc(a) => cli::roc::run(a),
        Command::Attack(a) => cli::attack::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(2);
        }
    }
}
