//! What a scenario measures about processes and requests: CPU time and peak RSS of a
//! process (Linux `/proc`), and latency percentiles.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// CPU time and memory of one process, read from `/proc/<pid>`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcUsage {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub peak_rss: u64,
}

/// The process's CPU time and peak RSS so far.
pub fn proc_usage(pid: u32) -> Result<ProcUsage> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<u64> { fields.get(i).context("short /proc/<pid>/stat")?.parse().map_err(Into::into) };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let total_ticks = ticks(14 - 3)? + ticks(15 - 3)?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let cpu = Duration::from_secs_f64(total_ticks as f64 / hz as f64);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) else {
        bail!("/proc/{pid}/status has no VmHWM (a zombie?)");
    };
    let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().context("parsing VmHWM")?;
    Ok(ProcUsage { cpu, peak_rss: kib * 1024 })
}

/// The CPU time so far of every live process in process group `pgid` (a server and the
/// workers it forked, such as PostgreSQL's backends).
pub fn group_cpu(pgid: u32) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Field 5 (pgrp) is the third after the parenthesised command name.
        let pgrp = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            // A process that exited since the listing is skipped.
            total += proc_usage(pid).map(|u| u.cpu).unwrap_or_default();
        }
    }
    Ok(total)
}

/// A run's wall time as its SuperLink recorded it: `finished_at - pending_at` (the
/// ISO-8601 timestamps of the Exec API's `ListRuns`), so neither the CLI's start-up nor a
/// harness's polling is in it.
pub fn run_wall_time(run: &sepal_proto::pb::Run) -> Result<Duration> {
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("run {}: bad timestamp {s:?}", run.run_id))
    };
    let (from, to) = (parse(&run.pending_at)?, parse(&run.finished_at)?);
    match (to - from).to_std() {
        Ok(d) => Ok(d),
        Err(_) => bail!("run {} finished ({to}) before it was submitted ({from})", run.run_id),
    }
}

/// Request latencies, for percentiles.
#[derive(Clone, Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// An empty set.
    pub fn new() -> Latencies {
        Latencies(Vec::new())
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds all of `other`'s samples.
    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q`-quantile (0.0..=1.0, nearest rank); zero without samples.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    /// The mean; zero without samples.
    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut l = Latencies::new();
        for ms in (1..=100).rev() {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.quantile(0.5), Duration::from_millis(50));
        assert_eq!(l.quantile(0.99), Duration::from_millis(99));
        assert_eq!(l.quantile(1.0), Duration::from_millis(100));
        assert_eq!(l.mean(), Duration::from_micros(50_500));
        assert_eq!(Latencies::new().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn run_timestamps_give_the_wall_time() {
        let run = |from: &str, to: &str| sepal_proto::pb::Run {
            pending_at: from.into(),
            finished_at: to.into(),
            ..Default::default()
        };
        let d = run_wall_time(&run("2026-11-28T01:02:03.250000+00:00", "2026-11-28T01:02:13.500000+00:00"));
        assert_eq!(d.unwrap(), Duration::from_millis(10_250));
        assert!(run_wall_time(&run("2026-11-28T01:02:13+00:00", "2026-11-28T01:02:03+00:00")).is_err());
        assert!(run_wall_time(&run("", "2026-11-28T01:02:03+00:00")).is_err());
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let u = proc_usage(std::process::id()).unwrap();
        assert!(u.peak_rss > 1024 * 1024, "{u:?}");
        assert!(u.cpu > Duration::ZERO, "{u:?}");
        assert!(proc_usage(u32::MAX).is_err());
    }
}
