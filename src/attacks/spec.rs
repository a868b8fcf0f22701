//! Attack descriptions as written in suite files (TOML) and on the command line: one variant per attack, each with
//! exactly the fields that attack takes (so a key the attack does not take is a parse error naming the key), and
//! `build`, which turns one into a validated attack whose unset parameters take the published defaults of its paper.
use super::adaptive::{AdaptiveConfig, Steer};
use super::{subnet_ce, Attack, Bim, CwL2, DeepFool, Fgsm, MiFgsm, Norm, Pgd, SubnetCe, Targeting};
use crate::error::{Error, Result};
use crate::subnet::Subnets;

/// A targeted attack's choice of target: a seeded random other class, or the clean image's least likely class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targeted {
    Random,
    LeastLikely,
}

/// FGSM: one step.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FgsmSpec {
    pub eps: Option<f64>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

impl FgsmSpec {
    /// The FGSM attack, validated (what `build` boxes).
    pub fn build(&self) -> Result<Fgsm> {
        let a = Fgsm { eps: self.eps.unwrap_or(Fgsm::default().eps), targeting: targeting(self.targeted, self.seed) };
        a.validate()?;
        Ok(a)
    }
}

/// BIM: iterated FGSM.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BimSpec {
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

/// PGD in either norm.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgdSpec {
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub restarts: Option<usize>,
    pub random_start: Option<bool>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

/// MI-FGSM: BIM with momentum `decay`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiFgsmSpec {
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub decay: Option<f64>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

/// CW-L2: `kappa` is the confidence margin.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CwSpec {
    pub c: Option<f64>,
    pub kappa: Option<f64>,
    pub lr: Option<f64>,
    pub steps: Option<usize>,
    pub binary_steps: Option<usize>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

/// DeepFool (untargeted by construction, no randomness).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepFoolSpec {
    pub steps: Option<usize>,
    pub overshoot: Option<f64>,
}

/// The adaptive attack on one detector (`detector`) on one route (`mode`) at its threshold; a suite writes lists (or
/// `"all"`) for `detector`, `mode` and `steer`, and they expand into one job per combination. Its threshold and the
/// detector come from the suite's scoring, so it runs only in a suite.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    pub detector: Option<String>,
    pub mode: Option<String>,
    pub norm: Option<Norm>,
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub restarts: Option<usize>,
    pub weights: Option<Vec<f64>>,
    pub kappa: Option<f64>,
    pub steer: Option<Steer>,
    pub seed: Option<u64>,
}

impl AdaptiveSpec {
    /// The attack's configuration, defaults filled in (`AdaptiveConfig::new`; alpha follows eps and steps), validated.
    pub fn config(&self) -> Result<AdaptiveConfig> {
        let d = AdaptiveConfig::new(self.norm.unwrap_or(Norm::Linf), self.eps.unwrap_or(0.3));
        let steps = self.steps.unwrap_or(d.steps);
        let c = AdaptiveConfig {
            alpha: self.alpha.unwrap_or_else(|| Pgd::l2_alpha(d.eps, steps)),
            steps,
            restarts: self.restarts.unwrap_or(d.restarts),
            weights: self.weights.clone().unwrap_or(d.weights.clone()),
            kappa: self.kappa.unwrap_or(d.kappa),
            steer: self.steer.unwrap_or(d.steer),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        };
        c.validate()?;
        Ok(c)
    }
}

/// PGD-Linf on the full model's loss plus `kappa` times the predicted class subnetwork's (`subnet-ce`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetCeSpec {
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub restarts: Option<usize>,
    pub random_start: Option<bool>,
    pub kappa: Option<f64>,
    pub targeted: Option<Targeted>,
    pub seed: Option<u64>,
}

