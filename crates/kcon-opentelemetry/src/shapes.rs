//! What the spans and metrics of one topic's partition have in common, made once and kept: a
//! record's span then costs a copy of its attributes, not their making (names formatted,
//! strings copied), and its count an atomic add, not a lookup of its attributes in the
//! meter's map. The counts reach the meter as observable counters, read at each collection.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::conventions::{Conventions, Operation};

/// One (operation, topic, partition)'s names and counts. A send span made before its record
/// has a partition, and a failed send's count, use the shape of no partition.
pub(crate) struct Shape {
    /// The span's name, interned ([`interned`]).
    pub(crate) name: &'static str,
    /// The span's attributes known before the record: the operation, topic, partition, group
    /// (for consumers) and client id.
    pub(crate) span: Vec<KeyValue>,
    /// The metrics' attributes: the operation, topic, partition and group.
    pub(crate) metric: Vec<KeyValue>,
    /// Records done with that did not fail.
    done: AtomicU64,
    /// Records that failed, by `error.type`.
    failed: Mutex<Vec<(String, u64)>>,
}

impl Shape {
    /// Counts a record: done, or failed with `error_type`.
    pub(crate) fn count(&self, error_type: Option<&str>) {
        let Some(kind) = error_type else {
            self.done.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match failed.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => failed.push((kind.to_owned(), 1)),
        }
    }
}

/// `name`, kept for the life of the process and shared by every shape of that name.
///
/// OpenTelemetry takes a span's name as a `Cow<'static, str>`: a name of its own would be a
/// copy made and freed for every span. The names are one per operation and topic (and naming
/// convention), so what is kept is bounded by the topics the process sends to and processes.
fn interned(name: String) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match names.get(name.as_str()) {
        Some(known) => known,
        None => {
            let name: &'static str = Box::leak(name.into_boxed_str());
            names.insert(name);
            name
        }
    }
}

/// Every shape made, by topic, then by operation and partition (-1: none).
pub(crate) struct Shapes {
    conventions: Conventions,
    client_id: Option<Arc<str>>,
    consumer_group: Option<Arc<str>>,
    by_topic: RwLock<HashMap<Arc<str>, TopicShapes, Fold>>,
}

/// A topic's shapes, by operation and partition (-1: none).
type TopicShapes = HashMap<(Operation, i32), Arc<Shape>, Fold>;

/// The shapes' maps' hasher: every send and processed record looks its shape up twice (topic,
/// then operation and partition), and the standard SipHash took more of that than the rest of
/// the lookup. Their keys are the topics the process itself sends to or subscribed to, not
/// input a peer chooses to collide, so a multiply-and-rotate fold of each word is enough.
type Fold = BuildHasherDefault<FoldHasher>;

#[derive(Default)]
struct FoldHasher(u64);

impl FoldHasher {
    /// An odd constant with its bits spread (the fractional part of the golden ratio).
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The table picks a bucket by the low bits and tags it with the high ones: a product's
        // low bits depend on the input's low bits alone, so the high ones are turned down.
        self.0.rotate_left(26)
    }
}

impl Shapes {
    /// No shapes yet; the send and consume counters registered on `meter`, reading them while
    /// they are kept.
    pub(crate) fn new(
        conventions: Conventions,
        client_id: Option<Arc<str>>,
        consumer_group: Option<Arc<str>>,
        meter: &Meter,
    ) -> Arc<Shapes> {
        let shapes = Arc::new(Shapes {
            conventions,
            client_id,
            consumer_group,
            by_topic: RwLock::default(),
        });
        for (name, operation, description) in [
            (
                "messaging.client.sent.messages",
                Operation::Send,
                "Records the producer was asked to send.",
            ),
            (
                "messaging.client.consumed.messages",
                Operation::Process,
                "Records handed to the handler.",
            ),
        ] {
            let read: Weak<Shapes> = Arc::downgrade(&shapes);
            meter
                .u64_observable_counter(name)
                .with_unit("{message}")
                .with_description(description)
                .with_callback(move |observer| {
                    if let Some(shapes) = read.upgrade() {
                        shapes.each(operation, |metric, error_type, n| match error_type {
                            None => observer.observe(n, metric),
                            Some(kind) => {
                                let mut attributes = metric.to_vec();
                                attributes.push(KeyValue::new("error.type", kind.to_owned()));
                                observer.observe(n, &attributes);
                            }
                        });
                    }
                })
                .build();
        }
        shapes
    }

