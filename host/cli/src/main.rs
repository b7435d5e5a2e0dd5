//! `sepal`: Flower's deployment runtime in Rust.
//!
//! Also answers to `flower-superlink` and `flower-supernode` by its program name, with Flower's flags, so
//! Flower's own deployment scripts run against it unchanged.

mod commands;
mod exec;
mod output;
mod shutdown;

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

/// Flower's deployment runtime (SuperLink and SuperNode) with a WebAssembly sandbox.
#[derive(Parser)]
#[command(name = "sepal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole local federation in this process on a Wasm app (default: the quickstart).
    Demo(commands::demo::DemoArgs),
    /// Run a SuperLink (Flower's `flower-superlink`).
    Superlink(commands::superlink::SuperlinkArgs),
    /// Run a SuperNode (Flower's `flower-supernode`).
    Supernode(commands::supernode::SupernodeArgs),
    /// Run Wasm ServerApps for a SuperLink in process isolation (as `flwr-serverapp`).
    Serverapp(commands::serverapp::ServerappArgs),
    /// Run Wasm ClientApps for a SuperNode in process isolation (as `flwr-clientapp`).
    Clientapp(commands::clientapp::ClientappArgs),
    /// Build a FAB from an app directory, `.wasm` components included (`flwr build`).
    Build(commands::build::BuildArgs),
    /// Submit an app or a `.fab` file to a SuperLink (`flwr run`).
    Run(commands::run::RunArgs),
    /// List the runs of a federation (`flwr ls`).
    Ls(commands::ls::LsArgs),
    /// Show a run's log (`flwr log`).
    Log(commands::log::LogArgs),
    /// Stop a run (`flwr stop`).
    Stop(commands::stop::StopArgs),
}

/// Logs to stderr; `SEPAL_LOG` (an `EnvFilter` spec) overrides the command's default level.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEPAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// The command chosen by the program name (`flower-superlink`) or by the first argument.
fn parse(args: Vec<OsString>) -> Command {
    let program = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).unwrap_or("sepal");
    match program {
        "flower-superlink" => Command::Superlink(commands::superlink::SuperlinkArgs::parse_from(args)),
        _ => Cli::parse_from(args).command,
    }
}

fn main() -> std::process::ExitCode {
    let command = parse(std::env::args_os().collect());
    // The demo prints the run's own log; the servers' logs would drown it.
    init_tracing(if matches!(command, Command::Demo(_)) { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Demo(args) => args.run().await,
            Command::Superlink(args) => args.run().await,
            Command::Supernode(args) => args.run().await,
            Command::Serverapp(args) => args.run().await,
            Command::Clientapp(args) => args.run().await,
            Command::Build(args) => args.run().await,
            Command::Run(args) => args.run().await,
            Command::Ls(args) => args.run().await,
            Command::Log(args) => args.run().await,
            Command::Stop(args) => args.run().await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
