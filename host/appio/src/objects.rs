//! Moving a message's objects: pulling every object of a tree (waiting while the sender
//! is still uploading one) and pushing the objects the receiver asked for. The same for
//! ServerAppIo and ClientAppIo; the caller supplies the one call that moves one object.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use sepal_proto::pb;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::RpcError;

/// Most objects pushed at once (Flower: 8).
const PARALLEL: usize = 8;

/// How long the objects of one message may take to become available.
const TREE_WAIT: Duration = Duration::from_secs(600);

/// Why objects could not be moved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    /// A call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The server does not know an object of the tree (deleted, or never registered).
    #[error("object {0} is not known to the server")]
    NotFound(String),
    /// An object stayed unavailable (not uploaded) for too long.
    #[error("object {0} was not uploaded within {TREE_WAIT:?}")]
    TimedOut(String),
    /// The server asked for an object this process does not have.
    #[error("the server asked for object {0}, which is not part of the message")]
    Unknown(String),
    /// The server did not store a pushed object (not expected, or hash mismatch).
    #[error("the server did not store object {0}")]
    NotStored(String),
    /// A push task ended abnormally.
    #[error("pushing an object failed: {0}")]
    Task(String),
}

/// The ids of a tree, each once, children before parents.
fn tree_ids(tree: &pb::ObjectTree) -> Vec<String> {
    fn walk(tree: &pb::ObjectTree, seen: &mut HashSet<String>, out: &mut Vec<String>) {
        for child in &tree.children {
            walk(child, seen, out);
        }
        if seen.insert(tree.object_id.clone()) {
            out.push(tree.object_id.clone());
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut HashSet::new(), &mut out);
    out
}

/// Pulls every object of `tree` with `pull` (one PullObject call), retrying an object
/// that is registered but not uploaded yet with a backoff from 50 ms to 2 s, for at most
/// [`TREE_WAIT`] in all.
pub(crate) async fn pull_tree<F, Fut>(
    tree: &pb::ObjectTree,
    mut pull: F,
) -> Result<HashMap<String, Bytes>, TransferError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<pb::PullObjectResponse, RpcError>>,
{
    let give_up = Instant::now() + TREE_WAIT;
    let mut objects = HashMap::new();
    for id in tree_ids(tree) {
        let mut delay = Duration::from_millis(50);
        loop {
            let res = pull(id.clone()).await?;
            if res.object_available {
                objects.insert(id, res.object_content);
                break;
            }
            if !res.object_found {
                return Err(TransferError::NotFound(id));
            }
            if Instant::now() + delay > give_up {
                return Err(TransferError::TimedOut(id));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    Ok(objects)
}

/// Pushes each object in `wanted` from `objects` with `push` (one PushObject call, which
/// answers whether the object was stored), up to [`PARALLEL`] at a time.
pub(crate) async fn push_objects<F, Fut>(
    wanted: &[String],
    objects: &HashMap<String, Bytes>,
    push: F,
) -> Result<(), TransferError>
where
    F: Fn(String, Bytes) -> Fut,
    Fut: Future<Output = Result<bool, RpcError>> + Send + 'static,
{
    let mut pushing = JoinSet::new();
    for id in wanted {
        let content = objects.get(id).ok_or_else(|| TransferError::Unknown(id.clone()))?;
        if pushing.len() >= PARALLEL {
            pushed(&mut pushing).await?;
        }
        let (id, call) = (id.clone(), push(id.clone(), content.clone()));
        pushing.spawn(async move { (id, call.await) });
    }
    while !pushing.is_empty() {
        pushed(&mut pushing).await?;
    }
    Ok(())
}

/// Waits for one push to finish and checks it.
async fn pushed(pushing: &mut JoinSet<(String, Result<bool, RpcError>)>) -> Result<(), TransferError> {
    match pushing.join_next().await {
        None | Some(Ok((_, Ok(true)))) => Ok(()),
        Some(Ok((id, Ok(false)))) => Err(TransferError::NotStored(id)),
        Some(Ok((_, Err(e)))) => Err(e.into()),
        Some(Err(e)) => Err(TransferError::Task(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn node(id: &str, children: Vec<pb::ObjectTree>) -> pb::ObjectTree {
        pb::ObjectTree { object_id: id.into(), children }
    }

    #[test]
    fn tree_ids_are_unique_and_post_order() {
        let tree = node("m", vec![node("r", vec![node("a", vec![]), node("a", vec![])]), node("c", vec![])]);
        assert_eq!(tree_ids(&tree), ["a", "r", "c", "m"]);
    }

    #[tokio::test(start_paused = true)]
    async fn pulls_wait_for_uploads_and_give_up_on_unknown_objects() {
        let tree = node("m", vec![node("c", vec![])]);
        let tries = AtomicUsize::new(0);
        let objects = pull_tree(&tree, |id| {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                let available = id == "m" || n >= 3;
                Ok(pb::PullObjectResponse {
                    object_found: true,
                    object_available: available,
                    object_content: id.into_bytes().into(),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects["c"], Bytes::from_static(b"c"));

        let err = pull_tree(&tree, |_| async { Ok(pb::PullObjectResponse::default()) }).await.unwrap_err();
        assert!(matches!(err, TransferError::NotFound(id) if id == "c"));

        let pending = pb::PullObjectResponse { object_found: true, ..Default::default() };
        let err = pull_tree(&tree, |_| {
            let pending = pending.clone();
            async move { Ok(pending) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, TransferError::TimedOut(_)));
    }

    #[tokio::test]
    async fn pushes_only_what_was_asked_and_checks_it_was_stored() {
        let objects: HashMap<String, Bytes> = [("a".to_string(), Bytes::from_static(b"x"))].into();
        let pushed = AtomicUsize::new(0);
        push_objects(&["a".into()], &objects, |_, _| {
            pushed.fetch_add(1, Ordering::SeqCst);
            async { Ok(true) }
        })
        .await
        .unwrap();
        assert_eq!(pushed.load(Ordering::SeqCst), 1);
        let err = push_objects(&["b".into()], &objects, |_, _| async { Ok(true) }).await.unwrap_err();
        assert!(matches!(err, TransferError::Unknown(_)));
        let err = push_objects(&["a".into()], &objects, |_, _| async { Ok(false) }).await.unwrap_err();
        assert!(matches!(err, TransferError::NotStored(_)));
    }
}
