//! A record's headers as OpenTelemetry's carrier: where a producer's span context is written
//! (`traceparent`, `tracestate`, `baggage` with the W3C propagators) and read back.

use bytes::Bytes;
use opentelemetry::propagation::{Extractor, Injector};

/// Writes into a record's headers. A header the record already has is kept, not replaced: a
/// record forwarded with its producer's context keeps that context.
pub(crate) struct HeaderInjector<'a>(pub(crate) &'a mut Vec<(Bytes, Option<Bytes>)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !self
            .0
            .iter()
            .any(|(name, _)| name.as_ref() == key.as_bytes())
        {
            self.0
                .push((Bytes::copy_from_slice(key.as_bytes()), Some(value.into())));
        }
    }
}

/// Reads a record's headers: the first header of a name, when its value is UTF-8.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a [(Bytes, Option<Bytes>)]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name.as_ref() == key.as_bytes())
            .and_then(|(_, value)| value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|(name, _)| std::str::from_utf8(name).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_already_there_is_kept() {
        let mut headers = vec![(Bytes::from_static(b"traceparent"), Some(Bytes::from("a")))];
        let mut injector = HeaderInjector(&mut headers);
        injector.set("traceparent", "b".into());
        injector.set("tracestate", "c".into());
        assert_eq!(headers.len(), 2);
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), Some("a"));
        assert_eq!(extractor.get("tracestate"), Some("c"));
        assert_eq!(extractor.keys(), ["traceparent", "tracestate"]);
    }

    #[test]
    fn a_header_without_a_text_value_is_not_read() {
        let headers = vec![
            (Bytes::from_static(b"traceparent"), None),
            (
                Bytes::from_static(b"baggage"),
                Some(Bytes::from_static(b"\xff")),
            ),
        ];
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), None);
        assert_eq!(extractor.get("baggage"), None);
    }
}
