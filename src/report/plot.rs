//! ROC curves as SVG or PNG (plotters): one line per detector and mode, with the chance diagonal, for the
//! full-model vs. subnetwork comparison of Wang, Hu, Su (arXiv 1910.02673); the paired differences as a forest
//! plot and against the subnetworks' size; and a run's stage times as bars.
use crate::error::Error;
use crate::io::write_atomic;
use crate::metrics::Roc;
use crate::report::manifest::StageTime;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (720, 640);
/// Points kept per curve: a curve is thinned so that consecutive kept points are at least 1/MAX_POINTS apart in
/// |dFPR| + |dTPR|, which bounds it to 2 * MAX_POINTS points (the curve is monotone with L1 length <= 2).
const MAX_POINTS: usize = 1000;
/// Matplotlib's "tab10" palette: distinguishable, and familiar from the papers' figures.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes a plot to `path` atomically, SVG or PNG by its extension: `$draw(area, args...)` draws on either backend;
/// `$what` names the plot in errors.
macro_rules! plot_file {
    ($path:expr, $size:expr, $what:expr, $draw:ident($($arg:expr),*)) => {{
        let path: &Path = $path;
        super::register_fonts();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let drawn = |tmp: &Path| -> crate::Result<()> {
            let result = match ext.as_deref() {
                Some("svg") => $draw(SVGBackend::new(tmp, $size).into_drawing_area(), $($arg),*),
                _ => $draw(BitMapBackend::new(tmp, $size).into_drawing_area(), $($arg),*),
            };
            result.map_err(|e| Error::format(path, format!("cannot draw the {}: {e}", $what)))
        };
        match ext.as_deref() {
            Some("svg" | "png") => write_atomic(path, drawn),
            _ => Err(Error::config("plot file", path.display(), "the extension must be .svg or .png")),
        }
    }};
}

/// Draws the seconds of each stage as horizontal bars, pipeline order from the top, into the SVG file `path`.
pub fn stage_chart(path: &Path, title: &str, stages: &[StageTime]) -> crate::Result<()> {
    if let Some(s) = stages.iter().find(|s| !(s.seconds.is_finite() && s.seconds >= 0.0)) {
        return Err(Error::config(format!("stage {}", s.stage), s.seconds, "seconds must be finite and not negative"));
    }
    super::register_fonts();
    write_atomic(path, |tmp| {
        let height = 90 + 36 * stages.len().max(1) as u32;
        draw_stages(SVGBackend::new(tmp, (720, height)).into_drawing_area(), title, stages)
            .map_err(|e| Error::format(path, format!("cannot draw the stage chart: {e}")))
    })
}

