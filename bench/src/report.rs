//! Results as Markdown: one section per scenario (its command, the machine, tables and
//! notes), written into `docs/benchmarks.md` between the scenario's markers.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

/// A Markdown table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Cells, one `Vec` per row (as many as the header).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as GitHub Markdown.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.header);
        s.push_str(&line(&vec!["---".to_string(); self.header.len()]));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

/// One scenario's results.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's id (`e2e`, `dispatch`, ...): its CLI name and its markers in the doc.
    pub scenario: &'static str,
    /// Section title.
    pub title: String,
    /// The exact command that produced it.
    pub command: String,
    /// Tables, in order, each with an optional caption line.
    pub tables: Vec<(String, Table)>,
    /// Remarks printed under the tables (what was measured, where Sepal is not ahead).
    pub notes: Vec<String>,
    /// How long the scenario took.
    pub elapsed: Duration,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &'static str, title: &str, command: String) -> Report {
        Report {
            scenario,
            title: title.to_string(),
            command,
            tables: Vec::new(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The section, markers included.
    pub fn markdown(&self, machine: &Machine) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "<!-- bench:{} -->", self.scenario);
        let _ = writeln!(s, "### {}\n", self.title);
        let _ = writeln!(
            s,
            "Measured {} on {} (scenario took {:.0} s). Command: `{}`\n",
            machine.date,
            machine.summary(),
            self.elapsed.as_secs_f64(),
            self.command
        );
        for (caption, table) in &self.tables {
            if !caption.is_empty() {
                let _ = writeln!(s, "{caption}\n");
            }
            s.push_str(&table.markdown());
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        let _ = writeln!(s, "<!-- /bench:{} -->", self.scenario);
        s
    }
}

/// The machine and software a result was measured on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Logical CPUs.
    pub cores: usize,
    /// Physical memory in GiB.
    pub mem_gib: f64,
    /// CPU model name.
    pub cpu: String,
    /// The Sepal commit (`git describe --always --dirty`), if known.
    pub sepal_rev: String,
}

impl Machine {
    /// Reads the machine's facts (Linux `/proc`).
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_string();
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let sepal_rev = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(sepal_tests::repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Machine {
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_gib: mem_kib / (1024.0 * 1024.0),
            cpu,
            sepal_rev,
        }
    }

    /// "2 cores (CPU model), 23.4 GiB, Sepal <rev>, Flower 1.20.0".
    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB RAM, Sepal {}, Flower 1.20.0",
            self.cores, self.cpu, self.mem_gib, self.sepal_rev
        )
    }
}

/// Replaces the scenario's section in `doc` (between `<!-- bench:<id> -->` and
/// `<!-- /bench:<id> -->`), or appends it when the doc has none.
pub fn update_doc(doc: &Path, report: &Report, machine: &Machine) -> Result<()> {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let section = report.markdown(machine);
    let (start, end) = (format!("<!-- bench:{} -->", report.scenario), format!("<!-- /bench:{} -->", report.scenario));
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if a < b => {
            let b = b + end.len();
            let b = if text[b..].starts_with('\n') { b + 1 } else { b };
            format!("{}{section}{}", &text[..a], &text[b..])
        }
        _ => format!("{}{}{section}", text, if text.is_empty() || text.ends_with("\n\n") { "" } else { "\n" }),
    };
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))
}

/// `12.3 s`, `45.6 ms`, `789 µs`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// How many times `baseline` is `value` (`baseline / value`; >1 means `value` is better
/// for a cost), as `12.3×`; `-` when either is zero.
pub fn fmt_ratio(baseline: f64, value: f64) -> String {
    if baseline <= 0.0 || value <= 0.0 || !baseline.is_finite() || !value.is_finite() {
        return "-".to_string();
    }
    let r = baseline / value;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &'static str, cell: &str) -> Report {
        let mut r = Report::new(id, "Title", "cmd".into());
        let mut t = Table::new(&["a", "b"]);
        t.row(vec![cell.into(), "2".into()]);
        r.tables.push((String::new(), t));
        r
    }

    #[test]
    fn a_section_is_replaced_in_place_and_others_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("b.md");
        std::fs::write(&doc, "# Benchmarks\n\nintro\n").unwrap();
        let m = Machine::detect();
        update_doc(&doc, &report("one", "first"), &m).unwrap();
        update_doc(&doc, &report("two", "x"), &m).unwrap();
        update_doc(&doc, &report("one", "second"), &m).unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(text.starts_with("# Benchmarks\n\nintro\n"));
        assert!(text.contains("| second | 2 |") && !text.contains("first"), "{text}");
        assert!(text.find("bench:one").unwrap() < text.find("bench:two").unwrap(), "{text}");
        assert_eq!(text.matches("<!-- bench:one -->").count(), 1);
    }

    #[test]
    fn units_and_ratios_read_well() {
        assert_eq!(fmt_duration(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(fmt_duration(Duration::from_micros(2_500)), "2.5 ms");
        assert_eq!(fmt_bytes(3 << 29), "1.50 GiB");
        assert_eq!(fmt_ratio(30.0, 2.0), "15×");
        assert_eq!(fmt_ratio(3.0, 2.0), "1.5×");
        assert_eq!(fmt_ratio(0.0, 2.0), "-");
    }
}