    /// The shape of `operation` on `topic`'s `partition`, made the first time.
    pub(crate) fn get(
        &self,
        operation: Operation,
        topic: &str,
        partition: Option<i32>,
    ) -> Arc<Shape> {
        let key = (operation, partition.unwrap_or(-1));
        let known = self
            .by_topic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .and_then(|by| by.get(&key))
            .cloned();
        if let Some(shape) = known {
            return shape;
        }
        let mut by_topic = self.by_topic.write().unwrap_or_else(|p| p.into_inner());
        // The topic's name is shared by its shapes: made once, with its first shape.
        let topic: Arc<str> = match by_topic.get_key_value(topic) {
            Some((kept, _)) => kept.clone(),
            None => topic.into(),
        };
        by_topic
            .entry(topic.clone())
            .or_default()
            .entry(key)
            .or_insert_with(|| Arc::new(self.make(operation, &topic, partition)))
            .clone()
    }

    fn make(&self, operation: Operation, topic: &Arc<str>, partition: Option<i32>) -> Shape {
        let c = self.conventions;
        let mut metric = Vec::with_capacity(7);
        c.operation(operation, &mut metric);
        c.destination(topic.clone(), partition, &mut metric);
        if operation == Operation::Process
            && let Some(group) = &self.consumer_group
        {
            c.consumer_group(group, &mut metric);
        }
        let mut span = metric.clone();
        if let Some(id) = &self.client_id {
            c.client_id(id, &mut span);
        }
        Shape {
            name: interned(c.span_name(operation, topic)),
            span,
            metric,
            done: AtomicU64::new(0),
            failed: Mutex::default(),
        }
    }

    /// Calls `f` with each count of `operation`: the metric attributes, the `error.type` (none
    /// for records done), the count.
    fn each(&self, operation: Operation, mut f: impl FnMut(&[KeyValue], Option<&str>, u64)) {
        let by_topic = self.by_topic.read().unwrap_or_else(|p| p.into_inner());
        for shape in by_topic
            .values()
            .flat_map(HashMap::iter)
            .filter(|((op, _), _)| *op == operation)
            .map(|(_, shape)| shape)
        {
            let done = shape.done.load(Ordering::Relaxed);
            if done > 0 {
                f(&shape.metric, None, done);
            }
            let failed = shape.failed.lock().unwrap_or_else(|p| p.into_inner());
            for (kind, n) in failed.iter() {
                f(&shape.metric, Some(kind), *n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash(key: impl Hash) -> u64 {
        Fold::default().hash_one(key)
    }

    #[test]
    fn similar_keys_hash_apart_and_spread_over_buckets() {
        // Topics that differ in a digit, operations and partitions: what one process's shapes
        // look like. Every key hashes differently, and the low bits the table picks a bucket
        // by spread them evenly enough.
        let mut hashes = HashSet::new();
        let mut buckets = vec![0u32; 1024];
        let mut keys = 0;
        for t in 0..500 {
            let topic = format!("orders-{t}");
            assert!(hashes.insert(hash(topic.as_str())), "{topic}");
            buckets[(hash(topic.as_str()) & 1023) as usize] += 1;
            keys += 1;
        }
        for operation in [Operation::Send, Operation::Process] {
            for partition in -1..1000 {
                let h = hash((operation, partition));
                assert!(hashes.insert(h), "{operation:?} {partition}");
                buckets[(h & 1023) as usize] += 1;
                keys += 1;
            }
        }
        let most = *buckets.iter().max().expect("buckets");
        let mean = keys as f64 / buckets.len() as f64;
        assert!(
            f64::from(most) <= 4.0 * mean + 2.0,
            "a bucket holds {most} of {keys} keys (mean {mean:.1})"
        );
    }

    #[test]
    fn a_topic_shape_is_found_again_and_partitions_apart() {
        let meter = opentelemetry::global::meter("shapes-test");
        let shapes = Shapes::new(Conventions::Current, None, None, &meter);
        let topic: Arc<str> = "orders".into();
        let again: Arc<str> = "orders".into();
        let first = shapes.get(Operation::Send, &topic, Some(3));
        assert!(Arc::ptr_eq(
            &first,
            &shapes.get(Operation::Send, &again, Some(3))
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &shapes.get(Operation::Send, &topic, Some(4))
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &shapes.get(Operation::Send, &topic, None)
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &shapes.get(Operation::Process, &topic, Some(3))
        ));
    }
}
