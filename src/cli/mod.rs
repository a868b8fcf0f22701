//! One module per subcommand: clap arguments in, a validated library call, printed results out.
pub mod data;
pub mod train;
