//! advdet: a benchmark harness for adversarial-example detection with class-specific subnetworks
//! (Wang, Hu, Su, arXiv 1910.02673).
pub mod attacks;
pub mod check;
pub mod cpu;
pub mod data;
pub mod detectors;
pub mod device;
pub mod error;
pub mod eval;
pub mod io;
pub mod metrics;
pub mod models;
pub mod progress;
pub mod records;
pub mod report;
pub mod rng;
pub mod routes;
pub mod subnet;
pub mod suite;
pub mod train;

pub use error::{Error, Result};
