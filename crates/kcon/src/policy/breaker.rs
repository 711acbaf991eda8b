//! The circuit breaker: counts records that failed for good among the last ones finished, and
//! opens when too many did, so a processor facing a broken downstream stops and says so
//! instead of filling the dead-letter topic.

use std::collections::VecDeque;

/// Opens when more than `max_failures` of the last `window` finished records failed for good,
/// or when `max_consecutive` did in a row. Only finished records count: a retry is not an
/// outcome yet.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    window: usize,
    max_failures: Option<usize>,
    max_consecutive: Option<usize>,
    /// The last `window` outcomes, true for a failure.
    recent: VecDeque<bool>,
    failures: usize,
    consecutive: usize,
}

/// Why the breaker opened: the counts when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tripped {
    /// Failures among the last `window` records.
    pub(crate) failures: usize,
    /// Records counted (fewer than the window early on).
    pub(crate) counted: usize,
    /// Failures in a row.
    pub(crate) consecutive: usize,
}

impl Breaker {
    pub(crate) fn new(
        window: usize,
        max_failures: Option<usize>,
        max_consecutive: Option<usize>,
    ) -> Breaker {
        Breaker {
            window: window.max(1),
            max_failures,
            max_consecutive,
            recent: VecDeque::new(),
            failures: 0,
            consecutive: 0,
        }
    }

    /// A record finished: failed for good, or not. `Some` when this outcome opens the breaker.
    pub(crate) fn record(&mut self, failed: bool) -> Option<Tripped> {
        if self.max_failures.is_none() && self.max_consecutive.is_none() {
            return None;
        }
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.recent.push_back(failed);
        if failed {
            self.failures += 1;
            self.consecutive += 1;
        } else {
            self.consecutive = 0;
        }
        let over = self.max_failures.is_some_and(|max| self.failures > max);
        let in_a_row = self
            .max_consecutive
            .is_some_and(|max| self.consecutive >= max);
        (failed && (over || in_a_row)).then_some(Tripped {
            failures: self.failures,
            counted: self.recent.len(),
            consecutive: self.consecutive,
        })
    }

    /// Forgets every outcome: the breaker is closed and starts counting afresh.
    pub(crate) fn clear(&mut self) {
        self.recent.clear();
        self.failures = 0;
        self.consecutive = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `outcomes` ('x' failed, '.' not); the index of the first that opens the breaker.
    fn first_trip(b: &mut Breaker, outcomes: &str) -> Option<usize> {
        outcomes
            .chars()
            .enumerate()
            .find_map(|(i, c)| b.record(c == 'x').map(|_| i))
    }

    #[test]
    fn a_burst_opens_it_and_scattered_failures_do_not() {
        // More than 3 of the last 10.
        let mut b = Breaker::new(10, Some(3), None);
        assert_eq!(first_trip(&mut b, "x..x...x..x...x...x..x...x..."), None);
        let mut b = Breaker::new(10, Some(3), None);
        assert_eq!(first_trip(&mut b, "...xx.xx.."), Some(7));
    }

    #[test]
    fn failures_leave_the_window_as_it_slides() {
        let mut b = Breaker::new(4, Some(2), None);
        // Each window of 4 holds at most 2 failures.
        assert_eq!(first_trip(&mut b, "xx..xx..xx..xx"), None);
        assert_eq!(
            first_trip(&mut b, "x"),
            Some(0),
            "..xx then x: 3 of the last 4"
        );
    }

    #[test]
    fn k_in_a_row_opens_it_and_a_success_starts_the_count_again() {
        let mut b = Breaker::new(100, None, Some(3));
        assert_eq!(first_trip(&mut b, "xx.xx.xx."), None);
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(true), None);
        assert_eq!(
            b.record(true),
            Some(Tripped {
                failures: 9,
                counted: 12,
                consecutive: 3
            })
        );
    }

    #[test]
    fn successes_never_open_it_and_clearing_forgets() {
        let mut b = Breaker::new(5, Some(0), None);
        assert_eq!(first_trip(&mut b, "....."), None);
        assert!(b.record(true).is_some(), "more than 0 of 5");
        b.clear();
        assert_eq!(first_trip(&mut b, "...."), None);
    }

    #[test]
    fn without_rules_it_counts_nothing() {
        let mut b = Breaker::new(3, None, None);
        assert_eq!(first_trip(&mut b, &"x".repeat(1000)), None);
        assert!(b.recent.is_empty());
    }
}
