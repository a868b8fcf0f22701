//! `advdet extract`: class-specific subnetworks (Wang et al., arXiv 1910.02673) of a trained model, with their analysis.
use super::model_args::{Loaded, ModelArgs};
use advdet::data::{self, Split};
use advdet::subnet::{self, ExtractConfig};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Weight of the L1 penalty on the sum of each class's gates
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Gate-training steps
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Training images per class
    #[arg(long)]
    pub images_per_class: Option<usize>,
    /// Images per class in each step (0 = all of them every step)
    #[arg(long)]
    pub batch_per_class: Option<usize>,
    /// Keep a unit when its gate is above this
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Keep the top k% units of each layer instead of thresholding
    #[arg(long)]
    pub top_k_percent: Option<f64>,
    /// Distillation temperature
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Held-out images per class for the cross-class accuracy matrix (0 = all of them)
    #[arg(long)]
    pub cross_images_per_class: Option<usize>,
    /// Which units get gates: all (conv channels and hidden fully connected units) or conv (conv channels only)
    #[arg(long, value_parser = ["all", "conv"])]
    pub gate: Option<String>,
    /// The last N training images are held out of gate training and measure the analysis (no test image is used)
    #[arg(long, default_value_t = 5000)]
    pub held_out: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output gates and masks (.safetensors); the summary (.json), tables (.csv) and heatmaps (.png, .svg) go beside it
    #[arg(long)]
    pub out: PathBuf,
}

impl ExtractArgs {
    /// The validated configuration: the defaults, overridden by what was given.
    pub fn config(&self) -> advdet::Result<ExtractConfig> {
        let d = ExtractConfig::default();
        let cfg = ExtractConfig {
            lambda: self.lambda.unwrap_or(d.lambda),
            steps: self.steps.unwrap_or(d.steps),
            lr: self.lr.unwrap_or(d.lr),
            images_per_class: self.images_per_class.unwrap_or(d.images_per_class),
            batch_per_class: match self.batch_per_class {
                Some(0) => None,
                Some(b) => Some(b),
                None => d.batch_per_class,
            },
            threshold: self.threshold.unwrap_or(d.threshold),
            top_k_percent: self.top_k_percent.or(d.top_k_percent),
            temperature: self.temperature.unwrap_or(d.temperature),
            cross_images_per_class: match self.cross_images_per_class {
                Some(0) => None,
                Some(k) => Some(k),
                None => d.cross_images_per_class,
            },
            seed: self.seed,
            gate: match self.gate.as_deref() {
                Some("conv") => subnet::extract::Gate::Conv,
                Some(_) => subnet::extract::Gate::All,
                None => d.gate,
            },
            ..d
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(a: ExtractArgs) -> Result<i32> {
    let cfg = a.config()?;
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        anyhow::bail!("--out {}: must end in .safetensors", a.out.display());
    }
    let loaded = a.m.load()?;
    let dataset = a.m.dataset(&loaded, "the dataset")?;
    let Loaded { model, device, .. } = loaded;
    let all = data::load(dataset, a.m.data_dir.as_deref(), Split::Train)?;
    if a.held_out == 0 || a.held_out >= all.len() {
        anyhow::bail!("--held-out {}: must be between 1 and {} (the training images)", a.held_out, all.len() - 1);
    }
    let (train, held_out) = (all.range(0, all.len() - a.held_out), all.range(all.len() - a.held_out, all.len()));
    eprintln!(
        "extracting {} subnetworks of {} on {dataset} (lambda {}, T {}, {} steps, {} images per class, seed {}) on {}",
        train.num_classes(),
        model.arch,
        cfg.lambda,
        cfg.temperature,
        cfg.steps,
        cfg.images_per_class,
        cfg.seed,
        advdet::device::describe(device, &advdet::cpu::current())
    );
    let ex = subnet::extract(&model, &train, &held_out, &cfg)?;
    let mut written = subnet::output::write_all(&ex, &a.out)?;
    written.extend(advdet::report::heatmap::subnet_maps(&ex.summary.analysis, &a.out)?);
    let s = &ex.summary;
    println!(
        "extracted in {:.1} s (analysis {:.1} s): mean kept fraction {:.4}, largest own-class accuracy drop {:.2} points",
        s.extract_seconds,
        s.analysis_seconds,
        s.mean_kept_fraction,
        100.0 * s.max_accuracy_drop
    );
    for (name, width, kept) in &s.layers {
        println!("  layer {name} ({width} units): kept {kept:.4}");
    }
    for c in &s.classes {
        println!(
            "  class {}: kept {:.4}, subnet accuracy {:.4}, full model {:.4}, kl {:.4}, agreement {:.4}",
            c.class,
            c.kept_fraction,
            c.own_class_accuracy,
            c.full_model_accuracy,
            c.own_class_kl,
            c.own_class_agreement
        );
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(0)
}
