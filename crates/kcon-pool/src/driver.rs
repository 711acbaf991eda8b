//! What drives a sans-IO machine on tokio: its requests in flight, each answered exactly once,
//! and its next timer as a `select!` branch.

use std::collections::HashMap;
use std::future::Future;

use kcon_core::RequestFailure;
use tokio::task::{self, JoinSet};
use tokio::time::{self, Instant};

/// Requests sent on tasks of their own, each answered exactly once: with its answer, or with a
/// failure when the task ended without one. Drivers of sans-IO machines keep theirs here and
/// feed each `(id, result)` back to the machine.
#[derive(Debug)]
pub struct InFlight<Id, T> {
    tasks: JoinSet<Result<T, RequestFailure>>,
    ids: HashMap<task::Id, Id>,
}

impl<Id, T: Send + 'static> InFlight<Id, T> {
    /// No requests.
    pub fn new() -> Self {
        InFlight {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
        }
    }

    /// Runs `request` on a task of its own, on the current runtime; its result comes back from
    /// [`next`](InFlight::next) with `id`.
    pub fn spawn<F>(&mut self, id: Id, request: F)
    where
        F: Future<Output = Result<T, RequestFailure>> + Send + 'static,
    {
        let handle = self.tasks.spawn(request);
        self.ids.insert(handle.id(), id);
    }

    /// Whether no request is running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next result; pending forever while no request is running (so it can sit in a
    /// `select!` beside other branches).
    pub async fn next(&mut self) -> (Id, Result<T, RequestFailure>) {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let (task_id, result) = match joined {
                Ok((task_id, result)) => (task_id, result),
                Err(e) => (
                    e.id(),
                    Err(RequestFailure::retriable(format!(
                        "the request task ended: {e}"
                    ))),
                ),
            };
            if let Some(id) = self.ids.remove(&task_id) {
                return (id, result);
            }
        }
    }
}

impl<Id, T: Send + 'static> Default for InFlight<Id, T> {
    fn default() -> Self {
        InFlight::new()
    }
}

/// Sleeps until `deadline`, or for ever when there is none: a machine's `poll_timeout` as a
/// `select!` branch.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
