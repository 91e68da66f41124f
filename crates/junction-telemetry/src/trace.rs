//! W3C trace context and spans: the trace a request belongs to, `traceparent` and
//! `tracestate` passed on to every backend call, and the spans recorded for the OTLP
//! exporter ([`super::otlp`]).
//!
//! The server starts a [`RequestTrace`] per data-plane request: it continues the client's
//! trace when its `traceparent` is valid (version `00`, lowercase hex, ids not all zero),
//! or starts a new one. The trace's [`Context`] is a Tokio task-local for the duration of
//! the request ([`RequestTrace::scope`]); the stages read it there instead of passing it
//! through every signature. A view runs its steps in the request's own task, each step in
//! its own scope ([`within`]), so the calls of a step hang under the step's span.
//!
//! Propagation always happens, exporter or not: every upstream call sends a `traceparent`
//! whose parent id is the call's own span id (backends' logs then carry the trace id the
//! access log shows). Without an exporter that costs a few random numbers and one 55-byte
//! header value per upstream call; no span is built and nothing is queued. Spans are
//! recorded only when an exporter is configured and the trace is sampled (the client's
//! `sampled` flag when it sent a `traceparent`, otherwise always).
//!
//! A span never holds a header value other than `tracestate`, a query string, a request
//! body or a connection value: its attributes are names, methods, statuses, host and path.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};

use super::otlp::Tracer;

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// A trace id: 16 bytes, never all zero.
pub type TraceId = [u8; 16];
/// A span id: 8 bytes, never all zero.
pub type SpanId = [u8; 8];

/// The `sampled` flag of `traceparent`.
const SAMPLED: u8 = 0x01;

/// A valid W3C `traceparent` (version `00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-{32 hex}-{16 hex}-{2 hex}`, lowercase, ids not all zero. Anything else
    /// (another version, upper case, a wrong length) is `None`.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() != 55 {
            return None;
        }
        let dash = |at: usize| value.get(at) == Some(&b'-');
        if value.get(..2) != Some(b"00") || !(dash(2) && dash(35) && dash(52)) {
            return None;
        }
        let trace_id: TraceId = hex_array(value.get(3..35)?)?;
        let parent_id: SpanId = hex_array(value.get(36..52)?)?;
        let [flags] = hex_array::<1>(value.get(53..55)?)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header value: `00-TRACEID-PARENTID-FLAGS`.
    pub fn to_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        write_hex(&mut out[3..35], &self.trace_id);
        write_hex(&mut out[36..52], &self.parent_id);
        write_hex(&mut out[53..55], &[self.flags]);
        out
    }
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        if let [high, low] = pair {
            *high = DIGITS[usize::from(byte >> 4)];
            *low = DIGITS[usize::from(byte & 0x0f)];
        }
    }
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (digit(*high)? << 4) | digit(*low)?;
    }
    Some(out)
}

/// Lowercase hex of an id, on the stack.
#[derive(Clone, Copy)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 32 hex digits of a trace id.
pub fn trace_hex(id: &TraceId) -> Hex<32> {
    let mut out = [0u8; 32];
    write_hex(&mut out, id);
    Hex(out)
}

/// The 16 hex digits of a span id.
pub fn span_hex(id: &SpanId) -> Hex<16> {
    let mut out = [0u8; 16];
    write_hex(&mut out, id);
    Hex(out)
}

fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// What kind of span: OTLP's `SpanKind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(value: &'static str) -> Self {
        Value::Str(Cow::Borrowed(value))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Str(Cow::Owned(value))
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

/// A finished span, as queued for the exporter. Times are instants; the exporter turns
/// them into wall-clock time when it sends them.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: Option<SpanId>,
    pub state: Option<HeaderValue>,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start: Instant,
    pub end: Instant,
    pub attributes: Vec<(&'static str, Value)>,
    /// The error status's message (a problem type, or a status code); `None`: unset.
    pub error: Option<Cow<'static, str>>,
}

/// The trace context of the code running now: the trace, the span new spans hang under,
/// and where they go.
#[derive(Debug, Clone)]
pub struct Context {
    trace_id: TraceId,
    /// The current span: the parent of spans started now and of upstream calls.
    span_id: SpanId,
    flags: u8,
    state: Option<HeaderValue>,
    /// Set when this trace's spans are recorded.
    tracer: Option<Arc<Tracer>>,
}

