//! Partitions and topics by name and by id.

use std::borrow::{Borrow, Cow};
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A topic partition: defined with the consumer protocol's codec, whose partition lists are
/// made of it.
pub use kcon_codec::TopicPartition;

/// A topic's name as a record carries it: interned, so that a record holds it without a
/// reference count to change as records are made and dropped (two atomic operations per
/// record otherwise), and copying it costs nothing.
///
/// Each distinct name is kept for the life of the process, once: its bytes are the whole cost,
/// and only the names of topics the client reads, or that the application names, are kept.
/// It reads as a `&str` ([`Deref`], [`as_str`](Self::as_str)); it compares, orders and hashes
/// as its name, so a map keyed by topics is searched with a `&str`.
///
/// ```
/// use kcon_core::Topic;
/// let t = Topic::new("orders");
/// assert_eq!(t, "orders");
/// assert_eq!(t.len(), 6);
/// assert!(std::ptr::eq(t.as_str(), Topic::from(String::from("orders")).as_str()));
/// ```
#[derive(Clone, Copy)]
pub struct Topic(&'static str);

// As its name, so that a map keyed by topics is searched with a `&str`.
impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

// One copy of each name: the same name is (almost always) the same pointer, compared first.
impl PartialEq for Topic {
    fn eq(&self, other: &Topic) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Eq for Topic {}

impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> std::cmp::Ordering {
        if std::ptr::eq(self.0, other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(other.0)
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Topic {
    /// The topic named `name`. A thread asking for the name it asked for last finds it
    /// without the process's lock.
    pub fn new(name: &str) -> Topic {
        thread_local! {
            static LAST: Cell<Option<Topic>> = const { Cell::new(None) };
        }
        if let Some(last) = LAST.get()
            && last.0 == name
        {
            return last;
        }
        let topic = Topic::interned(name);
        LAST.set(Some(topic));
        topic
    }

    fn interned(name: &str) -> Topic {
        static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = names.get(name) {
            return Topic(kept);
        }
        let kept: &'static str = Box::leak(Box::from(name));
        names.insert(kept);
        Topic(kept)
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Topic {
        Topic::new(name)
    }
}

impl From<&String> for Topic {
    fn from(name: &String) -> Topic {
        Topic::new(name)
    }
}

impl From<String> for Topic {
    fn from(name: String) -> Topic {
        Topic::new(&name)
    }
}

impl From<&Topic> for Topic {
    fn from(topic: &Topic) -> Topic {
        *topic
    }
}

impl From<Box<str>> for Topic {
    fn from(name: Box<str>) -> Topic {
        Topic::new(&name)
    }
}

impl From<Cow<'_, str>> for Topic {
    fn from(name: Cow<'_, str>) -> Topic {
        Topic::new(&name)
    }
}

/// The empty name: no topic is named so (a record made with `Default` and not given one).
impl Default for Topic {
    fn default() -> Topic {
        Topic("")
    }
}

impl From<Arc<str>> for Topic {
    fn from(name: Arc<str>) -> Topic {
        Topic::new(&name)
    }
}

impl From<&Arc<str>> for Topic {
    fn from(name: &Arc<str>) -> Topic {
        Topic::new(name)
    }
}

impl From<Topic> for Arc<str> {
    fn from(topic: Topic) -> Arc<str> {
        Arc::from(topic.0)
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> String {
        topic.0.to_owned()
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        self.0 == other
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == other.0
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == other.0
    }
}

/// A topic id (KIP-516): 16 bytes, shown as Kafka shows them, URL-safe base64 without padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub [u8; 16]);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.0.chunks(3) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= u32::from(*b) << (16 - 8 * i);
            }
            // 3 bytes give 4 characters; the last 1-byte chunk gives 2 (no padding).
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_kept_once_and_reads_as_its_name() {
        let a = Topic::new("kcon-core-interned");
        let b = Topic::from(String::from("kcon-core-interned"));
        assert_eq!(a, b);
        assert!(
            std::ptr::eq(a.as_str(), b.as_str()),
            "one copy of each name"
        );
        assert_ne!(a, Topic::new("kcon-core-interned-2"));
        assert_eq!(
            format!("{a} {a:?}"),
            "kcon-core-interned \"kcon-core-interned\""
        );
        let mut set = HashSet::new();
        set.insert(a);
        assert!(
            set.contains("kcon-core-interned"),
            "a set of topics is searched by name"
        );
        assert!(Topic::new("a") < Topic::new("b"));
        assert_eq!(&*Arc::<str>::from(a), "kcon-core-interned");
        // Another thread, and the same thread asking again after another name, find the one
        // copy.
        let there = std::thread::spawn(|| Topic::new("kcon-core-interned"));
        assert!(std::ptr::eq(there.join().unwrap().as_str(), a.as_str()));
        assert!(std::ptr::eq(
            Topic::new("kcon-core-interned").as_str(),
            a.as_str()
        ));
        // The default, the empty name, equals an interned empty name though not its copy.
        assert_eq!(Topic::default(), Topic::new(""));
        assert_eq!(
            Topic::default().cmp(&Topic::new("")),
            std::cmp::Ordering::Equal
        );
    }

    #[test]
    fn topic_ids_print_as_kafka_does() {
        // Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, no padding.
        assert_eq!(TopicId([0; 16]).to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(TopicId([0xff; 16]).to_string(), "_____________________w");
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(TopicId(id).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
