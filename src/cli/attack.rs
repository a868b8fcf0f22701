//! `advdet attack`: adversarial examples for the first N images of a split, saved as .safetensors (`clean`,
//! `adversarial`, `labels`, `pred_clean`, `pred_adv`, and `targets` for targeted attacks), with the success rate,
//! perturbation norms and throughput printed.
use super::model_args::{Loaded, ModelArgs};
use advdet::attacks::{self, AttackOutcome, AttackSpec, Norm};
use advdet::data::{self, Split};
use advdet::subnet::Subnets;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

#[derive(Args)]
pub struct AttackArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Attack only the first N images of the split, in file order
    #[arg(long)]
    pub limit: Option<usize>,
    /// fgsm, bim, pgd-linf, pgd-l2, mifgsm, cw-l2, deepfool or subnet-ce (the adaptive attack on a detector runs in a
    /// suite: it needs the fitted detector and its threshold)
    #[arg(long)]
    pub attack: String,
    /// Perturbation budget in the attack's norm, pixels in [0, 1] (default: the attack's MNIST value, e.g. 0.3 for PGD-Linf)
    #[arg(long)]
    pub eps: Option<f64>,
    /// Step size of the iterative attacks (BIM, PGD, MI-FGSM, subnet-ce)
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Iterations (CW-L2: Adam steps per binary-search step; DeepFool: the most iterations)
    #[arg(long)]
    pub steps: Option<usize>,
    /// PGD random restarts
    #[arg(long)]
    pub restarts: Option<usize>,
    /// PGD's random start in the eps-ball: true or false
    #[arg(long)]
    pub random_start: Option<bool>,
    /// MI-FGSM's momentum decay mu
    #[arg(long)]
    pub decay: Option<f64>,
    /// CW-L2's initial trade-off constant c (then searched per sample)
    #[arg(long)]
    pub c: Option<f64>,
    /// CW's confidence margin; the subnet-term weight of subnet-ce
    #[arg(long)]
    pub kappa: Option<f64>,
    /// CW-L2's Adam learning rate
    #[arg(long)]
    pub lr: Option<f64>,
    /// CW-L2's binary-search steps over c
    #[arg(long)]
    pub binary_steps: Option<usize>,
    /// DeepFool's overshoot
    #[arg(long)]
    pub overshoot: Option<f64>,
    /// random or least-likely
    #[arg(long)]
    pub targeted: Option<String>,
    /// Seed of random starts and random targets
    #[arg(long)]
    pub seed: Option<u64>,
    /// Subnetworks of the model (.safetensors from the subnet stage), for subnet-ce
    #[arg(long)]
    pub subnets: Option<PathBuf>,
    /// Images per batch
    #[arg(long, default_value_t = 256)]
    pub batch_size: i64,
    /// Also report the success rate counting only perturbations of at most EPS (repeatable)
    #[arg(long)]
    pub within: Vec<f64>,
    /// Also time the model's own forward+backward passes over the same batches, as many per batch as the attack makes
    /// (its lower bound), and print the attack's time as a ratio to it (fgsm, bim, pgd with one restart, mifgsm)
    #[arg(long)]
    pub bound: bool,
    /// Output file (.safetensors)
    #[arg(long)]
    pub out: PathBuf,
}

impl AttackArgs {
    /// The flags that are set, as the fields of a suite file's `[[attack]]` entry, read into the same typed spec: a flag
    /// the attack does not take is an error naming it.
    fn spec(&self) -> advdet::Result<AttackSpec> {
        use serde_json::{json, Map, Value};
        let mut m = Map::new();
        m.insert("name".into(), json!(self.attack));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("eps", self.eps.map(|v| json!(v)));
        put("alpha", self.alpha.map(|v| json!(v)));
        put("steps", self.steps.map(|v| json!(v)));
        put("restarts", self.restarts.map(|v| json!(v)));
        put("random_start", self.random_start.map(|v| json!(v)));
        put("decay", self.decay.map(|v| json!(v)));
        put("c", self.c.map(|v| json!(v)));
        put("kappa", self.kappa.map(|v| json!(v)));
        put("lr", self.lr.map(|v| json!(v)));
        put("binary_steps", self.binary_steps.map(|v| json!(v)));
        put("overshoot", self.overshoot.map(|v| json!(v)));
        put("targeted", self.targeted.as_ref().map(|v| json!(v)));
        put("seed", self.seed.map(|v| json!(v)));
        let given = Value::Object(m.clone());
        serde_json::from_value(given).map_err(|e| {
            let msg = e.to_string();
            let quoted = msg.split('`').nth(1).unwrap_or("").to_string();
            if msg.starts_with("unknown field") {
                let value = m.get(&quoted).map(|v| v.to_string()).unwrap_or_default();
                let flag = format!("--{}", quoted.replace('_', "-"));
                advdet::Error::config(flag, value, format!("does not apply to attack {}", self.attack))
            } else if msg.starts_with("unknown variant") && quoted == self.attack {
                advdet::Error::config(
                    "--attack",
                    &self.attack,
                    format!("unknown attack; expected one of {}", attacks::ATTACK_NAMES.join(", ")),
                )
            } else if msg.starts_with("unknown variant") && self.targeted.as_deref() == Some(quoted.as_str()) {
                advdet::Error::config("--targeted", &quoted, "expected random or least-likely")
            } else {
                advdet::Error::config("attack flags", &self.attack, msg)
            }
        })
    }
}

