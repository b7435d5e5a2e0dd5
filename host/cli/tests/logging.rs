//! The servers' own log as a log collector or a log file sees it: `--log-format json` gives
//! one JSON object per line, and plain text written to a file has no colour codes.

use std::process::Command;

use sepal_tests::{free_addr, Proc, START_TIMEOUT};

/// Starts `sepal superlink` with `extra` flags (output to a file, not a terminal), waits
/// until it serves, stops it, and returns its log (without the command line that `Proc`
/// writes first).
fn superlink_log(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (serverappio, fleet, exec) = (free_addr(), free_addr(), free_addr());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sepal"));
    cmd.args(["superlink", "--insecure"])
        .args(["--serverappio-api-address", &serverappio.to_string()])
        .args(["--fleet-api-address", &fleet.to_string()])
        .args(["--exec-api-address", &exec.to_string()])
        .args(extra)
        .env_remove("NO_COLOR")
        .env_remove("SEPAL_LOG");
    let mut superlink = Proc::spawn("superlink", cmd, dir.path()).unwrap();
    for addr in [serverappio, fleet, exec] {
        superlink.wait_for_port(addr, START_TIMEOUT).unwrap();
    }
    superlink.stop(std::time::Duration::from_secs(10));
    let log = superlink.log();
    log.lines().skip(1).map(|l| format!("{l}\n")).collect()
}

#[test]
fn json_log_lines_are_objects_with_level_target_and_message() {
    let log = superlink_log(&["--log-format", "json"]);
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}\nlog:\n{log}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "no message: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"level\":\"INFO\"")), "{log}");
}

#[test]
fn text_log_in_a_file_has_no_colour_codes() {
    let log = superlink_log(&[]);
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{log:?}");
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_sepal")).args(["supernode", "--log-format", "xml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--log-format") && err.contains("text") && err.contains("json"), "{err}");
}
