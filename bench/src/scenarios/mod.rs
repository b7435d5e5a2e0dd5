//! One module per scenario; each has `run(&Opts) -> Result<Report>`.

pub mod dispatch;
pub mod e2e;
pub mod fleet_load;
pub mod fleet_replicas;
pub mod large_model;
pub mod noisy;
pub mod sandbox;
