//! A group event the consumer handles in steps: partitions assigned, revoked or lost, each
//! with the listener's hook, and a revocation's commit and acknowledgement.
//!
//! ```text
//! Start ──(steps before the hook)──► Listener(id) ──► Commit(id) ──► end
//!   │  (no listener, or nothing to tell) ──▲  │ (no commit) ─────────▲
//!   └──────────────────────────────────────┘  └─────────────────────┘
//! end: revoked or lost partitions let go; the member's revocation acknowledged
//! ```

use kcon_core::{RequestId, TopicPartition};
use kcon_group::RevocationId;

pub use crate::hooks::Hook;

/// A group event being handled: kept until it is done, so a receiving call cancelled half-way
/// (in the listener, in the commit) finishes it on the next call and the member is always told
/// a revocation is done.
#[derive(Debug)]
pub(crate) struct Rebalance {
    pub(crate) hook: Hook,
    pub(crate) partitions: Vec<TopicPartition>,
    /// The member's revocation to acknowledge at the end.
    pub(crate) revocation: Option<RevocationId>,
    /// Whether the stored offsets are committed after the hook.
    pub(crate) commit: bool,
    /// Whether the partitions are let go at the end (not at close, which commits after the
    /// listener and then stops everything).
    pub(crate) let_go: bool,
    pub(crate) stage: Stage,
}

/// Where a rebalance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing done yet.
    Start,
    /// The listener's hook runs as this step.
    Listener(RequestId),
    /// The commit before the partitions go runs as this step.
    Commit(RequestId),
}

impl Rebalance {
    pub(crate) fn new(
        hook: Hook,
        partitions: Vec<TopicPartition>,
        revocation: Option<RevocationId>,
        commit: bool,
    ) -> Rebalance {
        Rebalance {
            hook,
            partitions,
            revocation,
            commit,
            let_go: true,
            stage: Stage::Start,
        }
    }

    pub(crate) fn revoke(
        partitions: Vec<TopicPartition>,
        revocation: Option<RevocationId>,
        commit: bool,
    ) -> Rebalance {
        Rebalance::new(Hook::Revoked, partitions, revocation, commit)
    }
}
