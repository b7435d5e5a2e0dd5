//! Hostile Wasm apps against what a SuperLink or SuperNode process shares between runs
//! (issue #11): descriptors, its own log, the copy across the Wasm boundary, and the run's
//! log as a terminal shows it. Each test starts a real `sepal superlink` and two `sepal
//! supernode`s, runs the attack (`tests/apps/hostile`, `resources` module) and the
//! quickstart beside or after it, and checks that:
//!
//! - the hostile run gets an error, or a log line, that names the limit and its flag;
//! - the quickstart completes within a small multiple of its time alone ([`bound`]);
//! - the processes stay within stated bounds: open descriptors (sampled from
//!   `/proc/<pid>/fd` while the attack runs), peak resident memory (`VmHWM`), log growth.
//!
//! The tests run one at a time (they time runs against each other). Needs
//! `cargo build -p sepal-cli` and the `wasm32-wasip2` target.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use sepal_guests::Tripwire;
use sepal_tests::flwr::strip_ansi;
use sepal_tests::wasm_apps::{quickstart, wasm_app, RunStatus, SepalFederation};

/// Upper bound for any one run here.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// The most the quickstart may take beside (or after) an attack: a small multiple of its
/// time alone, with slack for a shared, noisy 2-core machine (as in `quotas.rs`). What
/// these attacks did before their limits took the process down or stalled it for minutes.
fn bound(alone: Duration) -> Duration {
    alone * 5 + Duration::from_secs(15)
}

/// The most resident memory any process may reach (`VmHWM`) in a test (the big-copy test
/// states its own bound).
const RSS_BOUND_KIB: u64 = 512 << 10;

/// The quickstart's run config here: two rounds, enough to cross the federation twice.
const QUICKSTART: &str = "num-server-rounds=2";

/// One test at a time: they measure run times.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn hostile() -> PathBuf {
    wasm_app("hostile")
}

/// Submits the hostile app with `config` (a `--run-config` string); the run id.
fn submit(fed: &SepalFederation, config: &str) -> u64 {
    fed.submit(&hostile(), config).unwrap()
}

fn finished(fed: &SepalFederation, run_id: u64) -> (RunStatus, String) {
    let status = fed.wait_finished(run_id, RUN_TIMEOUT).unwrap();
    (status, fed.log_show(run_id).unwrap())
}

/// The quickstart's time from submission to `finished:completed`.
fn quickstart_time(fed: &SepalFederation) -> Duration {
    let started = Instant::now();
    let run_id = fed.submit(&quickstart(), QUICKSTART).unwrap();
    let (status, log) = finished(fed, run_id);
    assert_eq!(status.status, "finished:completed", "the quickstart: {status:?}\n{log}");
    started.elapsed()
}

/// The quickstart alone: the better of two runs (the first also compiles the components).
fn quickstart_alone(fed: &SepalFederation) -> Duration {
    let first = quickstart_time(fed);
    let second = quickstart_time(fed);
    eprintln!("quickstart alone: {first:?}, then {second:?}");
    first.min(second)
}

fn assert_not_slowed(alone: Duration, beside: Duration, what: &str) {
    eprintln!("quickstart {what}: {beside:?} (alone {alone:?})");
    assert!(beside <= bound(alone), "the quickstart {what} took {beside:?}, alone {alone:?}");
}

/// A log file from byte `offset` on (lossy UTF-8).
fn log_since(path: &std::path::Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned()
}

