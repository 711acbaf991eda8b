//! A revocation the application was told of and has not acknowledged yet: the same for the
//! classic member and the consumer-protocol member.

use std::collections::BTreeSet;
use std::time::Instant;

use kcon_core::TopicPartition;

use crate::machine::RevocationId;

#[derive(Debug)]
pub(crate) struct Revocation {
    /// Each `Revoked` told and not acknowledged yet, with its partitions. More than one when
    /// `close` or `unsubscribe` came while a revocation was pending: the application already
    /// holds that one, so only the rest is revoked anew, and each is acknowledged on its own.
    pub(crate) parts: Vec<(RevocationId, Vec<TopicPartition>)>,
    /// When the application must have acknowledged (`max.poll.interval.ms` after the first).
    pub(crate) deadline: Instant,
}

impl Revocation {
    pub(crate) fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.parts.iter().flat_map(|(_, p)| p)
    }

    /// Adds revocation `id` of `partitions` to the pending one in `slot` (whose deadline
    /// stands), or starts one due at `deadline`.
    pub(crate) fn add(
        slot: &mut Option<Revocation>,
        id: RevocationId,
        partitions: Vec<TopicPartition>,
        deadline: Instant,
    ) {
        match slot {
            Some(r) => r.parts.push((id, partitions)),
            None => {
                *slot = Some(Revocation {
                    parts: vec![(id, partitions)],
                    deadline,
                })
            }
        }
    }

    /// Those of `owned` that no pending revocation in `slot` covers: what widening it to
    /// everything owned revokes anew.
    pub(crate) fn not_pending<'a>(
        slot: &Option<Revocation>,
        owned: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<TopicPartition> {
        let pending: BTreeSet<&TopicPartition> = slot.iter().flat_map(|r| r.partitions()).collect();
        owned
            .into_iter()
            .filter(|tp| !pending.contains(tp))
            .cloned()
            .collect()
    }
}
