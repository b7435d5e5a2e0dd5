//! Leases on runs' ServerApps, so that among SuperLink replicas sharing one state exactly
//! one runs a run's ServerApp at a time, and another takes over when it dies.
//!
//! The launcher takes a run's lease before it starts the run's ServerApp and renews it
//! while the app runs; an app whose lease is lost (its replica could not renew in time and
//! another took the run over) is stopped. With a state of one process every lease is the
//! process's own and nothing is written.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::link::Link;

/// How long a lease lasts unless renewed: a dead replica's runs are taken over after this.
/// Well under the in-process ServerApp's heartbeat patience (60 s), so a run taken over is
/// not failed as silent first.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often a held lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(3);

/// This process's claim on runs.
#[derive(Clone)]
pub struct Leases {
    link: Arc<Link>,
    owner: Arc<str>,
    /// The runs whose ServerApp runs here.
    mine: Arc<Mutex<HashSet<u64>>>,
}

impl Leases {
    /// Leases held under a name no other process uses.
    pub fn new(link: Arc<Link>) -> Self {
        let owner = format!("superlink-{}-{:016x}", std::process::id(), rand::thread_rng().gen::<u64>());
        Leases { link, owner: owner.into(), mine: Arc::default() }
    }

    /// Whether the run's ServerApp runs here.
    pub fn is_mine(&self, run_id: u64) -> bool {
        self.mine.lock().unwrap_or_else(|e| e.into_inner()).contains(&run_id)
    }

    /// Records that the run's ServerApp no longer runs here (its lease then lapses).
    pub fn release(&self, run_id: u64) {
        self.mine.lock().unwrap_or_else(|e| e.into_inner()).remove(&run_id);
    }

    /// Whether other processes share the state (and leases matter).
    pub fn shared(&self) -> bool {
        self.link.state.shared()
    }

    /// Takes the run's lease for a ServerApp about to start here; whether this process
    /// holds it now. A state error counts as not holding it.
    pub fn take(&self, run_id: u64) -> bool {
        match self.link.state.lease_run(run_id, &self.owner, LEASE_TTL.as_secs_f64()) {
            Ok(held) => {
                if held {
                    self.mine.lock().unwrap_or_else(|e| e.into_inner()).insert(run_id);
                }
                held
            }
            Err(e) => {
                tracing::warn!(run_id, "cannot take the run's ServerApp lease: {e}");
                false
            }
        }
    }

    /// Renews the run's lease until it is lost, then completes: another replica may own
    /// the run from then on. Never completes when the state is not shared.
    pub async fn hold(&self, run_id: u64) {
        if !self.shared() {
            return std::future::pending().await;
        }
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            let link = self.link.clone();
            let owner = self.owner.clone();
            let ttl = LEASE_TTL.as_secs_f64();
            let held = tokio::task::spawn_blocking(move || link.state.lease_run(run_id, &owner, ttl)).await;
            match held {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(run_id, "another SuperLink replica took the run over: its ServerApp stops here");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(run_id, "cannot renew the run's ServerApp lease: {e}"),
                Err(e) => tracing::warn!(run_id, "lease renewal failed: {e}"),
            }
            if renewed.elapsed() >= LEASE_TTL {
                tracing::warn!(run_id, "the run's ServerApp lease lapsed: its ServerApp stops here");
                return;
            }
        }
    }
}