/// Open descriptors of a process (`/proc/<pid>/fd`).
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The most descriptors each process held, sampled every 20 ms from [`Sampler::start`] to
/// [`Sampler::stop`].
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<usize>>,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut peaks = vec![0; pids.len()];
            while !flag.load(Ordering::Relaxed) {
                for (peak, &pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(fds(pid));
                }
                thread::sleep(Duration::from_millis(20));
            }
            peaks
        });
        Sampler { stop, thread }
    }

    /// Per process (in the order given): the most descriptors it held.
    fn stop(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

fn pids(fed: &mut SepalFederation) -> Vec<u32> {
    let mut pids = vec![fed.superlink().pid()];
    pids.extend(fed.supernodes().iter().map(|n| n.pid()));
    pids
}

/// Asserts that no process of the federation reached more than `bound_kib` of resident
/// memory (`VmHWM`, the peak since it started).
fn assert_peak_memory(fed: &mut SepalFederation, bound_kib: u64) {
    let mut peaks = vec![("superlink".to_string(), fed.superlink().memory_kib("VmHWM").unwrap())];
    peaks.extend(fed.supernodes().iter().map(|n| (n.name().to_string(), n.memory_kib("VmHWM").unwrap())));
    eprintln!("peak resident memory (KiB): {peaks:?}");
    for (name, kib) in peaks {
        assert!(kib <= bound_kib, "the {name} reached {kib} KiB of resident memory (bound {bound_kib} KiB)");
    }
}

/// Polls until the run's log contains `needle`; fails after [`RUN_TIMEOUT`].
fn wait_for_log(fed: &SepalFederation, run_id: u64, needle: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !fed.log_show(run_id).unwrap().contains(needle) {
        assert!(Instant::now() < deadline, "run {run_id}'s log never said {needle:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The line of the fanout's report for `attack` (`CLIENT <attack> -> <outcome>`).
fn client_outcome<'a>(log: &'a str, attack: &str) -> &'a str {
    let prefix = format!("CLIENT {attack} -> ");
    log.lines()
        .find_map(|l| l.split_once(prefix.as_str()).map(|(_, outcome)| outcome))
        .unwrap_or_else(|| panic!("no outcome for {attack} in the log:\n{log}"))
}

/// Finding 3: a guest opening sockets until the process ran out of descriptors stopped
/// the SuperLink (or SuperNode) from accepting connections. Now an invocation holds at
/// most `--wasm-max-sockets` (then WASI's `new-socket-limit`), and at most
/// `--wasm-max-resources` host handles of any kind (then its call ends, naming the flag);
/// the processes raise their descriptor limit at start and say what apps may hold.
#[test]
fn sockets_and_handles_are_capped_per_invocation_and_descriptors_stay_bounded() {
    let _serial = serial();
    let tripwire = Tripwire::new();
    let grant = ["--wasm-allow-connect", tripwire.addr()];
    let mut superlink = vec!["--wasm-time-limit", "120"];
    superlink.extend(grant);
    let mut supernode = vec!["--wasm-time-limit", "60"];
    supernode.extend(grant);
    let mut fed = SepalFederation::start(2, &superlink, &supernode).unwrap();
    // At start: 16 ServerApps (--max-concurrent-runs) or 4 ClientApp messages
    // (--max-concurrent-messages) at a time, 16 sockets each.
    assert!(fed.superlink().log().contains("Wasm apps may hold up to 256 at once"), "{}", fed.superlink().log());
    let node_log = fed.supernodes()[0].log();
    assert!(node_log.contains("Wasm apps may hold up to 64 at once"), "{node_log}");
    let alone = quickstart_alone(&fed);
    let pids = pids(&mut fed);
    let baseline: Vec<usize> = pids.iter().map(|&p| fds(p)).collect();
    eprintln!("descriptors before the attack: {baseline:?}");

    // Four ServerApps each open sockets until refused and hold them 8 s; a fanout sends a
    // node the same attack (held 3 s), then one on every kind of handle; a ServerApp does
    // that too.
    let sampler = Sampler::start(pids.clone());
    const HOLDERS: usize = 4;
    let holders: Vec<u64> = (0..HOLDERS).map(|_| submit(&fed, "attack=\"sockets:100000:8\"")).collect();
    let fanout = submit(&fed, "attack=\"fanout\" client-attacks=\"sockets:100000:3,handles:1000000,ok\"");
    let handles = submit(&fed, "attack=\"handles:1000000\"");
    let notice = "SANDBOX : the app reached its limit of 16 open sockets (set with --wasm-max-sockets)";
    // The quickstart starts once every holder holds all the sockets it may.
    for &run_id in &holders {
        wait_for_log(&fed, run_id, notice);
    }
    let beside = quickstart_time(&fed);
    let results: Vec<(RunStatus, String)> = holders.iter().map(|&r| finished(&fed, r)).collect();
    let (fanout_status, fanout_log) = finished(&fed, fanout);
    let (handles_status, handles_log) = finished(&fed, handles);
    let peaks = sampler.stop();
    eprintln!("most descriptors held during the attack: {peaks:?}");

    // The hostile runs were refused with the limit named, and ran on.
    for (status, log) in &results {
        assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
        assert!(log.contains("SERVER sockets:100000:8: opened 16 sockets; then new-socket-limit"), "{log}");
        assert_eq!(log.matches(notice).count(), 1, "one notice per invocation: {log}");
    }
    assert_eq!(fanout_status.status, "finished:completed", "{fanout_status:?}\n{fanout_log}");
    assert_eq!(
        client_outcome(&fanout_log, "sockets:100000:3"),
        "reply result=\"opened 16 sockets; then new-socket-limit\""
    );
    let handles_error = client_outcome(&fanout_log, "handles:1000000");
    assert!(handles_error.starts_with("error code=2 reason="), "{handles_error}");
    assert!(handles_error.contains("limit of 256 host resources") && handles_error.contains("--wasm-max-resources"));
    assert_eq!(client_outcome(&fanout_log, "ok"), "reply result=\"ok\"");
    assert_eq!(handles_status.status, "finished:failed", "{handles_status:?}");
    assert!(handles_status.details.contains("limit of 256 host resources"), "{handles_status:?}");
    assert!(handles_status.details.contains("--wasm-max-resources"), "{handles_status:?}");
    assert!(handles_log.contains("SEPAL   : ServerApp failed: ") && handles_log.contains("--wasm-max-resources"));

    // The quickstart beside them was not held up, and the processes stayed within bounds:
    // the SuperLink holds at most HOLDERS x 16 sockets for the apps, a node 16 (one
    // message of the fanout's run at a time), plus connections of the runs.
    assert_not_slowed(alone, beside, "beside sockets held to the limit");
    for (i, most) in peaks.iter().enumerate() {
        let apps = if i == 0 { HOLDERS * 16 } else { 16 };
        let bound = baseline[i] + apps + 64;
        assert!(*most <= bound, "process {i} held {most} descriptors (bound {bound}, before {})", baseline[i]);
    }
    assert_peak_memory(&mut fed, RSS_BOUND_KIB);
    // The sockets went with the invocations.
    let settled = |i: usize| fds(pids[i]) <= baseline[i] + 16;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..pids.len()).all(settled) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let now: Vec<usize> = pids.iter().map(|&p| fds(p)).collect();
    assert!((0..pids.len()).all(settled), "descriptors after the attack: {now:?}, before: {baseline:?}");
    tripwire.assert_untouched();
    fed.ensure_running().unwrap();
}

/// Finding 6: every line of a ClientApp's output was one SuperNode log record, so 128 KiB
/// of one-character lines made about 19 MiB of SuperNode log per message. Now the output
/// is copied in records of up to 16 KiB, at most `--wasm-host-log-kib` per message, with
/// one notice when cut.
#[test]
fn a_client_apps_output_costs_the_supernode_log_at_most_the_cap_per_message() {
    let _serial = serial();
    let supernode = ["--wasm-time-limit", "60", "--wasm-host-log-kib", "64"];
    let mut fed = SepalFederation::start(2, &["--wasm-time-limit", "120"], &supernode).unwrap();
    let alone = quickstart_alone(&fed);
    // The fanout's node is either; the two logs are counted together.
    let node_logs: Vec<PathBuf> = fed.supernodes().iter().map(|n| n.log_path().to_path_buf()).collect();
    let sizes = || -> Vec<u64> { node_logs.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).collect() };

    // 131,072 one-character lines per message (256 KiB: --wasm-output-kib's default
    // keeps them all), three messages, beside the quickstart.
    const MESSAGES: u64 = 3;
    let before = sizes();
    let fanout = submit(&fed, "attack=\"fanout\" client-attacks=\"lines:131072,lines:131072,lines:131072,ok\"");
    let beside = quickstart_time(&fed);
    let (status, log) = finished(&fed, fanout);
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    assert_eq!(client_outcome(&log, "lines:131072"), "reply result=\"printed 131072 lines\"");

    // The node's log grew by at most twice the cap per message (the quickstart's own
    // lines included), in few records, with one notice per message.
    let grown: u64 = sizes().iter().zip(&before).map(|(now, then)| now - then).sum();
    let bound = MESSAGES * 2 * (64 << 10) + (64 << 10);
    eprintln!("the SuperNode's log grew by {grown} bytes for {MESSAGES} messages (bound {bound})");
    assert!(grown <= bound, "the SuperNode's log grew by {grown} bytes (bound {bound})");
    let text: String = node_logs.iter().zip(&before).map(|(path, &from)| strip_ansi(&log_since(path, from))).collect();
    let records = text.lines().filter(|l| l.contains("ClientApp output")).count() as u64;
    assert!(records <= MESSAGES * ((64 << 10) / (16 << 10) + 8), "{records} output records");
    let notice = "of this message's ClientApp output are not logged here: the cap is 65536 bytes per message \
                  (--wasm-host-log-kib)";
    assert_eq!(text.matches(notice).count() as u64, MESSAGES, "one notice per message");

    assert_not_slowed(alone, beside, "beside the output floods");
    assert_peak_memory(&mut fed, RSS_BOUND_KIB);
    fed.ensure_running().unwrap();
}