tokio::task_local! {
    static CURRENT: Context;
}

/// A span being recorded. Dropping it without [`Span::end`] records nothing.
#[derive(Debug)]
pub struct Span {
    record: SpanRecord,
    tracer: Arc<Tracer>,
}

impl Span {
    /// Starts a span at `start` under the current span, when spans are recorded here.
    pub fn start(name: impl Into<Cow<'static, str>>, kind: Kind, start: Instant) -> Option<Span> {
        Span::start_with(|| name.into(), kind, start)
    }

    /// [`Span::start`] with a name made only when the span is recorded.
    pub fn start_with<N: Into<Cow<'static, str>>>(
        name: impl FnOnce() -> N,
        kind: Kind,
        start: Instant,
    ) -> Option<Span> {
        CURRENT
            .try_with(|context| {
                let tracer = context.tracer.clone()?;
                Some(Span {
                    record: SpanRecord {
                        trace_id: context.trace_id,
                        span_id: new_span_id(),
                        parent_id: Some(context.span_id),
                        state: context.state.clone(),
                        name: name().into(),
                        kind,
                        start,
                        end: start,
                        attributes: Vec::new(),
                        error: None,
                    },
                    tracer,
                })
            })
            .ok()
            .flatten()
    }

    pub fn id(&self) -> SpanId {
        self.record.span_id
    }

    /// Renames the span.
    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        self.record.name = name.into();
    }

    /// Moves the span's start to `start`.
    pub fn begin(&mut self, start: Instant) {
        self.record.start = start;
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.record.attributes.push((key, value.into()));
    }

    /// Marks the span failed, with `why` (a problem type or a status).
    pub fn fail(&mut self, why: impl Into<Cow<'static, str>>) {
        self.record.error = Some(why.into());
    }

    /// Ends the span at `end` and queues it for export.
    pub fn end(mut self, end: Instant) {
        self.record.end = end;
        self.tracer.record(self.record);
    }
}

/// Runs `future` with `span` as the current span (when there is one), so the spans and
/// upstream calls it starts hang under it.
///
/// Not an `async fn`: that would copy `future` (often kilobytes of state) into its own
/// state first. Without a span, `future` is handed back as it is; with one, it is boxed
/// once under the scope.
pub fn within<F: Future>(
    span: Option<SpanId>,
    future: F,
) -> futures_util::future::Either<impl Future<Output = F::Output>, F> {
    let context = span.and_then(|span_id| {
        CURRENT
            .try_with(|context| Context {
                span_id,
                ..context.clone()
            })
            .ok()
    });
    match context {
        Some(context) => {
            futures_util::future::Either::Left(CURRENT.scope(context, Box::pin(future)))
        }
        None => futures_util::future::Either::Right(future),
    }
}

/// The trace of one data-plane request: its context, and what the server span needs.
#[derive(Debug)]
pub struct RequestTrace {
    context: Context,
    /// The client's parent span, when it sent a valid `traceparent`.
    client_parent: Option<SpanId>,
}

impl RequestTrace {
    /// Continues the trace of the client's `traceparent` (keeping its `tracestate`), or
    /// starts one. Spans go to `tracer` when it is set and the trace is sampled.
    pub fn start(headers: &HeaderMap, tracer: Option<&Arc<Tracer>>) -> RequestTrace {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|value| TraceParent::parse(value.as_bytes()));
        let (trace_id, client_parent, flags, state) = match parent {
            Some(parent) => (
                parent.trace_id,
                Some(parent.parent_id),
                parent.flags,
                headers
                    .get(TRACESTATE)
                    .filter(|state| !state.is_empty())
                    .cloned(),
            ),
            None => (
                new_trace_id(),
                None,
                if tracer.is_some() { SAMPLED } else { 0 },
                None,
            ),
        };
        let recorded = flags & SAMPLED != 0;
        RequestTrace {
            context: Context {
                trace_id,
                span_id: new_span_id(),
                flags,
                state,
                tracer: tracer.filter(|_| recorded).cloned(),
            },
            client_parent,
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id
    }

    /// The id of the request's server span (recorded or not).
    pub fn span_id(&self) -> SpanId {
        self.context.span_id
    }

    /// The client's parent span id, when it sent a valid `traceparent`.
    pub fn client_parent(&self) -> Option<SpanId> {
        self.client_parent
    }

