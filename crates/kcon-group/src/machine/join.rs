//! Joining: JoinGroup, the leader's assignment, SyncGroup, and the revocations a rebalance
//! asks for (eager and cooperative).

use super::*;

impl GroupMachine {
    pub(super) fn on_phase_failure(&mut self, failure: RequestFailure, now: Instant) {
        if !failure.retriable {
            if let Phase::Leaving { .. } = self.phase {
                self.left(now);
            } else {
                self.fail(
                    GroupError::request_failed(failure.reason, failure.cause),
                    now,
                );
            }
            return;
        }
        match &self.phase {
            Phase::Assigning { .. } => {
                // Metadata goes to any broker: retry after a backoff.
                let at = self.try_failed(Try::Metadata, &failure, now);
                if let Phase::Assigning {
                    in_flight,
                    retry_at,
                    ..
                } = &mut self.phase
                {
                    *in_flight = None;
                    *retry_at = Some(at);
                }
            }
            Phase::Leaving { .. } => self.left(now),
            Phase::Joining { .. } => {
                // The coordinator is looked up again at once, but the JoinGroup waits for its
                // own backoff: a coordinator that hangs up on every JoinGroup is found again
                // each time, and must not get them at the pace of lookups.
                let at = self.try_failed(Try::Join, &failure, now);
                self.coordinator_lost(&failure.reason, now);
                self.start_join(Some(at));
            }
            Phase::Syncing { .. } => {
                // The Java client rejoins when SyncGroup cannot complete: the generation being
                // completed is probably gone with the coordinator. The rejoin waits for the
                // SyncGroup's backoff, or a coordinator hanging up on SyncGroup would see a
                // JoinGroup and a SyncGroup per lookup.
                let at = self.try_failed(Try::Sync, &failure, now);
                self.coordinator_lost(&failure.reason, now);
                self.start_join(Some(at));
            }
            _ => self.coordinator_lost(&failure.reason, now),
        }
    }

