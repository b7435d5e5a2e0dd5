//! Sepal's benchmark harness: each scenario runs Sepal and Python Flower 1.20.0 (from the
//! pinned venv) side by side on this machine, on loopback, and reports absolute figures and
//! Flower/Sepal ratios as a Markdown [`Report`].
//!
//! Scenarios ([`Scenario`]): `e2e` (FedAvg wall time), `dispatch` (SuperNode message-to-
//! reply latency), `fleet-load` (simulated nodes against the Fleet API), `large-model`
//! (1 GiB through SuperLink and SuperNodes), `sandbox` (Wasm vs native aggregation and
//! per-message overhead). Each bounds its own time and load and stops every process it
//! started (the process guards of `sepal-tests`). [`Opts::smoke`] shrinks every scenario to
//! a few seconds of work; the test suite runs that so the harness cannot rot.
//!
//! Run one with `scripts/bench.sh <scenario>` (release build, venv, then `sepal-bench`);
//! docs/benchmarks.md holds the latest results.

pub mod measure;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

pub use report::{Machine, Report, Table};

/// Options every scenario takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Smallest sizes and counts (one round, two nodes, ...): checks that the scenario works,
    /// measures nothing worth publishing.
    pub smoke: bool,
}

/// The benchmark scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// End-to-end FedAvg wall time: Flower, Sepal + Python ClientApps, Sepal + Wasm.
    E2e,
    /// From a message landing at a SuperNode to its reply being pushed.
    Dispatch,
    /// Simulated nodes heartbeating and pulling against a SuperLink's Fleet API.
    FleetLoad,
    /// The same load against SuperLink replicas on PostgreSQL behind HAProxy.
    FleetReplicas,
    /// A 1 GiB ArrayRecord to 2 nodes and back.
    LargeModel,
    /// Wasm vs native FedAvg aggregation, and per-message sandbox overhead.
    Sandbox,
    /// The quickstart alone and beside a hostile run.
    Noisy,
}

impl Scenario {
    /// Every scenario, in the order of docs/benchmarks.md.
    pub const ALL: [Scenario; 7] = [
        Scenario::E2e,
        Scenario::Dispatch,
        Scenario::FleetLoad,
        Scenario::FleetReplicas,
        Scenario::LargeModel,
        Scenario::Sandbox,
        Scenario::Noisy,
    ];

    /// The scenario's name on the command line and in the doc's markers.
    pub fn id(self) -> &'static str {
        match self {
            Scenario::E2e => "e2e",
            Scenario::Dispatch => "dispatch",
            Scenario::FleetLoad => "fleet-load",
            Scenario::FleetReplicas => "fleet-replicas",
            Scenario::LargeModel => "large-model",
            Scenario::Sandbox => "sandbox",
            Scenario::Noisy => "noisy",
        }
    }

    /// Runs the scenario and returns its report (with the command that reproduces it).
    pub fn run(self, opts: &Opts) -> Result<Report> {
        let started = Instant::now();
        let mut report = match self {
            Scenario::E2e => scenarios::e2e::run(opts),
            Scenario::Dispatch => scenarios::dispatch::run(opts),
            Scenario::FleetLoad => scenarios::fleet_load::run(opts),
            Scenario::FleetReplicas => scenarios::fleet_replicas::run(opts),
            Scenario::LargeModel => scenarios::large_model::run(opts),
            Scenario::Sandbox => scenarios::sandbox::run(opts),
            Scenario::Noisy => scenarios::noisy::run(opts),
        }?;
        report.elapsed = started.elapsed();
        report.command = format!("scripts/bench.sh {}{}", self.id(), if opts.smoke { " --smoke" } else { "" });
        Ok(report)
    }
}

/// `bench/apps/<name>`: a benchmark's Flower app.
pub fn bench_app(name: &str) -> PathBuf {
    sepal_tests::repo_root().join("bench").join("apps").join(name)
}
