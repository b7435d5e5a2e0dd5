//! The operator's flags for Wasm apps: limits, and what the sandbox may grant.
//! A FAB can grant itself nothing; only these flags widen the sandbox.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use sepal_executor::Settings;
use sepal_sandbox::{Grants, HttpLimits, Limits, SandboxConfig};

/// Flags shared by `sepal superlink` (ServerApps) and `sepal supernode` (ClientApps).
#[derive(Debug, clap::Args)]
pub struct WasmArgs {
    /// Memory one Wasm app may use, in MiB (at most 4096: a wasm32 app's address space).
    #[arg(long, default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    wasm_memory_mb: usize,
    /// Wall time one Wasm app invocation may take, in seconds [default: 600 for a
    /// ClientApp (which also stops before its message expires), 86400 for a ServerApp].
    #[arg(long)]
    wasm_time_limit: Option<f64>,
    /// Output kept per invocation and stream (stdout, stderr, log), in KiB; the rest is dropped.
    #[arg(long, default_value_t = 256)]
    wasm_output_kib: usize,
    /// App output copied into this process's own log per invocation (a ClientApp message,
    /// a ServerApp run), in KiB; past it, one notice says how much was left out
    /// [default: the --wasm-output-kib value].
    #[arg(long, value_name = "KIB")]
    wasm_host_log_kib: Option<usize>,
    /// TCP sockets one Wasm app invocation may hold open at once (only with
    /// --wasm-allow-connect); one more fails in the app with `new-socket-limit`.
    #[arg(long, default_value_t = Limits::default().sockets, value_name = "N")]
    wasm_max_sockets: usize,
    /// Host resources (sockets, files, streams, pollables) one Wasm app invocation may
    /// hold at once, at least 16; past it the invocation ends with an error naming this
    /// limit.
    #[arg(long, default_value_t = Limits::default().resources as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(16..))]
    wasm_max_resources: u64,
    /// Mount a host directory read-only into Wasm apps: HOST_DIR[:GUEST_PATH]
    /// (GUEST_PATH defaults to /data). Repeatable.
    #[arg(long, value_name = "HOST_DIR[:GUEST_PATH]")]
    wasm_data_dir: Vec<String>,
    /// Let Wasm apps open TCP connections to HOST:PORT (resolved at start). Repeatable.
    #[arg(long, value_name = "HOST:PORT")]
    wasm_allow_connect: Vec<String>,
    /// Let Wasm apps send HTTP requests (wasi:http) to ORIGIN = scheme://host[:port], e.g.
    /// http://127.0.0.1:5000 (the host name is checked at start). Any other origin is
    /// refused. Repeatable.
    #[arg(long, value_name = "ORIGIN")]
    wasm_allow_http: Vec<String>,
    /// Seconds a Wasm app's HTTP request may take to connect (only with --wasm-allow-http).
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().connect_timeout.as_secs_f64())]
    wasm_http_connect_timeout: f64,
    /// Seconds from sending a Wasm app's HTTP request to the response's first byte.
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().first_byte_timeout.as_secs_f64())]
    wasm_http_first_byte_timeout: f64,
    /// The longest pause, in seconds, between two chunks of an HTTP response to a Wasm app.
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().between_bytes_timeout.as_secs_f64())]
    wasm_http_between_bytes_timeout: f64,
    /// Bytes of one HTTP response body a Wasm app may read, in KiB; past it the body ends
    /// with an error.
    #[arg(long, value_name = "KIB", default_value_t = HttpLimits::default().response_bytes / 1024)]
    wasm_http_max_response_kib: u64,
    /// HTTP requests one Wasm app invocation may have in flight at once; one more fails
    /// with connection-limit-reached.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().concurrent_requests,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    wasm_http_max_requests: usize,
    /// Keep compiled Wasm components here (created with mode 0700; each file is checked
    /// against its sha256 before it is loaded) [default: $XDG_CACHE_HOME/sepal/wasm, else
    /// ~/.cache/sepal/wasm].
    #[arg(long, value_name = "DIR", conflicts_with = "wasm_no_cache")]
    wasm_cache_dir: Option<PathBuf>,
    /// Keep compiled Wasm components in memory only (compile each once per process).
    #[arg(long)]
    wasm_no_cache: bool,
}

