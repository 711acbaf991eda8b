//! The API versions kcon speaks, and the negotiation with what a broker offers.
//!
//! Every request is sent at the highest version both sides support. kcon's own range for an API
//! is the range its code handles *and* its response guard covers: a version outside it is never
//! sent, so a response at a version kcon cannot check is never decoded.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::{Error, Result};

/// The APIs kcon speaks, with the `(min, max)` versions of each.
///
/// Lower bounds: the oldest versions `kafka-protocol` still encodes, raised where an older
/// version lacks something kcon relies on (Fetch v4: record batches and the last stable offset;
/// Produce v3: record batches).
///
/// Produce v12, EndTxn v5 and TxnOffsetCommit v5 are the same on the wire as the version
/// before, but tell the broker that a transactional producer speaks transaction version 2
/// (KIP-890): partitions and offsets join the transaction implicitly, and every EndTxn bumps
/// the epoch. A transactional producer at transaction version 1 keeps below them (it sends
/// within [`BrokerVersions::version_within`]'s window), and one at version 2 sends at them.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    // The transactional producer. AddPartitionsToTxn stops at v3: v4+ is the brokers' batched
    // form. v4 of the others says the client knows TRANSACTION_ABORTABLE (KIP-890), and v5 of
    // EndTxn and TxnOffsetCommit that it speaks transaction version 2.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    // Whether the last transaction's markers are written (at transaction version 2, before the
    // next transaction's first Produce): v0, the only version there is.
    (ApiKey::DescribeTransactions, 0, 0),
    // Share groups (KIP-932): v1, the first version Apache Kafka released; ShareFetch and
    // ShareAcknowledge v2 (Kafka 4.2: the acquire mode, lock renewal) through kcon's own
    // encoding of the fields v2 adds (`share_v2`: kafka-protocol 0.18 has v1 only).
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 2),
    (ApiKey::ShareAcknowledge, 1, 2),
    // Describing share groups (kcon-admin): ShareGroupDescribe v1 (its v0 was an early-access
    // version, gone since Kafka 4.1), DescribeShareGroupOffsets v0 and v1 (KIP-1226: each
    // share-partition's lag; kcon's `share_offsets_v1`, kafka-protocol 0.18 has v0 only).
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 1),
    // A group's configs (kcon-admin; KIP-848's GROUP config resource, Kafka 4.0+): DescribeConfigs
    // v1-v4 (v1 brings each entry's source, which says what is a default) and
    // IncrementalAlterConfigs v0-v1, what kafka-protocol 0.18 has of each.
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // Client metrics pushed to the cluster (KIP-714): v0, the only version there is.
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
];

/// APIs kcon sends at most at a version below the highest it speaks, unless the broker's
/// lowest is higher: `(api, version)`.
///
/// SyncGroup at v3: v4 adds only the flexible encoding, and v5 the protocol type and name,
/// which are for proxies that read assignments (KIP-559; kcon checks them when an answer has
/// them and needs nothing of them). librdkafka sends v3. Its mock cluster advertises v4 but
/// misreads it: a follower's v4 closes the connection, and a leader's v4 with two assignments
/// crashes the whole mock (SIGSEGV), before any step-down could help (measured with
/// librdkafka 2.16; see DESIGN.md, "Versions a broker refuses").
pub const SENT_AT_MOST: &[(ApiKey, i16)] = &[(ApiKey::SyncGroup, 3)];

/// kcon's `(min, max)` versions of an API, or `None` when kcon does not speak it.
pub fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether kcon speaks `api_key` at `version`.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    ApiKey::try_from(api_key)
        .ok()
        .and_then(supported)
        .is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The highest version of `api_key` in both kcon's range and the broker's `theirs`.
