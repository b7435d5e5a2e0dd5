//! `sepal-bench`: runs benchmark scenarios and writes their tables (see the crate docs and
//! docs/benchmarks.md). Usually started by `scripts/bench.sh`, which builds in release mode
//! and installs the Python venv first.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use sepal_bench::{report, Machine, Opts, Scenario};

/// Benchmarks Sepal against Python Flower 1.20.0 on this machine.
#[derive(Parser, Debug)]
#[command(name = "sepal-bench", version)]
struct Cli {
    /// Scenarios to run (all when none is given).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Tiny sizes and counts: checks the scenario end to end in seconds.
    #[arg(long)]
    smoke: bool,
    /// The Markdown file whose scenario sections are replaced with the new results
    /// [default: docs/benchmarks.md, or none with --smoke].
    #[arg(long)]
    doc: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let opts = Opts { smoke: cli.smoke };
    let scenarios = if cli.scenarios.is_empty() { Scenario::ALL.to_vec() } else { cli.scenarios };
    let doc = cli.doc.or_else(|| (!cli.smoke).then(|| sepal_tests::repo_root().join("docs/benchmarks.md")));
    let machine = Machine::detect();
    eprintln!("sepal-bench on {}", machine.summary());
    for s in scenarios {
        eprintln!("== {} ==", s.id());
        let r = s.run(&opts).with_context(|| format!("scenario {}", s.id()))?;
        print!("{}", r.markdown(&machine));
        if let Some(doc) = &doc {
            report::update_doc(doc, &r, &machine)?;
            eprintln!("updated {}", doc.display());
        }
    }
    Ok(())
}
