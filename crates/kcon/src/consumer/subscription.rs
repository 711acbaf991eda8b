//! What the consumer reads: topics by name or pattern in its group, or partitions the
//! application assigned; and a pattern matched against the cluster's topics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::Error;

/// What the consumer reads.
#[derive(Debug)]
pub(crate) enum Subscription {
    None,
    /// Topics by name, in the group.
    Topics(BTreeSet<String>),
    /// Topics whose names match, in the group.
    Pattern(Pattern),
    /// Partitions the application assigned.
    Manual,
}

/// A topic pattern and what it matched.
#[derive(Debug)]
pub(crate) struct Pattern {
    /// The topics named beside the patterns.
    names: BTreeSet<String>,
    /// The patterns as the application wrote them (each starting with `^`).
    patterns: Vec<String>,
    /// Names and patterns as one expression, matched by the consumer itself.
    regex: Regex,
    /// The topics matched last; `None` before the first match.
    matched: Option<BTreeSet<String>>,
    /// The metadata snapshot (its generation) matched last.
    seen: Option<u64>,
    /// When every topic's metadata was last asked for.
    refreshed: Option<Instant>,
    /// When the pattern was subscribed.
    since: Option<Instant>,
}

impl Subscription {
    /// The subscription for `topics`: names, and names starting with `^` as regular expressions
    /// (librdkafka's convention). Names and patterns together become one pattern that also
    /// matches the names exactly.
    pub(crate) fn parse<I, S>(topics: I) -> Result<Subscription, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names = BTreeSet::new();
        let mut patterns = Vec::new();
        for t in topics {
            let t: String = t.into();
            match t.strip_prefix('^') {
                Some(_) => patterns.push(t),
                None if t.is_empty() => return Err(Error::misuse("an empty topic name")),
                None => {
                    names.insert(t);
                }
            }
        }
        if patterns.is_empty() {
            return Ok(Subscription::Topics(names));
        }
        let mut alternatives: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
        alternatives.extend(names.iter().map(|n| format!("^{}$", regex::escape(n))));
        let joined = alternatives.join("|");
        let regex = Regex::new(&joined).map_err(|e| {
            Error::misuse(format!(
                "the topic pattern {joined:?} is not a regular expression: {e}"
            ))
        })?;
        Ok(Subscription::Pattern(Pattern {
            names,
            patterns,
            regex,
            matched: None,
            seen: None,
            refreshed: None,
            since: None,
        }))
    }

    /// Whether the consumer reads through its group.
    pub(crate) fn in_group(&self) -> bool {
        matches!(self, Subscription::Topics(_) | Subscription::Pattern(_))
    }

    /// The topics subscribed: those named, or those the pattern matches now.
    pub(crate) fn topics(&self) -> BTreeSet<String> {
        match self {
            Subscription::Topics(t) => t.clone(),
            Subscription::Pattern(p) => p.matched.clone().unwrap_or_default(),
            Subscription::None | Subscription::Manual => BTreeSet::new(),
        }
    }
}

impl Pattern {
    /// The topics named beside the patterns.
    pub(crate) fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// The patterns as one regular expression for the group coordinator (KIP-848's
    /// `SubscribedTopicRegex`), librdkafka's way: one as written, several as `(a)|(b)`. Plain
    /// groups and alternation read the same in RE2/J (Apache Kafka's coordinator) and in POSIX
    /// extended expressions (librdkafka's mock cluster), where `(?:` is an error.
    pub(crate) fn coordinator_regex(&self) -> String {
        match &self.patterns[..] {
            [one] => one.clone(),
            many => many
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join("|"),
        }
    }

    /// The pattern was subscribed at `now`.
    pub(crate) fn subscribed(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// When every topic's metadata must next be asked for: the pool's own refreshes cover
    /// only the topics its users track (the matched ones), so new topics show up only in a
    /// refresh of every topic: at once (also after a refresh that failed, before the first
    /// match), then every `metadata.max.age.ms`.
    pub(crate) fn refresh_at(&self, max_age: Duration) -> Option<Instant> {
        match (self.refreshed, &self.matched) {
            (None, _) => self.since,
            (Some(at), None) => Some(at),
            (Some(at), Some(_)) => Some(at + max_age),
        }
    }

    /// Every topic's metadata was asked for at `now`.
    pub(crate) fn refreshing(&mut self, now: Instant) {
        self.refreshed = Some(now);
    }

    /// Whether the snapshot `generation` is news to the pattern.
    pub(crate) fn is_new(&self, generation: u64) -> bool {
        self.matched.is_none() || self.seen != Some(generation)
    }

    /// Matches `topics`, the cluster's topics in snapshot `generation`; the new set when it
    /// differs from the last.
    pub(crate) fn matches<'a>(
        &mut self,
        generation: u64,
        topics: impl IntoIterator<Item = &'a String>,
    ) -> Option<BTreeSet<String>> {
        self.seen = Some(generation);
        let now: BTreeSet<String> = topics
            .into_iter()
            .filter(|t| self.regex.is_match(t))
            .cloned()
            .collect();
        if self.matched.as_ref() == Some(&now) {
            return None;
        }
        self.matched = Some(now.clone());
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(topics: &[&str]) -> Pattern {
        match Subscription::parse(topics.iter().copied()).expect("a subscription") {
            Subscription::Pattern(p) => p,
            other => panic!("{other:?}"),
        }
    }

    /// The coordinator gets the patterns as written, several as librdkafka combines them, and
    /// the names apart.
    #[test]
    fn the_coordinator_gets_the_patterns_as_written() {
        let p = pattern(&["^a-.*"]);
        assert_eq!(p.coordinator_regex(), "^a-.*");
        assert!(p.names().is_empty());
        let p = pattern(&["orders", "^a-.*", "^b|c"]);
        assert_eq!(p.coordinator_regex(), "(^a-.*)|(^b|c)");
        assert_eq!(*p.names(), BTreeSet::from(["orders".to_owned()]));
    }
}
