//! Waits that end within 0.1 ms of their deadline, for handlers standing in for a remote call.
//!
//! A handler "taking 10 ms" models a call to a service that answers after 10 ms: its answer
//! arrives as I/O readiness, which wakes the task at once. `tokio::time::sleep` is a poor model of
//! that: tokio's timer counts whole milliseconds, rounds a deadline up to the next one and is
//! serviced when a worker next parks, so under load a 10 ms sleep takes about 12 ms. The Java
//! peer's handler sleeps with `Thread.sleep`, which ends about 0.1 ms late.
//!
//! [`ExactWaits`] is one thread holding every pending deadline in order. It sleeps until the
//! earliest, then completes every wait due by then through a oneshot channel, which wakes the
//! waiting task as an answer from the network would. Deadlines are rounded up to the next
//! 0.1 ms, so a burst of waits started together costs the thread one wake-up, not one each.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The resolution of a deadline.
const SLOT: Duration = Duration::from_micros(100);

struct Pending {
    /// Deadlines by slot number (0.1 ms since the clock's start), each with the waits due then.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    changed: Condvar,
    epoch: Instant,
}

/// The waits' thread; dropping it ends the thread, completing nothing more.
pub struct ExactWaits {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExactWaits {
    pub fn start() -> ExactWaits {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                waiters: BTreeMap::new(),
                closed: false,
            }),
            changed: Condvar::new(),
            epoch: Instant::now(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("exact-waits".into())
            .spawn(move || worker.serve())
            .expect("a thread for the waits");
        ExactWaits {
            shared,
            thread: Some(thread),
        }
    }

    /// Ends once `wait` has passed (at most one slot late, plus the wake-up).
    pub fn wait(&self, wait: Duration) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let at = Instant::now() + wait;
        let slot = (at - self.shared.epoch)
            .as_nanos()
            .div_ceil(SLOT.as_nanos()) as u64;
        {
            let mut p = self.shared.pending.lock().expect("no panics holding it");
            let earliest = p.waiters.keys().next().copied();
            p.waiters.entry(slot).or_default().push(tx);
            // The thread sleeps until the earliest deadline: only an earlier one must wake it.
            if earliest.is_none_or(|e| slot < e) {
                self.shared.changed.notify_one();
            }
        }
        async move {
            let _ = rx.await;
        }
    }
}

impl Shared {
    fn serve(&self) {
        let mut p = self.pending.lock().expect("no panics holding it");
        loop {
            if p.closed {
                return;
            }
            let Some(&slot) = p.waiters.keys().next() else {
                p = self.changed.wait(p).expect("no panics holding it");
                continue;
            };
            let at = self.epoch + Duration::from_nanos(slot.saturating_mul(SLOT.as_nanos() as u64));
            let now = Instant::now();
            if at > now {
                p = self
                    .changed
                    .wait_timeout(p, at - now)
                    .expect("no panics holding it")
                    .0;
                continue;
            }
            let waiters = p.waiters.remove(&slot).unwrap_or_default();
            drop(p);
            for w in waiters {
                let _ = w.send(());
            }
            p = self.pending.lock().expect("no panics holding it");
        }
    }
}

impl Drop for ExactWaits {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .expect("no panics holding it")
            .closed = true;
        self.shared.changed.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
