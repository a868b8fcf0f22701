//! index.html of a suite report (the full-model vs class-subnetwork detector comparison of Wang, Hu, Su,
//! arXiv 1910.02673): the AUROC table, ROC plots, subnetwork heatmap and sparsity, all linked by relative paths.
use crate::records::{SubnetRecord, SuiteRecord};
use crate::report::helps::HelpTable;
use crate::report::manifest::PROTOCOL_NOTE;
use crate::report::sweep::{SweepOver, SweepTable};
use crate::report::tables::PaperTable;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What the page links to, each a path relative to the report folder.
pub struct Links {
    /// `(attack label, svg, png)` per ROC plot.
    pub roc: Vec<(String, String, String)>,
    /// `(title, svg, png)` per subnetwork heatmap.
    pub heatmaps: Vec<(String, String, String)>,
    /// Other files: `(title, path)`.
    pub files: Vec<(String, String)>,
    /// The run's stage times as a bar chart, when the report has a manifest.
    pub stage_chart: Option<String>,
    /// `(svg, png)` of the forest plot of the subnetwork's differences from the full model, when there are any.
    pub forest: Option<(String, String)>,
    /// `(sweep, attack label, svg, png)` per plot of the extraction and subset sweeps.
    pub sweep: Vec<(SweepOver, String, String, String)>,
    /// What the tables show of a suite with several variants.
    pub note: Option<String>,
}

fn table_html(t: &PaperTable) -> String {
    let mut s = format!("<p>{}</p>\n<table>\n<tr><th>attack</th><th>ASR</th>", escape(&t.caption()));
    for (d, m) in &t.columns {
        s += &format!("<th>{} ({})</th>", escape(d), escape(m));
    }
    s += "</tr>\n";
    for (label, asr, cells) in &t.rows {
        s += &format!("<tr><td>{}</td><td>{asr:.3}</td>", escape(label));
        for c in cells {
            let mark = c.versus_full.mark("&uarr;", "&darr;");
            let text = match (c.auroc, c.lo, c.hi) {
                (None, _, _) => "n/a".to_string(),
                (Some(a), Some(l), Some(h)) => format!("{a:.3} <small>[{l:.3}, {h:.3}]</small>{mark}"),
                (Some(a), _, _) => format!("{a:.3}{mark}"),
            };
            let class = if c.best { " class=\"best\"" } else { "" };
            s += &format!("<td{class}>{text}</td>");
        }
        s += "</tr>\n";
    }
    s + "</table>\n"
}

fn sparsity_html(rec: &SubnetRecord) -> String {
    let mut s = String::from("<table>\n<tr><th>class</th>");
    for l in &rec.layers {
        s += &format!("<th>{}</th>", escape(l));
    }
    s += "<th>all</th><th>subnet acc</th><th>full acc</th></tr>\n";
    for (c, kept) in rec.kept.iter().enumerate() {
        s += &format!("<tr><td>{c}</td>");
        for k in kept {
            s += &format!("<td>{k:.3}</td>");
        }
        for v in [&rec.kept_fraction, &rec.own_class_accuracy, &rec.full_model_accuracy] {
            s += &v.get(c).map_or("<td>n/a</td>".into(), |x| format!("<td>{x:.3}</td>"));
        }
        s += "</tr>\n";
    }
    s + "</table>\n"
}

/// The whole page.
pub fn index_html(
    suite: &SuiteRecord,
    helps: &[HelpTable],
    sweeps: &[SweepTable],
    tables: &[PaperTable],
    links: &Links,
) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>advdet: {name}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}\n\
         td.best {{ font-weight: bold; background: #eef6ee; }}\n img {{ max-width: 48em; }}\n</style>\n</head>\n<body>\n\
         <h1>Suite {name}</h1>\n<p>Dataset {ds} ({test} test images attacked, {fit} held-out training images for fitted \
         detectors); model {model} (clean accuracy {acc:.4} on the full test split); seed {seed}; {jobs} jobs \
         (attack configurations x variants).</p>\n<p>{note}</p>\n",
        name = escape(&suite.suite),
        ds = escape(&suite.dataset),
        test = suite.test_images,
        fit = suite.fit_images,
        model = escape(&suite.model),
        acc = suite.model_accuracy,
        seed = suite.seed,
        jobs = suite.jobs,
        note = escape(PROTOCOL_NOTE),
    );
    if let Some(n) = &links.note {
        s += &format!("<p>{}</p>\n", escape(n));
    }
    if !helps.is_empty() {
        s += "<h2>Does the subnetwork help?</h2>\n";
        for h in helps {
            s += &h.html();
        }
        if let Some((svg, png)) = &links.forest {
            s += &format!(
                "<p><a href=\"{svg}\"><img src=\"{png}\" alt=\"forest plot of the subnetwork's differences\"></a></p>\n"
            );
        }
    }
    for over in [SweepOver::Lambda, SweepOver::SubspaceK] {
        let of: Vec<&SweepTable> = sweeps.iter().filter(|t| t.over == over).collect();
        if of.is_empty() {
            continue;
        }
        s += &format!("<h2>{}</h2>\n", over.title());
        for sw in of {
            s += &sw.html();
        }
        for (_, label, svg, png) in links.sweep.iter().filter(|l| l.0 == over) {
            s += &format!(
                "<h3>{}</h3>\n<p><a href=\"{svg}\"><img src=\"{png}\" alt=\"sweep {}\"></a></p>\n",
                escape(label),
                escape(label)
            );
        }
    }
    for t in tables {
        s += &format!("<h2>AUROC, protocol {}</h2>\n{}", escape(&t.protocol), table_html(t));
    }
    s += "<h2>ROC curves</h2>\n";
    for (label, svg, png) in &links.roc {
        s += &format!(
            "<h3>{}</h3>\n<p><a href=\"{svg}\"><img src=\"{png}\" alt=\"ROC {}\"></a> (<a href=\"{svg}\">SVG</a>, \
             <a href=\"{png}\">PNG</a>)</p>\n",
            escape(label),
            escape(label)
        );
    }
    s += "<h2>Class subnetworks</h2>\n";
    for (title, svg, png) in &links.heatmaps {
        s += &format!(
            "<h3>{}</h3>\n<p><a href=\"{svg}\"><img src=\"{png}\" alt=\"{}\"></a></p>\n",
            escape(title),
            escape(title)
        );
    }
    s += "<h3>Units kept per class and layer</h3>\n";
    s += &sparsity_html(&suite.subnet);
    if let Some(chart) = &links.stage_chart {
        s += &format!(
            "<h2>Where the time went</h2>\n<p><img src=\"{chart}\" alt=\"seconds per stage\"></p>\n<p>Seconds of the run \
             that wrote this report, on its machine; manifest.json has them per job and per (detector, route).</p>\n"
        );
    }
    s += "<h2>Files</h2>\n<ul>\n";
    for (title, path) in &links.files {
        s += &format!("<li><a href=\"{path}\">{}</a></li>\n", escape(title));
    }
    s + "</ul>\n</body>\n</html>\n"
}
