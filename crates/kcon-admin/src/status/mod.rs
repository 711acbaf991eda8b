//! A consumer group's health from a window of its committed offsets, by the rules of LinkedIn's
//! Burrow: is each partition keeping up (OK), falling behind (WARN), stopped, stalled, rewound,
//! or past what the log still holds (ERR)? Sans-IO: whoever samples the group (the lag exporter,
//! `kcon group lag --watch`) feeds the window, the evaluation reads it.
//!
//! The rules, applied to a partition whose lag now is above the allowed lag (at or below it, a
//! partition is always OK):
//! 1. STOP: the time since the last commit is longer than the window spans (from its first
//!    commit to its last), unless the log end was at or below the last committed offset in one
//!    of the recent log-end samples (the consumer was caught up a moment ago);
//! 2. REWIND: a commit went below the one before it, and no later commit came back to that;
//! 3. only if the lag was above the allowed lag at every commit of the window:
//!    STALL: every commit is the same offset; WARN: the lag never went down from one commit to
//!    the next;
//! 4. otherwise OK.
//!
//! A committed offset below the log's start (records lost to retention before they were
//! consumed) is ERR, and one past the log's end (committed from outside the group, or a log
//! truncated or recreated under it: a consumer starting there resets by `auto.offset.reset`)
//! is PAST_END, before any of these. A group's status is its worst partition's, where STOP,
//! STALL, REWIND, ERR and PAST_END all count as ERR.

use std::collections::VecDeque;
use std::fmt;

/// One commit of a partition, as sampled: the offset, when it was seen (ms since the epoch), and
/// the lag at that moment when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The committed offset.
    pub offset: i64,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The lag in records then, when known.
    pub lag: Option<u64>,
}

/// A partition's status. Worse statuses compare greater; each keeps its [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Status {
    /// Keeping up, or not enough history to say otherwise.
    Ok = 0,
    /// Committing, but the lag grew over the whole window.
    Warn = 1,
    /// No commit for longer than the window spans, with lag.
    Stop = 2,
    /// The same offset committed over the whole window, with lag.
    Stall = 3,
    /// The committed offset went back and has not come back since.
    Rewind = 4,
    /// The committed offset is below the log's start: records were lost to retention.
    Err = 5,
    /// The committed offset is past the log's end: its lag is negative, and a consumer
    /// starting from it resets by `auto.offset.reset`.
    PastEnd = 6,
}

impl Status {
    /// The name Burrow gives it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stop => "STOP",
            Status::Stall => "STALL",
            Status::Rewind => "REWIND",
            Status::Err => "ERR",
            Status::PastEnd => "PAST_END",
        }
    }

    /// A number for metrics: 0 OK, 1 WARN, 2 STOP, 3 STALL, 4 REWIND, 5 ERR, 6 PAST_END.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What it makes of a group: STOP, STALL, REWIND, ERR and PAST_END are all ERR.
    pub fn for_group(self) -> Status {
        match self {
            Status::Ok | Status::Warn => self,
            _ => Status::Err,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A group's status: its worst partition's, STOP/STALL/REWIND/PAST_END counting as ERR. OK
/// for none.
pub fn group_status(partitions: impl IntoIterator<Item = Status>) -> Status {
    partitions
        .into_iter()
        .map(Status::for_group)
        .max()
        .unwrap_or(Status::Ok)
}

/// What a partition is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation<'a> {
    /// The window of commits, oldest first.
    pub commits: &'a [Commit],
    /// Recent samples of the log end (any order).
    pub log_ends: &'a [i64],
    /// The lag in records now.
    pub lag: u64,
    /// Lag at or below this counts as none.
    pub allowed_lag: u64,
    /// Now (ms since the epoch).
    pub now_ms: i64,
    /// The log's start now, when known.
    pub log_start: Option<i64>,
    /// The log's end now, when known.
    pub log_end: Option<i64>,
}

impl Evaluation<'_> {
    /// The partition's status.
    pub fn status(&self) -> Status {
        let Some(last) = self.commits.last() else {
            return Status::Ok;
        };
        if self.log_start.is_some_and(|start| last.offset < start) {
            return Status::Err;
        }
        if self.log_end.is_some_and(|end| last.offset > end) {
            return Status::PastEnd;
        }
        // One commit spans no time: every moment after it would look stopped.
        if self.lag <= self.allowed_lag || self.commits.len() < 2 {
            return Status::Ok;
        }
        if stopped(self.commits, self.now_ms) && !caught_up_recently(self.commits, self.log_ends) {
            return Status::Stop;
        }
        if let Some(at) = rewound_at(self.commits)
            && !recovered(self.commits, at)
        {
            return Status::Rewind;
        }
        if lag_above_everywhere(self.commits, self.allowed_lag) {
            if stalled(self.commits) {
                return Status::Stall;
            }
            if lag_never_fell(self.commits) {
                return Status::Warn;
            }
        }
        Status::Ok
    }
}

