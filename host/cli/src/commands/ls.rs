//! `sepal ls`: the runs of a federation, as `flwr ls` lists them.

use anyhow::bail;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use sepal_proto::pb;
use serde::Serialize;

use crate::exec::AppFederationArgs;
use crate::output::{out, out_json, report, OutputFormat};

/// `flwr ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    federation: AppFederationArgs,
    /// List all runs (the default).
    #[arg(long, conflicts_with = "run_id")]
    runs: bool,
    /// Show only this run.
    #[arg(long, value_name = "RUN_ID")]
    run_id: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    format: OutputFormat,
}

/// One run, formatted as `flwr ls` shows it (the JSON keys are Flower's).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunRow {
    /// The run id.
    pub run_id: u64,
    /// `<publisher>/<name>`.
    pub fab_id: String,
    /// `<name>`.
    pub fab_name: String,
    /// The app version.
    pub fab_version: String,
    /// The first 8 hex digits of the FAB hash.
    pub fab_hash: String,
    /// `pending`, `starting`, `running` or `finished:<sub-status>`.
    pub status: String,
    /// `HH:MM:SS` (or `Nd HH:MM:SS`) since the run started running.
    pub elapsed: String,
    /// `YYYY-MM-DD HH:MM:SSZ` or `N/A`.
    pub created_at: String,
    /// `YYYY-MM-DD HH:MM:SSZ` or `N/A`.
    pub running_at: String,
    /// `YYYY-MM-DD HH:MM:SSZ` or `N/A`.
    pub finished_at: String,
}

#[derive(Serialize)]
struct LsJson<'a> {
    success: bool,
    runs: &'a [RunRow],
}

impl LsArgs {
    /// Lists the runs.
    pub async fn run(self) -> anyhow::Result<()> {
        let format = self.format;
        report(format, self.list().await)
    }

    async fn list(self) -> anyhow::Result<()> {
        // `--runs` asks for what is listed anyway.
        let LsArgs { federation, runs: _, run_id, format } = self;
        let mut exec = federation.connect().await?;
        let request = pb::ListRunsRequest { run_id };
        let response = match exec.client.list_runs(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(exec.error(&status, "the SuperLink refused to list the runs")),
        };
        if let Some(run_id) = run_id {
            if !response.run_dict.contains_key(&run_id) {
                bail!("Run ID {run_id} not found");
            }
        }
        let rows = format_runs(response.run_dict.into_values(), &response.now);
        match format {
            OutputFormat::Json => out_json(&LsJson { success: true, runs: &rows }),
            OutputFormat::Default => out(&table(&rows)),
        }
    }
}

/// Formats runs as `flwr ls` does, oldest first; `now` (the response's) ends the elapsed time
/// of runs still going.
pub fn format_runs(runs: impl IntoIterator<Item = pb::Run>, now: &str) -> Vec<RunRow> {
    let now = parse_time(now).unwrap_or_else(Utc::now);
    let mut runs: Vec<(Option<DateTime<Utc>>, pb::Run)> =
        runs.into_iter().map(|run| (parse_time(&run.pending_at), run)).collect();
    // Unparseable creation times last; the run id breaks ties so the order is stable.
    runs.sort_by_key(|(pending, run)| (pending.is_none(), *pending, run.run_id));
    runs.into_iter()
        .map(|(pending_at, run)| {
            let running_at = parse_time(&run.running_at);
            let finished_at = parse_time(&run.finished_at);
            let elapsed = match running_at {
                Some(start) => finished_at.unwrap_or(now) - start,
                None => TimeDelta::zero(),
            };
            let status = run.status.unwrap_or_default();
            let status = if status.sub_status.is_empty() {
                status.status
            } else {
                format!("{}:{}", status.status, status.sub_status)
            };
            RunRow {
                run_id: run.run_id,
                fab_name: run.fab_id.rsplit('/').next().unwrap_or_default().to_string(),
                fab_hash: run.fab_hash.chars().take(sepal_fab::FAB_HASH_TRUNCATION).collect(),
                fab_id: run.fab_id,
                fab_version: run.fab_version,
                status,
                elapsed: format_elapsed(elapsed),
                created_at: format_time(pending_at),
                running_at: format_time(running_at),
                finished_at: format_time(finished_at),
            }
        })
        .collect()
}

/// Parses an ISO-8601 time as Python's `datetime.fromisoformat` writes it (`+00:00`, or no
/// offset for UTC); `None` for an empty or unreadable one.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if text.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

