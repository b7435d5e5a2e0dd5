//! The bridge from the synchronous [`LinkState`](crate::state::LinkState) trait to the
//! async PostgreSQL driver.
//!
//! The trait stays synchronous (its callers are many, async and not), while tokio-postgres
//! and its pool are async. The backend owns a small multi-thread runtime of its own, on
//! which the pool's connections live and every query runs. A call spawns its future there
//! and waits for the answer on a channel:
//!
//! - on a worker of a multi-thread tokio runtime, the wait is wrapped in
//!   [`tokio::task::block_in_place`], so that the caller's runtime moves its other tasks to
//!   other workers meanwhile;
//! - on a current-thread runtime (where `block_in_place` panics) or outside any runtime,
//!   the thread simply blocks, as it would on the SQLite backend's fsync; the queries make
//!   progress anyway, on the backend's own runtime.
//!
//! `Runtime::block_on` is never used: it panics when called inside a runtime.

use std::future::Future;
use std::sync::mpsc;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::state::{StateError, StateResult};

/// Worker threads of the backend's runtime: the queries themselves wait on the network, so
/// two threads keep many connections busy.
const WORKERS: usize = 2;

/// The backend's own runtime; see the module docs.
pub(super) struct Bridge {
    // `Option` so that `Drop` can hand it to `shutdown_background` (dropping a runtime
    // inside another runtime's context panics; shutting down in the background does not).
    runtime: Option<Runtime>,
}

impl Bridge {
    /// Starts the runtime.
    pub(super) fn new() -> StateResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("sepal-postgres")
            .enable_all()
            .build()
            .map_err(|e| StateError::Backend(format!("PostgreSQL: cannot start the driver's runtime: {e}")))?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Runs `future` on the backend's runtime without waiting for it (a shut-down backend
    /// drops it).
    pub(super) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(future);
        }
    }

    /// Runs `future` on the backend's runtime and waits for its output.
    pub(super) fn run<T, F>(&self, future: F) -> StateResult<T>
    where
        F: Future<Output = StateResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(StateError::Backend("PostgreSQL: the backend is shut down".into()));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            // The receiver is gone only if the caller is; nobody is left to tell.
            let _ = tx.send(future.await);
        });
        let wait = move || {
            rx.recv().unwrap_or_else(|_| {
                Err(StateError::Backend("PostgreSQL: the query task ended without an answer (it panicked)".into()))
            })
        };
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
