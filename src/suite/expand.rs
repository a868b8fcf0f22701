//! The list-valued parts of a suite file (the benchmark of Wang, Hu, Su, arXiv 1910.02673): `[[attack]]`
//! entries expanded into one job per eps value, and the `[detectors]` table split into names, modes and parameters.
use crate::attacks::AttackSpec;
use crate::detectors::{self, DetectorConfig, DetectorKind};
use crate::error::{Error, Result};
use crate::routes::RouteKind;
use crate::suite::locate::Locator;
use crate::suite::schema::Job;

/// The key an attack's validation error is about (its `Error::Config` field), `name` otherwise.
fn attack_key(e: &Error) -> &str {
    match e {
        Error::Config { field, .. } if field != "attack" => field,
        _ => "name",
    }
}

/// What an adaptive entry may target: the suite's detectors, its modes and whether scores are normalised per class.
pub(crate) struct Targets<'a> {
    pub detectors: &'a [DetectorKind],
    pub modes: &'a [RouteKind],
    pub config: &'a DetectorConfig,
}

/// A string or a list of strings under `key` of an `[[attack]]` entry, removed from it; `None` when absent.
fn string_list(loc: &Locator, t: &mut toml::Table, n: usize, key: &str) -> Result<Option<Vec<String>>> {
    let bad = |msg: &str| loc.error_section("[attack]", n, Some(key), msg);
    match t.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(vec![s])),
        Some(toml::Value::Array(a)) if a.is_empty() => Err(bad("empty list: give at least one value")),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(&format!("{v} is not a string"))))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(v) => Err(bad(&format!("{v}: expected a string or a list of strings"))),
    }
}

/// An adaptive entry's (detector, mode, steer) combinations, each checked against the suite: the detector is one the
/// suite scores, the mode one it scores on and the detector runs on (`"all"` for either: every pair that runs), and
/// per-class normalisation is off (the attack reads raw scores).
fn adaptive_targets(
    loc: &Locator,
    t: &mut toml::Table,
    n: usize,
    targets: &Targets,
) -> Result<Vec<(String, String, Option<String>)>> {
    let err = |key: &str, msg: &str| loc.error_section("[attack]", n, Some(key), msg);
    if targets.config.class_normalise {
        return Err(err("name", "the adaptive attack reads raw scores: it cannot run with detectors.class_normalise"));
    }
    let detectors = string_list(loc, t, n, "detector")?
        .ok_or_else(|| err("detector", "missing: the detector to attack (a name, a list, or \"all\")"))?;
    let modes = string_list(loc, t, n, "mode")?
        .ok_or_else(|| err("mode", "missing: the mode to attack it on (a name, a list, or \"all\")"))?;
    let steers = string_list(loc, t, n, "steer")?;
    let dets: Vec<DetectorKind> = match detectors.as_slice() {
        [all] if all == "all" => targets.detectors.to_vec(),
        names => names
            .iter()
            .map(|d| {
                let kind: DetectorKind = d.parse().map_err(|e: Error| err("detector", &e.to_string()))?;
                match targets.detectors.contains(&kind) {
                    true => Ok(kind),
                    false => Err(err("detector", &format!("{d} is not among the suite's [detectors] names"))),
                }
            })
            .collect::<Result<_>>()?,
    };
    let all_modes = matches!(modes.as_slice(), [m] if m == "all");
    let modes: Vec<RouteKind> = match all_modes {
        true => targets.modes.to_vec(),
        false => modes
            .iter()
            .map(|m| {
                let kind: RouteKind = m.parse().map_err(|e: Error| err("mode", &e.to_string()))?;
                match targets.modes.contains(&kind) {
                    true => Ok(kind),
                    false => Err(err("mode", &format!("{m} is not among the suite's [detectors] modes"))),
                }
            })
            .collect::<Result<_>>()?,
    };
    let mut pairs = Vec::new();
    for &d in &dets {
        let det = detectors::build(d, targets.config).map_err(|e| err("detector", &e.to_string()))?;
        if !det.differentiable() {
            if detectors.len() == 1 && detectors[0] != "all" {
                return Err(err(
                    "detector",
                    &format!("{d} has no input gradient: the adaptive attack cannot target it"),
                ));
            }
            continue;
        }
        for &m in &modes {
            if det.routes_of(&[m]).is_empty() {
                if detectors.len() == 1 && detectors[0] != "all" && !all_modes {
                    return Err(err("mode", &format!("detector {d} does not run on mode {m}")));
                }
                continue;
            }
            pairs.push((d.to_string(), m.to_string()));
        }
    }
    if pairs.is_empty() {
        return Err(err("mode", "no detector of the entry runs on any of its modes"));
    }
    let steers: Vec<Option<String>> = match steers {
        None => vec![None],
        Some(s) => s.into_iter().map(Some).collect(),
    };
    Ok(pairs.into_iter().flat_map(|(d, m)| steers.iter().map(move |s| (d.clone(), m.clone(), s.clone()))).collect())
}