impl WasmArgs {
    /// Everything the flags set, with `default_time` when `--wasm-time-limit` is not given.
    pub fn settings(&self, default_time: Duration) -> anyhow::Result<Settings> {
        let cache = match (&self.wasm_cache_dir, self.wasm_no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => sepal_executor::default_cache_dir(),
        };
        let limits = self.limits(default_time)?;
        // The engine's memory slots must fit the limit, or the sandbox's own 1 GiB default
        // would quietly cap every app below what the operator allowed.
        let engine =
            SandboxConfig { artifact_dir: cache, max_memory_bytes: limits.memory_bytes, ..SandboxConfig::default() };
        let host_log_bytes = self.wasm_host_log_kib.unwrap_or(self.wasm_output_kib).saturating_mul(1024);
        Ok(Settings { limits, grants: self.grants()?, engine, host_log_bytes })
    }

    /// The limits, with `default_time` when `--wasm-time-limit` is not given.
    pub fn limits(&self, default_time: Duration) -> anyhow::Result<Limits> {
        let time = match self.wasm_time_limit {
            Some(secs) => Duration::try_from_secs_f64(secs).context("--wasm-time-limit")?,
            None => default_time,
        };
        let output = self.wasm_output_kib.saturating_mul(1024);
        Ok(Limits {
            memory_bytes: self.wasm_memory_mb.saturating_mul(1024 * 1024),
            deadline: time,
            stdout_bytes: output,
            stderr_bytes: output,
            log_bytes: output,
            sockets: self.wasm_max_sockets,
            resources: usize::try_from(self.wasm_max_resources).unwrap_or(usize::MAX),
            http: self.http_limits()?,
            ..Limits::default()
        })
    }

    /// The bounds on outgoing HTTP (`--wasm-http-*`).
    fn http_limits(&self) -> anyhow::Result<HttpLimits> {
        let secs = |value: f64, flag: &str| Duration::try_from_secs_f64(value).with_context(|| flag.to_string());
        Ok(HttpLimits {
            connect_timeout: secs(self.wasm_http_connect_timeout, "--wasm-http-connect-timeout")?,
            first_byte_timeout: secs(self.wasm_http_first_byte_timeout, "--wasm-http-first-byte-timeout")?,
            between_bytes_timeout: secs(self.wasm_http_between_bytes_timeout, "--wasm-http-between-bytes-timeout")?,
            response_bytes: self.wasm_http_max_response_kib.saturating_mul(1024),
            concurrent_requests: self.wasm_http_max_requests,
        })
    }

    /// What the operator grants (nothing unless a flag says so).
    pub fn grants(&self) -> anyhow::Result<Grants> {
        let mut grants = Grants::none();
        for spec in &self.wasm_data_dir {
            let (host, guest) = spec.split_once(':').unwrap_or((spec.as_str(), "/data"));
            grants = grants.read_only_dir(host, guest).with_context(|| format!("--wasm-data-dir {spec}"))?;
        }
        for addr in &self.wasm_allow_connect {
            grants = grants.allow_tcp(addr).with_context(|| format!("--wasm-allow-connect {addr}"))?;
        }
        for origin in &self.wasm_allow_http {
            grants = grants.allow_http(origin).with_context(|| format!("--wasm-allow-http {origin}"))?;
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        wasm: WasmArgs,
    }

    #[test]
    fn defaults_grant_nothing_and_flags_widen() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.wasm.limits(Duration::from_secs(600)).unwrap().deadline, Duration::from_secs(600));
        assert!(cli.wasm.grants().unwrap().read_only_dirs.is_empty());
        assert!(cli.wasm.grants().unwrap().tcp_connect.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let spec = format!("{}:/train", dir.path().display());
        let cli =
            Cli::parse_from(["x", "--wasm-memory-mb", "64", "--wasm-time-limit", "2.5", "--wasm-data-dir", &spec]);
        let limits = cli.wasm.limits(Duration::from_secs(600)).unwrap();
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.deadline, Duration::from_millis(2500));
        assert_eq!(cli.wasm.grants().unwrap().read_only_dirs.len(), 1);

        let cli = Cli::parse_from(["x", "--wasm-allow-connect", "no-port"]);
        assert!(cli.wasm.grants().is_err());

