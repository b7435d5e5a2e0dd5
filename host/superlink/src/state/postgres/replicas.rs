//! What SuperLink replicas sharing this database need of it besides the state: the changes
//! each makes, passed to the others with `LISTEN`/`NOTIFY`, and leases on runs'
//! ServerApps.
//!
//! A change is announced after the write that made it committed, on a pooled connection,
//! without the caller waiting; each replica listens on a connection of its own and skips
//! its own announcements. A notification sent while a listener is reconnecting is missed:
//! what waits on it then ends on its own deadline (a held pull's wait), as without
//! replicas.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use tokio_postgres::{AsyncMessage, NoTls};

use super::connect;
use crate::state::sqlite::codec::sql_id;
use crate::state::{Change, ChangeSink, StateResult};

/// The notification channel.
const CHANNEL: &str = "sepal_changes";

/// How long a lost listening connection waits before it connects again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// `<sender>:<kind>:<id>`, the notification's payload.
pub(super) fn encode(sender: &str, change: Change) -> String {
    let (kind, id) = match change {
        Change::RunSubmitted => ("submitted", 0),
        Change::RunChanged(run) => ("run", run),
        Change::Instruction(node) => ("instruction", node),
        Change::Reply(run) => ("reply", run),
        Change::NodeChanged => ("node", 0),
        Change::ObjectStored => ("object", 0),
    };
    format!("{sender}:{kind}:{id}")
}

/// The sender and change of a payload [`encode`] made; `None` for anything else.
pub(super) fn decode(payload: &str) -> Option<(&str, Change)> {
    let mut parts = payload.rsplitn(3, ':');
    let id: u64 = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let sender = parts.next()?;
    let change = match kind {
        "submitted" => Change::RunSubmitted,
        "run" => Change::RunChanged(id),
        "instruction" => Change::Instruction(id),
        "reply" => Change::Reply(id),
        "node" => Change::NodeChanged,
        "object" => Change::ObjectStored,
        _ => return None,
    };
    Some((sender, change))
}

/// Sends one announcement.
pub(super) async fn announce(pool: Pool, payload: String) {
    let sent = async {
        let conn = connect(&pool).await?;
        conn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
        StateResult::Ok(())
    };
    if let Err(e) = sent.await {
        tracing::warn!("cannot tell the other SuperLink replicas of a change ({payload}): {e}");
    }
}

/// Listens for the other replicas' announcements and hands each to `sink`, connecting
/// again whenever the connection is lost; never returns.
pub(super) async fn listen(config: tokio_postgres::Config, me: String, sink: ChangeSink) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                // The connection yields the notifications; it must be polled for the client
                // to work at all.
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("lost the connection that hears of other replicas' changes: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => tracing::debug!("listening for other SuperLink replicas' changes"),
                    Err(e) => tracing::warn!("cannot listen for other replicas' changes: {e}"),
                }
                while let Some(payload) = rx.recv().await {
                    match decode(&payload) {
                        Some((sender, change)) if sender != me => sink(change),
                        Some(_) => {}
                        None => tracing::debug!(payload, "ignored a notification that is not a Sepal change"),
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("cannot connect to hear of other replicas' changes: {e}"),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Takes or renews `owner`'s lease on a run's ServerApp until `ttl` seconds from now (by
/// the database's clock, which every replica shares), if nobody else holds an unexpired
/// one; whether `owner` holds it now.
pub(super) async fn lease(pool: Pool, run_id: u64, owner: String, ttl: f64) -> StateResult<bool> {
    let conn = connect(&pool).await?;
    let sql = "INSERT INTO run_lease (run_id, owner, expires_at)
               VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
               ON CONFLICT (run_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
               WHERE run_lease.owner = EXCLUDED.owner OR run_lease.expires_at < clock_timestamp()
               RETURNING owner";
    let stmt = conn.prepare_cached(sql).await?;
    Ok(conn.query_opt(&stmt, &[&sql_id(run_id), &owner, &ttl]).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_wire_and_strangers_are_ignored() {
        let changes = [
            Change::RunSubmitted,
            Change::RunChanged(u64::MAX),
            Change::Instruction(7),
            Change::Reply(1),
            Change::NodeChanged,
            Change::ObjectStored,
        ];
        for change in changes {
            assert_eq!(decode(&encode("superlink-1:ab", change)), Some(("superlink-1:ab", change)));
        }
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("me:run:notanumber"), None);
        assert_eq!(decode("me:dance:1"), None);
    }
}