/// Finding 7: wasmtime's default hostcall fuel refused any copy from an app larger than
/// 128 MiB ("fuel allocated for hostcalls has been exhausted"), below the SuperLink's own
/// 256 MiB object limit: a push of 8 x 16 MiB failed. Now a copy may be as large as the
/// app's memory limit.
#[test]
fn pushes_replies_and_contexts_larger_than_128_mib_cross_the_boundary() {
    let _serial = serial();
    let limits = ["--wasm-time-limit", "120", "--wasm-memory-mb", "1024"];
    let mut fed = SepalFederation::start(2, &limits, &limits).unwrap();
    let alone = quickstart_alone(&fed);

    // One push of 8 messages of 16 MiB (and a small one after it), to a node.
    let hoard = submit(&fed, "attack=\"push-hoard:8:16\"");
    let (status, log) = finished(&fed, hoard);
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    assert!(log.contains("SERVER push-hoard: stored 8 of 8; small push stored 1"), "{log}");
    // A ClientApp's reply of 144 MiB, and a ServerApp's final context of 144 MiB.
    let fanout = submit(&fed, "attack=\"fanout\" client-attacks=\"big-reply:144,ok\"");
    let (status, log) = finished(&fed, fanout);
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    assert_eq!(client_outcome(&log, "big-reply:144"), "reply result=\"sent 144 MiB\"", "{log}");
    assert_eq!(client_outcome(&log, "ok"), "reply result=\"ok\"");
    let context = submit(&fed, "attack=\"big-reply:144\"");
    let (status, log) = finished(&fed, context);
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    assert!(log.contains("SERVER big-reply:144: state of 144 MiB"), "{log}");

    // A few copies of 144 MiB at a time, in each process; nothing is held afterwards that
    // slows the next run.
    assert_peak_memory(&mut fed, 2 << 20);
    let after = quickstart_time(&fed);
    assert_not_slowed(alone, after, "after the big copies");
    fed.ensure_running().unwrap();
}

