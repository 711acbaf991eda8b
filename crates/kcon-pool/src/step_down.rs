//! Versions a broker advertises but cannot serve: a request it answers by closing the
//! connection, twice in a row, or with bytes that do not decode as the version asked, is sent
//! one version lower to that broker from its next connection on.
//!
//! Kafka closes the connection on a request it cannot parse, and so do proxies and
//! Kafka-compatible brokers in front of versions they advertise but misread (librdkafka's mock
//! cluster with JoinGroup v6 and SyncGroup v4; it answers LeaveGroup v3+ without the members
//! array). Such a broker otherwise works: it sets connections up and answers everything else.
//! What is counted, per broker address and API:
//! - a hang-up: the broker closed the connection (or reset it) while the request was the
//!   oldest one waiting on it. A broker answers a connection's requests in order, so the
//!   oldest unanswered request is the one it was reading when it gave up. Two in a row, at the
//!   same version, step the API down; a request answered at that version, or a connect to the
//!   broker that fails in between (an outage, not a refusal), starts the count over;
//! - an undecodable answer: the answer arrived whole, but does not decode at the version it
//!   was asked at. No network fault does that; one steps the API down.
//!
//! A step is one version, never below the lowest both sides speak, and logged at WARN. The
//! connection the failure closed is replaced anyway, so the lower version applies from the
//! next connection to the broker on (each connection keeps the versions it started with, so
//! a request built for one version is never sent at another). A broker that advertises a
//! different range later (upgraded) starts over from what it advertises.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::versions::{BrokerVersions, supported};
use tracing::{debug, info, warn};

use crate::error::Peer;

/// Hang-ups in a row, at one version, that step an API down.
pub(crate) const HANG_UPS: u32 = 2;

/// What is known of one broker's versions beyond what it advertises. Shared by every
/// connection the pool makes to that address; a leaf lock (taken while holding no other).
#[derive(Debug)]
pub(crate) struct StepDown {
    peer: Peer,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// What the broker advertised on the last connection.
    offered: BrokerVersions,
    apis: HashMap<i16, Api>,
}

#[derive(Debug, Default)]
struct Api {
    /// The highest version to send, when stepped down; with the range the broker advertised
    /// then.
    ceiling: Option<(i16, Option<(i16, i16)>)>,
    /// Hang-ups in a row, and the version they were at.
    hang_ups: Option<(i16, u32)>,
}

/// Why a version is stepped down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The broker closed the connection on the request.
    HungUp,
    /// The broker's answer does not decode at the request's version.
    Undecodable,
}

/// The APIs never stepped down: the connection's own setup, which has its own fallbacks.
fn exempt(api_key: i16) -> bool {
    [
        ApiKey::ApiVersions,
        ApiKey::SaslHandshake,
        ApiKey::SaslAuthenticate,
    ]
    .iter()
    .any(|k| *k as i16 == api_key)
}

