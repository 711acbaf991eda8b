//! Which of OpenTelemetry's messaging semantic conventions the spans and metrics follow.
//!
//! The conventions renamed most messaging attributes after v1.24.0 and are not yet stable.
//! Instrumentations then emit the v1.24.0 names by default, and the names of the conventions
//! as they stand when `OTEL_SEMCONV_STABILITY_OPT_IN` lists `messaging` (or both with
//! `messaging/dup`). kcon's current names are those of v1.44.0.

use std::sync::Arc;

use opentelemetry::{KeyValue, StringValue, Value};

/// A shared string as an attribute's value: copying the attribute copies no text.
fn text(s: &Arc<str>) -> Value {
    Value::String(StringValue::from(s.clone()))
}

/// The names a span or metric carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conventions {
    /// v1.24.0's, as the Java agent's and most Kafka instrumentations emit them by default:
    /// span names `{topic} publish` and `{topic} process`, `messaging.operation`,
    /// `messaging.client_id`, `messaging.kafka.consumer.group`, `messaging.kafka.message.offset`.
    V1_24,
    /// v1.44.0's: span names `send {topic}` and `process {topic}`, `messaging.operation.name`
    /// and `.type`, `messaging.client.id`, `messaging.consumer.group.name`,
    /// `messaging.kafka.offset`.
    Current,
    /// Both sets of attributes; the current span names (as the conventions ask for
    /// `messaging/dup`).
    Both,
}

impl Conventions {
    /// What `OTEL_SEMCONV_STABILITY_OPT_IN` asks for: `messaging/dup` both, `messaging` the
    /// current names, anything else (or nothing) v1.24.0's.
    pub fn from_env() -> Conventions {
        Conventions::from_opt_in(
            std::env::var("OTEL_SEMCONV_STABILITY_OPT_IN")
                .ok()
                .as_deref()
                .unwrap_or(""),
        )
    }

    /// [`from_env`](Self::from_env) for a given value of the variable: a comma-separated list.
    pub fn from_opt_in(value: &str) -> Conventions {
        let listed = |v: &str| value.split(',').any(|x| x.trim() == v);
        if listed("messaging/dup") {
            Conventions::Both
        } else if listed("messaging") {
            Conventions::Current
        } else {
            Conventions::V1_24
        }
    }

    fn old(self) -> bool {
        self != Conventions::Current
    }

    fn current(self) -> bool {
        self != Conventions::V1_24
    }

    /// A span's name for `operation` on `topic`.
    pub(crate) fn span_name(self, operation: Operation, topic: &str) -> String {
        if self.current() {
            format!("{} {topic}", operation.name())
        } else {
            format!("{topic} {}", operation.old_name())
        }
    }

    /// A span's name for `operation` on no one topic (a failed call, a batch of several
    /// topics): the operation's name alone.
    pub(crate) fn span_name_alone(self, operation: Operation) -> String {
        if self.current() {
            operation.name().to_owned()
        } else {
            operation.old_name().to_owned()
        }
    }

    /// The attributes every span and metric of `operation` carries.
    pub(crate) fn operation(self, operation: Operation, into: &mut Vec<KeyValue>) {
        into.push(KeyValue::new("messaging.system", "kafka"));
        if self.old() {
            into.push(KeyValue::new("messaging.operation", operation.old_name()));
        }
        if self.current() {
            into.push(KeyValue::new("messaging.operation.name", operation.name()));
            into.push(KeyValue::new("messaging.operation.type", operation.kind()));
        }
    }

    /// A record's place: its topic and, when known, its partition (the same keys in both
    /// sets).
    pub(crate) fn destination(
        self,
        topic: impl Into<StringValue>,
        partition: Option<i32>,
        into: &mut Vec<KeyValue>,
    ) {
        into.push(KeyValue::new(
            "messaging.destination.name",
            Value::String(topic.into()),
        ));
        if let Some(partition) = partition {
            // Shared, as the topic is: a span's copy of its shape's attributes is then a
            // reference count, not a copy of the text.
            into.push(KeyValue::new(
                "messaging.destination.partition.id",
                text(&partition.to_string().into()),
            ));
        }
    }

    pub(crate) fn offset(self, offset: i64, into: &mut Vec<KeyValue>) {
        if self.old() {
            into.push(KeyValue::new("messaging.kafka.message.offset", offset));
        }
        if self.current() {
            into.push(KeyValue::new("messaging.kafka.offset", offset));
        }
    }

