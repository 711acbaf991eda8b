//! A record's headers as OpenTelemetry's carrier: where a producer's span context is written
//! (`traceparent`, `tracestate`, `baggage` with the W3C propagators) and read back.

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

/// Writes into a record's headers. A header the record already has is kept, not replaced: a
/// record forwarded with its producer's context keeps that context.
///
/// An empty `tracestate` is not written: W3C Trace Context says it means the same as none and
/// should not be sent, and OpenTelemetry's Rust propagator hands one over for every context
/// without trace state (the Java instrumentation writes none).
///
/// The names OpenTelemetry's propagators write are static: a record's header costs an
/// allocation for its value alone.
pub(crate) struct HeaderInjector<'a>(pub(crate) &'a mut Vec<(Bytes, Option<Bytes>)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == "tracestate" && value.is_empty() {
            return;
        }
        if has(self.0, key) {
            return;
        }
        let name = match key {
            "traceparent" => Bytes::from_static(b"traceparent"),
            "tracestate" => Bytes::from_static(b"tracestate"),
            "baggage" => Bytes::from_static(b"baggage"),
            other => Bytes::copy_from_slice(other.as_bytes()),
        };
        self.0.push((name, Some(value.into())));
    }
}

/// Whether `propagator` writes W3C Trace Context alone: its fields are `traceparent` and
/// `tracestate`, as OpenTelemetry's `TraceContextPropagator` names them. W3C Trace Context
/// fixes what those two headers hold, so kcon writes them itself for such a propagator
/// ([`inject_trace_context`]): the same bytes, without the formatting machinery and the
/// allocations that were most of what an unsampled send span cost.
pub(crate) fn writes_trace_context(propagator: &dyn TextMapPropagator) -> bool {
    let mut fields = propagator.fields();
    matches!(
        (fields.next(), fields.next(), fields.next()),
        (Some("traceparent"), Some("tracestate"), None)
    )
}

/// Writes the span context of `cx` into `headers` as W3C Trace Context, as OpenTelemetry's
/// `TraceContextPropagator` does: nothing for an invalid context; a version `00`
/// `traceparent` with the `sampled` flag alone; a `tracestate` when the context has one.
/// Headers already there are kept ([`HeaderInjector`]).
pub(crate) fn inject_trace_context(cx: &Context, headers: &mut Vec<(Bytes, Option<Bytes>)>) {
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return;
    }
    if !has(headers, "traceparent") {
        headers.push((
            Bytes::from_static(b"traceparent"),
            Some(Bytes::copy_from_slice(&traceparent(context))),
        ));
    }
    if *context.trace_state() != TraceState::NONE {
        HeaderInjector(headers).set("tracestate", context.trace_state().header());
    }
}

/// `cx` with the span context `headers` carry as W3C Trace Context, read as OpenTelemetry's
/// `TraceContextPropagator` reads it, for the shape nearly every record has: a version `00`
/// `traceparent` of lower-case hex and no `tracestate`. `None` for any other shape, which the
/// propagator then reads: kcon keeps no second reading of the rules for the rest.
///
/// What the propagator gives for that shape: `cx` with the remote span context of the ids and
/// the `sampled` flag alone (a reader clears flags it does not know, as [`HeaderExtractor`]
/// does), or `cx` as it is when an id is all zeros.
pub(crate) fn extract_trace_context(
    cx: &Context,
    headers: &[(Bytes, Option<Bytes>)],
) -> Option<Context> {
    if has(headers, "tracestate") {
        return None;
    }
    let Some(value) = first(headers, "traceparent") else {
        // A `traceparent` without a value is for the propagator, which reads none: as absent.
        return (!has(headers, "traceparent")).then(|| cx.clone());
    };
    let value: &[u8; TRACEPARENT_LEN] = value.try_into().ok()?;
    if !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    let mut flags = [0u8; 1];
    lower_hex(&value[3..35], &mut trace)?;
    lower_hex(&value[36..52], &mut span)?;
    lower_hex(&value[53..55], &mut flags)?;
    let context = SpanContext::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(span),
        TraceFlags::new(flags[0]) & TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    Some(if context.is_valid() {
        cx.with_remote_span_context(context)
    } else {
        cx.clone()
    })
}

/// `hex` (lower-case digits, two per byte) read into `into`; `None` when a digit is not one.
fn lower_hex(hex: &[u8], into: &mut [u8]) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (byte, pair) in into.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// `00-<trace id>-<span id>-<flags>` in lower-case hex.
fn traceparent(context: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; TRACEPARENT_LEN];
    let mut at = 0;
    // Each field's digits, then a step over the dash after it.
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            out[at] = HEX[usize::from(b >> 4)];
            out[at + 1] = HEX[usize::from(b & 0x0f)];
            at += 2;
        }
        at += 1;
    };
    let flags = context.trace_flags() & TraceFlags::SAMPLED;
    put(&[0]);
    put(&context.trace_id().to_bytes());
    put(&context.span_id().to_bytes());
    put(&[flags.to_u8()]);
    out
}

