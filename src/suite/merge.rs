//! `advdet merge`: combines the reports of a suite's shards into the report an unsharded run writes (the benchmark
//! of Wang, Hu, Su, arXiv 1910.02673), by rendering the union of their records.
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::records::{self, JobRecord, SuiteRecord};
use crate::report::manifest::{Manifest, StageTime};
use crate::report::tables::PaperTable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The merged report's folder and tables.
#[derive(Debug)]
pub struct MergeSummary {
    pub report_dir: PathBuf,
    pub jobs: usize,
    pub tables: Vec<PaperTable>,
}

/// Merges shard report folders `dirs` into `<out>/<suite>/`. Every folder must come from the same suite file, no job
/// may appear twice, and together they must hold every job of the suite.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<MergeSummary> {
    let first = dirs.first().ok_or_else(|| Error::config("DIR", "", "name at least one shard report folder"))?;
    let (suite, _) = records::load(first)?;
    let mut jobs: BTreeMap<usize, (JobRecord, &Path)> = BTreeMap::new();
    let mut manifests = Vec::new();
    for dir in dirs {
        let (s, js) = records::load(dir)?;
        if s != suite {
            return Err(Error::format(
                dir,
                format!(
                    "comes from another suite or suite file than {} (suite {} sha256 {} vs {} sha256 {})",
                    first.display(),
                    s.suite,
                    &s.suite_hash[..12.min(s.suite_hash.len())],
                    suite.suite,
                    &suite.suite_hash[..12.min(suite.suite_hash.len())]
                ),
            ));
        }
        for j in js {
            if let Some((_, other)) = jobs.get(&j.index) {
                return Err(Error::format(
                    dir,
                    format!("job {} ({}) is also in {}", j.index, j.label(), other.display()),
                ));
            }
            jobs.insert(j.index, (j, dir.as_path()));
        }
        let m = dir.join("manifest.json");
        if m.is_file() {
            manifests.push(read_json::<Manifest>(&m)?);
        }
    }
    let missing: Vec<String> = (0..suite.jobs).filter(|i| !jobs.contains_key(i)).map(|i| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(Error::Missing(format!(
            "the shard folders hold {} of the suite's {} jobs; missing job indices {} (a shard not run or not passed?)",
            jobs.len(),
            suite.jobs,
            missing.join(", ")
        )));
    }
    let jobs: Vec<JobRecord> = jobs.into_values().map(|(j, _)| j).collect();
    let dir = out.join(&suite.suite);
    let subnets = dirs.iter().map(|d| d.join("subnets").join("subnets.safetensors")).find(|p| p.is_file());
    let tables = crate::report::render::render(&dir, &suite, &jobs, subnets.as_deref(), !manifests.is_empty())?;
    if let Some(m) = merged_manifest(&suite, manifests, dirs)? {
        m.write_into(&dir)?;
    }
    Ok(MergeSummary { report_dir: dir, jobs: jobs.len(), tables })
}

/// The shards' manifests combined: stage counts and times summed, job times joined, scoring times summed per
/// (detector, route), the shard list joined. Shards computed in different
/// CPU modes are refused: their numbers would not be one reproducible report.
fn merged_manifest(suite: &SuiteRecord, manifests: Vec<Manifest>, dirs: &[PathBuf]) -> Result<Option<Manifest>> {
    let mut it = manifests.into_iter();
    let Some(mut m) = it.next() else { return Ok(None) };
    for other in it {
        if other.cpu.mode != m.cpu.mode || other.cpu.pinned != m.cpu.pinned {
            return Err(Error::format(
                &dirs[0],
                format!(
                    "shards computed in different CPU modes ({} with {:?}, {} with {:?}); rerun them in one mode",
                    m.cpu.mode, m.cpu.pinned, other.cpu.mode, other.cpu.pinned
                ),
            ));
        }
        m.shards.extend(other.shards);
        m.wall_seconds += other.wall_seconds;
        for st in other.stages {
            match m.stages.iter_mut().find(|s| s.stage == st.stage) {
                Some(s) => {
                    s.computed += st.computed;
                    s.cached += st.cached;
                    s.seconds += st.seconds;
                }
                None => m.stages.push(StageTime { ..st }),
            }
        }
        m.jobs.extend(other.jobs);
        m.scores_bound_seconds = match (m.scores_bound_seconds, other.scores_bound_seconds) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        for t in other.scoring {
            match m.scoring.iter_mut().find(|s| (&s.detector, &s.route) == (&t.detector, &t.route)) {
                Some(s) => s.seconds += t.seconds,
                None => m.scoring.push(t),
            }
        }
        for (k, n) in other.scoring_calls {
            *m.scoring_calls.entry(k).or_default() += n;
        }
        for (r, s) in other.route_passes {
            *m.route_passes.entry(r).or_default() += s;
        }
        if other.device != m.device {
            m.device = format!("{}; {}", m.device, other.device);
        }
    }
    m.suite = suite.suite.clone();
    m.shards.sort();
    m.jobs.sort_by_key(|j| j.index);
    Ok(Some(m))
}
