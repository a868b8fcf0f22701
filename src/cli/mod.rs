//! One module per subcommand: clap arguments in, a validated library call, printed results out.
pub mod attack;
pub mod check;
pub mod data;
pub mod detect;
pub mod extract;
pub mod merge;
pub mod model_args;
pub mod roc;
pub mod run;
pub mod train;