/// Whether every commit with a known lag had more than `allowed` (one at or below it makes
/// the window healthy).
fn lag_above_everywhere(commits: &[Commit], allowed: u64) -> bool {
    commits.iter().all(|c| c.lag.is_none_or(|l| l > allowed))
}

/// The index of the first commit below the one before it.
fn rewound_at(commits: &[Commit]) -> Option<usize> {
    (1..commits.len()).find(|&i| commits[i].offset < commits[i - 1].offset)
}

/// Whether a commit from `at` on came back to the offset before the rewind.
fn recovered(commits: &[Commit], at: usize) -> bool {
    let before = commits[at - 1].offset;
    commits[at..].iter().any(|c| c.offset >= before)
}

/// Whether the time since the last commit is longer than the window spans.
fn stopped(commits: &[Commit], now_ms: i64) -> bool {
    let (Some(first), Some(last)) = (commits.first(), commits.last()) else {
        return false;
    };
    now_ms - last.at_ms > last.at_ms - first.at_ms
}

/// Whether every commit is the same offset.
fn stalled(commits: &[Commit]) -> bool {
    commits.windows(2).all(|w| w[0].offset == w[1].offset)
}

/// Whether the lag never went down from one known value to the next.
fn lag_never_fell(commits: &[Commit]) -> bool {
    let lags: Vec<u64> = commits.iter().filter_map(|c| c.lag).collect();
    lags.windows(2).all(|w| w[1] >= w[0])
}

/// Whether a recent log-end sample was at or below the last committed offset.
fn caught_up_recently(commits: &[Commit], log_ends: &[i64]) -> bool {
    commits
        .last()
        .is_some_and(|last| log_ends.iter().any(|&end| end <= last.offset))
}

/// The last `capacity` commits of a partition, and the last `capacity` log-end samples.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    commits: VecDeque<Commit>,
    log_ends: VecDeque<i64>,
}

impl Window {
    /// A window of `capacity` commits (Burrow's default is 10), at least 2.
    pub fn new(capacity: usize) -> Window {
        let capacity = capacity.max(2);
        Window {
            capacity,
            commits: VecDeque::with_capacity(capacity),
            log_ends: VecDeque::with_capacity(capacity),
        }
    }

    /// A commit seen; the oldest goes when the window is full.
    pub fn commit(&mut self, commit: Commit) {
        if self.commits.len() == self.capacity {
            self.commits.pop_front();
        }
        self.commits.push_back(commit);
    }

    /// A sample of the log end.
    pub fn log_end(&mut self, end: i64) {
        if self.log_ends.len() == self.capacity {
            self.log_ends.pop_front();
        }
        self.log_ends.push_back(end);
    }

    /// The commits, oldest first.
    pub fn commits(&self) -> Vec<Commit> {
        self.commits.iter().copied().collect()
    }

    /// The partition's status now, with `lag` records of lag and the log running from
    /// `log_start` to `log_end` when known.
    pub fn status(
        &self,
        lag: u64,
        allowed_lag: u64,
        now_ms: i64,
        log_start: Option<i64>,
        log_end: Option<i64>,
    ) -> Status {
        let commits = self.commits();
        let log_ends: Vec<i64> = self.log_ends.iter().copied().collect();
        Evaluation {
            commits: &commits,
            log_ends: &log_ends,
            lag,
            allowed_lag,
            now_ms,
            log_start,
            log_end,
        }
        .status()
    }
}

#[cfg(test)]
mod tests;