fn draw_stages<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    stages: &[StageTime],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let n = stages.len().max(1);
    let top = stages.iter().map(|s| s.seconds).fold(0.0, f64::max).max(1e-3) * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..top, -0.5..n as f64 - 0.5)
        .map_err(err)?;
    // the first stage at the top
    let row = |i: usize| (n - 1 - i) as f64;
    let name_of = |y: &f64| {
        let i = n as f64 - 1.0 - y.round();
        stages
            .get(i as usize)
            .filter(|_| i >= 0.0 && (y - y.round()).abs() < 1e-9)
            .map_or(String::new(), |s| s.stage.clone())
    };
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_labels(n)
        .y_label_formatter(&name_of)
        .disable_y_mesh()
        .label_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(err)?;
    let color = PALETTE[0];
    chart
        .draw_series(
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| Rectangle::new([(0.0, row(i) - 0.35), (s.seconds, row(i) + 0.35)], color.filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(stages.iter().enumerate().map(|(i, s)| {
            let what = match (s.computed, s.cached) {
                (c, 0) => format!("{:.1} s ({c} computed)", s.seconds),
                (0, k) => format!("{:.1} s ({k} cached)", s.seconds),
                (c, k) => format!("{:.1} s ({c} computed, {k} cached)", s.seconds),
            };
            Text::new(what, (s.seconds + top * 0.01, row(i) + 0.15), ("sans-serif", 13))
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// One row of a forest plot: label, point estimate, interval, and whether it is marked better, worse or neither.
pub struct ForestRow {
    pub label: String,
    pub delta: f64,
    pub lo: f64,
    pub hi: f64,
    /// 1 better, -1 worse, 0 no evidence (the colour).
    pub sign: i8,
}

/// A forest plot of paired differences (SVG or PNG by the extension): one row per difference, top to bottom, a dot at
/// the estimate and a bar over its interval, the zero line dashed; green where marked better, red where worse.
/// `x_desc` says what the intervals are.
pub fn forest_plot(path: &Path, title: &str, x_desc: &str, rows: &[ForestRow]) -> crate::Result<()> {
    if let Some(r) = rows.iter().find(|r| !(r.delta.is_finite() && r.lo.is_finite() && r.hi.is_finite())) {
        return Err(Error::config(format!("forest row `{}`", r.label), r.delta, "needs finite values"));
    }
    if rows.is_empty() {
        return Err(Error::config("forest plot", 0, "no rows to plot"));
    }
    let size = (900, 120 + 18 * rows.len() as u32);
    plot_file!(path, size, "forest plot", draw_forest(title, x_desc, rows))
}

fn draw_forest<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    rows: &[ForestRow],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let n = rows.len();
    let reach = rows.iter().flat_map(|r| [r.lo.abs(), r.hi.abs()]).fold(0.01, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d(-reach..reach, -0.5..n as f64 - 0.5)
        .map_err(err)?;
    let row = |i: usize| (n - 1 - i) as f64;
    let name_of = |y: &f64| {
        let i = n as f64 - 1.0 - y.round();
        rows.get(i as usize)
            .filter(|_| i >= 0.0 && (y - y.round()).abs() < 1e-9)
            .map_or(String::new(), |r| r.label.clone())
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_labels(n)
        .y_label_formatter(&name_of)
        .disable_y_mesh()
        .label_style(("sans-serif", 12))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(err)?;
    let zero = ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1);
    chart.draw_series(DashedLineSeries::new([(0.0, -0.5), (0.0, n as f64 - 0.5)], 5, 4, zero)).map_err(err)?;
    let colour = |r: &ForestRow| match r.sign {
        1 => PALETTE[2],
        -1 => PALETTE[3],
        _ => PALETTE[7],
    };
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| PathElement::new([(r.lo, row(i)), (r.hi, row(i))], colour(r).stroke_width(2))),
        )
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| Circle::new((r.delta, row(i)), 4, colour(r).filled())))
        .map_err(err)?;
    root.present().map_err(err)
}

/// One series of a sweep plot: its name and, per swept value, (x, delta, interval low, high): x is the mean kept
/// fraction of an extraction, or a subset's k.
pub type SweepSeries = (String, Vec<(f64, f64, f64, f64)>);

/// Paired differences against the size of the class-specific part (SVG or PNG by the extension): per series (a
/// detector), a line through the deltas at each swept value's x (`x_desc`), with the intervals as vertical bars, the
/// zero line dashed.
pub fn sweep_plot(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[SweepSeries]) -> crate::Result<()> {
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(Error::config("sweep plot", 0, "no point to plot"));
    }
    for (name, points) in series {
        if let Some(p) = points.iter().find(|p| ![p.0, p.1, p.2, p.3].iter().all(|v| v.is_finite())) {
            return Err(Error::config(format!("sweep series `{name}`"), format!("{p:?}"), "needs finite values"));
        }
    }
    plot_file!(path, SIZE, "sweep plot", draw_sweep(title, x_desc, y_desc, series))
}

fn draw_sweep<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[SweepSeries],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let pad = ((x1 - x0) * 0.08).max(0.01);
    let reach = all().flat_map(|p| [p.2.abs(), p.3.abs()]).fold(0.01, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        // a fraction's axis stops at 1
        .build_cartesian_2d((x0 - pad).max(0.0)..if x1 <= 1.0 { (x1 + pad).min(1.0) } else { x1 + pad }, -reach..reach)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(err)?;
    let zero = ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1);
    chart.draw_series(DashedLineSeries::new([(x0 - pad, 0.0), (x1 + pad, 0.0)], 5, 4, zero)).map_err(err)?;
    for (k, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(sorted.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(sorted.iter().map(|p| PathElement::new([(p.0, p.2), (p.0, p.3)], color.stroke_width(1))))
            .map_err(err)?;
        chart.draw_series(sorted.iter().map(|p| Circle::new((p.0, p.1), 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// The adaptive attack's first-batch evasion per step (SVG or PNG by the extension): one line per attacked detector
/// and mode, the share of the batch that evades at its operating threshold with the best iterate so far.
pub fn curve_plot(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> crate::Result<()> {
    if series.iter().all(|(_, v)| v.is_empty()) {
        return Err(Error::config("curve plot", 0, "no step to plot"));
    }
    if let Some((name, _)) = series.iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())) {
        return Err(Error::config(format!("curve `{name}`"), "NaN", "needs finite values"));
    }
    let steps = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1).max(2);
    let lines: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().map(|(n, v)| (n.as_str(), v.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect())).collect();
    let axes = Axes {
        x_max: (steps - 1) as f64,
        x_desc: "step of the first descent (first weight, first start)",
        y_desc: "share of the first batch evading (best so far)",
        diagonal: false,
    };
    plot_file!(path, SIZE, "curve plot", draw(title, &axes, &lines))
}

/// Draws `curves` (legend name, ROC) into `path`, SVG or PNG by the extension, written atomically.
pub fn roc_plot(path: &Path, title: &str, curves: &[(String, Roc)]) -> crate::Result<()> {
    if curves.is_empty() {
        return Err(Error::config("curves", 0, "no ROC curve to plot"));
    }
    let mut lines = Vec::with_capacity(curves.len());
    for (name, roc) in curves {
        if roc.fpr.len() != roc.tpr.len() || roc.fpr.is_empty() {
            let sizes = format!("{} fpr, {} tpr values", roc.fpr.len(), roc.tpr.len());
            return Err(Error::config(
                format!("ROC curve `{name}`"),
                sizes,
                "needs as many fpr as tpr values, at least one",
            ));
        }
        if let Some(v) = roc.fpr.iter().chain(&roc.tpr).find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::config(format!("ROC curve `{name}`"), v, "rates must lie in [0, 1]"));
        }
        lines.push((name.as_str(), thin(roc)));
    }
    let axes = Axes {
        x_max: 1.0,
        x_desc: "False positive rate (clean flagged)",
        y_desc: "True positive rate (adversarial flagged)",
        diagonal: true,
    };
    plot_file!(path, SIZE, "ROC plot", draw(title, &axes, &lines))
}

/// The axes of a line chart on [0, `x_max`] x [0, 1]: their descriptions, and whether the dashed diagonal (chance, on
/// a ROC plot) is drawn.
struct Axes {
    x_max: f64,
    x_desc: &'static str,
    y_desc: &'static str,
    diagonal: bool,
}

/// Named lines on [0, `x_max`] x [0, 1] with a legend (the ROC plot and the adaptive attack's curves).
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    axes: &Axes,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..axes.x_max, 0.0..1.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(err)?;
    if axes.diagonal {
        let chance = ShapeStyle::from(&BLACK.mix(0.45)).stroke_width(1);
        chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, chance)).map_err(err)?;
    }
    for (k, (name, points)) in lines.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// The curve's points, thinned for drawing when there are more than MAX_POINTS (first and last always kept).