    pub(super) fn on_join(&mut self, answer: JoinGroupAnswer, now: Instant) {
        let error_code = answer.error_code;
        if matches!(
            error_code,
            code::NONE
                | code::MEMBER_ID_REQUIRED
                | code::UNKNOWN_MEMBER_ID
                | code::ILLEGAL_GENERATION
                | code::REBALANCE_IN_PROGRESS
        ) {
            // The coordinator took the JoinGroup in: the request works, whatever the member
            // must do next.
            self.try_answered(Try::Join, now);
        }
        match error_code {
            code::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                // KIP-394: the coordinator gave the member an id to join with; rejoin at once.
                debug!(group = %self.config.group_id, member_id = %answer.member_id, "member id required; rejoining with it");
                self.generation.member_id = answer.member_id;
                self.start_join(None);
                return;
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
                return;
            }
            code::REBALANCE_IN_PROGRESS => {
                let delay = self.rebalance_backoff();
                self.start_join(Some(now + delay));
                return;
            }
            code::COORDINATOR_LOAD_IN_PROGRESS => {
                let at = self.try_refused(Try::Join, error_code, now);
                self.start_join(Some(at));
                return;
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                let at = self.try_refused(Try::Join, error_code, now);
                self.coordinator_lost(&coordinator_error("JoinGroup", error_code), now);
                self.start_join(Some(at));
                return;
            }
            code::FENCED_INSTANCE_ID => {
                self.fail_broker(ApiKey::JoinGroup, error_code, now);
                return;
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::JoinGroup, error_code, now);
                return;
            }
            _ => {
                // Retriable, or unexpected: join again after the backoff.
                debug!(group = %self.config.group_id, error = %error_name(error_code), "JoinGroup failed; joining again after a backoff");
                let at = self.try_refused(Try::Join, error_code, now);
                self.start_join(Some(at));
                return;
            }
        }
        if let Some(t) = &answer.protocol_type
            && t != PROTOCOL_TYPE
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("protocol type {PROTOCOL_TYPE:?}"),
                    got: t.clone(),
                },
                now,
            );
            return;
        }
        let Some(name) = answer
            .protocol_name
            .clone()
            .filter(|n| self.assignor(n).is_some())
        else {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("one of {:?}", self.assignor_names()),
                    got: answer.protocol_name.clone().unwrap_or_default(),
                },
                now,
            );
            return;
        };
        self.rebalance_attempts = 0;
        self.generation = Generation {
            id: answer.generation_id,
            member_id: answer.member_id.clone(),
            protocol_name: Some(name),
        };
        let leader = answer.leader == answer.member_id;
        info!(group = %self.config.group_id, generation = answer.generation_id, member_id = %answer.member_id, leader, "joined the group");
        self.events.push_back(GroupEvent::Joined {
            generation_id: answer.generation_id,
            member_id: answer.member_id.clone(),
            leader,
        });
        // Java resets the heartbeat timers when a join completes.
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        // A new generation is the follow-up rebalance (a static leader's restart that kept
        // the generation learns again from its snapshot, in `on_sync`).
        self.follow_up = None;
        self.heartbeat.session_deadline = now + self.config.session_timeout;
        // A static leader whose assignment the coordinator kept (KIP-814, `skip_assignment`)
        // doesn't assign, but must go on watching partition counts (`metadata_updated`). A
        // leader that rejoined (say after UNKNOWN_MEMBER_ID) keeps the snapshot of the
        // metadata it assigned from, so that a count that changed meanwhile still makes it
        // rejoin; one without a snapshot (a restarted process) takes the current metadata
        // first (`on_metadata`), as Java's `onLeaderElected` keeps its metadata snapshot.
        let keeps_snapshot = answer.skip_assignment && self.assigned_metadata.is_some();
        if leader && answer.skip_assignment && self.reassign_needed {
            // It rejoined to assign again, but the coordinator (seeing a static member come
            // back to a Stable group) kept the old assignment: once synced, rejoin as the
            // known leader, which makes the coordinator rebalance.
            self.rejoin_needed = Some(PARTITION_COUNT_CHANGED.to_owned());
        }
        if leader && !keeps_snapshot {
            self.phase = Phase::Assigning {
                join: answer,
                in_flight: None,
                retry_at: None,
            };
        } else {
            if !leader {
                self.assigned_metadata = None;
                self.reassign_needed = false;
            }
            self.phase = Phase::Syncing {
                assignments: Vec::new(),
                in_flight: None,
            };
        }
    }

    pub(super) fn on_metadata(&mut self, topics: TopicPartitions, now: Instant) {
        if !matches!(self.phase, Phase::Assigning { .. }) {
            return;
        }
        self.try_answered(Try::Metadata, now);
        let Phase::Assigning { join, .. } = &self.phase else {
            return;
        };
        let mut members = Vec::with_capacity(join.members.len());
        let mut versions = BTreeMap::new();
        for m in &join.members {
            let subscription = match Subscription::decode(&m.metadata) {
                Ok(s) => s,
                Err(e) => {
                    // One member's bad bytes must not stop the group: it gets nothing and
                    // will rejoin when it sees its empty assignment (the Java leader would
                    // throw and fail the rebalance for everyone).
                    warn!(group = %self.config.group_id, member_id = %m.member_id, error = %e, "a member's subscription does not decode; it gets no partitions");
                    Subscription::default()
                }
            };
            versions.insert(m.member_id.clone(), subscription_version(&m.metadata));
            members.push(MemberSubscription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                subscription,
            });
        }
        let skip_assignment = join.skip_assignment;
        let subscribed: BTreeSet<&String> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter())
            .collect();
        self.assigned_metadata = Some(
            topics
                .iter()
                .filter(|(t, _)| subscribed.contains(t))
                .map(|(t, p)| (t.clone(), p.len()))
                .collect(),
        );
        if skip_assignment {
            // KIP-814: the coordinator kept every member's assignment; SyncGroup without one.
            self.rebalance_attempts = 0;
            self.phase = Phase::Syncing {
                assignments: Vec::new(),
                in_flight: None,
            };
            return;
        }
        let name = self.generation.protocol_name.clone().unwrap_or_default();
        // Invariant: on_join moved to Assigning only with a protocol name among the assignors.
        let assignor = self.assignor(&name).expect("the chosen assignor");
        let result = match assignor.assign(&members, &topics) {
            Ok(r) => r,
            Err(e) => {
                self.fail(GroupError::Assignor(e), now);
                return;
            }
        };
        self.reassign_needed = false;
        // Partitions moving between members are withheld from everyone until their owners
        // revoked them (KIP-429): a follow-up rebalance must come (`Timer::FollowUp`).
        let withheld = if self.protocol == RebalanceProtocol::Cooperative {
            let given: BTreeSet<(&str, i32)> = result
                .values()
                .flat_map(|a| a.partitions.iter())
                .map(|tp| (tp.topic.as_str(), tp.partition))
                .collect();
            topics
                .iter()
                .filter(|(t, _)| subscribed.contains(t))
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), p.partition)))
                .filter(|tp| !given.contains(tp))
                .count()
        } else {
            0
        };
        let assignments = members
            .iter()
            .map(|m| {
                let mut a = result.get(&m.member_id).cloned().unwrap_or_default();
                if m.member_id == self.generation.member_id && a.user_data.is_none() {
                    // What this leader assigned from, for a later incarnation of it that
                    // is told to skip the assignment (`snapshot`).
                    a.user_data = self
                        .assigned_metadata
                        .as_ref()
                        .and_then(|counts| snapshot::encode(counts, withheld));
                }
                // Each member gets the assignment in the version its subscription used (at
                // most kcon's), so an older client reads it.
                let version = versions
                    .get(&m.member_id)
                    .copied()
                    .flatten()
                    .unwrap_or(0)
                    .clamp(0, protocol::ASSIGNMENT_VERSION);
                (m.member_id.clone(), a.encode(version))
            })
            .collect();
        self.rebalance_attempts = 0;
        self.phase = Phase::Syncing {
            assignments,
            in_flight: None,
        };
    }

    pub(super) fn on_sync(
        &mut self,
        error_code: i16,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignment: Bytes,
        now: Instant,
    ) {
        if matches!(
            error_code,
            code::NONE
                | code::REBALANCE_IN_PROGRESS
                | code::UNKNOWN_MEMBER_ID
                | code::ILLEGAL_GENERATION
        ) {
            self.try_answered(Try::Sync, now);
        }
        match error_code {
            code::NONE => {}
            code::REBALANCE_IN_PROGRESS => {
                // Another rebalance started before this one completed: join it. Owned
                // partitions stay owned under the cooperative protocol (eager revoked them
                // before joining).
                self.start_join(None);
                return;
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
                return;
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                let at = self.try_refused(Try::Sync, error_code, now);
                self.coordinator_lost(&coordinator_error("SyncGroup", error_code), now);
                self.start_join(Some(at));
                return;
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::SyncGroup, error_code, now);
                return;
            }
            _ => {
                // Retriable, or unexpected (librdkafka's mock cluster answers INVALID_REQUEST
                // to a follower that syncs after the leader): rejoin after the backoff, as
                // librdkafka does for every SyncGroup error but FENCED_INSTANCE_ID.
                debug!(group = %self.config.group_id, error = %error_name(error_code), "SyncGroup failed; joining again after a backoff");
                let at = self.try_refused(Try::Sync, error_code, now);
                self.start_join(Some(at));
                return;
            }
        }
        if let Some(t) = protocol_type
            && t != PROTOCOL_TYPE
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("protocol type {PROTOCOL_TYPE:?}"),
                    got: t,
                },
                now,
            );
            return;
        }
        if let Some(n) = protocol_name
            && Some(&n) != self.generation.protocol_name.as_ref()
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("{:?} (from JoinGroup)", self.generation.protocol_name),
                    got: n,
                },
                now,
            );
            return;
        }
        let assigned = if assignment.is_empty() {
            // Brokers send an empty assignment to a member the leader left out.
            Assignment::default()
        } else {
            match Assignment::decode(&assignment) {
                Ok(a) => a,
                Err(e) => {
                    self.fail(GroupError::CorruptAssignment(e), now);
                    return;
                }
            }
        };
        let kept = assigned.user_data.as_deref().and_then(snapshot::decode);
        if let Some(ours) = &self.assigned_metadata
            && let Some(from) = &kept
            && from.counts != *ours
        {
            // This leader's assignment was made from other partition counts than the ones it
            // holds: it restarted and was told to skip the assignment (KIP-814) while a topic
            // changed. Rejoining as the known leader makes the coordinator rebalance.
            info!(group = %self.config.group_id, "the assignment kept for this leader predates a partition count change; rejoining");
            self.reassign_needed = true;
            self.rejoin_needed
                .get_or_insert_with(|| PARTITION_COUNT_CHANGED.to_owned());
        }
        if let Some(from) = &kept
            && from.withheld > 0
            && self.protocol == RebalanceProtocol::Cooperative
        {
            // This leader's assignment (its own, or its previous process's) withheld
            // partitions: if the generation has not moved on once every revoking member had
            // its rebalance timeout to rejoin, one of them is gone (a static member restarted
            // before it rejoined, this leader included), and this leader rejoins.
            self.follow_up = Some((self.generation.id, now + self.config.max_poll_interval));
        }
        self.rebalance_attempts = 0;
        let new: BTreeSet<TopicPartition> = assigned.partitions.into_iter().collect();
        let generation_id = self.generation.id;
        self.owned_generation = generation_id;
        self.phase = Phase::Stable;
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        match self.protocol {
            RebalanceProtocol::Eager => {
                // Everything was revoked before joining: all of it is new.
                self.assignment = new.clone();
                info!(group = %self.config.group_id, generation = generation_id, partitions = new.len(), "assigned");
                self.events.push_back(GroupEvent::Assigned {
                    partitions: new.into_iter().collect(),
                    generation_id,
                });
            }
            RebalanceProtocol::Cooperative => {
                let added: Vec<TopicPartition> =
                    new.difference(&self.assignment).cloned().collect();
                let revoked: Vec<TopicPartition> =
                    self.assignment.difference(&new).cloned().collect();
                info!(group = %self.config.group_id, generation = generation_id, added = added.len(), revoked = revoked.len(), "assigned (cooperative)");
                // KIP-429: partitions taken away are revoked first; the member then rejoins so
                // the leader can give them to their new owner, once the other members have
                // had time to get this generation's assignment (HANDOVER_DELAY). Partitions
                // kept are consumed throughout.
                self.assignment.extend(added.iter().cloned());
                if !revoked.is_empty() {
                    self.revoke(revoked, AfterRevoke::HandOver(now + HANDOVER_DELAY), now);
                    // The revoke left the phase at Revoking; the member stays in its
                    // generation and keeps heartbeating meanwhile.
                }
                // Always told, even when empty: the rebalance is complete for this member.
                self.events.push_back(GroupEvent::Assigned {
                    partitions: added,
                    generation_id,
                });
            }
        }
        if matches!(self.phase, Phase::Stable)
            && let Some(reason) = self.rejoin_needed.take()
        {
            self.prepare_rejoin(&reason, now);
        }
    }

    // ----- transitions -----

    /// Starts a rebalance from a member that may own partitions: eager revokes everything
    /// first; cooperative revokes only partitions of topics no longer subscribed.
    pub(super) fn prepare_rejoin(&mut self, reason: &str, now: Instant) {
        self.join_reason = reason.to_owned();
        let to_revoke: Vec<TopicPartition> = match self.protocol {
            RebalanceProtocol::Eager => self.assignment.iter().cloned().collect(),
            RebalanceProtocol::Cooperative => self
                .assignment
                .iter()
                .filter(|tp| !self.topics.contains(&tp.topic))
                .cloned()
                .collect(),
        };
        if self.protocol == RebalanceProtocol::Eager {
            self.previous_assignment = to_revoke.clone();
            self.previous_generation = self.generation.id;
        }
        if to_revoke.is_empty() || !self.generation.is_valid() {
            if !to_revoke.is_empty() {
                self.lose_all();
            }
            self.start_join(None);
        } else {
            self.revoke(to_revoke, AfterRevoke::Join, now);
        }
    }

    pub(super) fn revoke(
        &mut self,
        partitions: Vec<TopicPartition>,
        then: AfterRevoke,
        now: Instant,
    ) {
        let id = RevocationId(self.next_revocation);
        self.next_revocation += 1;
        info!(group = %self.config.group_id, partitions = partitions.len(), "revoking");
        self.events.push_back(GroupEvent::Revoked {
            partitions: partitions.clone(),
            id,
        });
        // Widening a pending revocation (see `leave`): its deadline stands.
        let deadline = now + self.config.max_poll_interval;
        Revocation::add(&mut self.revocation, id, partitions, deadline);
        self.phase = Phase::Revoking(then);
    }

    pub(super) fn finish_revocation(&mut self, now: Instant) {
        let Some(r) = self.revocation.take() else {
            return;
        };
        for tp in r.partitions() {
            self.assignment.remove(tp);
        }
        match self.phase {
            Phase::Revoking(AfterRevoke::Join) => self.start_join(None),
            Phase::Revoking(AfterRevoke::HandOver(at)) => {
                self.start_join(Some(at).filter(|&t| t > now))
            }
            Phase::Revoking(AfterRevoke::Leave(then)) => self.send_leave(then, now),
            _ => {}
        }
    }

    pub(super) fn start_join(&mut self, retry_at: Option<Instant>) {
        if self.topics.is_empty() {
            self.phase = Phase::Idle;
            return;
        }
        self.phase = Phase::Joining {
            in_flight: None,
            retry_at,
        };
    }

    /// The coordinator said the member's generation or id is no longer valid: its partitions
    /// are lost (not revoked: another member may own them already), and it joins afresh.
    pub(super) fn reset_generation(&mut self, error_code: i16, now: Instant) {
        warn!(group = %self.config.group_id, error = %error_name(error_code), generation = self.generation.id, "the coordinator no longer knows this generation; partitions lost, rejoining");
        self.lose_all();
        self.generation.id = -1;
        self.generation.protocol_name = None;
        // ILLEGAL_GENERATION keeps the member id (the coordinator still knows the member);
        // UNKNOWN_MEMBER_ID does not (the Java client's `resetStateAndRejoin`).
        if error_code == code::UNKNOWN_MEMBER_ID {
            self.generation.member_id.clear();
        }
        self.heartbeat.in_flight = None;
        match self.phase {
            Phase::Leaving { then, .. } | Phase::Revoking(AfterRevoke::Leave(then)) => {
                self.finish_leave(then, now);
            }
            _ => self.start_join(None),
        }
    }

    pub(super) fn lose_all(&mut self) {
        self.revocation = None;
        self.owned_generation = -1;
        if self.assignment.is_empty() {
            return;
        }
        let partitions: Vec<TopicPartition> =
            std::mem::take(&mut self.assignment).into_iter().collect();
        self.losses += 1;
        self.events.push_back(GroupEvent::Lost { partitions });
    }

    pub(super) fn phase_request(&mut self, now: Instant) -> Option<Outgoing> {
        let coordinator = self.coordinator.known().cloned();
        let id = self.ids.peek();
        let request = match &mut self.phase {
            Phase::Joining {
                in_flight: in_flight @ None,
                retry_at,
            } if retry_at.is_none_or(|t| now >= t) => {
                let coordinator = coordinator?;
                *in_flight = Some(id);
                *retry_at = None;
                // This JoinGroup carries the latest subscription.
                self.rejoin_needed = None;
                self.tries.join.sent();
                let timeout = Some(self.config.max_poll_interval + Duration::from_secs(5));
                let join = self.join_request();
                return Some(self.outgoing(
                    Target::Coordinator(coordinator),
                    GroupRequest::JoinGroup(join),
                    timeout,
                ));
            }
            Phase::Assigning {
                join,
                in_flight: in_flight @ None,
                retry_at,
            } if retry_at.is_none_or(|t| now >= t) => {
                *in_flight = Some(id);
                *retry_at = None;
                let topics = join
                    .members
                    .iter()
                    .filter_map(|m| Subscription::decode(&m.metadata).ok())
                    .flat_map(|s| s.topics)
                    .collect();
                GroupRequest::Metadata { topics }
            }
            Phase::Syncing {
                assignments,
                in_flight: in_flight @ None,
            } => {
                coordinator.as_ref()?;
                *in_flight = Some(id);
                GroupRequest::SyncGroup(SyncGroup {
                    group_id: self.config.group_id.clone(),
                    generation_id: self.generation.id,
                    member_id: self.generation.member_id.clone(),
                    group_instance_id: self.config.group_instance_id.clone(),
                    protocol_type: PROTOCOL_TYPE.to_owned(),
                    protocol_name: self.generation.protocol_name.clone().unwrap_or_default(),
                    assignments: std::mem::take(assignments),
                })
            }
            Phase::Leaving {
                in_flight: in_flight @ None,
                ..
            } => {
                coordinator.as_ref()?;
                *in_flight = Some(id);
                // Invariant: send_leave entered Leaving only with a request to send.
                let leave = self
                    .leave_request(&self.leave_reason)
                    .expect("a LeaveGroup to send");
                GroupRequest::LeaveGroup(leave)
            }
            _ => {
                let leave = self.pending_leave.take()?;
                return Some(self.outgoing(
                    Target::Coordinator(coordinator?),
                    GroupRequest::LeaveGroup(leave),
                    None,
                ));
            }
        };
        match &request {
            GroupRequest::Metadata { .. } => self.tries.metadata.sent(),
            GroupRequest::SyncGroup(_) => self.tries.sync.sent(),
            _ => {}
        }
        let target = match request {
            GroupRequest::Metadata { .. } => Target::Any,
            // Invariant: the arms above returned when a coordinator request had no coordinator.
            _ => Target::Coordinator(coordinator.expect("a known coordinator")),
        };
        Some(self.outgoing(target, request, None))
    }

    pub(super) fn join_request(&self) -> JoinGroup {
        let owned: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        // A cooperative member states the generation its owned partitions were assigned in
        // (KIP-792 added the field to qualify them), as librdkafka's sticky assignor does and
        // as Java's `CooperativeStickyAssignor` writes in its user data (its `onAssignment`
        // generation). Not the generation last joined: after a SyncGroup that failed with
        // REBALANCE_IN_PROGRESS the member owns what it owned before, and a subscription that
        // changed only in its generation is new metadata to a coordinator. Step by step, on a
        // coordinator that answers parked SyncGroups on a timer (Tansu): (1) the member joins
        // generation 5 with (owned P, generation 4); (2) another member starts generation 6
        // before this one's SyncGroup is answered, which fails; (3) the member rejoins, and
        // by then generation 6 may have completed without it (Tansu keeps a member's last
        // subscription instead of waiting for it); (4) a subscription saying (P, 5) differs
        // from the stored one and starts generation 7, which assigns exactly what 6 did,
        // while (P, 4) is the same bytes and joins 6 as it stands.
        let (user_owned, user_generation) = match self.protocol {
            RebalanceProtocol::Eager => (&self.previous_assignment, self.previous_generation),
            RebalanceProtocol::Cooperative => (&owned, self.owned_generation),
        };
        let protocols = self
            .config
            .partition_assignment_strategy
            .iter()
            .map(|a| {
                let subscription = Subscription {
                    topics: self.topics.iter().cloned().collect(),
                    user_data: a.user_data(user_owned, user_generation),
                    owned_partitions: owned.clone(),
                    // The generation only qualifies owned partitions, which eager members never
                    // have at join time: eager subscriptions say -1, as librdkafka's do. This
                    // keeps a restarted static member's subscription byte-identical to its last
                    // one, which brokers that compare the bytes (Tansu) need to skip the
                    // rebalance (KIP-345).
                    generation_id: match self.protocol {
                        RebalanceProtocol::Eager => -1,
                        RebalanceProtocol::Cooperative => self.owned_generation,
                    },
                    rack_id: self.config.client_rack.clone(),
                };
                (
                    a.name().to_owned(),
                    subscription.encode(protocol::SUBSCRIPTION_VERSION),
                )
            })
            .collect();
        JoinGroup {
            group_id: self.config.group_id.clone(),
            session_timeout_ms: self.config.session_timeout.as_millis() as i32,
            rebalance_timeout_ms: self.config.max_poll_interval.as_millis() as i32,
            member_id: self.generation.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            protocol_type: PROTOCOL_TYPE.to_owned(),
            protocols,
            reason: (!self.join_reason.is_empty()).then(|| self.join_reason.clone()),
        }
    }

    pub(super) fn assignor(&self, name: &str) -> Option<&std::sync::Arc<dyn Assignor>> {
        self.config
            .partition_assignment_strategy
            .iter()
            .find(|a| a.name() == name)
    }

    pub(super) fn assignor_names(&self) -> Vec<&'static str> {
        self.config
            .partition_assignment_strategy
            .iter()
            .map(|a| a.name())
            .collect()
    }
}
