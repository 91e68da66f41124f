//! The OTLP trace exporter: spans queued by requests, batched by a background task and
//! posted as `ExportTraceServiceRequest` protobuf over HTTP (`[telemetry] otlp_endpoint`).
//!
//! A request never waits for the exporter: a finished span goes into a bounded queue
//! ([`QUEUE_CAPACITY`]) with a non-blocking send, and a span that does not fit is dropped
//! and counted (`junction_trace_spans_dropped_total{reason="queue_full"}`). The task sends
//! a batch when it has [`MAX_BATCH`] spans, every [`FLUSH_EVERY`], and once more when the
//! server shuts down. A batch the collector refuses or that cannot be sent is dropped and
//! counted (`reason="export_failed"`); the failure is logged once, and the recovery once.
//!
//! The protobuf messages are declared here ([`proto`]), with `prost`'s derive: the few
//! messages of `opentelemetry/proto/collector/trace/v1` and `trace/v1` the exporter
//! writes, with their field numbers, and nothing else (no gRPC, no code generation at
//! build time). Fields the exporter never writes (events, links, dropped counts) are left
//! out: protobuf readers take a message without them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Uri;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::trace::{SpanRecord, Value};

/// Posts one batch to the collector: the endpoint's URI and the protobuf bytes; `Ok` when
/// the collector took it, else why not. The gateway gives one built on its own pooled
/// HTTP client (`junction-runtime`), so that this crate makes no connection itself.
pub type Post = Arc<dyn Fn(Uri, Bytes) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Spans waiting for the exporter at most; more are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per export request at most.
pub const MAX_BATCH: usize = 512;
/// How often a partial batch is sent.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Time allowed for one export request, and for the last flush at shutdown.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP messages the exporter writes (and the tests read), field numbers as in the
/// OpenTelemetry protocol (v1).
#[allow(missing_docs)]
pub mod proto {
    pub use prost::Message;

    /// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `SpanKind`: 1 internal, 2 server, 3 client. `Status.code`: 2 error.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(int32, tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
        }
    }

    /// `Status.code` of a failed span.
    pub const STATUS_ERROR: i32 = 2;
}

/// `[telemetry]`'s exporter settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterSettings {
    /// Where to post: `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: url::Url,
    /// The `service.name` of every span.
    pub service_name: String,
}

/// The request side of the exporter: the queue spans go into, and its counters.
#[derive(Debug)]
pub struct Tracer {
    queue: mpsc::Sender<SpanRecord>,
    /// Spans dropped because the queue was full (or the exporter had stopped).
    dropped_full: AtomicU64,
    /// Spans dropped because their export failed.
    dropped_failed: AtomicU64,
    /// Spans the collector accepted.
    exported: AtomicU64,
}

impl Tracer {
    /// Queues a finished span; never waits.
    pub fn record(&self, span: SpanRecord) {
        if self.queue.try_send(span).is_err() {
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans dropped because the queue was full.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }

    /// Spans dropped because the collector could not be reached or refused them.
    pub fn dropped_failed(&self) -> u64 {
        self.dropped_failed.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
}

/// The running exporter task; [`Exporter::shutdown`] sends what is queued and stops it.
#[derive(Debug)]
pub struct Exporter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Starts the exporter task on the current runtime, sending batches with `post`. Fails
    /// when the endpoint is not a usable URL.
    pub fn start(
        settings: ExporterSettings,
        post: Post,
    ) -> Result<(Arc<Tracer>, Exporter), String> {
        let uri: Uri = settings
            .endpoint
            .as_str()
            .parse()
            .map_err(|e| format!("[telemetry] otlp_endpoint is not a usable URL: {e}"))?;
        let (queue, spans) = mpsc::channel(QUEUE_CAPACITY);
        let tracer = Arc::new(Tracer {
            queue,
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
            exported: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let shown = format!(
            "{}://{}{}",
            settings.endpoint.scheme(),
            settings.endpoint.host_str().unwrap_or_default(),
            settings
                .endpoint
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default()
        );
        let task = Task {
            post,
            uri,
            shown,
            resource: resource(&settings.service_name),
            tracer: tracer.clone(),
            failing: AtomicBool::new(false),
        };
        let task = tokio::spawn(task.run(spans, stopped));
        Ok((tracer, Exporter { stop, task }))
    }

    /// Sends the spans still queued (within [`EXPORT_TIMEOUT`]) and stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(EXPORT_TIMEOUT + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

struct Task {
    post: Post,
    uri: Uri,
    /// The endpoint as logged: scheme, host and port.
    shown: String,
    resource: proto::Resource,
    tracer: Arc<Tracer>,
    failing: AtomicBool,
}

impl Task {
    async fn run(self, mut spans: mpsc::Receiver<SpanRecord>, mut stopped: oneshot::Receiver<()>) {
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    while let Ok(span) = spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= MAX_BATCH {
                            self.flush(&mut batch).await;
                        }
                    }
                    self.flush(&mut batch).await;
                    return;
                }
                received = spans.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        self.flush(&mut batch).await;
                        return;
                    }
                    if batch.len() >= MAX_BATCH {
                        self.flush(&mut batch).await;
                    }
                }
                _ = tick.tick() => self.flush(&mut batch).await,
            }
        }
    }

    /// Posts `batch` (emptying it); failures are counted and logged on change.
    async fn flush(&self, batch: &mut Vec<SpanRecord>) {
        if batch.is_empty() {
            return;
        }
        let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let body = encode(batch.drain(..), &self.resource);
        match tokio::time::timeout(EXPORT_TIMEOUT, self.post(body)).await {
            Ok(Ok(())) => {
                self.tracer.exported.fetch_add(count, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.shown, "exporting spans again");
                }
            }
            outcome => {
                self.tracer
                    .dropped_failed
                    .fetch_add(count, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let reason = match outcome {
                        Ok(Err(reason)) => reason,
                        _ => format!("no answer within {}s", EXPORT_TIMEOUT.as_secs()),
                    };
                    tracing::warn!(endpoint = %self.shown, %reason, "cannot export spans; they are dropped until the collector answers");
                }
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        (self.post)(self.uri.clone(), Bytes::from(body)).await
    }
}

