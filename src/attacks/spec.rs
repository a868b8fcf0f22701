//! Attack descriptions as written in suite files (TOML) and on the command line, and `build`, which turns one into a
//! validated attack whose unset parameters take the published defaults of its paper.
use super::{adaptive, Adaptive, Attack, Bim, CwL2, DeepFool, Fgsm, MiFgsm, Pgd, Targeting};
use crate::error::{Error, Result};
use crate::subnet::Subnets;

pub const ATTACK_NAMES: [&str; 8] = ["fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm", "cw-l2", "deepfool", "adaptive"];

/// One attack with its parameters; a field left out takes the attack's published default, a field that does not
/// apply to the attack is an error. `kappa` is CW's confidence margin, and for `adaptive` the weight of the subnet
/// term. `targeted` is `random` (seeded by `seed`) or `least-likely`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    pub name: String,
    pub eps: Option<f64>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub restarts: Option<usize>,
    pub random_start: Option<bool>,
    pub decay: Option<f64>,
    pub c: Option<f64>,
    pub kappa: Option<f64>,
    pub lr: Option<f64>,
    pub binary_steps: Option<usize>,
    pub overshoot: Option<f64>,
    pub targeted: Option<String>,
    pub seed: Option<u64>,
}

fn allowed(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "fgsm" => &["eps", "targeted", "seed"],
        "bim" => &["eps", "alpha", "steps", "targeted", "seed"],
        "pgd-linf" | "pgd-l2" => &["eps", "alpha", "steps", "restarts", "random_start", "targeted", "seed"],
        "mifgsm" => &["eps", "alpha", "steps", "decay", "targeted", "seed"],
        "cw-l2" => &["c", "kappa", "lr", "steps", "binary_steps", "targeted", "seed"],
        "deepfool" => &["steps", "overshoot"],
        "adaptive" => &["eps", "alpha", "steps", "restarts", "random_start", "kappa", "targeted", "seed"],
        _ => return None,
    })
}

impl AttackSpec {
    pub fn named(name: &str) -> AttackSpec {
        AttackSpec { name: name.to_string(), ..Default::default() }
    }