fn thin(roc: &Roc) -> Vec<(f64, f64)> {
    let points = roc.fpr.iter().copied().zip(roc.tpr.iter().copied());
    if roc.fpr.len() <= MAX_POINTS {
        return points.collect();
    }
    let step = 1.0 / MAX_POINTS as f64;
    let last = roc.fpr.len() - 1;
    let mut kept: Vec<(f64, f64)> = Vec::with_capacity(2 * MAX_POINTS + 2);
    for (k, (x, y)) in points.enumerate() {
        let far = kept.last().is_none_or(|&(kx, ky)| (x - kx).abs() + (y - ky).abs() >= step);
        if k == 0 || k == last || far {
            kept.push((x, y));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stage_chart_names_every_stage_with_its_seconds_and_refuses_nan() -> crate::Result<()> {
        use crate::report::manifest::StageTime;
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("tempdir", e))?;
        let path = dir.path().join("stages.svg");
        let st = |stage: &str, computed, cached, seconds| StageTime { stage: stage.into(), computed, cached, seconds };
        let stages = [st("attacks", 9, 0, 44.3), st("scores", 20, 2, 7.5), st("report", 1, 0, 0.0)];
        super::stage_chart(&path, "t", &stages)?;
        let svg = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
        for text in [
            "attacks",
            "scores",
            "report",
            "44.3 s (9 computed)",
            "7.5 s (20 computed, 2 cached)",
            "0.0 s (1 computed)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        let bad = [st("scores", 1, 0, f64::NAN)];
        let e = super::stage_chart(&dir.path().join("bad.svg"), "t", &bad).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("stage scores")));
        assert!(!dir.path().join("bad.svg").exists());
        Ok(())
    }

    #[test]
    fn the_forest_plot_refuses_nan_and_empty_input_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("forest.svg");
        let bad = super::ForestRow { label: "a | b".into(), delta: f64::NAN, lo: -0.1, hi: 0.1, sign: 0 };
        let e = super::forest_plot(&path, "t", "x", &[bad]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("a | b") && e.contains("finite")));
        assert!(super::forest_plot(&path, "t", "x", &[]).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn the_sweep_plot_draws_every_series_and_refuses_nan_and_empty_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sweep.svg");
        let ok = vec![
            ("msp".to_string(), vec![(0.2, 0.05, 0.01, 0.09), (0.05, 0.1, 0.06, 0.14)]),
            ("margin".to_string(), vec![(0.2, -0.02, -0.05, 0.01)]),
        ];
        super::sweep_plot(&path, "t", "x", "delta", &ok).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.contains("msp") && svg.contains("margin"), "a legend entry is missing");
        let bad = vec![("kl".to_string(), vec![(0.2, f64::NAN, 0.0, 0.1)])];
        let e = super::sweep_plot(&dir.path().join("bad.svg"), "t", "x", "d", &bad).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("kl") && e.contains("finite")));
        assert!(super::sweep_plot(&dir.path().join("none.png"), "t", "x", "d", &[]).is_err());
        assert!(!dir.path().join("bad.svg").exists() && !dir.path().join("none.png").exists());
    }

    #[test]
    fn thinning_bounds_the_points_and_keeps_the_ends() {
        let n = 100_000;
        let fpr: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
        let tpr: Vec<f64> = fpr.iter().map(|x| x.sqrt()).collect();
        let roc = crate::metrics::Roc { thresholds: vec![0.0; fpr.len()], fpr, tpr };
        let kept = super::thin(&roc);
        assert!(kept.len() <= 2 * super::MAX_POINTS + 2, "{} points", kept.len());
        assert_eq!(kept.first(), Some(&(0.0, 0.0)));
        assert_eq!(kept.last(), Some(&(1.0, 1.0)));
    }
}
