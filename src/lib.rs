//! advdet: a benchmark harness for adversarial-example detection with class-specific subnetworks
//! (Wang, Su, Zhang, Hu, arXiv 1910.02673).
pub mod data;
pub mod device;
pub mod error;
pub mod rng;

pub use error::{Error, Result};