/// One attack with its parameters, tagged by `name`; a field left out takes the attack's published default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name")]
pub enum AttackSpec {
    #[serde(rename = "fgsm")]
    Fgsm(FgsmSpec),
    #[serde(rename = "bim")]
    Bim(BimSpec),
    #[serde(rename = "pgd-linf")]
    PgdLinf(PgdSpec),
    #[serde(rename = "pgd-l2")]
    PgdL2(PgdSpec),
    #[serde(rename = "mifgsm")]
    MiFgsm(MiFgsmSpec),
    #[serde(rename = "cw-l2")]
    CwL2(CwSpec),
    #[serde(rename = "deepfool")]
    DeepFool(DeepFoolSpec),
    #[serde(rename = "subnet-ce")]
    SubnetCe(SubnetCeSpec),
    #[serde(rename = "adaptive")]
    Adaptive(AdaptiveSpec),
}

pub const ATTACK_NAMES: [&str; 9] =
    ["fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm", "cw-l2", "deepfool", "subnet-ce", "adaptive"];

fn targeting(targeted: Option<Targeted>, seed: Option<u64>) -> Targeting {
    match targeted {
        None => Targeting::Untargeted,
        Some(Targeted::Random) => Targeting::Random { seed: seed.unwrap_or(0) },
        Some(Targeted::LeastLikely) => Targeting::LeastLikely,
    }
}

impl PgdSpec {
    fn pgd(&self, base: Pgd) -> Pgd {
        let eps = self.eps.unwrap_or(base.eps);
        let steps = self.steps.unwrap_or(base.steps);
        let alpha = match (self.alpha, base.norm) {
            (Some(a), _) => a,
            (None, super::Norm::L2) => Pgd::l2_alpha(eps, steps),
            (None, super::Norm::Linf) => base.alpha,
        };
        Pgd {
            eps,
            alpha,
            steps,
            restarts: self.restarts.unwrap_or(base.restarts),
            random_start: self.random_start.unwrap_or(base.random_start),
            seed: self.seed.unwrap_or(base.seed),
            targeting: targeting(self.targeted, self.seed),
            ..base
        }
    }
}

impl SubnetCeSpec {
    fn pgd(&self) -> Pgd {
        let p = PgdSpec {
            eps: self.eps,
            alpha: self.alpha,
            steps: self.steps,
            restarts: self.restarts,
            random_start: self.random_start,
            targeted: self.targeted,
            seed: self.seed,
        };
        p.pgd(Pgd::linf())
    }
}

impl AttackSpec {
    /// The attack's name as suite files write it.
    pub fn name(&self) -> &'static str {
        match self {
            AttackSpec::Fgsm(_) => "fgsm",
            AttackSpec::Bim(_) => "bim",
            AttackSpec::PgdLinf(_) => "pgd-linf",
            AttackSpec::PgdL2(_) => "pgd-l2",
            AttackSpec::MiFgsm(_) => "mifgsm",
            AttackSpec::CwL2(_) => "cw-l2",
            AttackSpec::DeepFool(_) => "deepfool",
            AttackSpec::SubnetCe(_) => "subnet-ce",
            AttackSpec::Adaptive(_) => "adaptive",
        }
    }

    /// The attack's seed field, `None` for attacks without randomness.
    fn seed_mut(&mut self) -> Option<&mut Option<u64>> {
        match self {
            AttackSpec::Fgsm(s) => Some(&mut s.seed),
            AttackSpec::Bim(s) => Some(&mut s.seed),
            AttackSpec::PgdLinf(s) | AttackSpec::PgdL2(s) => Some(&mut s.seed),
            AttackSpec::MiFgsm(s) => Some(&mut s.seed),
            AttackSpec::CwL2(s) => Some(&mut s.seed),
            AttackSpec::DeepFool(_) => None,
            AttackSpec::SubnetCe(s) => Some(&mut s.seed),
            AttackSpec::Adaptive(s) => Some(&mut s.seed),
        }
    }

    /// Sets the seed to `seed` unless the spec sets its own or the attack takes none.
    pub fn with_default_seed(mut self, seed: u64) -> AttackSpec {
        if let Some(s) = self.seed_mut().filter(|s| s.is_none()) {
            *s = Some(seed);
        }
        self
    }

    /// Checks the fields' values without building (`subnet-ce` needs no subnetworks here, `adaptive` no detector).
    pub fn validate(&self) -> Result<()> {
        match self {
            AttackSpec::SubnetCe(s) => subnet_ce::check(&s.pgd(), s.kappa.unwrap_or(1.0)),
            AttackSpec::Adaptive(s) => s.config().map(drop),
            _ => build(self, None).map(drop),
        }
    }
}

