//! A bounded map of loaded values whose concurrent loads of one key are one load.
//!
//! Used twice: the registry client caches the schemas it fetched, and each deserializer the
//! schemas it parsed. A key is either ready (its value, with a second-chance bit) or loading
//! (a watch channel its waiters follow). The first caller of a missing key loads it; every
//! caller of the same key meanwhile waits for that load and gets its result, success or
//! failure. A failure is not kept: the next caller loads again (the registry may be back). A
//! load whose caller was dropped (a cancelled future) ends its waiters' wait, and one of them
//! loads in its place.
//!
//! At most `capacity` values are kept; a new one beyond that evicts by the CLOCK rule (the
//! oldest value not used since the hand last passed it), so a working set that fits stays and
//! a flood of one-off ids cycles through without growing the map. Loads in flight are not
//! counted: there are at most as many as there are callers waiting.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type Shared<V, E> = Option<Result<Arc<V>, E>>;

pub(crate) struct Cache<K, V, E> {
    capacity: usize,
    state: Mutex<State<K, V, E>>,
}

struct State<K, V, E> {
    ready: HashMap<K, Entry<V>>,
    /// The CLOCK's order: every ready key once, the hand at the front.
    order: VecDeque<K>,
    loading: HashMap<K, watch::Receiver<Shared<V, E>>>,
}

enum Step<V, E> {
    Ready(Arc<V>),
    Wait(watch::Receiver<Shared<V, E>>),
    Load(watch::Sender<Shared<V, E>>),
}

struct Entry<V> {
    value: Arc<V>,
    used: bool,
}

impl<K, V, E> Cache<K, V, E>
where
    K: Eq + Hash + Clone,
    E: Clone,
{
    /// A cache keeping at most `capacity` values (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                ready: HashMap::new(),
                order: VecDeque::new(),
                loading: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V, E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many values are kept.
    pub(crate) fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// The value of `key`, loaded by `load` unless it is kept or being loaded.
    pub(crate) async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        loop {
            let step = {
                let mut state = self.lock();
                if let Some(entry) = state.ready.get_mut(key) {
                    entry.used = true;
                    Step::Ready(entry.value.clone())
                } else if let Some(rx) = state.loading.get(key) {
                    Step::Wait(rx.clone())
                } else {
                    let (tx, rx) = watch::channel(None);
                    state.loading.insert(key.clone(), rx);
                    Step::Load(tx)
                }
            };
            let mut rx = match step {
                Step::Ready(value) => return Ok(value),
                Step::Wait(rx) => rx,
                Step::Load(tx) => {
                    let mut guard = Loading {
                        cache: self,
                        key,
                        tx: Some(tx),
                    };
                    let result = load().await.map(Arc::new);
                    guard.finish(result.clone());
                    return result;
                }
            };
            match rx.wait_for(Option::is_some).await {
                Ok(shared) => {
                    if let Some(result) = shared.as_ref() {
                        return result.clone();
                    }
                }
                // The loader was dropped before it finished: load again (maybe here).
                Err(_) => continue,
            }
        }
    }

    fn insert(&self, state: &mut State<K, V, E>, key: K, value: Arc<V>) {
        if state.ready.contains_key(&key) {
            return;
        }
        while state.ready.len() >= self.capacity {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            match state.ready.get_mut(&oldest) {
                Some(entry) if entry.used => {
                    entry.used = false;
                    state.order.push_back(oldest);
                }
                _ => {
                    state.ready.remove(&oldest);
                }
            }
        }
        state.order.push_back(key.clone());
        state.ready.insert(key, Entry { value, used: false });
    }
}

/// The load of one key in flight: tells its waiters how it ended, or, dropped unfinished,
/// that it ended without a result.
struct Loading<'a, K, V, E>
where
    K: Eq + Hash + Clone,
    E: Clone,
{
    cache: &'a Cache<K, V, E>,
    key: &'a K,
    tx: Option<watch::Sender<Shared<V, E>>>,
}