pub fn negotiate(api_key: ApiKey, theirs: Option<(i16, i16)>) -> Result<i16> {
    let ours = supported(api_key).ok_or(Error::UnsupportedVersion {
        api_key: api_key as i16,
        version: -1,
    })?;
    match theirs {
        Some((min, max)) if min.max(ours.0) <= max.min(ours.1) => {
            let highest = max.min(ours.1);
            let preferred = SENT_AT_MOST
                .iter()
                .find(|(k, _)| *k == api_key)
                .map_or(highest, |&(_, at_most)| at_most.max(min.max(ours.0)));
            Ok(highest.min(preferred))
        }
        _ => Err(Error::NoCommonVersion {
            api_key: api_key as i16,
            ours,
            theirs,
        }),
    }
}

/// The versions a broker offers, from its ApiVersions answer, with the negotiated version of
/// every API kcon speaks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerVersions {
    /// `(api key, min, max)` as the broker sent them.
    offered: Vec<(i16, i16, i16)>,
    /// The cluster's finalized features as the broker reported them (ApiVersions v3+), by
    /// name: their highest finalized level.
    finalized: Vec<(String, i16)>,
    /// `(api key, max)`: versions kcon will not go above with this broker, whatever both sides
    /// speak (a cap the application set, or a version the broker was found to mishandle).
    caps: Vec<(i16, i16)>,
}

