//! Exponential backoff with jitter (KIP-580), as a pure function of the attempt number and a
//! random number, so that its bounds can be tested exactly.

use std::time::Duration;

/// Exponential backoff with jitter: `initial × 2^attempts`, capped at `max`, multiplied by a
/// random factor in `[0.8, 1.2)`, and never above `max`.
///
/// This is the Java client's `ExponentialBackoff` (KIP-580), used there for
/// `retry.backoff.ms`/`retry.backoff.max.ms` and for `reconnect.backoff.ms`/
/// `reconnect.backoff.max.ms`: the jitter spreads clients that failed together so they do not
/// come back together. When `max` is not above `initial`, the backoff is `max`, constant and
/// without jitter, as Java documents ("used as a constant backoff from the beginning").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
}

impl ExponentialBackoff {
    /// The growth factor per attempt.
    pub const MULTIPLIER: f64 = 2.0;
    /// The jitter: the delay is multiplied by a factor in `[1 - JITTER, 1 + JITTER)`.
    pub const JITTER: f64 = 0.2;

    /// A backoff from `initial`, doubling per attempt, up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        ExponentialBackoff { initial, max }
    }

    /// The first delay, before jitter.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before try number `attempts + 1` (so `attempts` is the number of failures so
    /// far, from 0), given `random`, a number in `[0, 1)` (values outside are clamped).
    pub fn delay(&self, attempts: u32, random: f64) -> Duration {
        if self.max <= self.initial {
            return self.max;
        }
        if self.initial.is_zero() {
            // 0 × 2^n is 0: no backoff, as in Java (and no ∞ × 0 below).
            return Duration::ZERO;
        }
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64();
        // The exponent stops growing once initial × 2^exponent reaches max, as Java's expMax:
        // past it, only the jitter moves the delay.
        let exp_max = (max / initial).log2();
        let exponent = f64::from(attempts).min(exp_max);
        let term = initial * Self::MULTIPLIER.powf(exponent);
        let factor = 1.0 - Self::JITTER + 2.0 * Self::JITTER * random.clamp(0.0, 1.0);
        Duration::from_secs_f64((term * factor).min(max))
    }

    /// [`delay`](Self::delay) with a random number from the thread's generator.
    pub fn delay_random(&self, attempts: u32) -> Duration {
        self.delay(attempts, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn grows_by_two_with_twenty_percent_jitter() {
        let b = ExponentialBackoff::new(ms(100), ms(1000));
        assert!(close(b.delay(0, 0.5), ms(100)));
        assert!(close(b.delay(0, 0.0), ms(80)));
        assert!(close(b.delay(0, 1.0), ms(120)));
        assert!(close(b.delay(1, 0.5), ms(200)));
        assert!(close(b.delay(2, 0.0), ms(320)));
        assert!(close(b.delay(3, 0.5), ms(800)));
    }

    #[test]
    fn never_exceeds_max_and_keeps_jitter_below_it() {
        let b = ExponentialBackoff::new(ms(50), ms(1000));
        for attempts in [5, 10, 31, 1000, u32::MAX] {
            assert!(close(b.delay(attempts, 1.0), ms(1000)), "{attempts}");
            assert!(close(b.delay(attempts, 0.5), ms(1000)), "{attempts}");
            // Below the cap the jitter still spreads clients out.
            assert!(close(b.delay(attempts, 0.0), ms(800)), "{attempts}");
        }
    }

    #[test]
    fn every_delay_is_within_its_bounds() {
        let b = ExponentialBackoff::new(ms(50), ms(1000));
        for attempts in 0..12 {
            let nominal = (50.0 * 2f64.powi(attempts as i32)).min(1000.0);
            for i in 0..=100 {
                let d = b.delay(attempts, f64::from(i) / 100.0).as_secs_f64() * 1000.0;
                assert!(
                    d >= nominal * 0.8 - 1e-6,
                    "{attempts}: {d} < {nominal} × 0.8"
                );
                assert!(d <= (nominal * 1.2).min(1000.0) + 1e-6, "{attempts}: {d}");
            }
        }
    }

    #[test]
    fn max_at_or_below_initial_is_a_constant() {
        let b = ExponentialBackoff::new(ms(500), ms(200));
        assert_eq!(b.delay(0, 0.0), ms(200));
        assert_eq!(b.delay(7, 0.9), ms(200));
        let b = ExponentialBackoff::new(ms(300), ms(300));
        assert_eq!(b.delay(3, 0.1), ms(300));
    }

    #[test]
    fn zero_initial_means_no_backoff() {
        // 0 × 2^n is 0 for every n: a zero initial backoff means "no backoff", as in Java.
        let b = ExponentialBackoff::new(Duration::ZERO, ms(1000));
        assert_eq!(b.delay(0, 0.5), Duration::ZERO);
        assert_eq!(b.delay(50, 0.5), Duration::ZERO);
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::ZERO);
    }

    #[test]
    fn random_out_of_range_is_clamped() {
        let b = ExponentialBackoff::new(ms(100), ms(1000));
        assert!(close(b.delay(0, -3.0), ms(80)));
        assert!(close(b.delay(0, 9.0), ms(120)));
        let r = b.delay_random(0);
        assert!(r >= ms(80) && r <= ms(120), "{r:?}");
    }
}