/// One job per attack entry and eps value (and for `adaptive`, per detector, mode and steer), in file order.
pub(crate) fn expand_attacks(
    loc: &Locator,
    entries: Vec<toml::Table>,
    seed: u64,
    targets: &Targets,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for (n, mut table) in entries.into_iter().enumerate() {
        let combos: Vec<Option<(String, String, Option<String>)>> =
            match table.get("name").and_then(|v| v.as_str()) == Some("adaptive") {
                true => adaptive_targets(loc, &mut table, n, targets)?.into_iter().map(Some).collect(),
                false => vec![None],
            };
        let eps_values: Vec<Option<toml::Value>> = match table.remove("eps") {
            None => vec![None],
            Some(toml::Value::Array(a)) if a.is_empty() => {
                return Err(loc.error_section("[attack]", n, Some("eps"), "empty eps list: give at least one value"))
            }
            Some(toml::Value::Array(a)) => {
                if let Some(bad) = a.iter().find(|v| !matches!(v, toml::Value::Float(_) | toml::Value::Integer(_))) {
                    return Err(loc.error_section("[attack]", n, Some("eps"), &format!("{bad} is not a number")));
                }
                a.into_iter().map(Some).collect()
            }
            Some(v) => vec![Some(v)],
        };
        for (eps, combo) in eps_values.iter().flat_map(|e| combos.iter().map(move |c| (e.clone(), c))) {
            let mut t = table.clone();
            if let Some((d, m, s)) = combo {
                t.insert("detector".into(), toml::Value::String(d.clone()));
                t.insert("mode".into(), toml::Value::String(m.clone()));
                if let Some(s) = s {
                    t.insert("steer".into(), toml::Value::String(s.clone()));
                }
            }
            if let Some(e) = eps {
                let e = match e {
                    toml::Value::Integer(i) => toml::Value::Float(i as f64),
                    other => other,
                };
                t.insert("eps".into(), e);
            }
            let params = params_string(&t);
            let spec: AttackSpec = loc.typed(t, "[attack]", n)?;
            spec.validate().map_err(|e| loc.error_section("[attack]", n, Some(attack_key(&e)), &e.to_string()))?;
            // the suite's seed drives the attack's randomness unless the attack sets its own (or takes none)
            let spec = spec.with_default_seed(seed);
            jobs.push(Job { index: jobs.len(), name: spec.name().to_string(), attack: spec, params });
        }
    }
    Ok(jobs)
}