impl BrokerVersions {
    /// From a decoded ApiVersions response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let mut offered: Vec<_> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        offered.sort_unstable();
        // The features are valid only under a finalized-features epoch (KIP-584).
        let finalized = if response.finalized_features_epoch >= 0 {
            response
                .finalized_features
                .iter()
                .map(|f| (f.name.to_string(), f.max_version_level))
                .collect()
        } else {
            Vec::new()
        };
        BrokerVersions {
            offered,
            finalized,
            caps: Vec::new(),
        }
    }

    /// From `(api key, min, max)` triples.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        let mut offered: Vec<_> = ranges.into_iter().collect();
        offered.sort_unstable();
        BrokerVersions {
            offered,
            finalized: Vec::new(),
            caps: Vec::new(),
        }
    }

    /// The same, with the finalized feature `name` at `level` (as an ApiVersions answer
    /// reports it).
    pub fn with_finalized(mut self, name: &str, level: i16) -> Self {
        self.finalized.retain(|(n, _)| n != name);
        self.finalized.push((name.to_owned(), level));
        self
    }

    /// The highest finalized level of the cluster-wide feature `name` (`transaction.version`,
    /// `group.version`, ...) as the broker reported it, or `None` when it reported none (a
    /// broker before Kafka 2.7, or a feature not finalized).
    pub fn finalized(&self, name: &str) -> Option<i16> {
        self.finalized
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, level)| level)
    }

    /// The same, with `api_key` sent at `max` at most (the lower cap wins when there was one
    /// already). [`offered`](Self::offered) still says what the broker offered;
    /// [`version`](Self::version) keeps under the cap, and fails when the cap is below both
    /// sides' lowest version.
    pub fn capped(mut self, api_key: ApiKey, max: i16) -> Self {
        let key = api_key as i16;
        match self.caps.iter_mut().find(|(k, _)| *k == key) {
            Some((_, cap)) => *cap = (*cap).min(max),
            None => self.caps.push((key, max)),
        }
        self
    }

    /// The cap on `api_key`, if one was set with [`capped`](Self::capped).
    pub fn cap(&self, api_key: ApiKey) -> Option<i16> {
        let key = api_key as i16;
        self.caps.iter().find(|(k, _)| *k == key).map(|&(_, c)| c)
    }

    /// The broker's `(min, max)` for `api_key`, or `None` if it does not offer it.
    pub fn offered(&self, api_key: ApiKey) -> Option<(i16, i16)> {
        let key = api_key as i16;
        self.offered
            .binary_search_by(|&(k, _, _)| k.cmp(&key))
            .ok()
            .map(|i| (self.offered[i].1, self.offered[i].2))
    }

    /// The version to send `api_key` at: the highest both sides support, under its cap if it
    /// has one. A cap below both sides' lowest version leaves no version: the error names kcon's
    /// range as the cap left it.
    pub fn version(&self, api_key: ApiKey) -> Result<i16> {
        let theirs = self.offered(api_key);
        let negotiated = negotiate(api_key, theirs)?;
        let Some(cap) = self.cap(api_key) else {
            return Ok(negotiated);
        };
        if cap >= negotiated {
            return Ok(negotiated);
        }
        // Invariant: negotiate succeeded, so kcon speaks the API and the broker offers it.
        let ours = supported(api_key).unwrap_or((0, cap));
        let floor = theirs.map_or(ours.0, |(min, _)| min.max(ours.0));
        if cap >= floor {
            return Ok(cap);
        }
        Err(Error::NoCommonVersion {
            api_key: api_key as i16,
            ours: (ours.0, cap),
            theirs,
        })
    }

    /// The version to send `api_key` at when the request means what only `lo..=hi` say (a
    /// transactional producer's protocol version): the highest [`version`](Self::version)
    /// allows within the window. No version in it fails naming the window as kcon's range.
    pub fn version_within(&self, api_key: ApiKey, lo: i16, hi: i16) -> Result<i16> {
        let theirs = self.offered(api_key);
        let refused = || Error::NoCommonVersion {
            api_key: api_key as i16,
            ours: (lo, hi),
            theirs,
        };
        let highest = self.version(api_key).map_err(|_| refused())?;
        let floor = theirs.map_or(lo, |(min, _)| min.max(lo));
        let version = highest.min(hi);
        if version >= floor {
            Ok(version)
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(negotiate(ApiKey::Fetch, Some((0, 16))), Ok(16));
        assert_eq!(negotiate(ApiKey::Fetch, Some((0, 99))), Ok(17));
        assert_eq!(negotiate(ApiKey::Fetch, Some((4, 4))), Ok(4));
    }

    #[test]
    fn sync_group_goes_at_v3_unless_the_broker_starts_higher() {
        assert_eq!(negotiate(ApiKey::SyncGroup, Some((0, 5))), Ok(3));
        assert_eq!(negotiate(ApiKey::SyncGroup, Some((0, 4))), Ok(3));
        assert_eq!(negotiate(ApiKey::SyncGroup, Some((0, 2))), Ok(2));
        assert_eq!(negotiate(ApiKey::SyncGroup, Some((4, 5))), Ok(4));
        assert_eq!(negotiate(ApiKey::JoinGroup, Some((0, 9))), Ok(9));
    }

    #[test]
    fn no_overlap_names_the_api_and_both_ranges() {
        let err = negotiate(ApiKey::Fetch, Some((0, 3))).unwrap_err();
        assert_eq!(
            err,
            Error::NoCommonVersion {
                api_key: 1,
                ours: (4, 17),
                theirs: Some((0, 3))
            }
        );
        assert_eq!(
            err.to_string(),
            "no common version of Fetch: kcon speaks v4-v17, the broker v0-v3"
        );
        let missing = negotiate(ApiKey::OffsetForLeaderEpoch, None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the broker does not offer OffsetForLeaderEpoch"
        );
    }

    #[test]
    fn a_window_keeps_the_version_inside_it_or_names_it() {
        let b = BrokerVersions::from_ranges([(26, 0, 5), (0, 3, 13)]);
        assert_eq!(b.version(ApiKey::EndTxn), Ok(5));
        assert_eq!(b.version_within(ApiKey::EndTxn, 0, 4), Ok(4));
        assert_eq!(b.version_within(ApiKey::EndTxn, 5, 5), Ok(5));
        assert_eq!(b.version_within(ApiKey::Produce, 3, 11), Ok(11));
        let old = BrokerVersions::from_ranges([(26, 0, 4)]);
        let e = old.version_within(ApiKey::EndTxn, 5, 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no common version of EndTxn: kcon speaks v5-v5, the broker v0-v4"
        );
        let e = BrokerVersions::default()
            .version_within(ApiKey::EndTxn, 0, 4)
            .unwrap_err();
        assert_eq!(
            e,
            Error::NoCommonVersion {
                api_key: 26,
                ours: (0, 4),
                theirs: None
            }
        );
    }

    #[test]
    fn finalized_features_count_under_an_epoch_only() {
        use kafka_protocol::messages::api_versions_response::FinalizedFeatureKey;
        use kafka_protocol::protocol::StrBytes;
        let feature = |name: &'static str, level| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_max_version_level(level)
        };
        let answer = ApiVersionsResponse::default()
            .with_finalized_features(vec![
                feature("transaction.version", 2),
                feature("group.version", 1),
            ])
            .with_finalized_features_epoch(7);
        let b = BrokerVersions::from_response(&answer);
        assert_eq!(b.finalized("transaction.version"), Some(2));
        assert_eq!(b.finalized("group.version"), Some(1));
        assert_eq!(b.finalized("share.version"), None);
        let unepoched = BrokerVersions::from_response(&answer.with_finalized_features_epoch(-1));
        assert_eq!(unepoched.finalized("transaction.version"), None);
        let set = BrokerVersions::default().with_finalized("transaction.version", 2);
        assert_eq!(set.finalized("transaction.version"), Some(2));
    }

    #[test]
    fn broker_versions_look_up_by_key() {
        let b = BrokerVersions::from_ranges([(3, 0, 12), (1, 0, 16), (18, 0, 4)]);
        assert_eq!(b.offered(ApiKey::Fetch), Some((0, 16)));
        assert_eq!(b.version(ApiKey::Metadata), Ok(12));
        assert_eq!(b.version(ApiKey::ApiVersions), Ok(3));
        assert!(b.version(ApiKey::JoinGroup).is_err());
    }

    #[test]
    fn a_cap_keeps_the_version_under_it_and_offered_as_sent() {
        let b = BrokerVersions::from_ranges([(11, 0, 9), (12, 0, 4), (1, 4, 16)])
            .capped(ApiKey::JoinGroup, 6)
            .capped(ApiKey::JoinGroup, 5)
            .capped(ApiKey::JoinGroup, 7)
            .capped(ApiKey::Fetch, 30);
        assert_eq!(b.version(ApiKey::JoinGroup), Ok(5), "the lowest cap wins");
        assert_eq!(b.cap(ApiKey::JoinGroup), Some(5));
        assert_eq!(b.offered(ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(b.version(ApiKey::Heartbeat), Ok(4), "uncapped");
        assert_eq!(
            b.version(ApiKey::Fetch),
            Ok(16),
            "a cap above changes nothing"
        );
        let below = b.capped(ApiKey::Fetch, 3);
        assert_eq!(
            below.version(ApiKey::Fetch),
            Err(Error::NoCommonVersion {
                api_key: 1,
                ours: (4, 3),
                theirs: Some((4, 16))
            })
        );
        assert_eq!(
            below.version(ApiKey::Fetch).unwrap_err().to_string(),
            "no common version of Fetch: capped at v3 (api.version.max), below the v4 both \
             sides need at least; the broker offers v4-v16"
        );
    }

    /// kafka-protocol encodes every supported version, except the versions kcon encodes itself
    /// (`share_v2`: ShareFetch and ShareAcknowledge v2; `share_offsets_v1`:
    /// DescribeShareGroupOffsets v1).
    #[test]
    fn every_supported_range_is_one_kafka_protocol_can_encode() {
        use kafka_protocol::protocol::Message;
        for &(api, min, max) in SUPPORTED {
            let mut theirs = api.valid_versions();
            if api == ApiKey::ShareFetch {
                theirs = crate::share_v2::ShareFetchRequestV2::VERSIONS;
            }
            if api == ApiKey::ShareAcknowledge {
                theirs = crate::share_v2::ShareAcknowledgeRequestV2::VERSIONS;
            }
            if api == ApiKey::DescribeShareGroupOffsets {
                theirs = crate::share_offsets_v1::DescribeShareGroupOffsetsRequestV1::VERSIONS;
            }
            assert!(
                theirs.min <= min && max <= theirs.max && min <= max,
                "{api:?}: kcon v{min}-v{max}, kafka-protocol {theirs}"
            );
        }
    }
}