/// Reads a record's headers: the first header of a name, when its value is UTF-8.
///
/// A `traceparent` of version `00` whose flags set bits other than `sampled` is read with
/// those bits cleared, as W3C Trace Context (level 1) tells a reader to treat flags it does not
/// know. OpenTelemetry's Java SDK sets the level 2 `random` bit (flags `03`), which the Rust
/// SDK's W3C propagator before 0.32 refuses outright, starting a new trace instead of going
/// on with the producer's.
pub(crate) struct HeaderExtractor<'a> {
    headers: &'a [(Bytes, Option<Bytes>)],
    /// The `traceparent` as read, when its flags had to be cleared.
    traceparent: Option<[u8; TRACEPARENT_LEN]>,
}

/// The length of a version `00` traceparent: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

impl<'a> HeaderExtractor<'a> {
    pub(crate) fn new(headers: &'a [(Bytes, Option<Bytes>)]) -> HeaderExtractor<'a> {
        let traceparent = first(headers, "traceparent").and_then(level_one_flags);
        HeaderExtractor {
            headers,
            traceparent,
        }
    }
}

/// Whether `headers` have one named `key` (with a value or without).
fn has(headers: &[(Bytes, Option<Bytes>)], key: &str) -> bool {
    headers
        .iter()
        .any(|(name, _)| name.as_ref() == key.as_bytes())
}

/// The first value of header `key`, when there is one.
fn first<'a>(headers: &'a [(Bytes, Option<Bytes>)], key: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(name, _)| name.as_ref() == key.as_bytes())
        .and_then(|(_, value)| value.as_deref())
}