impl<K, V, E> Loading<'_, K, V, E>
where
    K: Eq + Hash + Clone,
    E: Clone,
{
    fn finish(&mut self, result: Result<Arc<V>, E>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        {
            let mut state = self.cache.lock();
            state.loading.remove(self.key);
            if let Ok(value) = &result {
                self.cache
                    .insert(&mut state, self.key.clone(), value.clone());
            }
        }
        tx.send_replace(Some(result));
    }
}

impl<K, V, E> Drop for Loading<'_, K, V, E>
where
    K: Eq + Hash + Clone,
    E: Clone,
{
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            // Cancelled: the sender drops with nothing sent, which wakes the waiters.
            self.cache.lock().loading.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn concurrent_loads_of_one_key_are_one_load() {
        run(async {
            let cache: Cache<u32, String, String> = Cache::new(4);
            let loads = AtomicUsize::new(0);
            let get = || {
                cache.get_or_load(&7, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok("seven".to_owned())
                })
            };
            let (a, b, c) = tokio::join!(get(), get(), get());
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            assert!(Arc::ptr_eq(&a.unwrap(), &b.clone().unwrap()));
            assert_eq!(c.unwrap().as_str(), "seven");
            // Kept: no load the next time.
            get().await.unwrap();
            assert_eq!(loads.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_failure_reaches_every_waiter_and_is_not_kept() {
        run(async {
            let cache: Cache<u32, String, String> = Cache::new(4);
            let loads = AtomicUsize::new(0);
            let get = || {
                cache.get_or_load(&1, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err::<String, _>("down".to_owned())
                })
            };
            let (a, b) = tokio::join!(get(), get());
            assert_eq!(
                (a.unwrap_err(), b.unwrap_err()),
                ("down".into(), "down".into())
            );
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            assert_eq!(cache.len(), 0);
            get().await.unwrap_err();
            assert_eq!(loads.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_cancelled_load_hands_over_to_a_waiter() {
        run(async {
            let cache: Cache<u32, String, String> = Cache::new(4);
            let first = cache.get_or_load(&1, std::future::pending);
            // The first caller starts the load and is then dropped.
            let timed_out = tokio::time::timeout(Duration::from_millis(10), first).await;
            assert!(timed_out.is_err());
            let second = cache
                .get_or_load(&1, || async { Ok("loaded".to_owned()) })
                .await;
            assert_eq!(second.unwrap().as_str(), "loaded");
        });
    }

    #[test]
    fn a_waiter_takes_over_when_the_loader_is_cancelled_mid_load() {
        run(async {
            let cache: Cache<u32, String, String> = Cache::new(4);
            let leader = cache.get_or_load(&1, std::future::pending);
            let follower = async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                cache
                    .get_or_load(&1, || async { Ok("follower".to_owned()) })
                    .await
            };
            let (cut, got) = tokio::join!(
                tokio::time::timeout(Duration::from_millis(20), leader),
                follower
            );
            assert!(cut.is_err());
            assert_eq!(got.unwrap().as_str(), "follower");
        });
    }

    #[test]
    fn at_most_capacity_values_and_used_ones_survive_a_flood() {
        run(async {
            let cache: Cache<u32, u32, String> = Cache::new(8);
            cache.get_or_load(&0, || async { Ok(0) }).await.unwrap();
            for k in 1..1000 {
                cache
                    .get_or_load(&k, || async move { Ok(k) })
                    .await
                    .unwrap();
                // Key 0 is used all the time: the hand keeps passing it by.
                cache
                    .get_or_load(&0, || async { Err("evicted".to_owned()) })
                    .await
                    .unwrap();
                assert!(cache.len() <= 8);
            }
            assert_eq!(cache.len(), 8);
            let state = cache.lock();
            assert_eq!(state.order.len(), 8);
            assert!(state.loading.is_empty());
        });
    }
}
