//! Reader for the CIFAR-10 binary batches (Krizhevsky 2009): records of one label byte and 3x32x32 pixel bytes.
use crate::error::{Error, Result};
use std::path::Path;

pub const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads one batch file into (labels, pixels in CHW order per image).
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::format(
            path,
            format!("size {} bytes is not a positive multiple of the {RECORD}-byte CIFAR-10 record", bytes.len()),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(Error::format(path, format!("record {i}: label {} out of range 0..=9", rec[0])));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((labels, pixels))
}