pub fn run(a: AttackArgs) -> Result<i32> {
    let spec = a.spec()?;
    spec.validate()?;
    if a.batch_size < 1 {
        anyhow::bail!("invalid batch-size = {}: must be at least 1", a.batch_size);
    }
    let loaded = a.m.load()?;
    let dataset = a.m.dataset(&loaded, "the dataset")?;
    let Loaded { model, device, .. } = loaded;
    let subnets = match &a.subnets {
        Some(p) => Some(Subnets::load(p, model.gate_layout(), device)?),
        None => None,
    };
    let attack = attacks::build(&spec, subnets.as_ref())?;
    let passes = match (a.bound, attack.gradient_passes()) {
        (true, None) => anyhow::bail!(
            "--bound: {} makes no fixed number of gradient passes; it is available for fgsm, bim, pgd-linf and pgd-l2 \
             with one restart, and mifgsm",
            attack.name()
        ),
        (bound, passes) => passes.filter(|_| bound),
    };
    let mut ds = data::load(dataset, a.m.data_dir.as_deref(), a.split)?;
    if let Some(n) = a.limit {
        ds = ds.limit(n);
    }
    let (xs, ys) = (ds.images.to_device(device), ds.labels.to_device(device));
    eprintln!(
        "{} ({}) on {} {} images of {dataset} {} on {}",
        attack.name(),
        attack.targeting().as_str(),
        ds.len(),
        model.arch,
        a.split,
        advdet::device::describe(device, &advdet::cpu::current())
    );
    let start = Instant::now();
    let adv = attacks::run_batched(attack.as_ref(), &model, &xs, &ys, a.batch_size)?;
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    let seconds = start.elapsed().as_secs_f64();
    let pred_clean = model.predict(&xs, a.batch_size);
    let pred_adv = model.predict(&adv, a.batch_size);
    let targets = attacks::targets_batched(attack.as_ref(), &model, &xs, &ys, a.batch_size)?;
    let outcome = AttackOutcome::new(&xs, &adv, &ys, &pred_clean, &pred_adv, targets.as_ref())?;
    let cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
    let mut named = vec![
        ("clean", cpu(&xs)),
        ("adversarial", cpu(&adv)),
        ("labels", cpu(&ys)),
        ("pred_clean", cpu(&pred_clean)),
        ("pred_adv", cpu(&pred_adv)),
    ];
    if let Some(t) = &targets {
        named.push(("targets", cpu(t)));
    }
    advdet::io::write_atomic(&a.out, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(|e| advdet::Error::format(&a.out, format!("cannot write: {e}")))
    })
    .with_context(|| format!("writing {}", a.out.display()))?;
    let s = outcome.summary();
    println!(
        "{}: clean accuracy {:.4}, adversarial accuracy {:.4}; success rate {:.4} ({} of {} correctly classified)",
        attack.name(),
        s.clean_accuracy,
        s.adversarial_accuracy,
        s.success_rate,
        s.succeeded,
        s.attempted
    );
    println!(
        "perturbation Linf mean {:.4} max {:.4}; L2 mean {:.4} max {:.4}; over successes Linf {:.4} L2 {:.4}",
        s.linf_mean, s.linf_max, s.l2_mean, s.l2_max, s.linf_mean_success, s.l2_mean_success
    );
    for eps in &a.within {
        let norm = attack.norm();
        let label = if norm == Norm::L2 { "L2" } else { "Linf" };
        println!("success rate with {label} <= {eps}: {:.4}", outcome.success_within(norm, *eps));
    }
    println!("{:.1} images/s ({} images in {seconds:.2} s); wrote {}", s.n as f64 / seconds, s.n, a.out.display());
    if let Some(passes) = passes {
        let bound = attacks::gradient_bound(&model, &xs, &ys, a.batch_size, passes)?;
        println!(
            "forward+backward bound {bound:.2} s ({passes} passes per batch of {}); attack time / bound {:.3}",
            a.batch_size,
            seconds / bound
        );
    }
    Ok(0)
}