    /// The fields that are set, with their values.
    fn set_fields(&self) -> Vec<(&'static str, String)> {
        fn f<T: std::fmt::Display>(out: &mut Vec<(&'static str, String)>, name: &'static str, v: &Option<T>) {
            if let Some(v) = v {
                out.push((name, v.to_string()));
            }
        }
        let mut out = Vec::new();
        f(&mut out, "eps", &self.eps);
        f(&mut out, "alpha", &self.alpha);
        f(&mut out, "steps", &self.steps);
        f(&mut out, "restarts", &self.restarts);
        f(&mut out, "random_start", &self.random_start);
        f(&mut out, "decay", &self.decay);
        f(&mut out, "c", &self.c);
        f(&mut out, "kappa", &self.kappa);
        f(&mut out, "lr", &self.lr);
        f(&mut out, "binary_steps", &self.binary_steps);
        f(&mut out, "overshoot", &self.overshoot);
        f(&mut out, "targeted", &self.targeted);
        f(&mut out, "seed", &self.seed);
        out
    }

    fn check_fields(&self) -> Result<()> {
        let allowed = allowed(&self.name).ok_or_else(|| {
            Error::config("attack", &self.name, format!("unknown attack; expected one of {}", ATTACK_NAMES.join(", ")))
        })?;
        match self.set_fields().into_iter().find(|(f, _)| !allowed.contains(f)) {
            Some((field, value)) => Err(Error::config(field, value, format!("does not apply to attack {}", self.name))),
            None => Ok(()),
        }
    }

    pub fn targeting(&self) -> Result<Targeting> {
        match self.targeted.as_deref() {
            None => Ok(Targeting::Untargeted),
            Some("random") => Ok(Targeting::Random { seed: self.seed.unwrap_or(0) }),
            Some("least-likely") => Ok(Targeting::LeastLikely),
            Some(other) => Err(Error::config("targeted", other, "expected random or least-likely")),
        }
    }

    fn pgd(&self, base: Pgd) -> Result<Pgd> {
        let eps = self.eps.unwrap_or(base.eps);
        let steps = self.steps.unwrap_or(base.steps);
        let alpha = match (self.alpha, base.norm) {
            (Some(a), _) => a,
            (None, super::Norm::L2) => Pgd::l2_alpha(eps, steps),
            (None, super::Norm::Linf) => base.alpha,
        };
        Ok(Pgd {
            eps,
            alpha,
            steps,
            restarts: self.restarts.unwrap_or(base.restarts),
            random_start: self.random_start.unwrap_or(base.random_start),
            seed: self.seed.unwrap_or(base.seed),
            targeting: self.targeting()?,
            ..base
        })
    }

    /// Checks the name, the fields and their values without building (an adaptive attack needs no subnetworks here).
    pub fn validate(&self) -> Result<()> {
        if self.name == "adaptive" {
            self.check_fields()?;
            return adaptive::check(&self.pgd(Pgd::linf())?, self.kappa.unwrap_or(1.0));
        }
        build(self, None).map(|_| ())
    }
}

/// The attack `spec` describes, validated; `subnets` is needed by (only) the adaptive attack.
pub fn build(spec: &AttackSpec, subnets: Option<&Subnets>) -> Result<Box<dyn Attack>> {
    spec.check_fields()?;
    let targeting = spec.targeting()?;
    let attack: Box<dyn Attack> = match spec.name.as_str() {
        "fgsm" => {
            let a = Fgsm { eps: spec.eps.unwrap_or(Fgsm::default().eps), targeting };
            a.validate()?;
            Box::new(a)
        }
        "bim" => {
            let d = Bim::default();
            let eps = spec.eps.unwrap_or(d.eps);
            let steps = spec.steps.unwrap_or_else(|| Bim::kurakin_steps(eps));
            let a = Bim { eps, alpha: spec.alpha.unwrap_or(d.alpha), steps, targeting };
            a.validate()?;
            Box::new(a)
        }
        "pgd-linf" | "pgd-l2" => {
            let a = spec.pgd(if spec.name == "pgd-l2" { Pgd::l2() } else { Pgd::linf() })?;
            a.validate()?;
            Box::new(a)
        }
        "mifgsm" => {
            let d = MiFgsm::default();
            let eps = spec.eps.unwrap_or(d.eps);
            let steps = spec.steps.unwrap_or(d.steps);
            let alpha = spec.alpha.unwrap_or(eps / steps.max(1) as f64);
            let a = MiFgsm { eps, alpha, steps, decay: spec.decay.unwrap_or(d.decay), targeting };
            a.validate()?;
            Box::new(a)
        }
        "cw-l2" => {
            let d = CwL2::default();
            let a = CwL2 {
                c: spec.c.unwrap_or(d.c),
                kappa: spec.kappa.unwrap_or(d.kappa),
                steps: spec.steps.unwrap_or(d.steps),
                lr: spec.lr.unwrap_or(d.lr),
                binary_steps: spec.binary_steps.unwrap_or(d.binary_steps),
                abort_early: d.abort_early,
                targeting,
            };
            a.validate()?;
            Box::new(a)
        }
        "deepfool" => {
            let d = DeepFool::default();
            let a = DeepFool { steps: spec.steps.unwrap_or(d.steps), overshoot: spec.overshoot.unwrap_or(d.overshoot) };
            a.validate()?;
            Box::new(a)
        }
        "adaptive" => {
            let s = subnets.ok_or_else(|| {
                Error::Missing("attack adaptive needs the model's subnetworks (--subnets FILE)".into())
            })?;
            let subnets =
                Subnets { layout: s.layout.clone(), gates: s.gates.shallow_clone(), masks: s.masks.shallow_clone() };
            let a = Adaptive { pgd: spec.pgd(Pgd::linf())?, weight: spec.kappa.unwrap_or(1.0), subnets };
            a.validate()?;
            Box::new(a)
        }
        other => return Err(Error::config("attack", other, "unknown attack")),
    };
    Ok(attack)
}