/// The resource of every span: `service.name`, `service.version`.
fn resource(service_name: &str) -> proto::Resource {
    proto::Resource {
        attributes: vec![
            key_value("service.name", Value::from(service_name.to_owned())),
            key_value("service.version", Value::from(env!("CARGO_PKG_VERSION"))),
        ],
    }
}

fn key_value(key: &str, value: Value) -> proto::KeyValue {
    use proto::any_value::Value as Any;
    let value = match value {
        Value::Str(text) => Any::StringValue(text.into_owned()),
        Value::Int(n) => Any::IntValue(n),
        Value::Bool(b) => Any::BoolValue(b),
    };
    proto::KeyValue {
        key: key.to_owned(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

/// Nanoseconds since the Unix epoch of `at`, from a wall-clock reading taken now (spans
/// are at most a few seconds old when they are sent, so clock adjustments do not matter).
struct Clock {
    now: Instant,
    unix_nanos: u128,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            now: Instant::now(),
            unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        }
    }

    fn unix_nanos(&self, at: Instant) -> u64 {
        let nanos = match self.now.checked_duration_since(at) {
            Some(ago) => self.unix_nanos.saturating_sub(ago.as_nanos()),
            None => self
                .unix_nanos
                .saturating_add(at.duration_since(self.now).as_nanos()),
        };
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

/// The protobuf body of one export request.
fn encode(spans: impl Iterator<Item = SpanRecord>, resource: &proto::Resource) -> Vec<u8> {
    let clock = Clock::new();
    let spans = spans
        .map(|span| proto::Span {
            trace_id: span.trace_id.to_vec(),
            span_id: span.span_id.to_vec(),
            trace_state: span
                .state
                .as_ref()
                .and_then(|s| s.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            parent_span_id: span.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: span.name.into_owned(),
            kind: span.kind as i32,
            start_time_unix_nano: clock.unix_nanos(span.start),
            end_time_unix_nano: clock.unix_nanos(span.end),
            attributes: span
                .attributes
                .into_iter()
                .map(|(key, value)| key_value(key, value))
                .collect(),
            status: span.error.map(|message| proto::Status {
                message: message.into_owned(),
                code: proto::STATUS_ERROR,
            }),
        })
        .collect();
    proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: "junction".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                spans,
            }],
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::borrow::Cow;

    use super::proto::Message as _;
    use super::*;
    use crate::trace::Kind;
    use http::HeaderValue;

    fn record() -> SpanRecord {
        let start = Instant::now();
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_id: Some([3; 8]),
            state: Some(HeaderValue::from_static("a=b")),
            name: Cow::Borrowed("GET /views/x"),
            kind: Kind::Server,
            start,
            end: start + Duration::from_millis(3),
            attributes: vec![("http.response.status_code", Value::Int(200))],
            error: Some(Cow::Borrowed("upstream-timeout")),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (queue, _spans) = mpsc::channel(1);
        let tracer = Tracer {
            queue,
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
            exported: AtomicU64::new(0),
        };
        tracer.record(record());
        tracer.record(record());
        tracer.record(record());
        assert_eq!(tracer.dropped_full(), 2);
    }

    #[test]
    fn encodes_spans_that_decode_again() {
        let bytes = encode(std::iter::once(record()), &resource("svc"));
        let decoded = proto::ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let resource_spans = &decoded.resource_spans[0];
        assert_eq!(
            resource_spans.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let span = &resource_spans.scope_spans[0].spans[0];
        assert_eq!(span.trace_id, vec![1; 16]);
        assert_eq!(span.parent_span_id, vec![3; 8]);
        assert_eq!(span.kind, 2);
        assert_eq!(span.trace_state, "a=b");
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            3_000_000
        );
        assert_eq!(span.status.as_ref().unwrap().code, proto::STATUS_ERROR);
    }
}