/// Finding 8: a ServerApp's output was stored raw, so escape sequences reached the user's
/// terminal through `flwr log`, and an app could print lines identical to the host's into
/// a run that completed. Now app text is neutralised, and only Sepal writes lines that
/// start with `SEPAL   : ` or `SANDBOX : `.
#[test]
fn a_run_log_shows_app_text_neutralised_and_only_sepal_writes_host_lines() {
    let _serial = serial();
    let mut fed = SepalFederation::start(2, &["--wasm-time-limit", "60"], &["--wasm-time-limit", "30"]).unwrap();
    let alone = quickstart_alone(&fed);

    let inject = submit(&fed, "attack=\"inject\"");
    let fanout = submit(&fed, "attack=\"fanout\" client-attacks=\"inject,ok\"");
    let beside = quickstart_time(&fed);
    let status = fed.wait_finished(inject, RUN_TIMEOUT).unwrap();
    assert_eq!(status.status, "finished:completed", "{status:?}");
    // What `sepal log` prints, byte for byte (no ANSI stripping here).
    let exec = fed.exec_addr().to_string();
    let raw = fed.cli(&["log", &inject.to_string(), "--superlink", &exec, "--show"]).unwrap().stdout;
    eprintln!("the inject run's log:\n{raw}");

    for c in ['\u{1b}', '\u{9b}', '\r', '\u{7}', '\u{200b}'] {
        assert!(!raw.contains(c), "the log holds {c:?} raw:\n{raw}");
    }
    for line in raw.lines() {
        let word: String = line.trim_start().chars().take_while(char::is_ascii_alphabetic).collect();
        assert!(
            !word.eq_ignore_ascii_case("SEPAL") && !word.eq_ignore_ascii_case("SANDBOX"),
            "an app line reads as the host's in a completed run: {line:?}"
        );
    }
    // Visible, and marked as the app's.
    for expected in [
        "APP     : SEPAL   : ServerApp failed: injected by the app",
        "APP     : SANDBOX : stdout truncated: injected by the app",
        "APP     :    SEPAL   : with leading spaces",
        "\\u{200b}SEPAL   : behind a zero-width space",
        "\\u{1b}[2J\\u{1b}[HSEPAL   : after clearing the screen",
        "\\u{1b}]0;pwned\\u{7}red and a window title",
        "progress 10%\\rSEPAL   : over a carriage return",
        "\\u{9b}31m a C1 escape",
        "a\ttab stays",
        "INFO    : SEPAL   : ServerApp failed: injected by the app",
        "ERROR   : SEPAL   : from inside a log message",
        "APP     : SEPAL   : without a newline",
        "INFO    : SERVER inject: injected",
    ] {
        assert!(raw.lines().any(|l| l == expected), "no line {expected:?} in the log:\n{raw}");
    }

    // A failed run: the host's line, and only one.
    let panic = submit(&fed, "attack=\"panic\"");
    let (status, log) = finished(&fed, panic);
    assert_eq!(status.status, "finished:failed");
    let host_lines: Vec<&str> = log.lines().filter(|l| l.starts_with("SEPAL   : ")).collect();
    assert_eq!(host_lines.len(), 1, "{log}");
    assert!(host_lines[0].starts_with("SEPAL   : ServerApp failed: the app trapped"), "{log}");
    assert!(host_lines[0].contains("hostile server panic"), "{log}");

    // A ClientApp's escapes reach the SuperNode's log quoted, not raw.
    let (status, log) = finished(&fed, fanout);
    assert_eq!(status.status, "finished:completed", "{status:?}\n{log}");
    assert_eq!(client_outcome(&log, "inject"), "reply result=\"injected\"");
    let node_logs: String = fed.supernodes().iter().map(|n| strip_ansi(&n.log())).collect();
    assert!(node_logs.contains("\\u{1b}[2J\\u{1b}[HSEPAL   : after clearing the screen"), "not quoted");

    assert_not_slowed(alone, beside, "beside the injecting runs");
    fed.ensure_running().unwrap();
}