/// `key=value` for every key but the name, sorted by key.
fn params_string(t: &toml::Table) -> String {
    let mut keys: Vec<&String> = t.keys().filter(|k| k.as_str() != "name").collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let v = match &t[*k] {
                toml::Value::Float(f) => format!("{f}"),
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `[detectors]` table, read.
pub(crate) struct DetectorSection {
    /// The detectors kept: those that run on a mode asked for.
    pub detectors: Vec<DetectorKind>,
    pub modes: Vec<RouteKind>,
    pub config: DetectorConfig,
    /// The supervised detectors' training attack as written, a job label such as `"fgsm eps=0.1"`.
    pub train_attack: Option<String>,
}

pub(crate) fn detector_section(loc: &Locator, mut t: toml::Table) -> Result<DetectorSection> {
    let all_requested = t.get("names").and_then(|v| v.as_str()) == Some("all");
    let names: Vec<String> = match t.remove("names") {
        None => {
            return Err(loc.error_section(
                "detectors",
                0,
                None,
                "missing key `names` (a list of detectors, or \"all\")",
            ))
        }
        Some(toml::Value::String(s)) if s == "all" => DetectorKind::ALL.iter().map(|d| d.to_string()).collect(),
        Some(toml::Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| loc.error_section("detectors", 0, Some("names"), "every name must be a string"))?,
        Some(_) => {
            return Err(loc.error_section(
                "detectors",
                0,
                Some("names"),
                "expected \"all\" or a non-empty list of detector names",
            ))
        }
    };
    let modes: Vec<RouteKind> = match t.remove("modes") {
        None => RouteKind::DEFAULT.to_vec(),
        Some(toml::Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| Error::config("mode", v, "must be a string")).and_then(str::parse))
            .collect::<Result<Vec<RouteKind>>>()
            .map_err(|e| loc.error_section("detectors", 0, Some("modes"), &e.to_string()))?,
        Some(_) => {
            let names: Vec<&str> = RouteKind::ALL.iter().map(|r| r.as_str()).collect();
            let msg = format!("expected a non-empty list of: {}", names.join(", "));
            return Err(loc.error_section("detectors", 0, Some("modes"), &msg));
        }
    };
    if t.contains_key("fit_size") {
        return Err(loc.error_section(
            "detectors",
            0,
            Some("fit_size"),
            "set the number of fitting images as data.fit_size",
        ));
    }
    let train_attack = match t.remove("train_attack") {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(v) => {
            let msg = format!("{v}: expected an attack of the suite as its results name it, e.g. \"fgsm eps=0.1\"");
            return Err(loc.error_section("detectors", 0, Some("train_attack"), &msg));
        }
    };
    let cfg: DetectorConfig = loc.typed(t, "detectors", 0)?;
    let mut kept = Vec::new();
    for name in &names {
        let kind: DetectorKind =
            name.parse().map_err(|e: Error| loc.error_section("detectors", 0, Some("names"), &e.to_string()))?;
        let det = detectors::build(kind, &cfg)
            .map_err(|e| loc.error_section("detectors", 0, Some("names"), &e.to_string()))?;
        if !det.routes_of(&modes).is_empty() {
            kept.push(kind);
        } else if !all_requested {
            let runs_on: Vec<&str> = det.routes_of(&RouteKind::ALL).iter().map(|r| r.as_str()).collect();
            let msg =
                format!("detector {name} runs on none of the modes asked for (it runs on {})", runs_on.join(", "));
            return Err(loc.error_section("detectors", 0, Some("modes"), &msg));
        }
    }
    Ok(DetectorSection { detectors: kept, modes, config: cfg, train_attack })
}

/// The default training attack of the supervised detectors (the path-detector and detector issues' protocol).
pub const DEFAULT_TRAIN_ATTACK: &str = "fgsm eps=0.1";

/// The supervised detectors' training attack: the job `written` names (`DEFAULT_TRAIN_ATTACK` when absent), which
/// must be one of the suite's attacks and one that needs neither the subnetworks nor a detector. Without supervised
/// detectors it is `None`; with `names = "all"` and no such job the supervised detectors are dropped instead.
pub(crate) fn train_attack(
    loc: &Locator,
    written: Option<String>,
    jobs: &[Job],
    detectors: &mut Vec<DetectorKind>,
    all_requested: bool,
) -> Result<Option<Job>> {
    let err = |msg: &str| loc.error_section("detectors", 0, Some("train_attack"), msg);
    let supervised: Vec<DetectorKind> = detectors.iter().copied().filter(|d| d.family() == "supervised").collect();
    if supervised.is_empty() {
        return match written {
            Some(w) => Err(err(&format!("{w}: the suite scores no supervised detector to train on it"))),
            None => Ok(None),
        };
    }
    let label = |j: &Job| if j.params.is_empty() { j.name.clone() } else { format!("{} {}", j.name, j.params) };
    let wanted = written.clone().unwrap_or_else(|| DEFAULT_TRAIN_ATTACK.to_string());
    match jobs.iter().find(|j| label(j) == wanted) {
        Some(j) if matches!(j.attack, AttackSpec::Adaptive(_) | AttackSpec::SubnetCe(_)) => {
            Err(err(&format!("{wanted} attacks a detector or the subnetworks: train on a plain attack")))
        }
        Some(j) => Ok(Some(j.clone())),
        None if written.is_none() && all_requested => {
            detectors.retain(|d| d.family() != "supervised");
            Ok(None)
        }
        None => {
            let names: Vec<String> = jobs.iter().map(label).collect();
            let what = match written {
                Some(_) => format!("{wanted} is not among the suite's attacks"),
                None => format!(
                    "the supervised detector {} needs a training attack and the suite has no {wanted}",
                    supervised[0]
                ),
            };
            Err(err(&format!("{what}; name one of: {}", names.join(", "))))
        }
    }
}