        let cli =
            Cli::parse_from(["x", "--wasm-max-sockets", "3", "--wasm-max-resources", "40", "--wasm-output-kib", "8"]);
        let settings = cli.wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!((settings.limits.sockets, settings.limits.resources), (3, 40));
        assert_eq!(settings.host_log_bytes, 8 << 10, "the host log cap follows the output cap");
        let settings =
            Cli::parse_from(["x", "--wasm-host-log-kib", "1"]).wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!((settings.host_log_bytes, settings.limits.stdout_bytes), (1 << 10, 256 << 10));
        assert!(Cli::try_parse_from(["x", "--wasm-max-resources", "15"]).is_err(), "an app needs a few handles");
        let defaults = Cli::parse_from(["x"]).wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!((defaults.limits.sockets, defaults.limits.resources, defaults.host_log_bytes), (16, 256, 256 << 10));

        let settings = Cli::parse_from(["x", "--wasm-cache-dir", "/c"]).wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!(settings.engine.artifact_dir, Some(PathBuf::from("/c")));
        let settings = Cli::parse_from(["x", "--wasm-no-cache"]).wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!(settings.engine.artifact_dir, None);
        assert!(Cli::try_parse_from(["x", "--wasm-no-cache", "--wasm-cache-dir", "/c"]).is_err());
    }

    #[test]
    fn the_memory_flag_sizes_the_engine_up_to_a_wasm32_address_space() {
        let settings =
            Cli::parse_from(["x", "--wasm-memory-mb", "3072"]).wasm.settings(Duration::from_secs(1)).unwrap();
        assert_eq!(settings.limits.memory_bytes, 3 << 30);
        assert_eq!(settings.engine.max_memory_bytes, 3 << 30, "the engine would cap the app at its 1 GiB default");
        assert!(sepal_sandbox::Sandbox::new(settings.engine).is_ok());
        for bad in ["0", "4097"] {
            assert!(Cli::try_parse_from(["x", "--wasm-memory-mb", bad]).is_err(), "{bad} MiB accepted");
        }
    }

    #[test]
    fn http_grants_are_origins_checked_at_start_and_bounds_have_flags() {
        assert!(Cli::parse_from(["x"]).wasm.grants().unwrap().http_origins.is_empty());
        let cli = Cli::parse_from([
            "x",
            "--wasm-allow-http",
            "http://127.0.0.1:5000",
            "--wasm-allow-http",
            "https://localhost",
        ]);
        let origins: Vec<String> = cli.wasm.grants().unwrap().http_origins.iter().map(|o| o.to_string()).collect();
        assert_eq!(origins, ["http://127.0.0.1:5000", "https://localhost:443"]);
        for bad in ["127.0.0.1:5000", "http://127.0.0.1:5000/api", "ftp://127.0.0.1"] {
            let err = Cli::parse_from(["x", "--wasm-allow-http", bad]).wasm.grants().unwrap_err();
            assert!(format!("{err:#}").contains("--wasm-allow-http"), "{err:#}");
        }

        let defaults = Cli::parse_from(["x"]).wasm.limits(Duration::from_secs(1)).unwrap().http;
        assert_eq!(defaults, HttpLimits::default());
        let cli = Cli::parse_from([
            "x",
            "--wasm-http-connect-timeout",
            "0.5",
            "--wasm-http-first-byte-timeout",
            "2",
            "--wasm-http-between-bytes-timeout",
            "3",
            "--wasm-http-max-response-kib",
            "4",
            "--wasm-http-max-requests",
            "5",
        ]);
        let http = cli.wasm.limits(Duration::from_secs(1)).unwrap().http;
        assert_eq!(http.connect_timeout, Duration::from_millis(500));
        assert_eq!(
            (http.first_byte_timeout, http.between_bytes_timeout),
            (Duration::from_secs(2), Duration::from_secs(3))
        );
        assert_eq!((http.response_bytes, http.concurrent_requests), (4096, 5));
        assert!(Cli::try_parse_from(["x", "--wasm-http-max-requests", "0"]).is_err());
        let negative = Cli::parse_from(["x", "--wasm-http-connect-timeout=-1"]);
        assert!(negative.wasm.limits(Duration::from_secs(1)).is_err());
    }
}