/// A version `00` traceparent with its flags' bits other than `sampled` (0x01) cleared, when
/// it has any; `None` when it has none or is not a version `00` traceparent (the propagator
/// judges those as they are).
fn level_one_flags(value: &[u8]) -> Option<[u8; TRACEPARENT_LEN]> {
    let value: &[u8; TRACEPARENT_LEN] = value.try_into().ok()?;
    if !value.starts_with(b"00-") {
        return None;
    }
    let flags = std::str::from_utf8(&value[53..]).ok()?;
    if flags.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if flags & !0x01 == 0 {
        return None;
    }
    let mut cleared = *value;
    cleared[53] = b'0';
    cleared[54] = if flags & 0x01 == 1 { b'1' } else { b'0' };
    Some(cleared)
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent"
            && let Some(cleared) = &self.traceparent
        {
            // ASCII throughout: the original was valid UTF-8 and two hex digits replaced its
            // last two bytes.
            return std::str::from_utf8(cleared).ok();
        }
        first(self.headers, key).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers
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
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("traceparent"), Some("a"));
        assert_eq!(extractor.get("tracestate"), Some("c"));
        assert_eq!(extractor.keys(), ["traceparent", "tracestate"]);
    }

    #[test]
    fn an_empty_tracestate_is_not_written() {
        let mut headers = Vec::new();
        let mut injector = HeaderInjector(&mut headers);
        injector.set(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        injector.set("tracestate", String::new());
        injector.set("baggage", "k=v".into());
        let names: Vec<&[u8]> = headers.iter().map(|(name, _)| &name[..]).collect();
        assert_eq!(names, [&b"traceparent"[..], b"baggage"]);
        let mut injector = HeaderInjector(&mut headers);
        injector.set("tracestate", "vendor=1".into());
        assert_eq!(
            HeaderExtractor::new(&headers).get("tracestate"),
            Some("vendor=1")
        );
    }

    /// kcon's own writing of W3C Trace Context gives what OpenTelemetry's propagator gives,
    /// for sampled and unsampled contexts, with and without a trace state, and keeps a
    /// `traceparent` already there; other propagators are not taken for it.
    #[test]
    fn trace_context_is_written_as_the_propagator_writes_it() {
        use opentelemetry::propagation::TextMapCompositePropagator;
        use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

        let w3c = TraceContextPropagator::new();
        assert!(writes_trace_context(&w3c));
        assert!(!writes_trace_context(&BaggagePropagator::new()));
        let composite = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]);
        assert!(!writes_trace_context(&composite));

        let state: TraceState = "vendor=1,other=x".parse().unwrap();
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::NONE),
            (TraceFlags::default(), TraceState::NONE),
            (TraceFlags::new(0x03), state.clone()),
            (TraceFlags::default(), state),
        ] {
            let context = SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                false,
                state,
            );
            let cx = Context::new().with_remote_span_context(context);
            let mut theirs = vec![(Bytes::from_static(b"k"), None)];
            w3c.inject_context(&cx, &mut HeaderInjector(&mut theirs));
            let mut ours = vec![(Bytes::from_static(b"k"), None)];
            inject_trace_context(&cx, &mut ours);
            assert_eq!(ours, theirs, "{flags:?}");
        }
        let mut headers = Vec::new();
        inject_trace_context(&Context::new(), &mut headers);
        assert!(headers.is_empty(), "an invalid context writes nothing");
        let mut headers = vec![(Bytes::from_static(b"traceparent"), Some(Bytes::from("a")))];
        let cx = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ));
        inject_trace_context(&cx, &mut headers);
        assert_eq!(
            headers,
            [(Bytes::from_static(b"traceparent"), Some(Bytes::from("a")))]
        );
    }

    /// kcon's own reading of W3C Trace Context gives what OpenTelemetry's propagator reads,
    /// for every shape it takes on, and leaves the others to the propagator.
    #[test]
    fn trace_context_is_read_as_the_propagator_reads_it() {
        use opentelemetry_sdk::propagation::TraceContextPropagator;

        let w3c = TraceContextPropagator::new();
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let span = "b7ad6b7169203331";
        let zeros = "0".repeat(32);
        let parent = |v: String| (Bytes::from_static(b"traceparent"), Some(Bytes::from(v)));
        let other = (Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")));
        // (headers, whether kcon reads them itself)
        type Headers = Vec<(Bytes, Option<Bytes>)>;
        let cases: Vec<(Headers, bool)> = vec![
            (vec![parent(format!("00-{trace}-{span}-01"))], true),
            (
                vec![other.clone(), parent(format!("00-{trace}-{span}-00"))],
                true,
            ),
            (vec![parent(format!("00-{trace}-{span}-03"))], true),
            (vec![parent(format!("00-{trace}-{span}-ff"))], true),
            (vec![parent(format!("00-{zeros}-{span}-01"))], true),
            (
                vec![parent(format!("00-{trace}-0000000000000000-01"))],
                true,
            ),
            (vec![other.clone()], true),
            (vec![], true),
            (vec![(Bytes::from_static(b"traceparent"), None)], false),
            (vec![parent(format!("00-{trace}-{span}-0F"))], false),
            (
                vec![parent(format!("00-{}-{span}-01", trace.to_uppercase()))],
                false,
            ),
            (vec![parent(format!("01-{trace}-{span}-01"))], false),
            (vec![parent(format!("00-{trace}-{span}-01-x"))], false),
            (vec![parent(format!("00-{trace}-{span}-0g"))], false),
            (vec![parent(format!("00-{trace}+{span}-01"))], false),
            (vec![parent(format!(" 00-{trace}-{span}-1"))], false),
            (
                vec![
                    parent(format!("00-{trace}-{span}-01")),
                    (Bytes::from_static(b"tracestate"), Some("a=1".into())),
                ],
                false,
            ),
        ];
        let outer = Context::new().with_value(7u32);
        for (headers, ours) in cases {
            let theirs = w3c.extract_with_context(&outer, &HeaderExtractor::new(&headers));
            match extract_trace_context(&outer, &headers) {
                Some(read) => {
                    assert!(ours, "{headers:?} read by kcon");
                    assert_eq!(
                        read.span().span_context(),
                        theirs.span().span_context(),
                        "{headers:?}"
                    );
                    assert_eq!(
                        read.has_active_span(),
                        theirs.has_active_span(),
                        "{headers:?}"
                    );
                    assert_eq!(read.get::<u32>(), Some(&7), "{headers:?}");
                }
                None => assert!(!ours, "{headers:?} left to the propagator"),
            }
        }
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
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("traceparent"), None);
        assert_eq!(extractor.get("baggage"), None);
    }

    #[test]
    fn a_traceparents_flags_unknown_to_level_one_are_read_cleared() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let span = "b7ad6b7169203331";
        for (flags, read) in [
            ("03", "01"),
            ("02", "00"),
            ("ff", "01"),
            ("01", "01"),
            ("00", "00"),
        ] {
            let headers = vec![(
                Bytes::from_static(b"traceparent"),
                Some(Bytes::from(format!("00-{trace}-{span}-{flags}"))),
            )];
            let extractor = HeaderExtractor::new(&headers);
            assert_eq!(
                extractor.get("traceparent"),
                Some(format!("00-{trace}-{span}-{read}").as_str()),
                "flags {flags}"
            );
        }
        // Another version, a wrong length, upper-case flags: left for the propagator to judge.
        for value in [
            format!("01-{trace}-{span}-03"),
            format!("00-{trace}-{span}-03-extra"),
            format!("00-{trace}-{span}-0F"),
        ] {
            let headers = vec![(
                Bytes::from_static(b"traceparent"),
                Some(Bytes::from(value.clone())),
            )];
            assert_eq!(
                HeaderExtractor::new(&headers).get("traceparent"),
                Some(value.as_str())
            );
        }
    }

    #[test]
    fn a_java_producers_context_with_the_random_flag_is_continued() {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use opentelemetry_sdk::propagation::TraceContextPropagator;

        let headers = vec![(
            Bytes::from_static(b"traceparent"),
            Some(Bytes::from_static(
                b"00-3baa7e9e30b8349f1388a5ce941c61c6-521ee4a01cf55ef7-03",
            )),
        )];
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor::new(&headers));
        let span = cx.span();
        let remote = span.span_context();
        assert!(remote.is_valid() && remote.is_remote() && remote.is_sampled());
        assert_eq!(
            remote.trace_id().to_string(),
            "3baa7e9e30b8349f1388a5ce941c61c6"
        );
        assert_eq!(remote.span_id().to_string(), "521ee4a01cf55ef7");
    }
}