    /// Whether the request's spans are recorded.
    pub fn recorded(&self) -> bool {
        self.context.tracer.is_some()
    }

    /// Runs `future` (the request) in this trace.
    ///
    /// The request's future is boxed once: the scope and the caller then move a pointer,
    /// not the future's kilobytes of state (a copy per layer showed as 10 % of a cache
    /// hit's CPU time).
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.context.clone(), Box::pin(future))
    }

    /// The server span of the request, from `start` to `end`, when it is recorded; the
    /// caller adds its attributes and ends it.
    pub fn server_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        start: Instant,
        end: Instant,
    ) -> Option<Span> {
        let tracer = self.context.tracer.clone()?;
        Some(Span {
            record: SpanRecord {
                trace_id: self.context.trace_id,
                span_id: self.context.span_id,
                parent_id: self.client_parent,
                state: self.context.state.clone(),
                name: name.into(),
                kind: Kind::Server,
                start,
                end,
                attributes: Vec::with_capacity(10),
                error: None,
            },
            tracer,
        })
    }
}

/// One upstream call in the current trace: the headers to send and, when recorded, its
/// client span (to be taken out, named, begun and ended by the caller).
#[derive(Debug)]
pub struct UpstreamCall {
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
    pub span: Option<Span>,
}

impl UpstreamCall {
    /// A call under the current span, with a span id of its own; `None` outside a traced
    /// request (a background cache refresh, a call from the admin API).
    pub fn start() -> Option<UpstreamCall> {
        CURRENT
            .try_with(|context| {
                let span_id = new_span_id();
                let header = TraceParent {
                    trace_id: context.trace_id,
                    parent_id: span_id,
                    flags: context.flags,
                }
                .to_bytes();
                let traceparent = HeaderValue::from_bytes(&header).ok()?;
                let span = context.tracer.clone().map(|tracer| Span {
                    record: SpanRecord {
                        trace_id: context.trace_id,
                        span_id,
                        parent_id: Some(context.span_id),
                        state: context.state.clone(),
                        name: Cow::Borrowed(""),
                        kind: Kind::Client,
                        start: Instant::now(),
                        end: Instant::now(),
                        attributes: Vec::with_capacity(10),
                        error: None,
                    },
                    tracer,
                });
                Some(UpstreamCall {
                    traceparent,
                    tracestate: context.state.clone(),
                    span,
                })
            })
            .ok()
            .flatten()
    }

    /// Puts `traceparent` (and the client's `tracestate`) into the request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent.clone());
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_writes_a_traceparent() {
        let parent = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(
            trace_hex(&parent.trace_id).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span_hex(&parent.parent_id).as_str(), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
        assert_eq!(&parent.to_bytes()[..], VALID.as_bytes());
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn continues_the_clients_trace_or_starts_one() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let trace = RequestTrace::start(&headers, None);
        assert_eq!(
            trace_hex(&trace.trace_id()).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            trace
                .client_parent()
                .map(|p| span_hex(&p).as_str().to_owned()),
            Some("00f067aa0ba902b7".to_owned())
        );
        assert!(!trace.recorded());

        headers.insert(TRACEPARENT, HeaderValue::from_static("00-zz-yy-01"));
        let fresh = RequestTrace::start(&headers, None);
        assert_ne!(fresh.trace_id(), trace.trace_id());
        assert_eq!(fresh.client_parent(), None);
        // A new trace does not carry the client's tracestate.
        assert_eq!(fresh.context.state, None);
    }

    #[tokio::test]
    async fn upstream_calls_carry_their_own_span_id() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let trace = RequestTrace::start(&headers, None);
        assert!(UpstreamCall::start().is_none(), "outside a request");
        let sent = trace
            .scope(async {
                let call = UpstreamCall::start().unwrap();
                let mut out = HeaderMap::new();
                call.apply(&mut out);
                out
            })
            .await;
        let parent = TraceParent::parse(sent[TRACEPARENT].as_bytes()).unwrap();
        assert_eq!(parent.trace_id, trace.trace_id());
        assert_ne!(parent.parent_id, trace.client_parent().unwrap());
        assert_ne!(parent.parent_id, trace.span_id());
        assert_eq!(sent[TRACESTATE], "congo=t61rcWkgMzE");
    }
}
