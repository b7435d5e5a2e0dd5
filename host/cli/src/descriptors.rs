//! The process's file descriptor limit (`RLIMIT_NOFILE`): raised to what the system allows
//! when a SuperLink, SuperNode or app process starts, and compared with what its Wasm apps
//! may hold.
//!
//! Every connection a SuperLink or SuperNode serves is a descriptor, and so is every
//! socket or file a Wasm app holds: if apps could take them all, the process would stop
//! accepting connections. The sandbox bounds each invocation (`--wasm-max-sockets`, and
//! `--wasm-max-resources` for files); this module makes sure the process has room for
//! the worst case of all concurrent invocations and its own connections, and says so
//! when it has not.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use sepal_executor::Settings;

/// Raises the descriptor limit and warns if the Wasm apps of a process with `settings`,
/// running at most `at_once` invocations at a time, could take more than half of it.
/// Called by every command that runs apps, before it serves.
pub fn prepare(settings: &Settings, at_once: u32) {
    let limit = raise_limit();
    let worst = apps_worst_case(settings, at_once);
    match limit {
        Some(limit) => tracing::info!("descriptor limit {limit}; Wasm apps may hold up to {worst} at once"),
        None => tracing::info!("no descriptor limit; Wasm apps may hold up to {worst} at once"),
    }
    if let Some(warning) = limit.and_then(|limit| budget_warning(settings, at_once, limit)) {
        tracing::warn!("{warning}");
    }
}

/// Raises the soft descriptor limit to the hard one (what `ulimit -n` allows without
/// privileges; many systems start processes at 1,024 of a hard limit in the hundreds of
/// thousands). Returns the soft limit in force afterwards (`None`: unlimited). Processes
/// this one starts (a Python ServerApp or ClientApp) inherit the raised limit.
pub fn raise_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return limit.current;
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }) {
        Ok(()) => {
            tracing::debug!("descriptor limit raised from {soft} to {hard}");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
            Some(soft)
        }
    }
}

/// The most descriptors the Wasm apps of a process with `settings` can hold at once, when
/// at most `at_once` invocations run at a time: each at its socket limit (with a TCP
/// grant), at its limit of HTTP requests in flight (with an HTTP grant; one connection
/// each) and, with a directory grant, at its resource limit in open files. Without a
/// grant an app holds no descriptor.
pub fn apps_worst_case(settings: &Settings, at_once: u32) -> u64 {
    let sockets = if settings.grants.tcp_connect.is_empty() { 0 } else { settings.limits.sockets };
    let http = if settings.grants.http_origins.is_empty() { 0 } else { settings.limits.http.concurrent_requests };
    let files = if settings.grants.read_only_dirs.is_empty() { 0 } else { settings.limits.resources };
    u64::from(at_once).saturating_mul(sockets.saturating_add(http).saturating_add(files) as u64)
}

/// What to warn about when the apps' worst case would take more than half of a descriptor
/// limit of `limit` (the rest is for the process's own connections, files and database).
pub fn budget_warning(settings: &Settings, at_once: u32, limit: u64) -> Option<String> {
    let worst = apps_worst_case(settings, at_once);
    (worst > limit / 2).then(|| {
        format!(
            "Wasm apps may hold up to {worst} descriptors at once ({at_once} invocations at a time, each up to \
             --wasm-max-sockets {} with a TCP grant, --wasm-http-max-requests {} with an HTTP grant and \
             --wasm-max-resources {} with a directory grant), more than half of this process's descriptor \
             limit of {limit}: lower those flags or raise the limit (ulimit -n, systemd LimitNOFILE=)",
            settings.limits.sockets, settings.limits.http.concurrent_requests, settings.limits.resources,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_capabilities_count_against_the_descriptor_budget() {
        let mut settings = Settings::default();
        assert_eq!(apps_worst_case(&settings, 16), 0, "no grant: no socket, no file");
        settings.grants = settings.grants.allow_tcp("127.0.0.1:9").unwrap();
        assert_eq!(apps_worst_case(&settings, 16), 16 * 16);
        assert_eq!(apps_worst_case(&settings, 4), 4 * 16);
        settings.grants = settings.grants.read_only_dir(std::env::temp_dir(), "/data").unwrap();
        assert_eq!(apps_worst_case(&settings, 16), 16 * (16 + 256));
        settings.grants = settings.grants.allow_http("http://127.0.0.1:9").unwrap();
        assert_eq!(apps_worst_case(&settings, 16), 16 * (16 + 8 + 256), "an HTTP request holds a connection");
    }

    #[test]
    fn a_budget_past_half_the_limit_is_warned_about_naming_the_flags() {
        let mut settings = Settings::default();
        settings.grants = settings.grants.allow_tcp("127.0.0.1:9").unwrap();
        // 16 x 16 = 256 sockets: fine against 1,024, too much against 500.
        assert_eq!(budget_warning(&settings, 16, 1024), None);
        let warning = budget_warning(&settings, 16, 500).expect("a warning");
        assert!(warning.contains("up to 256 descriptors") && warning.contains("limit of 500"), "{warning}");
        assert!(warning.contains("--wasm-max-sockets 16") && warning.contains("--wasm-max-resources 256"), "{warning}");
        // No grant, no descriptors: never a warning.
        assert_eq!(budget_warning(&Settings::default(), 16, 1), None);
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let raised = raise_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(raised, limit.current);
        if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
            assert_eq!(soft, hard);
        }
    }
}
