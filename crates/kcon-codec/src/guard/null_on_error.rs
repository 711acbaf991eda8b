//! Null read as empty in error answers: the one leniency of the guard.
//!
//! # Why
//!
//! librdkafka's mock cluster (checked at 2.15.0 and 2.16.0, `src/rdkafka_mock_handlers.c` and
//! `src/rdkafka_mock_cgrp.c`) answers a failed FindCoordinator, JoinGroup or SyncGroup with
//! null in fields the protocol says are never null:
//!
//! | API (versions kcon reads)  | field       | what the mock writes on error              |
//! |----------------------------|-------------|--------------------------------------------|
//! | FindCoordinator v0-v3      | `host`      | `write_str(NULL)`, with node id and port -1 |
//! | JoinGroup v0-v5            | `leader`    | `write_str(NULL)`                          |
//! | JoinGroup v0-v5            | `member_id` | `write_kstr(NULL)`                         |
//! | SyncGroup v0-v3            | `assignment`| `write_bytes(NULL)`, and `write_kbytes(NULL)` when a sync fails in the group (`sync_done` with an error) |
//!
//! (It also nulls JoinGroup's `protocol_name`, which kafka-protocol's decoder already takes as
//! nullable at every version.) librdkafka's own client reads any string or bytes length of -1
//! as null, so it never notices; Java's generated readers would refuse these answers, and so
//! does a strict decode. Refusing them made kcon-pool close the connection as corrupt on every
//! error the mock answers for these APIs, and every group test on the mock a test of that.
//!
//! # The rule, and why it stays strict
//!
//! A null is read as empty only in a field the schema marks `null_on_error` (exactly the
//! fields above), and only when the answer's top-level `error_code`, read before the field,
//! is non-zero. A successful answer is read exactly as before, as is every other field and
//! API: the guard accepts nothing more than kafka-protocol's decoder would, once the null is
//! rewritten. The value that takes the null's place is the one a client has no use for in an
//! error answer anyway (an empty host, member id or assignment), and the error code is what
//! the caller acts on.
//!
//! # How
//!
//! The walk notes each such null where it stands ([`NullPatches`]); before decoding, a copy of
//! the body gets each rewritten to an empty value of the same encoded size: an `int16` or
//! `int32` length of -1 becomes 0, a compact length of 0 becomes 1 (its first byte's lowest bit
//! is set, which turns any encoding of 0, even a padded one, into 1 of the same length). Bodies
//! that need no rewrite, every successful answer among them, are not copied.

use bytes::Bytes;

/// The encoding of a null length to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NullLength {
    /// `int16` -1 (a string before the flexible versions).
    Short,
    /// `int32` -1 (bytes or an array before the flexible versions).
    Long,
    /// A uvarint 0 (anything in a flexible version).
    Compact,
}

/// Nulls the walk accepted as empty, by offset in the body: empty for every body but the error
/// answers described in the module doc.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NullPatches(Vec<(usize, NullLength)>);

impl NullPatches {
    pub(super) fn push(&mut self, offset: usize, length: NullLength) {
        self.0.push((offset, length));
    }

    /// Whether the body decodes as it is.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `body` with every noted null rewritten to empty, the same length as `body`; `body`
    /// itself when there is nothing to rewrite.
    ///
    /// `body` must be the body these patches were found in: each offset is then the start of a
    /// length prefix of the noted encoding, inside the body.
    pub(crate) fn apply(&self, body: Bytes) -> Bytes {
        if self.is_empty() {
            return body;
        }
        let mut patched = body.to_vec();
        for &(at, length) in &self.0 {
            match length {
                NullLength::Short => patched[at..at + 2].fill(0),
                NullLength::Long => patched[at..at + 4].fill(0),
                NullLength::Compact => patched[at] |= 1,
            }
        }
        Bytes::from(patched)
    }
}
