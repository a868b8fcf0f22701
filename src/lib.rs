//! advdet: a benchmark harness for adversarial-example detection with class-specific subnetworks
//! (Wang, Su, Zhang, Hu, arXiv 1910.02673).
pub mod data;
pub mod device;
pub mod error;
pub mod models;
pub mod progress;
pub mod rng;
pub mod subnet;
pub mod train;

pub use error::{Error, Result};
