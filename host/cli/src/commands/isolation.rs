//! `--isolation`, as `flower-superlink` and `flower-supernode` take it: who runs the apps.

use sepal_executor::Isolation;

/// Flower's `--isolation` values: the SuperLink or SuperNode runs its apps itself
/// (`subprocess`), or an external, separately managed process connects to it (`process`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum IsolationArg {
    /// The SuperLink or SuperNode runs its apps itself.
    Subprocess,
    /// An external process connects over ServerAppIo / ClientAppIo.
    Process,
}

impl From<IsolationArg> for Isolation {
    fn from(arg: IsolationArg) -> Self {
        match arg {
            IsolationArg::Subprocess => Isolation::Subprocess,
            IsolationArg::Process => Isolation::Process,
        }
    }
}
