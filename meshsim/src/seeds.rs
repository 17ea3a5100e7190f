//! What a sweep runs: seed ranges (`A..B`, `A..=B`), the shard of them this process takes
//! (`--shard`, or a Kubernetes Indexed Job's or a Slurm array's environment), the `--budget`
//! bound, and the values of a `--matrix`. Parsing only; `sweep.rs` runs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sim::scenario::overrides::Override;

/// `A..B` or `A..=B` as the seeds it names.
pub fn parse_seeds(s: &str) -> anyhow::Result<Vec<u64>> {
    let bad =
        || format!("--seeds {s:?}: expected A..B (B excluded) or A..=B (B included), e.g. 1..=100");
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        bail!(bad());
    };
    let a: u64 = a.trim().parse().with_context(bad)?;
    let b: u64 = b.trim().parse().with_context(bad)?;
    let end = if inclusive {
        b.checked_add(1).with_context(bad)?
    } else {
        b
    };
    if end <= a {
        bail!("--seeds {s:?} names no seed");
    }
    // Checked before any memory is spent on the list.
    const MAX: u64 = 10_000_000;
    if end - a > MAX {
        bail!(
            "--seeds {s:?} names {} seeds; at most {MAX} per sweep (shard larger ones)",
            end - a
        );
    }
    Ok((a..end).collect())
}

/// Which slice of the seeds this process runs: index, count.
pub fn parse_shard(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(usize, usize)> {
    let num = |name: &str, v: &str| -> anyhow::Result<usize> {
        v.trim()
            .parse()
            .with_context(|| format!("{name}={v:?}: expected a whole number"))
    };
    let (i, n) = if let Some(f) = flag {
        let (i, n) = f
            .split_once('/')
            .with_context(|| format!("--shard {f:?}: expected I/N, e.g. 0/4"))?;
        (num("--shard", i)?, num("--shard", n)?)
    } else if let Some(i) = env("JOB_COMPLETION_INDEX") {
        // Kubernetes sets the index; the count is the Job's `completions`, given by the manifest.
        let n = env("JOB_COMPLETIONS").context(
            "JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: set it to the Job's completions (or pass --shard I/N)",
        )?;
        (
            num("JOB_COMPLETION_INDEX", &i)?,
            num("JOB_COMPLETIONS", &n)?,
        )
    } else if let (Some(i), Some(n)) = (env("SLURM_ARRAY_TASK_ID"), env("SLURM_ARRAY_TASK_COUNT")) {
        let min = env("SLURM_ARRAY_TASK_MIN")
            .map(|m| num("SLURM_ARRAY_TASK_MIN", &m))
            .transpose()?
            .unwrap_or(0);
        // `--array=0-15:4` numbers its tasks 0, 4, 8, 12.
        let step = env("SLURM_ARRAY_TASK_STEP")
            .map(|m| num("SLURM_ARRAY_TASK_STEP", &m))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        let i = num("SLURM_ARRAY_TASK_ID", &i)?;
        (
            i.checked_sub(min)
                .context("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?
                / step,
            num("SLURM_ARRAY_TASK_COUNT", &n)?,
        )
    } else {
        (0, 1)
    };
    if n == 0 || i >= n {
        bail!("shard {i}/{n}: expected 0 <= I < N");
    }
    Ok((i, n))
}

/// The seeds of shard `i` of `n`: every n-th, starting at the i-th, so shards get equal shares
/// of any range and of any slow region in it.
pub fn shard_seeds(seeds: &[u64], (i, n): (usize, usize)) -> Vec<u64> {
    seeds.iter().copied().skip(i).step_by(n).collect()
}

/// A bound on a sweep: runs, or wall time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// At most this many runs.
    Runs(usize),
    /// Start no run after this much wall time.
    Time(Duration),
}

/// `200`, `90s`, `10m`, `1h`.
pub fn parse_budget(s: &str) -> anyhow::Result<Budget> {
    let bad =
        || format!("--budget {s:?}: expected a number of runs (200) or a time (90s, 10m, 1h)");
    let s = s.trim();
    if let Ok(n) = s.parse::<usize>() {
        return Ok(Budget::Runs(n));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).with_context(bad)?);
    let n: u64 = num.parse().with_context(bad)?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => bail!(bad()),
    }
    .with_context(bad)?;
    Ok(Budget::Time(Duration::from_secs(secs)))
}

/// `--matrix KEY=V1,V2,...` as one override per value, each with the folder its run writes
/// into under `out` (`out/KEY=V`).
pub fn matrix(m: &str, out: &Path) -> anyhow::Result<Vec<(Override, PathBuf)>> {
    let (key, values) = m
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .with_context(|| format!("--matrix {m:?}: expected KEY=V1,V2,..."))?;
    values
        .split(',')
        .map(|v| {
            let o: Override = format!("{key}={}", v.trim())
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?;
            let dir = out.join(o.to_string().replace(['/', ' '], "_"));
            Ok((o, dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_rust_ranges_and_bad_ones_say_what_was_expected() {
        assert_eq!(parse_seeds("1..4").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("1..=4").unwrap(), vec![1, 2, 3, 4]);
        for bad in [
            "1-4",
            "4..1",
            "a..b",
            "3..3",
            "0..=18446744073709551615",
            "0..100000000",
        ] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_seeds_and_come_from_the_scheduler() {
        let seeds: Vec<u64> = (10..27).collect();
        let mut all: Vec<u64> = (0..4).flat_map(|i| shard_seeds(&seeds, (i, 4))).collect();
        all.sort();
        assert_eq!(all, seeds, "every seed in exactly one shard");
        let none = |_: &str| None;
        assert_eq!(parse_shard(Some("2/8"), &none).unwrap(), (2, 8));
        assert!(parse_shard(Some("8/8"), &none).is_err());
        assert_eq!(parse_shard(None, &none).unwrap(), (0, 1));
        let k8s = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("3".into()),
            "JOB_COMPLETIONS" => Some("5".into()),
            _ => None,
        };
        assert_eq!(parse_shard(None, &k8s).unwrap(), (3, 5));
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("4".into()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".into()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".into()),
            _ => None,
        };
        assert_eq!(parse_shard(None, &slurm).unwrap(), (3, 4));
        // `--array=0-15:4`: ids 0, 4, 8, 12 are shards 0..4.
        let stepped = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("12".into()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".into()),
            "SLURM_ARRAY_TASK_STEP" => Some("4".into()),
            _ => None,
        };
        assert_eq!(parse_shard(None, &stepped).unwrap(), (3, 4));
        // An index without a count would silently run every seed in every pod.
        let index_only = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "2".to_string());
        assert!(parse_shard(None, &index_only).is_err());
    }

    #[test]
    fn budgets_are_runs_or_time() {
        assert_eq!(parse_budget("200").unwrap(), Budget::Runs(200));
        assert_eq!(
            parse_budget("90s").unwrap(),
            Budget::Time(Duration::from_secs(90))
        );
        assert_eq!(
            parse_budget("10m").unwrap(),
            Budget::Time(Duration::from_secs(600))
        );
        assert!(parse_budget("10 parsecs").is_err());
        assert!(
            parse_budget("307445734561825862m").is_err(),
            "overflow is an error"
        );
    }
}
