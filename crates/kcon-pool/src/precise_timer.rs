//! A timer that wakes a task within microseconds of its deadline, for the one machine whose
//! timer puts a wait on every record: the producer's linger.
//!
//! tokio's timer counts whole milliseconds. It rounds the instant asked for up to the next
//! tick, and a worker with nothing else to do parks for whole milliseconds too, so a task
//! woken by it runs up to 2 ms after its deadline. A producer whose batches linger 5 ms sent
//! them 5.4 ms old at the median and 6.05 ms at the 99th percentile, with a slack of 1 ms
//! already taken off its linger (10,000 records a second over 6 partitions).
//!
//! On Linux a [`PreciseTimer`] is a `timerfd` on the monotonic clock (the clock of tokio's and
//! std's `Instant`), armed for each deadline and read through tokio's reactor: the worker is
//! woken by the file becoming readable, not by its own timeout. Elsewhere, or when the file
//! cannot be made, [`PreciseTimer::new`] gives `None` and the caller keeps tokio's timer.

use tokio::time::{self, Instant};

/// Which timer ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Precise,
    Tokio,
}

/// A timer of microsecond precision, for one task at a time (see the module's documentation).
#[derive(Debug)]
pub struct PreciseTimer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    /// The deadline the timer is armed for and has not been read since (read on Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    armed: Option<Instant>,
}

impl PreciseTimer {
    /// A timer on the current runtime's reactor; `None` off Linux, outside a runtime with IO
    /// enabled, or when the system refuses a `timerfd` (a sandbox's filter, say).
    pub fn new() -> Option<PreciseTimer> {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )
            .ok()?;
            // tokio deprecates its safe registration because a type may hand out a descriptor
            // it does not own; an `OwnedFd` owns its descriptor for as long as it lives, which
            // is what registration needs (its unsafe twin would be the only unsafe code here).
            #[allow(deprecated)]
            let fd =
                tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE).ok()?;
            Some(PreciseTimer { fd, armed: None })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Waits until `deadline` by tokio's clock.
    ///
    /// Both timers run: the precise one ends the wait on time; tokio's ends it should the file
    /// fail, and under a paused test clock, where tokio's time moves without the system's.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped wait leaves the timer armed, and the next wait arms it again
    /// for its own deadline (or finds it already armed for that one).
    pub async fn sleep_until(&mut self, deadline: Instant) {
        self.wait(deadline).await;
    }

    /// [`sleep_until`](Self::sleep_until), saying which timer ended the wait.
    async fn wait(&mut self, deadline: Instant) -> Ended {
        tokio::select! {
            biased;
            () = self.expiry(deadline) => Ended::Precise,
            () = time::sleep_until(deadline) => Ended::Tokio,
        }
    }

    /// Ends once the file says the timer armed for `deadline` expired; never, if the file
    /// fails (tokio's timer then ends the wait).
    async fn expiry(&mut self, deadline: Instant) {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
            let now = Instant::now();
            if deadline <= now {
                return;
            }
            if self.armed != Some(deadline) {
                // Relative to tokio's now, which is the system's unless a test paused it. A
                // value of zero would disarm the timer: the deadline is ahead, so it is not.
                let left = deadline - now;
                let value = Itimerspec {
                    it_interval: Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: Timespec {
                        tv_sec: left.as_secs() as _,
                        tv_nsec: left.subsec_nanos() as _,
                    },
                };
                // Setting the timer also clears an expiry of an earlier deadline left unread.
                if timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &value).is_err() {
                    return std::future::pending().await;
                }
                self.armed = Some(deadline);
            }
            loop {
                let Ok(mut ready) = self.fd.readable().await else {
                    return std::future::pending().await;
                };
                let mut count = [0u8; 8];
                match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut count)?)) {
                    Ok(Ok(_)) => {
                        self.armed = None;
                        return;
                    }
                    Ok(Err(_)) => return std::future::pending().await,
                    // Readiness left from an expiry the last arming cleared: wait on.
                    Err(_would_block) => continue,
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = deadline;
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The timer under test: on Linux it must be made; elsewhere there is none, and nothing to
    /// check.
    fn timer() -> Option<PreciseTimer> {
        let timer = PreciseTimer::new();
        if cfg!(target_os = "linux") {
            Some(timer.expect("a timerfd could not be made on Linux"))
        } else {
            assert!(timer.is_none());
            None
        }
    }

    /// Each wait ends by the file, not by tokio's timer, and not before its deadline. tokio's
    /// timer ends a wait at the first whole millisecond of its clock at or past the deadline;
    /// the file is read first when both are ready, so the assertion holds on a busy machine
    /// too, where the task may run late.
    #[tokio::test]
    async fn the_file_ends_each_wait_at_its_deadline() {
        let Some(mut timer) = timer() else {
            return;
        };
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_micros(2_300);
            assert_eq!(timer.wait(deadline).await, Ended::Precise);
            assert!(Instant::now() >= deadline);
        }
    }

    /// A wait dropped before its deadline leaves the timer armed, and its expiry unread; the
    /// next wait, for a later deadline, does not end at the earlier one, and still ends by
    /// the file.
    #[tokio::test]
    async fn a_dropped_wait_does_not_end_the_next_one_early() {
        let Some(mut timer) = timer() else {
            return;
        };
        let first = Instant::now() + Duration::from_millis(2);
        tokio::select! {
            () = timer.sleep_until(first) => panic!("the first wait ended before the other branch"),
            () = std::future::ready(()) => {}
        }
        time::sleep_until(first + Duration::from_millis(3)).await;
        let second = Instant::now() + Duration::from_millis(20);
        assert_eq!(timer.wait(second).await, Ended::Precise);
        assert!(Instant::now() >= second);
        // And the same deadline twice: armed once, ended once.
        let third = Instant::now() + Duration::from_millis(3);
        tokio::select! {
            () = timer.sleep_until(third) => panic!("ended before the other branch"),
            () = std::future::ready(()) => {}
        }
        assert_eq!(timer.wait(third).await, Ended::Precise);
        assert!(Instant::now() >= third);
    }

    /// Under a paused clock tokio's time moves without the system's: the wait ends by tokio's
    /// timer, at the deadline on tokio's clock.
    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_ends_the_wait_by_tokio_time() {
        let Some(mut timer) = timer() else {
            return;
        };
        let started = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_secs(3600);
        assert_eq!(timer.wait(deadline).await, Ended::Tokio);
        assert!(Instant::now() >= deadline);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
