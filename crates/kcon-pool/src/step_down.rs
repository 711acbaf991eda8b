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
//! A step is one version, never below the lowest both sides speak. It is a trial until the
//! broker answers the lower version: then it is logged at WARN and kept. A broker that hangs up
//! on the lower version too is not refusing a version (a proxy that drops every JoinGroup, a
//! broker that crashes on it): the trial is undone, quietly, and hang-ups do not step that API
//! down again until it is answered at its own version. The connection the failure closed is
//! replaced anyway, so a step applies from the next connection to the broker on (each
//! connection keeps the versions it started with, so a request built for one version is never
//! sent at another). A broker that advertises a different range later (upgraded) starts over
//! from what it advertises.

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
    /// The highest version to send, when stepped down.
    ceiling: Option<Ceiling>,
    /// Hang-ups in a row, and the version they were at.
    hang_ups: Option<(i16, u32)>,
    /// A trial step on hang-ups was undone (the lower version was hung up on too): hang-ups
    /// do not step this API down again until it is answered.
    hang_ups_not_the_version: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ceiling {
    version: i16,
    /// The first version refused, and why.
    from: i16,
    why: Refusal,
    /// Not answered at `version` yet.
    trial: bool,
    /// The range the broker advertised when the step was made.
    offered: Option<(i16, i16)>,
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
    /// use on it, stepped-down APIs capped. A step made under another advertised range is
    /// dropped.
    pub(crate) fn connected(&self, offered: BrokerVersions) -> BrokerVersions {
        let mut st = self.lock();
        let mut versions = offered.clone();
        for (&key, api) in &mut st.apis {
            let Ok(k) = ApiKey::try_from(key) else {
                continue;
            };
            let Some(c) = api.ceiling else {
                continue;
            };
            if offered.offered(k) != c.offered {
                info!(peer = %self.peer, api = ?k, "the broker advertises other versions now: its step-down is undone");
                *api = Api::default();
                continue;
            }
            versions = versions.capped(k, c.version);
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

    /// `api_key` at `version` was answered (and the answer decoded): the version works. A
    /// trial step to it is kept from now on, and logged at WARN.
    pub(crate) fn answered(&self, api_key: i16, version: i16) {
        if exempt(api_key) {
            return;
        }
        let mut st = self.lock();
        let Some(api) = st.apis.get_mut(&api_key) else {
            return;
        };
        if api.hang_ups.is_some_and(|(v, _)| v == version) {
            api.hang_ups = None;
        }
        match &mut api.ceiling {
            Some(c) if c.trial && c.version == version => {
                c.trial = false;
                let Ok(k) = ApiKey::try_from(api_key) else {
                    return;
                };
                let what = match c.why {
                    Refusal::HungUp => "closes the connection on",
                    Refusal::Undecodable => "answers in a layout kcon cannot read",
                };
                let above = if c.from == version + 1 {
                    format!("v{}", c.from)
                } else {
                    format!("v{} to v{}", version + 1, c.from)
                };
                warn!(
                    "{} advertises {k:?} {above} but {what} it, and answers v{version}: sending \
                     it {k:?} v{version} from now on (api.version.max caps a version by hand)",
                    self.peer
                );
            }
            Some(_) => {}
            None => api.hang_ups_not_the_version = false,
        }
    }

    /// The broker refused `api_key` at `version` (`why`). Returns the version it gets from the
    /// next connection on when this stepped it down (or back up, undoing a trial).
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
        if api.ceiling.is_some_and(|c| c.version < version) {
            // A connection made before the step-down: already dealt with.
            return None;
        }
        if why == Refusal::HungUp && api.hang_ups_not_the_version {
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
        if let Some(c) = api.ceiling
            && c.trial
            && why == Refusal::HungUp
        {
            // The lower version is hung up on as well: the version is not what the broker
            // refuses. Back to what it advertises.
            debug!(peer = %self.peer, api = ?k, version, "the broker hangs up on the lower version too: not a version it refuses; the step-down is undone");
            api.ceiling = None;
            api.hang_ups_not_the_version = true;
            return Some(offered.map_or(version, |(_, max)| max));
        }
        let lower = version - 1;
        if lower < floor {
            debug!(peer = %self.peer, api = ?k, version, "the broker refuses the lowest version both sides speak: nothing to step down to");
            return None;
        }
        let from = api.ceiling.map_or(version, |c| c.from);
        api.ceiling = Some(Ceiling {
            version: lower,
            from,
            why,
            trial: true,
            offered,
        });
        debug!(peer = %self.peer, api = ?k, version, lower, ?why, "the broker refuses this version: trying the one below");
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

    fn version(s: &StepDown, api: ApiKey) -> i16 {
        let offered = s.lock().offered.clone();
        s.connected(offered).version(api).unwrap()
    }

    fn trial(s: &StepDown, api: ApiKey) -> Option<bool> {
        s.lock()
            .apis
            .get(&(api as i16))
            .and_then(|a| a.ceiling)
            .map(|c| c.trial)
    }

    #[test]
    fn two_hang_ups_in_a_row_step_one_version_down_kept_once_answered() {
        let s = step_down();
        assert_eq!(version(&s, ApiKey::JoinGroup), 6);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(
            version(&s, ApiKey::JoinGroup),
            6,
            "one hang-up is not enough"
        );
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
        assert_eq!(version(&s, ApiKey::JoinGroup), 5);
        assert_eq!(trial(&s, ApiKey::JoinGroup), Some(true));
        s.answered(11, 5);
        assert_eq!(trial(&s, ApiKey::JoinGroup), Some(false));
        // A late hang-up at v6, from a connection made before: nothing more.
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(version(&s, ApiKey::JoinGroup), 5);
        // Other APIs are untouched.
        assert_eq!(version(&s, ApiKey::LeaveGroup), 4);
    }

    #[test]
    fn an_answer_or_a_failed_connect_in_between_starts_the_count_over() {
        let s = step_down();
        s.refused(11, 6, Refusal::HungUp);
        s.answered(11, 6);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        s.connect_failed();
        assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        assert_eq!(version(&s, ApiKey::JoinGroup), 6);
        // An answer to another API changes nothing.
        s.answered(14, 4);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
    }

    #[test]
    fn a_broker_hanging_up_on_the_lower_version_too_is_not_refusing_a_version() {
        // A proxy that drops every JoinGroup: the trial step to v5 is undone after two
        // hang-ups at v5, and hang-ups step JoinGroup down no more...
        let s = step_down();
        s.refused(11, 6, Refusal::HungUp);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
        s.refused(11, 5, Refusal::HungUp);
        assert_eq!(s.refused(11, 5, Refusal::HungUp), Some(6), "undone");
        assert_eq!(version(&s, ApiKey::JoinGroup), 6);
        for _ in 0..10 {
            assert_eq!(s.refused(11, 6, Refusal::HungUp), None);
        }
        assert_eq!(version(&s, ApiKey::JoinGroup), 6);
        // ... until JoinGroup is answered at its own version again.
        s.answered(11, 6);
        s.refused(11, 6, Refusal::HungUp);
        assert_eq!(s.refused(11, 6, Refusal::HungUp), Some(5));
    }

    #[test]
    fn undecodable_answers_step_down_at_once_and_never_below_the_floor() {
        let s = step_down();
        assert_eq!(s.refused(13, 4, Refusal::Undecodable), Some(3));
        assert_eq!(s.refused(13, 3, Refusal::Undecodable), Some(2));
        assert_eq!(version(&s, ApiKey::LeaveGroup), 2);
        s.answered(13, 2);
        assert_eq!(trial(&s, ApiKey::LeaveGroup), Some(false));
        // Fetch: kcon's lowest is v4, the broker's too.
        assert_eq!(s.refused(1, 4, Refusal::Undecodable), None);
        // The handshake's own APIs are never stepped down.
        assert_eq!(s.refused(18, 3, Refusal::Undecodable), None);
    }

    #[test]
    fn a_broker_advertising_other_versions_starts_over() {
        let s = step_down();
        s.refused(11, 6, Refusal::Undecodable);
        assert_eq!(version(&s, ApiKey::JoinGroup), 5);
        let upgraded = s.connected(BrokerVersions::from_ranges([(11, 0, 9)]));
        assert_eq!(upgraded.version(ApiKey::JoinGroup), Ok(9));
    }
}
