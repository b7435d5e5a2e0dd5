//! `sepal`: Flower's deployment runtime in Rust.
//!
//! Also answers to `flower-superlink` and `flower-supernode` by its program name, with Flower's flags, so
//! Flower's own deployment scripts run against it unchanged.

mod commands;
mod descriptors;
mod exec;
mod logging;
mod output;
mod shutdown;

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

/// Big buffers (a model's arrays on their way through) on huge pages, from one arena: see
/// `sepal_alloc`.
#[global_allocator]
static ALLOCATOR: sepal_alloc::HugeBuffers = sepal_alloc::HugeBuffers;

/// Flower's deployment runtime (SuperLink and SuperNode) with a WebAssembly sandbox.
#[derive(Parser)]
#[command(name = "sepal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole local federation in this process on a Wasm app (default: the quickstart).
    Demo(commands::demo::DemoArgs),
    /// Run a SuperLink (Flower's `flower-superlink`).
    Superlink(Box<commands::superlink::SuperlinkArgs>),
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
    /// Log in to a SuperLink that authenticates users (`flwr login`).
    Login(commands::login::LoginArgs),
}

impl Command {
    /// The command's log format (`--log-format` on the servers; text elsewhere).
    fn log_format(&self) -> logging::LogFormat {
        match self {
            Command::Superlink(args) => args.log.log_format,
            Command::Supernode(args) => args.log.log_format,
            _ => logging::LogFormat::Text,
        }
    }
}

/// The command chosen by the program name (`flower-superlink`, `flower-supernode`, with
/// Flower's flags) or else by the first argument.
fn parse(args: Vec<OsString>) -> Result<Command, clap::Error> {
    let program = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).unwrap_or("sepal");
    match program {
        "flower-superlink" => {
            commands::superlink::SuperlinkArgs::try_parse_from(args).map(|a| Command::Superlink(Box::new(a)))
        }
        "flower-supernode" => commands::supernode::SupernodeArgs::try_parse_from(args).map(Command::Supernode),
        _ => Cli::try_parse_from(args).map(|cli| cli.command),
    }
}

fn main() -> std::process::ExitCode {
    // Before any thread starts (see `sepal_alloc::share_one_arena` for what it is worth).
    sepal_alloc::share_one_arena();
    // A clap error prints the help, version or usage error and exits as clap always does.
    let command = parse(std::env::args_os().collect()).unwrap_or_else(|e| e.exit());
    // The demo prints the run's own log; the servers' logs would drown it.
    logging::init(if matches!(command, Command::Demo(_)) { "warn" } else { "info" }, command.log_format());
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
            Command::Superlink(args) => (*args).run().await,
            Command::Supernode(args) => args.run().await,
            Command::Serverapp(args) => args.run().await,
            Command::Clientapp(args) => args.run().await,
            Command::Build(args) => args.run().await,
            Command::Run(args) => args.run().await,
            Command::Ls(args) => args.run().await,
            Command::Log(args) => args.run().await,
            Command::Stop(args) => args.run().await,
            Command::Login(args) => args.run().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Command, clap::Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn flower_names_parse_flowers_flags() {
        let link = ["--insecure", "--fleet-api-address", "127.0.0.1:9092", "--exec-api-address", "127.0.0.1:9093"];
        let node = ["--insecure", "--superlink", "127.0.0.1:9092", "--node-config", "partition-id=0"];
        for program in ["flower-superlink", "/usr/local/bin/flower-superlink"] {
            let command = parse_args(&[&[program][..], &link].concat()).unwrap();
            assert!(matches!(command, Command::Superlink(_)), "{program}: {command:?}");
        }
        for program in ["flower-supernode", "/usr/local/bin/flower-supernode"] {
            let command = parse_args(&[&[program][..], &node].concat()).unwrap();
            assert!(matches!(command, Command::Supernode(_)), "{program}: {command:?}");
        }
        // Each name takes its own component's flags only.
        assert!(parse_args(&["flower-supernode", "--fleet-api-address", "127.0.0.1:9092"]).is_err());
        assert!(parse_args(&["flower-superlink", "--superlink", "127.0.0.1:9092"]).is_err());
    }

    /// Every flag of Flower 1.20's `flower-superlink` and `flower-supernode`, read from the
    /// usage line of the real programs in the venv (scripts/python-env.sh makes it), with a
    /// sample value where the flag takes one, is accepted.
    #[test]
    fn every_flag_of_flowers_programs_parses() {
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin");
        for program in ["flower-superlink", "flower-supernode"] {
            let help = std::process::Command::new(venv.join(program))
                .arg("--help")
                .output()
                .unwrap_or_else(|e| panic!("{program} --help ({e}): run scripts/python-env.sh first"));
            let usage = String::from_utf8_lossy(&help.stdout);
            let usage = usage.split("\n\n").next().unwrap_or_default();
            let mut args = vec![program.to_string()];
            // `[--flag VALUE]`, `[--flag {a,b}]`, `[--flag]`, `[--a | --b | --c]` (one taken).
            for group in usage.split('[').skip(1).map(|g| g.split(']').next().unwrap_or_default()) {
                let option = group.split(" | ").next().unwrap_or_default();
                let mut words = option.split_whitespace();
                let Some(flag) = words.next().filter(|f| f.starts_with("--")) else { continue };
                args.push(flag.to_string());
                if let Some(value) = words.next() {
                    args.push(sample_value(flag, value));
                }
            }
            assert!(args.len() > 10, "{program}: read too few flags from {usage}");
            if let Err(e) = parse(args.iter().map(OsString::from).collect()) {
                panic!("{program} {}: {e}", args[1..].join(" "));
            }
        }
    }

    /// A value `flag` accepts; `metavar` is what Flower's usage shows (`{a,b}` for choices).
    fn sample_value(flag: &str, metavar: &str) -> String {
        if let Some(choices) = metavar.strip_prefix('{') {
            return choices.split([',', '}']).next().unwrap_or_default().to_string();
        }
        match flag {
            "--fleet-api-num-workers" | "--max-retries" | "--max-wait-time" => "1".into(),
            "--node-config" | "--executor-config" => "a=1".into(),
            "--executor" => "flwr.superexec.deployment:executor".into(),
            f if f.ends_with("-address") || f == "--superlink" => "127.0.0.1:9".into(),
            _ => "x".into(),
        }
    }

    #[test]
    fn other_names_take_a_subcommand() {
        let command = parse_args(&["sepal", "supernode", "--insecure", "--superlink", "127.0.0.1:9092"]).unwrap();
        assert!(matches!(command, Command::Supernode(_)), "{command:?}");
        let command = parse_args(&["/opt/bin/sepal", "superlink", "--insecure"]).unwrap();
        assert!(matches!(command, Command::Superlink(_)), "{command:?}");
        assert!(parse_args(&["sepal", "--insecure", "--superlink", "127.0.0.1:9092"]).is_err());
    }
}