    pub(crate) fn client_id(self, id: &Arc<str>, into: &mut Vec<KeyValue>) {
        if self.old() {
            into.push(KeyValue::new("messaging.client_id", text(id)));
        }
        if self.current() {
            into.push(KeyValue::new("messaging.client.id", text(id)));
        }
    }

    pub(crate) fn consumer_group(self, group: &Arc<str>, into: &mut Vec<KeyValue>) {
        if self.old() {
            into.push(KeyValue::new("messaging.kafka.consumer.group", text(group)));
        }
        if self.current() {
            into.push(KeyValue::new("messaging.consumer.group.name", text(group)));
        }
    }

    /// A record's key, as its text (a key that is not UTF-8 has no canonical text: left out).
    pub(crate) fn key(self, key: &[u8], into: &mut Vec<KeyValue>) {
        if let Ok(text) = std::str::from_utf8(key) {
            into.push(KeyValue::new(
                "messaging.kafka.message.key",
                Value::from(text.to_owned()),
            ));
        }
    }

    /// Its value's size in bytes, and the tombstone flag when it has none.
    pub(crate) fn body(self, value: Option<usize>, into: &mut Vec<KeyValue>) {
        match value {
            Some(size) => into.push(KeyValue::new(
                "messaging.message.body.size",
                i64::try_from(size).unwrap_or(i64::MAX),
            )),
            None => into.push(KeyValue::new("messaging.kafka.message.tombstone", true)),
        }
    }
}

/// What a span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    /// A record handed to something that sends it later: an exactly-once processor's sink.
    Create,
    Send,
    /// A `recv_batch`: what Kafka's clients call a poll.
    Receive,
    Process,
}

impl Operation {
    /// `messaging.operation.name`, and the span name's first word.
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Send => "send",
            Operation::Receive => "poll",
            Operation::Process => "process",
        }
    }

    /// `messaging.operation.type`.
    fn kind(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Send => "send",
            Operation::Receive => "receive",
            Operation::Process => "process",
        }
    }

    /// v1.24.0's `messaging.operation`, and the span name's last word.
    fn old_name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Send => "publish",
            Operation::Receive => "receive",
            Operation::Process => "process",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_variable_chooses_the_names() {
        assert_eq!(Conventions::from_opt_in(""), Conventions::V1_24);
        assert_eq!(Conventions::from_opt_in("http"), Conventions::V1_24);
        assert_eq!(
            Conventions::from_opt_in("http, messaging"),
            Conventions::Current
        );
        // `messaging/dup` wins over `messaging`.
        assert_eq!(
            Conventions::from_opt_in("messaging,messaging/dup"),
            Conventions::Both
        );
    }

    #[test]
    fn names_follow_the_chosen_conventions() {
        assert_eq!(
            Conventions::V1_24.span_name(Operation::Send, "orders"),
            "orders publish"
        );
        assert_eq!(
            Conventions::Current.span_name(Operation::Send, "orders"),
            "send orders"
        );
        assert_eq!(
            Conventions::Both.span_name(Operation::Process, "orders"),
            "process orders"
        );
        assert_eq!(
            Conventions::Current.span_name(Operation::Receive, "orders"),
            "poll orders"
        );
        assert_eq!(
            Conventions::V1_24.span_name(Operation::Receive, "orders"),
            "orders receive"
        );
        let mut kv = Vec::new();
        Conventions::Current.operation(Operation::Receive, &mut kv);
        assert_eq!(
            kv.iter().map(|kv| kv.value.to_string()).collect::<Vec<_>>(),
            ["kafka", "poll", "receive"]
        );
        let keys = |c: Conventions| {
            let mut kv = Vec::new();
            c.offset(7, &mut kv);
            c.consumer_group(&"g".into(), &mut kv);
            kv.into_iter()
                .map(|kv| kv.key.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(Conventions::V1_24),
            [
                "messaging.kafka.message.offset",
                "messaging.kafka.consumer.group"
            ]
        );
        assert_eq!(
            keys(Conventions::Current),
            ["messaging.kafka.offset", "messaging.consumer.group.name"]
        );
        assert_eq!(keys(Conventions::Both).len(), 4);
    }
}
