//! Retrying calls to the SuperLink while it is unreachable.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

/// Flower's limit on the pause between two reconnection attempts.
const MAX_DELAY: Duration = Duration::from_secs(20);

/// When to give up reconnecting (Flower's `--max-retries` and `--max-wait-time`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `None` = unlimited.
    pub max_retries: Option<u32>,
    /// Total time spent retrying; `None` = unlimited.
    pub max_wait: Option<Duration>,
}

/// Whether a failed call is worth retrying: the SuperLink is unreachable or restarting.
pub fn is_transient(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Cancelled)
        || (status.code() == Code::Unknown && status.message().contains("transport"))
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails for good, or the policy gives up; waits
    /// 1 s, 2 s, 4 s, ... (at most 20 s) between attempts and logs each retry.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let start = Instant::now();
        let mut delay = Duration::from_secs(1);
        let mut retries = 0u32;
        loop {
            match call().await {
                Ok(v) => {
                    if retries > 0 {
                        tracing::info!("{what}: connected after {retries} retries ({:.1?})", start.elapsed());
                    }
                    return Ok(v);
                }
                Err(status) if is_transient(&status) => {
                    let out_of_tries = self.max_retries.is_some_and(|m| retries >= m);
                    let out_of_time = self.max_wait.is_some_and(|m| start.elapsed() + delay > m);
                    if out_of_tries || out_of_time {
                        tracing::warn!("{what}: giving up after {retries} retries ({:.1?})", start.elapsed());
                        return Err(status);
                    }
                    tracing::warn!("{what}: SuperLink unreachable ({}), retrying in {delay:?}", status.message());
                    tokio::time::sleep(delay).await;
                    retries += 1;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(status) => return Err(status),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_then_succeeds() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result = policy
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(Status::unavailable("down"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_and_not_on_other_errors() {
        let policy = RetryPolicy { max_retries: Some(2), max_wait: None };
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = policy
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Status::unavailable("down"))
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one attempt plus two retries");

        let calls = AtomicU32::new(0);
        let r: Result<(), _> = RetryPolicy::default()
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Status::not_found("nope"))
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
