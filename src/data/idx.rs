//! Reader for the idx format of LeCun's MNIST distribution (and Fashion-MNIST), raw or gzip-compressed.
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// An idx array of unsigned bytes: its dimensions and its data in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an idx file; a file starting with the gzip magic is decompressed first.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|problem| Error::format(path, problem))
}

/// Parses idx bytes; only the unsigned-byte element type (0x08) is accepted, as in every MNIST-style file.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!("truncated: {} bytes, too short for the 4-byte magic number", bytes.len()));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] == 0 || bytes[3] > 4 {
        return Err(format!("wrong magic number 0x{magic:08x}: expected 0x0000080N (unsigned bytes, N dimensions)"));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!("truncated: {} bytes, the header of {ndims} dimensions needs {header}", bytes.len()));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(format!("truncated: dimensions {dims:?} need {expected} data bytes, found {found}"));
    }
    if found > expected {
        return Err(format!(
            "{} trailing bytes after the {expected} data bytes of dimensions {dims:?}",
            found - expected
        ));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// Encodes an unsigned-byte idx array (for fixtures and tests).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
