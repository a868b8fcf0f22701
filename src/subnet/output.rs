//! Files of a class-specific subnetwork extraction (Wang et al., arXiv 1910.02673): gates and masks, the JSON summary,
//! the analysis tables as CSV, each written atomically next to the weights file (`report::heatmap::subnet_maps` draws the
//! class-similarity heatmaps beside them).
use super::analysis::matrix_csv;
use super::extract::Extraction;
use crate::error::{Error, Result};
use crate::io::write_text;
use std::path::{Path, PathBuf};

/// `out` with its extension replaced by `suffix` (`/d/css.safetensors` + `jaccard.csv` -> `/d/css.jaccard.csv`).
pub fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "subnets".into());
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// Writes `out` (.safetensors with `gates` and `masks`), `out.json` (the summary) and the analysis tables next to it;
/// returns every path written, `out` first.
pub fn write_all(ex: &Extraction, out: &Path) -> Result<Vec<PathBuf>> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(Error::config("out", out.display(), "must end in .safetensors"));
    }
    ex.subnets.save(out)?;
    let mut written = vec![out.to_path_buf()];
    let json_path = sibling(out, "json");
    let json = serde_json::to_string_pretty(&ex.summary).map_err(|e| Error::format(&json_path, e.to_string()))?;
    write_text(&json_path, &(json + "\n"))?;
    written.push(json_path);

    let a = &ex.summary.analysis;
    let classes: Vec<String> = (0..a.kept_fraction.len()).map(|c| c.to_string()).collect();
    let mut kept_cols = a.layers.clone();
    kept_cols.push("all".into());
    let kept: Vec<Vec<f64>> = a
        .kept_per_layer
        .iter()
        .zip(&a.kept_fraction)
        .map(|(row, all)| row.iter().copied().chain([*all]).collect())
        .collect();
    let acc_cols = ["own_class_accuracy".to_string(), "full_model_accuracy".into(), "difference".into()];
    let acc: Vec<Vec<f64>> =
        a.own_class_accuracy.iter().zip(&a.full_model_accuracy).map(|(s, f)| vec![*s, *f, s - f]).collect();
    let tables = [
        ("kept.csv", "class", &kept_cols[..], kept),
        ("accuracy.csv", "class", &acc_cols[..], acc),
        ("cross-accuracy.csv", "subnet\\images", &classes[..], a.cross_accuracy.clone()),
        ("jaccard.csv", "class", &classes[..], a.jaccard.clone()),
        ("cosine.csv", "class", &classes[..], a.cosine.clone()),
    ];
    for (suffix, corner, cols, m) in tables {
        let path = sibling(out, suffix);
        write_text(&path, &matrix_csv(corner, &classes, cols, &m))?;
        written.push(path);
    }
    Ok(written)
}
