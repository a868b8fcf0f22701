//! The advdet command line: parse, validate, call the library, print. Errors exit with code 2
//! (`advdet check` uses 1 for "a metric regressed").
mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "advdet", version, about = "Benchmark harness for adversarial-example detection with class-specific subnetworks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch datasets and print what they hold.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Train a classifier and save .safetensors weights with a JSON sidecar.
    Train(cli::train::TrainArgs),
    /// Clean test accuracy, overall and per class.
    Eval(cli::train::EvalArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(c) => cli::data::run(c),
        Command::Train(a) => cli::train::run_train(a),
        Command::Eval(a) => cli::train::run_eval(a),
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