/// `2025-01-02 03:04:05Z` (seconds truncated), or `N/A`: Flower's `isoformat8601_utc` with a space.
pub fn format_time(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(|| "N/A".to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// Flower's `format_timedelta`: `HH:MM:SS`, with `Nd ` in front past a day. Like Python's
/// `timedelta`, a negative span counts whole days down and the rest up (-1 s is `23:59:59`).
pub fn format_elapsed(delta: TimeDelta) -> String {
    const DAY_US: i64 = 86_400_000_000;
    let micros = delta.num_microseconds().unwrap_or(i64::MAX);
    let days = micros.div_euclid(DAY_US);
    let seconds = micros.rem_euclid(DAY_US) / 1_000_000;
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if days > 0 {
        format!("{days}d {hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

/// The `flwr ls` table (rich's heavy-head box with lines between rows), without colours.
pub fn table(rows: &[RunRow]) -> String {
    const HEADERS: [&str; 7] = ["Run ID", "FAB", "Status", "Elapsed", "Created At", "Running At", "Finished At"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.run_id.to_string(),
                format!("{} (v{})", r.fab_id, r.fab_version),
                r.status.clone(),
                r.elapsed.clone(),
                r.created_at.clone(),
                r.running_at.clone(),
                r.finished_at.clone(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule = |left: &str, fill: &str, mid: &str, right: &str| {
        let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
        format!("{left}{}{right}\n", parts.join(mid))
    };
    let line = |edge: &str, cells: &[String], center: bool| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| if center { format!(" {cell:^width$} ") } else { format!(" {cell:<width$} ") })
            .collect();
        format!("{edge}{}{edge}\n", parts.join(edge))
    };
    let mut text = rule("┏", "━", "┳", "┓");
    text += &line("┃", &HEADERS.map(String::from), true);
    text += &rule("┡", "━", "╇", "┩");
    for (i, row) in cells.iter().enumerate() {
        if i > 0 {
            text += &rule("├", "─", "┼", "┤");
        }
        text += &line("│", row, false);
    }
    text += &rule("└", "─", "┴", "┘");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, status: &str, sub: &str, pending: &str, running: &str, finished: &str) -> pb::Run {
        pb::Run {
            run_id: id,
            fab_id: "flwrlabs/app".into(),
            fab_version: "1.0.0".into(),
            fab_hash: "0123456789abcdef".repeat(4),
            pending_at: pending.into(),
            running_at: running.into(),
            finished_at: finished.into(),
            status: Some(pb::RunStatus { status: status.into(), sub_status: sub.into(), details: String::new() }),
            ..Default::default()
        }
    }

    #[test]
    fn elapsed_like_python_timedelta() {
        assert_eq!(format_elapsed(TimeDelta::zero()), "00:00:00");
        assert_eq!(format_elapsed(TimeDelta::milliseconds(3_723_999)), "01:02:03");
        assert_eq!(format_elapsed(TimeDelta::seconds(2 * 86_400 + 61)), "2d 00:01:01");
        assert_eq!(format_elapsed(TimeDelta::seconds(-1)), "23:59:59");
    }

    #[test]
    fn times_parse_and_format() {
        let t = parse_time("2025-03-04T05:06:07.891011+00:00").unwrap();
        assert_eq!(format_time(Some(t)), "2025-03-04 05:06:07Z");
        // Python's isoformat drops zero microseconds; naive times are taken as UTC.
        assert!(parse_time("2025-03-04T05:06:07+00:00").is_some());
        assert_eq!(format_time(parse_time("2025-03-04T05:06:07")), "2025-03-04 05:06:07Z");
        assert_eq!(format_time(parse_time("")), "N/A");
        assert_eq!(format_time(parse_time("yesterday")), "N/A");
    }

    #[test]
    fn rows_status_elapsed_and_order() {
        let now = "2025-01-01T12:00:00.000000+00:00";
        let runs = [
            run(2, "running", "", "2025-01-01T11:00:00+00:00", "2025-01-01T11:30:00+00:00", ""),
            run(
                1,
                "finished",
                "completed",
                "2025-01-01T10:00:00+00:00",
                "2025-01-01T10:00:01.5+00:00",
                "2025-01-01T10:00:11+00:00",
            ),
            run(3, "pending", "", "2025-01-01T11:59:00+00:00", "", ""),
        ];
        let rows = format_runs(runs, now);
        assert_eq!(rows.iter().map(|r| r.run_id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(rows[0].status, "finished:completed");
        assert_eq!(rows[0].elapsed, "00:00:09");
        assert_eq!(rows[1].status, "running");
        assert_eq!(rows[1].elapsed, "00:30:00");
        assert_eq!(rows[2].status, "pending");
        assert_eq!(rows[2].elapsed, "00:00:00");
        assert_eq!(rows[2].running_at, "N/A");
        assert_eq!(rows[2].created_at, "2025-01-01 11:59:00Z");
        assert_eq!(rows[0].fab_hash, "01234567");
        assert_eq!(rows[0].fab_name, "app");
    }

    #[test]
    fn json_shape_is_flowers() {
        let rows = format_runs([run(7, "finished", "stopped", "2025-01-01T10:00:00+00:00", "", "")], "");
        let json = serde_json::to_value(LsJson { success: true, runs: &rows }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"success": true, "runs": [{
                "run-id": 7, "fab-id": "flwrlabs/app", "fab-name": "app", "fab-version": "1.0.0",
                "fab-hash": "01234567", "status": "finished:stopped", "elapsed": "00:00:00",
                "created-at": "2025-01-01 10:00:00Z", "running-at": "N/A", "finished-at": "N/A",
            }]})
        );
        // Key order as Flower prints it.
        let text = serde_json::to_string(&rows[0]).unwrap();
        let keys = [
            "run-id",
            "fab-id",
            "fab-name",
            "fab-version",
            "fab-hash",
            "status",
            "elapsed",
            "created-at",
            "running-at",
            "finished-at",
        ];
        let positions: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn table_layout() {
        let rows = format_runs([run(7, "pending", "", "2025-01-01T10:00:00+00:00", "", "")], "");
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[1].starts_with("┃ Run ID ┃          FAB          ┃ Status  ┃"), "{text}");
        assert!(lines[3].starts_with("│ 7      │ flwrlabs/app (v1.0.0) │ pending │ 00:00:00 │"), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "{text}");
        assert_eq!(table(&[]).lines().count(), 4);
    }
}
