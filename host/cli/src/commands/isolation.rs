//! `--isolation`, as `flower-superlink` and `flower-supernode` take it: who runs the apps.

/// Flower's `--isolation` values: the SuperLink or SuperNode starts its apps itself
/// (`subprocess`), or an external, separately managed process connects to it (`process`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum IsolationArg {
    Subprocess,
    Process,
}

impl IsolationArg {
    /// The matching one of a component's own isolation values.
    pub fn select<T>(self, subprocess: T, process: T) -> T {
        match self {
            Self::Subprocess => subprocess,
            Self::Process => process,
        }
    }
}