impl StepDown {
    /// Nothing known yet of `peer`.
    pub(crate) fn new(peer: Peer) -> StepDown {
        StepDown {
            peer,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection was set up and the broker advertised `offered`: returns the versions to
    /// use on it, stepped-down APIs capped. A ceiling found under another advertised range is
    /// dropped.
    pub(crate) fn connected(&self, offered: BrokerVersions) -> BrokerVersions {
        let mut st = self.lock();
        let mut versions = offered.clone();
        for (&key, api) in &mut st.apis {
            let Ok(k) = ApiKey::try_from(key) else {
                continue;
            };
            let Some((ceiling, then)) = api.ceiling else {
                continue;
            };
            if offered.offered(k) != then {
                info!(peer = %self.peer, api = ?k, "the broker advertises other versions now: its step-down is undone");
                api.ceiling = None;
                api.hang_ups = None;
                continue;
            }
            versions = versions.capped(k, ceiling);
        }
        st.offered = offered;
        versions
    }

    /// A connect to the broker failed: hang-ups before it may have been an outage, so the
    /// counts start over.
    pub(crate) fn connect_failed(&self) {
        for api in self.lock().apis.values_mut() {
            api.hang_ups = None;
        }
    }

    /// `api_key` at `version` was answered (and the answer decoded): the version works.
    pub(crate) fn answered(&self, api_key: i16, version: i16) {
        if exempt(api_key) {
            return;
        }
        let mut st = self.lock();
        if let Some(api) = st.apis.get_mut(&api_key)
            && api.hang_ups.is_some_and(|(v, _)| v == version)
        {
            api.hang_ups = None;
        }
    }

    /// The broker refused `api_key` at `version` (`why`). Returns the version it gets from now
    /// on when this stepped it down.
    pub(crate) fn refused(&self, api_key: i16, version: i16, why: Refusal) -> Option<i16> {
        if exempt(api_key) {
            return None;
        }
        let k = ApiKey::try_from(api_key).ok()?;
        let mut st = self.lock();
        let offered = st.offered.offered(k);
        let floor = match (offered, supported(k)) {
            (Some((theirs, _)), Some((ours, _))) => theirs.max(ours),
            _ => return None,
        };
        let api = st.apis.entry(api_key).or_default();
        if api.ceiling.is_some_and(|(c, _)| c < version) {
            // A connection made before the step-down: already dealt with.
            return None;
        }
        let count = match (why, api.hang_ups) {
            (Refusal::Undecodable, _) => HANG_UPS,
            (Refusal::HungUp, Some((v, n))) if v == version => n + 1,
            (Refusal::HungUp, _) => 1,
        };
        if count < HANG_UPS {
            debug!(peer = %self.peer, api = ?k, version, "the broker closed the connection on this request; once more at this version steps it down");
            api.hang_ups = Some((version, count));
            return None;
        }
        api.hang_ups = None;
        let lower = version - 1;
        if lower < floor {
            debug!(peer = %self.peer, api = ?k, version, "the broker refuses the lowest version both sides speak: nothing to step down to");
            return None;
        }
        api.ceiling = Some((lower, offered));
        let what = match why {
            Refusal::HungUp => format!(
                "closed the connection on {k:?} v{version} {HANG_UPS} times in a row, though it \
                 sets connections up and answers other requests"
            ),
            Refusal::Undecodable => {
                format!("answered {k:?} v{version} with bytes that do not decode as v{version}")
            }
        };
        warn!(
            "{} {what}: sending it {k:?} v{lower} from now on (api.version.max caps a version \
             by hand)",
            self.peer
        );
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_down() -> StepDown {
        let s = StepDown::new(Peer::broker(1, "h:1"));
        // JoinGroup 0-6, SyncGroup 0-4, LeaveGroup 0-4, Fetch 4-16.
        s.connected(BrokerVersions::from_ranges([
            (11, 0, 6),
            (14, 0, 4),
            (13, 0, 4),
            (1, 4, 16),
        ]));
        s
    }

    fn join_version(s: &StepDown) -> i16 {
        let offered = s.lock().offered.clone();
        s.connected(offered).version(ApiKey::JoinGroup).unwrap()
    }

    #[test]
    fn two_hang_ups_in_a_row_step_one_version_down() {
        let s = step_down();
        assert_eq!(join_version(&s), 6);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(join_version(&s), 6, "one hang-up is not enough");
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
        assert_eq!(join_version(&s), 5);
        // A late hang-up at v6, from a connection made before: nothing more.
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(join_version(&s), 5);
        // Other APIs are untouched.
        let offered = s.lock().offered.clone();
        assert_eq!(s.connected(offered).version(ApiKey::SyncGroup), Ok(4));
    }

    #[test]
    fn an_answer_or_a_failed_connect_in_between_starts_the_count_over() {
        let s = step_down();
        s.refused(11, 6, Refusal::HungUp);
        s.answered(11, 6);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        s.connect_failed();
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(join_version(&s), 6);
        // An answer to another API changes nothing.
        s.answered(14, 4);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
    }

    #[test]
    fn an_undecodable_answer_steps_down_at_once_and_never_below_the_floor() {
        let s = step_down();
        assert_eq!(s.refused(13, 4, Refusal::Undecodable), Some(3));
        assert_eq!(s.refused(13, 3, Refusal::Undecodable), Some(2));
        // Fetch: kcon's lowest is v4, the broker's too.
        assert_eq!(s.refused(1, 4, Refusal::Undecodable), None);
        // The handshake's own APIs are never stepped down.
        assert_eq!(s.refused(18, 3, Refusal::Undecodable), None);
    }

    #[test]
    fn a_broker_advertising_other_versions_starts_over() {
        let s = step_down();
        s.refused(11, 6, Refusal::Undecodable);
        assert_eq!(join_version(&s), 5);
        let upgraded = s.connected(BrokerVersions::from_ranges([(11, 0, 9)]));
        assert_eq!(upgraded.version(ApiKey::JoinGroup), Ok(9));
    }
}
