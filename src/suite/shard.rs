//! Scale-out: `--shard I/N` selects a deterministic 1/N of a suite's jobs (round robin over the file order, so
//! expensive attacks listed together spread over the shards).
use crate::error::{Error, Result};

/// Shard `index` of `count`, 0-based (Slurm's `SLURM_ARRAY_TASK_ID` and Kubernetes' `JOB_COMPLETION_INDEX` both are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Whether job `job_index` (its position in the expanded suite) belongs to this shard.
    pub fn owns(&self, job_index: usize) -> bool {
        job_index % self.count == self.index
    }

    /// The report folder name of this shard, `shard-I-of-N`.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |problem: &str| Error::config("shard", s, problem);
        let (i, n) = s.split_once('/').ok_or_else(|| bad("expected I/N, e.g. 0/4 (I counts from 0)"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I in I/N must be a non-negative integer"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N in I/N must be a positive integer"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!("I must be below N: shards of {count} are numbered 0..={}", count - 1)));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("1/4".parse::<Shard>().ok(), Some(Shard { index: 1, count: 4 }));
        for bad in ["3/2", "2/2", "1/0", "x/2", "1", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn shards_partition_jobs() {
        let n = 3;
        for job in 0..10 {
            let owners = (0..n).filter(|&i| Shard { index: i, count: n }.owns(job)).count();
            assert_eq!(owners, 1);
        }
    }
}
