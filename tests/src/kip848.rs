//! Support for the consumer group protocol's tests (KIP-848, `group.protocol=consumer`) on
//! librdkafka's mock cluster: a mock with short KIP-848 timers, member configurations, and the
//! check that members together own every partition exactly once.
//!
//! Under KIP-848 every member has an epoch of its own, so the classic check (one generation
//! for all, [`crate::group::wait_for_exactly_once`]) does not apply: here each member must be
//! Stable (not joining, not revoking) and the partitions owned must be exactly the expected
//! ones, each once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kcon_group::{GroupConfig, MemberState};

use crate::consumer::Driven;
use crate::group::{Member, Tp};
use crate::group_peers::{GroupPeer, split_exactly_once};
use crate::mock::MockCluster;

/// The heartbeat interval the mock tells KIP-848 members in these tests (its default is 3 s).
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// The mock's KIP-848 session timeout in these tests (its default is 30 s): a member gone
/// without leaving is fenced after this.
pub const SESSION: Duration = Duration::from_secs(4);

/// How long a reconciliation may take in these tests: a few heartbeats each way, on a loaded
/// machine.
pub const RECONCILED_WITHIN: Duration = Duration::from_secs(20);

/// A 3-broker mock cluster with KIP-848's heartbeat interval and session timeout lowered.
pub fn mock() -> MockCluster {
    let mock = MockCluster::start(3);
    mock.set_group_consumer_heartbeat_interval(HEARTBEAT);
    mock.set_group_consumer_session_timeout(SESSION);
    mock
}

/// A member configuration for `group` under `group.protocol=consumer`, with `extra`.
pub fn consumer_config(group: &str, extra: &[(&str, &str)]) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    for (k, v) in [("group.protocol", "consumer")].iter().chain(extra) {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c.validate()
        .expect("a valid consumer-protocol configuration");
    c
}

/// Waits until every member is Stable and together they own exactly `expected`, each
/// partition once; panics with every member's log otherwise.
pub async fn wait_for_reconciled(members: &[&Member], expected: &BTreeSet<Tp>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let why = reconciled(members, expected);
        let Some(why) = why else {
            return;
        };
        if Instant::now() >= deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("{}: {:?}\n  {:?}", m.name, m.snapshot(), m.log()))
                .collect();
            panic!(
                "not reconciled within {within:?}: {why}\n{}\nnot reconciled within {within:?}: {why}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the members are not reconciled to `expected`, or `None` when they are.
pub fn reconciled(members: &[&Member], expected: &BTreeSet<Tp>) -> Option<String> {
    let mut seen = BTreeSet::new();
    for m in members {
        let snap = m.snapshot();
        if snap.state != MemberState::Stable {
            return Some(format!("{} is {:?}", m.name, snap.state));
        }
        for tp in m.owned() {
            if !seen.insert(tp.clone()) {
                return Some(format!("{tp:?} owned twice"));
            }
        }
    }
    (&seen != expected).then(|| format!("owned {seen:?}, expected {expected:?}"))
}

/// The partitions owned by more than one of `members` now (what must never happen).
pub fn double_owned(members: &[&Member]) -> Vec<Tp> {
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for m in members {
        for tp in m.owned() {
            if !seen.insert(tp.clone()) {
                twice.push(tp);
            }
        }
    }
    twice
}

/// Waits until kcon consumers and peer clients (librdkafka's or the Java client's) together own
/// every partition of `all` exactly once, each some, and that has held for `held`; panics after
/// `within` with each side's errors and events.
pub async fn wait_for_mixed_split(
    kcon: &[&Driven],
    peers: &[&GroupPeer],
    all: &BTreeSet<Tp>,
    within: Duration,
    held: Duration,
) {
    let deadline = Instant::now() + within;
    let mut held_since: Option<Instant> = None;
    loop {
        let mut owned: Vec<BTreeSet<Tp>> = kcon
            .iter()
            .map(|c| {
                c.assignment()
                    .into_iter()
                    .map(|t| (t.topic, t.partition))
                    .collect()
            })
            .collect();
        owned.extend(peers.iter().map(|p| p.assignment()));
        let split = split_exactly_once(&owned, all).and_then(|()| {
            match owned.iter().any(BTreeSet::is_empty) {
                true => Err("a member owns nothing".to_owned()),
                false => Ok(()),
            }
        });
        match split {
            Ok(()) => {
                let since = *held_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= held {
                    return;
                }
            }
            Err(why) => {
                held_since = None;
                if Instant::now() >= deadline {
                    let kcon: Vec<String> = kcon
                        .iter()
                        .map(|c| format!("{}: {:?}", c.name, c.state().errors))
                        .collect();
                    let peers: Vec<String> =
                        peers.iter().map(|p| format!("{:?}", p.events())).collect();
                    panic!("no exactly-once split: {why}\nkcon: {kcon:#?}\npeers: {peers:#?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
