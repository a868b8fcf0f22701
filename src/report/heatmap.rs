//! Heatmap of a square class matrix (e.g. the class similarity of the subnetworks of Wang et al., arXiv 1910.02673),
//! drawn with plotters as PNG or SVG (chosen by the file extension) and written atomically.
use crate::error::{Error, Result};
use crate::io::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Viridis at eleven evenly spaced points (matplotlib's table), interpolated linearly in between.
const VIRIDIS: [(u8, u8, u8); 11] = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
];

/// The colour of `t` in [0, 1] (clamped; NaN is grey).
pub fn color(t: f64) -> RGBColor {
    if t.is_nan() {
        return RGBColor(160, 160, 160);
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Draws `matrix` (rows and columns named by `labels`, values in [0, 1]) to `path` (.png or .svg) atomically.
pub fn heatmap(matrix: &[Vec<f64>], labels: &[String], title: &str, path: &Path) -> Result<()> {
    if matrix.len() != labels.len() {
        return Err(Error::format(
            path,
            format!("heatmap needs a square matrix with {} labels, got {} rows", labels.len(), matrix.len()),
        ));
    }
    grid(matrix, (labels, labels), title, path)
}

/// Draws a `rows x columns` matrix (values in [0, 1]) with its row and column labels to `path` (.png or .svg)
/// atomically.
pub fn grid(matrix: &[Vec<f64>], labels: (&[String], &[String]), title: &str, path: &Path) -> Result<()> {
    let (rows, cols) = (labels.0.len(), labels.1.len());
    if rows == 0 || cols == 0 || matrix.len() != rows || matrix.iter().any(|r| r.len() != cols) {
        return Err(Error::format(
            path,
            format!("heatmap needs a {rows} x {cols} matrix for its labels, got {} rows", matrix.len()),
        ));
    }
    let labels = (labels.0, labels.1);
    super::register_fonts();
    let cell = (480 / rows.max(cols) as u32).clamp(8, 56);
    let (left, top, bar) = (60u32, 50u32, 90u32);
    let size = (left + cell * cols as u32 + bar, top + cell * rows as u32 + 40);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    write_atomic(path, |tmp| {
        let err = |e: String| Error::format(path, format!("cannot draw the heatmap: {e}"));
        match ext.as_str() {
            "png" => {
                let root = BitMapBackend::new(tmp, size).into_drawing_area();
                draw(&root, matrix, labels, title, (left, top, cell)).map_err(err)?;
                root.present().map_err(|e| err(e.to_string()))
            }
            "svg" => {
                let root = SVGBackend::new(tmp, size).into_drawing_area();
                draw(&root, matrix, labels, title, (left, top, cell)).map_err(err)?;
                root.present().map_err(|e| err(e.to_string()))
            }
            _ => Err(Error::config("heatmap path", path.display(), "must end in .png or .svg")),
        }
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &[Vec<f64>],
    (row_labels, col_labels): (&[String], &[String]),
    title: &str,
    (left, top, cell): (u32, u32, u32),
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (n, cols) = (m.len() as i32, col_labels.len() as i32);
    let (l, t, c) = (left as i32, top as i32, cell as i32);
    root.fill(&WHITE).map_err(e)?;
    let centre = Pos::new(HPos::Center, VPos::Center);
    let font = |px: u32| ("sans-serif", px).into_font().color(&BLACK);
    root.draw(&Text::new(title.to_string(), (l, t / 2), font(15).pos(Pos::new(HPos::Left, VPos::Center))))
        .map_err(e)?;
    let fs = (cell / 3).clamp(7, 13);
    for (i, row) in m.iter().enumerate() {
        let y = t + i as i32 * c;
        root.draw(&Text::new(
            row_labels[i].clone(),
            (l - 8, y + c / 2),
            font(fs + 1).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(e)?;
        for (j, &v) in row.iter().enumerate() {
            let x = l + j as i32 * c;
            root.draw(&Rectangle::new([(x, y), (x + c, y + c)], color(v).filled())).map_err(e)?;
            if cell >= 28 {
                let ink = if v > 0.6 { BLACK } else { WHITE };
                let text = if v.is_nan() { "-".to_string() } else { format!("{v:.2}") };
                root.draw(&Text::new(text, (x + c / 2, y + c / 2), font(fs).color(&ink).pos(centre))).map_err(e)?;
            }
        }
    }
    for (j, label) in col_labels.iter().enumerate() {
        let x = l + j as i32 * c + c / 2;
        root.draw(&Text::new(label.clone(), (x, t + n * c + 12), font(fs + 1).pos(centre))).map_err(e)?;
    }
    // colour bar from 0 (bottom) to 1 (top)
    let (bx, bh) = (l + cols * c + 20, n * c);
    for k in 0..bh {
        let v = 1.0 - k as f64 / (bh - 1).max(1) as f64;
        root.draw(&Rectangle::new([(bx, t + k), (bx + 16, t + k + 1)], color(v).filled())).map_err(e)?;
    }
    for (v, y) in [(1.0, t), (0.5, t + bh / 2), (0.0, t + bh)] {
        let p = Pos::new(HPos::Left, VPos::Center);
        root.draw(&Text::new(format!("{v:.1}"), (bx + 22, y), font(11).pos(p))).map_err(e)?;
    }
    Ok(())
}

/// The class-similarity heatmaps of a subnetwork extraction (Jaccard, cosine, cross-accuracy; PNG and SVG) next to its
/// weights file `out`; returns the paths written.
pub fn subnet_maps(a: &crate::subnet::analysis::Analysis, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let classes: Vec<String> = (0..a.kept_fraction.len()).map(|c| c.to_string()).collect();
    let mut written = Vec::new();
    let maps = [
        ("jaccard", "Class similarity: Jaccard index of subnetwork masks", &a.jaccard),
        ("cosine", "Class similarity: cosine of gate vectors", &a.cosine),
        ("cross-accuracy", "Accuracy of subnetwork (row) on images of class (column)", &a.cross_accuracy),
    ];
    for (name, title, m) in maps {
        for ext in ["png", "svg"] {
            let path = crate::subnet::output::sibling(out, &format!("{name}.{ext}"));
            heatmap(m, &classes, title, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}
