//! Run statuses and Flower's transition rules.

use sepal_proto::pb;

/// `pending`: submitted, no ServerApp has picked it up.
pub const PENDING: &str = "pending";
/// `starting`: a ServerApp pulled its inputs.
pub const STARTING: &str = "starting";
/// `running`: the ServerApp said it runs.
pub const RUNNING: &str = "running";
/// `finished`, with a sub-status.
pub const FINISHED: &str = "finished";
/// Sub-status: the ServerApp returned normally.
pub const COMPLETED: &str = "completed";
/// Sub-status: the ServerApp failed, died or went silent.
pub const FAILED: &str = "failed";
/// Sub-status: a user stopped the run.
pub const STOPPED: &str = "stopped";

/// A run's status, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Waiting for a ServerApp.
    Pending,
    /// A ServerApp took it.
    Starting,
    /// The ServerApp runs.
    Running,
    /// Over.
    Finished,
}

impl RunState {
    /// Parses Flower's status string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            PENDING => Self::Pending,
            STARTING => Self::Starting,
            RUNNING => Self::Running,
            FINISHED => Self::Finished,
            _ => return None,
        })
    }

    /// The status of a run record.
    pub fn of(run: &pb::Run) -> Option<Self> {
        Self::parse(&run.status.as_ref()?.status)
    }

    /// Flower's wording for "this run cannot take that call", as sent with
    /// PERMISSION_DENIED.
    pub fn refusal(status: &pb::RunStatus) -> String {
        let mut msg = match Self::parse(&status.status) {
            Some(Self::Pending) => "Run is pending.".to_string(),
            Some(Self::Starting) => "Run is starting.".to_string(),
            Some(Self::Running) => "Run is running.".to_string(),
            _ => "Run is finished.".to_string(),
        };
        if status.sub_status == STOPPED {
            msg.push_str(" Stopped by user.");
        }
        msg
    }
}

/// Whether Flower allows moving from `current` to `new`.
pub fn is_valid_transition(current: &pb::RunStatus, new: &pb::RunStatus) -> bool {
    let (Some(from), Some(to)) = (RunState::parse(&current.status), RunState::parse(&new.status)) else {
        return false;
    };
    // Flower 1.20 checks the sub-status of the *current* status here, not of the new one
    // (so `running` -> `finished` with an empty sub-status is accepted); Sepal does the
    // same, so that what a ServerApp sets lands as it would with Flower.
    let sub_ok = match from {
        RunState::Finished => [COMPLETED, FAILED, STOPPED].contains(&current.sub_status.as_str()),
        _ => current.sub_status.is_empty(),
    };
    if !sub_ok {
        return false;
    }
    use RunState::*;
    match (from, to) {
        (Pending | Starting, Finished) => new.sub_status != COMPLETED,
        (Pending, Starting) | (Starting, Running) | (Running, Finished) => true,
        _ => false,
    }
}

/// Applies `new` to a run if Flower's rules allow it: stamps the matching timestamp and,
/// on entering starting or running, clears the heartbeat deadline (`active_until`). Returns
/// whether it did. Shared by every backend.
pub(crate) fn apply_transition(run: &mut pb::Run, active_until: &mut f64, new: pb::RunStatus) -> bool {
    let current = run.status.clone().unwrap_or_default();
    if !is_valid_transition(&current, &new) {
        let (from, to) = (display(&current), display(&new));
        tracing::warn!(run_id = run.run_id, %from, %to, "invalid run status transition ignored");
        return false;
    }
    let now = crate::clock::now_iso();
    match RunState::parse(&new.status) {
        Some(RunState::Starting) => run.starting_at = now,
        Some(RunState::Running) => run.running_at = now,
        Some(RunState::Finished) => run.finished_at = now,
        _ => {}
    }
    if matches!(RunState::parse(&new.status), Some(RunState::Starting | RunState::Running)) {
        *active_until = super::HEARTBEAT_NEVER;
    }
    run.status = Some(new);
    true
}

/// Whether a starting or running run's ServerApp has missed its heartbeat deadline.
pub(crate) fn heartbeat_missed(run: &pb::Run, active_until: f64, now: f64) -> bool {
    matches!(RunState::of(run), Some(RunState::Starting | RunState::Running)) && active_until < now
}

/// Turns a run whose ServerApp missed its heartbeats finished:failed; returns whether it
/// did. Shared by every backend.
pub(crate) fn fail_if_silent(run: &mut pb::Run, active_until: f64, now: f64) -> bool {
    if !heartbeat_missed(run, active_until, now) {
        return false;
    }
    run.status = Some(status(FINISHED, FAILED, super::NO_HEARTBEAT_DETAILS));
    run.finished_at = crate::clock::now_iso();
    true
}

/// A `RunStatus` value.
pub fn status(status: &str, sub_status: &str, details: &str) -> pb::RunStatus {
    pb::RunStatus { status: status.to_string(), sub_status: sub_status.to_string(), details: details.to_string() }
}

/// How Flower's CLI shows a status: `running`, or `finished:completed`.
pub fn display(status: &pb::RunStatus) -> String {
    if status.sub_status.is_empty() {
        status.status.clone()
    } else {
        format!("{}:{}", status.status, status.sub_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_flower() {
        let p = status(PENDING, "", "");
        let s = status(STARTING, "", "");
        let r = status(RUNNING, "", "");
        let done = status(FINISHED, COMPLETED, "");
        let failed = status(FINISHED, FAILED, "boom");
        let stopped = status(FINISHED, STOPPED, "");
        assert!(is_valid_transition(&p, &s));
        assert!(is_valid_transition(&s, &r));
        assert!(is_valid_transition(&r, &done));
        assert!(is_valid_transition(&p, &stopped));
        assert!(is_valid_transition(&s, &failed));
        assert!(!is_valid_transition(&p, &done), "pending cannot complete");
        assert!(!is_valid_transition(&p, &r), "pending cannot skip starting");
        assert!(!is_valid_transition(&done, &r), "finished is final");
        // As in Flower 1.20, which checks the current status's sub-status, not the new one's.
        assert!(is_valid_transition(&r, &status(FINISHED, "", "")), "Flower accepts finished without a sub-status");
        assert!(!is_valid_transition(&r, &status("exploded", "", "")));
    }

    #[test]
    fn refusal_mentions_stop() {
        assert_eq!(RunState::refusal(&status(FINISHED, STOPPED, "")), "Run is finished. Stopped by user.");
        assert_eq!(RunState::refusal(&status(PENDING, "", "")), "Run is pending.");
    }
}