/// The attack `spec` describes, validated; `subnets` is needed by (only) `subnet-ce`; `adaptive` is built by the suite.
pub fn build(spec: &AttackSpec, subnets: Option<&Subnets>) -> Result<Box<dyn Attack>> {
    let attack: Box<dyn Attack> =
        match spec {
            AttackSpec::Fgsm(s) => Box::new(s.build()?),
            AttackSpec::Bim(s) => {
                let d = Bim::default();
                let eps = s.eps.unwrap_or(d.eps);
                let steps = s.steps.unwrap_or_else(|| Bim::kurakin_steps(eps));
                let a = Bim { eps, alpha: s.alpha.unwrap_or(d.alpha), steps, targeting: targeting(s.targeted, s.seed) };
                a.validate()?;
                Box::new(a)
            }
            AttackSpec::PgdLinf(s) | AttackSpec::PgdL2(s) => {
                let a = s.pgd(if matches!(spec, AttackSpec::PgdL2(_)) { Pgd::l2() } else { Pgd::linf() });
                a.validate()?;
                Box::new(a)
            }
            AttackSpec::MiFgsm(s) => {
                let d = MiFgsm::default();
                let eps = s.eps.unwrap_or(d.eps);
                let steps = s.steps.unwrap_or(d.steps);
                let alpha = s.alpha.unwrap_or(eps / steps.max(1) as f64);
                let decay = s.decay.unwrap_or(d.decay);
                let a = MiFgsm { eps, alpha, steps, decay, targeting: targeting(s.targeted, s.seed) };
                a.validate()?;
                Box::new(a)
            }
            AttackSpec::CwL2(s) => {
                let d = CwL2::default();
                let a = CwL2 {
                    c: s.c.unwrap_or(d.c),
                    kappa: s.kappa.unwrap_or(d.kappa),
                    steps: s.steps.unwrap_or(d.steps),
                    lr: s.lr.unwrap_or(d.lr),
                    binary_steps: s.binary_steps.unwrap_or(d.binary_steps),
                    abort_early: d.abort_early,
                    targeting: targeting(s.targeted, s.seed),
                };
                a.validate()?;
                Box::new(a)
            }
            AttackSpec::DeepFool(s) => {
                let d = DeepFool::default();
                let a = DeepFool { steps: s.steps.unwrap_or(d.steps), overshoot: s.overshoot.unwrap_or(d.overshoot) };
                a.validate()?;
                Box::new(a)
            }
            AttackSpec::Adaptive(_) => return Err(Error::config(
                "attack",
                "adaptive",
                "the adaptive attack needs a fitted detector and its threshold: run it in a suite ([[attack]] name = \
                 \"adaptive\" with detector and mode)",
            )),
            AttackSpec::SubnetCe(s) => {
                let sub = subnets.ok_or_else(|| {
                    Error::Missing("attack subnet-ce needs the model's subnetworks (--subnets FILE)".into())
                })?;
                let subnets = Subnets {
                    layout: sub.layout.clone(),
                    gates: sub.gates.shallow_clone(),
                    masks: sub.masks.shallow_clone(),
                };
                let a = SubnetCe { pgd: s.pgd(), weight: s.kappa.unwrap_or(1.0), subnets };
                a.validate()?;
                Box::new(a)
            }
        };
    Ok(attack)
}
