//! Renders a suite report folder from records alone (results tables, paper table, ROC plots, subnetwork heatmap and
//! sparsity, index.html) for the full-model vs class-subnetwork detector comparison of Wang et al., arXiv 1910.02673.
use crate::error::{Error, Result};
use crate::io::write_bytes;
use crate::metrics::Roc;
use crate::records::{self, JobRecord, SuiteRecord};
use crate::report::helps::{distinct, filter_eq, HelpTable};
use crate::report::html::{index_html, Links};
use crate::report::manifest::{MANIFEST_FILE, STAGE_CHART_FILE};
use crate::report::sweep::{SweepOver, SweepTable};
use crate::report::tables::{csg_markdown, results_frame, sparsity_markdown, str_col, write_results, PaperTable};
use crate::routes::RouteKind;
use std::collections::BTreeSet;
use std::path::Path;

/// Removes files in `dir` whose names start with `prefix` and are not in `keep` (leftovers of an earlier suite).
fn prune(dir: &Path, prefix: &str, keep: &BTreeSet<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && !keep.contains(&name) && entry.path().is_file() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Writes every report file into `dir` and returns the paper tables (one per protocol).
/// `subnets_file`, when given, is copied to `subnets/subnets.safetensors`; `stage_chart` says whether the page shows
/// the manifest's stage chart (`stages.svg`, written with `manifest.json` after the report).
pub fn render(
    dir: &Path,
    suite: &SuiteRecord,
    jobs: &[JobRecord],
    subnets_file: Option<&Path>,
    stage_chart: bool,
) -> Result<Vec<PaperTable>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    records::save(dir, suite, jobs)?;
    let keep: BTreeSet<String> = jobs.iter().map(|j| format!("job-{}.json", j.slug())).collect();
    prune(&dir.join("records"), "job-", &keep)?;

    let df = results_frame(suite, jobs)?;
    write_results(dir, &df)?;
    // several variants (seeds x lambdas x ks): the AUROC tables and ROC curves show the first; "Does the subnetwork
    // help?" pools the seeds at the first lambda and k; each sweep compares its values at the other's first
    let (models, lambdas, ks) =
        (distinct(&str_col(&df, "model")?), distinct(&str_col(&df, "lambda")?), distinct(&str_col(&df, "subspace_k")?));
    let first = |v: &[String]| v.first().cloned().unwrap_or_default();
    let (first_model, first_lambda, first_k) = (first(&models), first(&lambdas), first(&ks));
    let at_k = filter_eq(&df, "subspace_k", &first_k)?;
    let at_lambda = filter_eq(&df, "lambda", &first_lambda)?;
    let at_both = filter_eq(&at_lambda, "subspace_k", &first_k)?;
    let primary = filter_eq(&at_both, "model", &first_model)?;
    let tables: Vec<PaperTable> =
        suite.protocols.iter().map(|p| PaperTable::from_frame(&primary, p, suite.bootstrap)).collect::<Result<_>>()?;
    // per protocol, the full-model reference table, then the two-network scores' table (subnet as the reference)
    let mut helps: Vec<HelpTable> = Vec::new();
    for reference in [RouteKind::Full, RouteKind::Subnet] {
        for p in &suite.protocols {
            helps.extend(HelpTable::from_frame(&at_both, p, reference)?);
        }
    }
    let mut sweeps: Vec<SweepTable> = Vec::new();
    for (over, frame) in [(SweepOver::Lambda, &at_k), (SweepOver::SubspaceK, &at_lambda)] {
        for p in &suite.protocols {
            sweeps.extend(SweepTable::from_frame(frame, p, over)?);
        }
    }
    let variants_note = (models.len() > 1 || lambdas.len() > 1 || ks.len() > 1).then(|| {
        let k_text = match ks.len() > 1 {
            true => format!(" x {} subspace sizes (k {})", ks.len(), ks.join(", ")),
            false => String::new(),
        };
        let at_k = match first_k.is_empty() {
            true => String::new(),
            false => format!(", k {first_k}"),
        };
        format!(
            "This suite ran {} x {} (lambda {}){k_text}. \"Does the subnetwork help?\" pools the seeds at \
             lambda {first_lambda}{at_k}, the first listed; the AUROC tables and the ROC curves are those of model \
             {first_model} at lambda {first_lambda}{at_k}; results.csv holds every variant (columns model, seed, \
             lambda, subspace_k, kept_fraction).",
            if models.len() == 1 { "one model".to_string() } else { format!("{} models (seeds)", models.len()) },
            if lambdas.len() == 1 { "one extraction".to_string() } else { format!("{} extractions", lambdas.len()) },
            lambdas.join(", ")
        )
    });
    let mut md = format!("# {}: {} on {}\n\n", suite.suite, suite.model, suite.dataset);
    if let Some(n) = &variants_note {
        md += &format!("{n}\n\n");
    }
    if !helps.is_empty() {
        md += "## Does the subnetwork help?\n\n";
        md += &helps.iter().map(HelpTable::markdown).collect::<Vec<_>>().join("\n");
        md += "\n";
    }
    let mut forests = Vec::new();
    if let Some(h) = helps.iter().find(|h| !h.two_network()) {
        let rows = h.forest_rows();
        if !rows.is_empty() {
            let title =
                format!("Subnetwork vs full model, protocol {} ({}, {})", h.protocol, suite.model, suite.dataset);
            let x_desc = if h.pooled() {
                format!("delta AUROC (subnet - full), mean of {} seeds, pooled 95% interval", h.seeds)
            } else {
                "delta AUROC (subnet - full), 95% paired bootstrap interval".to_string()
            };
            for ext in ["svg", "png"] {
                crate::report::plot::forest_plot(&dir.join(format!("forest.{ext}")), &title, &x_desc, &rows)?;
            }
            forests.push(("forest.svg".to_string(), "forest.png".to_string()));
        }
    }
    if forests.is_empty() {
        prune(dir, "forest.", &BTreeSet::new())?;
    }
    let protocol = suite.protocols.first().map(String::as_str).unwrap_or("successful");
    let mut adaptive_files = Vec::new();
    match crate::report::evasion::evasion_markdown(jobs, protocol) {
        Some(table) => {
            md += &table;
            write_bytes(&dir.join("adaptive.md"), table.as_bytes())?;
            adaptive_files.push(("adaptive attacks: evasion table (markdown)", "adaptive.md"));
        }
        None => prune(dir, "adaptive.md", &BTreeSet::new())?,
    }
    match crate::report::evasion::curves_csv(jobs) {
        Some(csv) => {
            write_bytes(&dir.join("adaptive-curves.csv"), csv.as_bytes())?;
            adaptive_files
                .push(("adaptive attacks: first-batch loss and evasion per step (CSV)", "adaptive-curves.csv"));
        }
        None => prune(dir, "adaptive-curves.csv", &BTreeSet::new())?,
    }
    let mut curve_files = BTreeSet::new();
    let mut curve_links: Vec<(String, String)> = Vec::new();
    for (k, (title, series)) in crate::report::evasion::curve_groups(jobs).iter().enumerate() {
        for ext in ["svg", "png"] {
            let file = format!("{k:03}.{ext}");
            crate::report::plot::curve_plot(&dir.join("adaptive-curves").join(&file), title, series)?;
            curve_files.insert(file);
        }
        curve_links
            .push((format!("{title}: first-batch evasion per step (SVG)"), format!("adaptive-curves/{k:03}.svg")));
    }
    prune(&dir.join("adaptive-curves"), "", &curve_files)?;
    let mut sweep_files = BTreeSet::new();
    let mut sweep_links = Vec::new();
    for over in [SweepOver::Lambda, SweepOver::SubspaceK] {
        let of: Vec<&SweepTable> = sweeps.iter().filter(|t| t.over == over).collect();
        let Some(sw) = of.first() else { continue };
        md += &format!("## {}\n\n", over.title());
        md += &of.iter().map(|t| t.markdown()).collect::<Vec<_>>().join("\n");
        md += "\n";
        let route = over.route();
        for (i, attack) in sw.attacks().into_iter().enumerate() {
            let series = sw.series(&attack);
            if series.iter().all(|(_, p)| p.is_empty()) {
                continue;
            }
            let size = match over {
                SweepOver::Lambda => "subnetwork size",
                SweepOver::SubspaceK => "k",
            };
            let title = format!("{attack}: {route} - full vs {size}, protocol {}", sw.protocol);
            let slug: String = attack
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
                .collect();
            // per attack in the sweep's order: the lambda sweep's as they always were, the k sweep's after a prefix
            let name = match over {
                SweepOver::Lambda => format!("{i:03}-{slug}"),
                SweepOver::SubspaceK => format!("k-{i:03}-{slug}"),
            };
            for ext in ["svg", "png"] {
                let file = format!("{name}.{ext}");
                crate::report::plot::sweep_plot(
                    &dir.join("sweep").join(&file),
                    &title,
                    over.x_desc(),
                    &format!("delta AUROC ({route} - full)"),
                    &series,
                )?;
                sweep_files.insert(file);
            }
            let label = match over {
                SweepOver::Lambda => attack.clone(),
                SweepOver::SubspaceK => format!("{attack} (subset sweep)"),
            };
            sweep_links.push((over, label, format!("sweep/{name}.svg"), format!("sweep/{name}.png")));
        }
    }
    prune(&dir.join("sweep"), "", &sweep_files)?;
    let tables_md: Vec<String> =
        tables.iter().map(|t| format!("## Protocol: {}\n\n{}", t.protocol, t.markdown())).collect();
    write_bytes(&dir.join("table.md"), (md + &tables_md.join("\n")).as_bytes())?;
    let tex: Vec<String> = tables.iter().map(|t| format!("% protocol: {}\n{}", t.protocol, t.latex())).collect();
    write_bytes(&dir.join("table.tex"), tex.join("\n").as_bytes())?;

    let mut links = Links {
        roc: Vec::new(),
        heatmaps: Vec::new(),
        files: Vec::new(),
        stage_chart: stage_chart.then(|| STAGE_CHART_FILE.to_string()),
        forest: forests.pop(),
        sweep: sweep_links,
        note: variants_note,
    };
    let mut roc_files = BTreeSet::new();
    let first_variant = jobs.first().map(|j| j.variant.clone());
    for job in jobs.iter().filter(|j| Some(&j.variant) == first_variant.as_ref()) {
        let curves: Vec<(String, Roc)> = job
            .rows
            .iter()
            .filter(|r| r.protocol == protocol)
            .filter_map(|r| {
                let c = r.roc.as_ref()?;
                let roc = Roc { fpr: c.fpr.clone(), tpr: c.tpr.clone(), thresholds: vec![f64::NAN; c.fpr.len()] };
                Some((format!("{} ({})", r.detector, r.mode), roc))
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        let title = format!("{}: {} on {}", job.label(), suite.model, suite.dataset);
        for ext in ["svg", "png"] {
            let name = format!("{}.{ext}", job.slug());
            crate::report::plot::roc_plot(&dir.join("roc").join(&name), &title, &curves)?;
            roc_files.insert(name);
        }
        links.roc.push((job.label(), format!("roc/{}.svg", job.slug()), format!("roc/{}.png", job.slug())));
    }
    prune(&dir.join("roc"), "", &roc_files)?;

    let sub = dir.join("subnets");
    let rec = &suite.subnet;
    let classes: Vec<String> = (0..rec.similarity.len()).map(|c| c.to_string()).collect();
    if !classes.is_empty() {
        for ext in ["svg", "png"] {
            let title = format!("Jaccard similarity of the class subnetworks ({})", suite.model);
            crate::report::heatmap::heatmap(&rec.similarity, &classes, &title, &sub.join(format!("similarity.{ext}")))?;
        }
        links.heatmaps.push((
            "Jaccard similarity of the class masks".into(),
            "subnets/similarity.svg".into(),
            "subnets/similarity.png".into(),
        ));
    }
    // the per-image path routes' class similarity, beside the class masks'
    let mut path_files = BTreeSet::new();
    for p in &suite.paths {
        let classes: Vec<String> = (0..p.similarity.len()).map(|c| c.to_string()).collect();
        for ext in ["svg", "png"] {
            let title = format!(
                "Jaccard similarity of the class paths, {} ({} training images, {:.0}% of conv channels open)",
                p.route,
                p.images,
                100.0 * p.open_share
            );
            let name = format!("{}-similarity.{ext}", p.route);
            crate::report::heatmap::heatmap(&p.similarity, &classes, &title, &dir.join("paths").join(&name))?;
            path_files.insert(name);
        }
        links.heatmaps.push((
            format!("Jaccard similarity of the class paths ({})", p.route),
            format!("paths/{}-similarity.svg", p.route),
            format!("paths/{}-similarity.png", p.route),
        ));
    }
    prune(&dir.join("paths"), "", &path_files)?;
    write_bytes(&sub.join("sparsity.md"), sparsity_markdown(rec).as_bytes())?;
    let csg_dir = dir.join("csg");
    match &suite.csg {
        Some(c) => {
            let channels: Vec<String> = (0..c.gates.len()).map(|i| i.to_string()).collect();
            let classes: Vec<String> = (0..c.gates.first().map_or(0, Vec::len)).map(|i| i.to_string()).collect();
            let title = format!("Class-specific gates of {} (channel x class)", suite.model);
            for ext in ["svg", "png"] {
                crate::report::heatmap::grid(
                    &c.gates,
                    (&channels, &classes),
                    &title,
                    &csg_dir.join(format!("gates.{ext}")),
                )?;
            }
            write_bytes(&csg_dir.join("csg.md"), csg_markdown(c).as_bytes())?;
            links.heatmaps.push((
                "Class-specific gates (CSG-CNN)".into(),
                "csg/gates.svg".into(),
                "csg/gates.png".into(),
            ));
            links.files.push((
                "class-specific gates: specificity and per-class accuracy (markdown)".into(),
                "csg/csg.md".into(),
            ));
        }
        None => prune(&csg_dir, "", &BTreeSet::new())?,
    }
    if let Some(src) = subnets_file.filter(|p| p.is_file()) {
        let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        write_bytes(&sub.join("subnets.safetensors"), &bytes)?;
        links.files.push(("subnetwork gates and masks (.safetensors)".into(), "subnets/subnets.safetensors".into()));
    }
    for (title, path) in [
        ("results (CSV)", "results.csv"),
        ("results (Parquet)", "results.parquet"),
        ("AUROC table (markdown)", "table.md"),
        ("AUROC table (LaTeX)", "table.tex"),
        ("sparsity table (markdown)", "subnets/sparsity.md"),
        ("manifest (inputs, seeds, seconds per stage, job and detector)", MANIFEST_FILE),
        ("records (JSON)", "records/suite.json"),
    ]
    .into_iter()
    .chain(adaptive_files)
    {
        links.files.push((title.into(), path.into()));
    }
    links.files.extend(curve_links);
    write_bytes(&dir.join("index.html"), index_html(suite, &helps, &sweeps, &tables, &links).as_bytes())?;
    Ok(tables)
}
