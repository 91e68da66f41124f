//! Running a view: its steps as a dependency graph, independent steps at once, each call
//! through [`Gateway::handle`] like a client's; then the jq shape.
//!
//! The executor keeps one set of running steps (a `FuturesUnordered` in the request's own
//! task: no spawning, so a thread-per-core server keeps the whole view on its core). Each
//! time a step finishes, every step whose dependencies are now all done starts. A step's
//! arguments are evaluated when it starts, from the inputs and the finished results, so a
//! running step owns everything it needs. A `for_each` step makes one call per element, at
//! most `concurrency` at once, and its result is the list of the calls' results in order.
//! The step's timeout covers all its calls. A required step that fails ends the view at
//! once (the other calls are dropped, which cancels them); an optional one takes its
//! fallback and is named in the answer.
//!
//! A view with a cache policy (`[view.NAME.cache]`) goes through the cache stage of
//! operations ([`stage::through`]) keyed by its bound inputs, with the view's run in place
//! of the backend call; a partial answer is never stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use http::{HeaderValue, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use junction_model::CollectionFormat;
use serde_json::{Map, Value, json};

use super::compile::{Arg, OperationCall, Reference, Root, Slot, StepPlan, Target, ViewPlan};
use super::syntax::follow;
use super::{PARTIAL_HEADER, VIEWS_PREFIX, inputs};
use crate::body::{self, UpstreamBody};
use crate::cache::key::{self, KeyBuilder};
use crate::cache::stage::{self, Origin};
use crate::cache::{CachePolicy, DoNotStore, Leader};
use crate::context::RequestCtx;
use crate::encode;
use crate::error::{BoxError, Error, ErrorKind, InputLocation};
use crate::gateway::Gateway;
use crate::pipeline::CONNECTORS_PREFIX;
use crate::route::Piece;
use crate::telemetry::trace::{self, Kind, Span};

/// Request headers a step's calls carry over from the view's request.
const FORWARDED: [&str; 2] = ["x-request-id", "accept-language"];

/// A view's result: the shaped document and the optional steps that failed.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub value: Value,
    /// `step` or, for steps of a called view, `step.inner`.
    pub partial: Vec<String>,
}

/// Why a step failed: the error of its call, with the kind that says whose fault it was
/// (a rate limit stays 429, a timeout 504, a lookup that found nothing 404); the view adds
/// which step it was.
#[derive(Debug)]
struct StepFailure(Error);

impl StepFailure {
    /// A failure of the view itself (its data or its plan), not of a call.
    fn view(message: impl Into<String>) -> Self {
        StepFailure(Error::new(ErrorKind::ViewStepFailed, message))
    }

    /// A call's answer that is not a success, as the view reports it: a lookup that found
    /// nothing is the caller's 404, a rate limit the caller's 429 (with the backend's
    /// `Retry-After`); anything else a failed step (502).
    fn status(status: http::StatusCode, headers: &http::HeaderMap) -> Self {
        let message = format!("the backend answered {status}");
        let error = match status.as_u16() {
            404 | 410 => Error::new(ErrorKind::NotFound, message),
            429 => {
                let wait = crate::resilience::retry::retry_after(headers)
                    .unwrap_or(Duration::from_secs(1));
                Error::new(ErrorKind::RateLimited, message).with_retry_after(wait)
            }
            _ => Error::new(ErrorKind::ViewStepFailed, message),
        };
        StepFailure(error)
    }
}

/// One call a step makes.
enum Call<'v> {
    Operation(http::Request<Full<Bytes>>),
    View(&'v ViewPlan, Map<String, Value>),
}

/// What a finished step hands back: the value and the failures inside it.
type StepResult = Result<(Value, Vec<String>), StepFailure>;

impl Gateway {
    /// Serves one request under `/views/`: binds the inputs (GET query or POST JSON body),
    /// runs the view — or answers from the cache when the view has a cache policy — and
    /// answers its JSON with `X-Junction-Partial` naming any optional step that failed.
    ///
    /// Without a [`RequestCtx`], a cache entry within stale-while-revalidate is refreshed
    /// before answering (see [`Gateway::serve_view_in`]).
    pub async fn handle_view<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_view_in(&mut RequestCtx::default(), request)
            .await
    }

    /// Serves one request under `/views/` in its context `ctx`: the view's steps call as the
    /// same caller (its address counts their per-client limits, its client their grants),
    /// and `ctx` learns which view answered, which client asked and how long the stages
    /// took.
    pub async fn serve_view_in<'g, B>(
        &'g self,
        ctx: &mut RequestCtx<'g>,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let mut response = self.view_request(ctx, request).await?;
        ctx.answered(&mut response);
        Ok(response)
    }

    async fn view_request<'g, B>(
        &'g self,
        ctx: &mut RequestCtx<'g>,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, request_body) = request.into_parts();
        let path = parts.uri.path();
        let name = path.strip_prefix(VIEWS_PREFIX).unwrap_or_default();
        let Some(view) = self.views.get(name) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("there is no view named '{name}'"),
            ));
        };
        ctx.route = view.metrics.get().map(Arc::as_ref);
        let values = match parts.method {
            http::Method::GET => inputs::from_query(view, parts.uri.query())?,
            http::Method::POST => {
                let limit = self.limits.max_body_bytes;
                body::check_declared_length(&parts.headers, limit)?;
                if let Some(media) = parts.headers.get(header::CONTENT_TYPE)
                    && !media
                        .to_str()
                        .ok()
                        .and_then(|m| m.split(';').next())
                        .is_some_and(|m| {
                            let m = m.trim().to_ascii_lowercase();
                            m == "application/json" || m.ends_with("+json")
                        })
                {
                    return Err(Error::new(
                        ErrorKind::UnsupportedMediaType,
                        format!("view '{name}' takes its inputs as application/json"),
                    ));
                }
                let bytes = body::read(request_body, limit).await?;
                inputs::from_json(view, &bytes)?
            }
            ref other => {
                return Err(Error::method_not_allowed(
                    other,
                    &format!("view '{name}'"),
                    vec![junction_model::Method::Get, junction_model::Method::Post],
                ));
            }
        };
        let mut forwarded = http::HeaderMap::new();
        for header in FORWARDED {
            if let Some(value) = parts.headers.get(header) {
                forwarded.insert(header, value.clone());
            }
        }
        let mut client = None;
        // Admit (with a store): the view's grant here, each step's as it is called, as the
        // same client.
        if let Some(admission) = &self.admission {
            client = Some(admission.admit_view(&parts, name).await?);
            ctx.client_id.clone_from(&client);
            for header in [header::AUTHORIZATION.as_str(), "x-api-key"] {
                if let Some(value) = parts.headers.get(header) {
                    forwarded.insert(header, value.clone());
                }
            }
        }
        match (&view.cache, &self.traffic.cache) {
            (Some(policy), Some(cache)) if policy.applies_to(&parts.method) => {
                let key = cache_key(view, policy, &parts.headers, &values, client.as_deref());
                let origin = CachedView {
                    gateway: self,
                    view,
                    inputs: values,
                    ctx: ctx.child(),
                    forwarded,
                };
                stage::through(cache, policy, &key, origin).await
            }
            _ => {
                let caller = Caller {
                    ctx,
                    forwarded: &forwarded,
                };
                self.answer_view(view, values, caller).await
            }
        }
    }

    /// Runs `view` and writes its answer: the JSON, and `X-Junction-Partial` naming the
    /// optional steps that failed (such an answer is never stored in the cache).
    async fn answer_view(
        &self,
        view: &ViewPlan,
        inputs: Map<String, Value>,
        caller: Caller<'_>,
    ) -> Result<http::Response<UpstreamBody>, Error> {
        let outcome = self.run_view(view, inputs, caller).await?;
        let bytes = serde_json::to_vec(&outcome.value).map_err(|e| {
            Error::new(ErrorKind::Internal, "the view's result cannot be written").with_cause(e)
        })?;
        let mut response = http::Response::new(UpstreamBody::full(Bytes::from(bytes)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if !outcome.partial.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&outcome.partial.join(", ")) {
                response.headers_mut().insert(PARTIAL_HEADER, value);
            }
            response
                .extensions_mut()
                .insert(DoNotStore("partial: an optional step failed"));
        }
        Ok(response)
    }

    /// Runs `view` with bound `inputs`.
    pub(crate) fn run_view<'a>(
        &'a self,
        view: &'a ViewPlan,
        inputs: Map<String, Value>,
        caller: Caller<'a>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(async move {
            let inputs = Value::Object(inputs);
            let count = view.steps.len();
            let mut results: Vec<Option<Value>> = vec![None; count];
            let mut started = vec![false; count];
            let mut partial = Vec::new();
            let mut failed = Vec::new();
            let mut running = FuturesUnordered::new();
            loop {
                for (index, step) in view.steps.iter().enumerate() {
                    let ready = step
                        .deps
                        .iter()
                        .all(|d| results.get(*d).is_some_and(Option::is_some));
                    if started.get(index).copied().unwrap_or(true) || !ready {
                        continue;
                    }
                    if let Some(flag) = started.get_mut(index) {
                        *flag = true;
                    }
                    let prepared = self.prepare(view, step, &inputs, &results, caller.forwarded);
                    running.push(async move {
                        // A span per step (when traced): its calls hang under it.
                        let mut span = Span::start_with(
                            || format!("step {}", step.name),
                            Kind::Internal,
                            Instant::now(),
                        );
                        if let Some(span) = &mut span {
                            span.set("junction.view", view.name.clone());
                            span.set("junction.step", step.name.clone());
                            span.set("junction.step.calls", step.label());
                            if let Ok(calls) = &prepared {
                                let count = i64::try_from(calls.len()).unwrap_or(i64::MAX);
                                span.set("junction.step.call_count", count);
                            }
                            if step.optional {
                                span.set("junction.step.optional", true);
                            }
                        }
                        let span_id = span.as_ref().map(Span::id);
                        let result = match prepared {
                            Ok(calls) => {
                                trace::within(span_id, self.run_step(step, calls, caller)).await
                            }
                            Err(failure) => Err(failure),
                        };
                        if let Some(mut span) = span {
                            if let Err(StepFailure(error)) = &result {
                                span.fail(error.kind().slug());
                            }
                            span.end(Instant::now());
                        }
                        (index, result)
                    });
                }
                let Some((index, result)) = running.next().await else {
                    break;
                };
                let Some(step) = view.steps.get(index) else {
                    continue;
                };
                let value = match result {
                    Ok((value, inner)) => {
                        partial.extend(inner.into_iter().map(|p| format!("{}.{p}", step.name)));
                        value
                    }
                    Err(StepFailure(error)) if step.optional => {
                        let why = format!("{} ({})", error.detail(), error.kind().slug());
                        tracing::info!(view = %view.name, step = %step.name, reason = %why, "optional view step failed; using its fallback");
                        partial.push(step.name.clone());
                        failed.push(json!({"step": step.name, "error": why}));
                        step.fallback.clone()
                    }
                    Err(StepFailure(error)) => {
                        return Err(error.context(format_args!(
                            "view '{}': required step '{}' ({}) failed",
                            view.name,
                            step.name,
                            step.label()
                        )));
                    }
                };
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(value);
                }
            }

            let mut steps = Map::new();
            for (step, result) in view.steps.iter().zip(results) {
                steps.insert(step.name.clone(), result.unwrap_or(Value::Null));
            }
            let document = json!({"inputs": inputs, "steps": steps, "failed": failed});
            let value = view
                .shape
                .run(&document, &inputs, &Value::Object(Map::new()))
                .map_err(|why| {
                    Error::new(
                        ErrorKind::TransformFailed,
                        format!("view '{}': the shape failed: {why}", view.name),
                    )
                })?;
            Ok(Outcome { value, partial })
        })
    }

    /// Evaluates a step's arguments into the calls it will make.
    fn prepare<'v>(
        &'v self,
        view: &ViewPlan,
        step: &StepPlan,
        inputs: &Value,
        results: &[Option<Value>],
        forwarded: &http::HeaderMap,
    ) -> Result<Vec<Call<'v>>, StepFailure> {
        let scope = Scope {
            inputs,
            results,
            item: None,
            index: 0,
        };
        let list = match &step.for_each {
            None => None,
            Some(for_each) => match scope.lookup(&for_each.list) {
                Value::Array(items) => Some(items),
                Value::Null => Some(Vec::new()),
                other => {
                    return Err(StepFailure::view(format!(
                        "for_each `{}` is not a list (it is {})",
                        for_each.list.text,
                        kind_of(&other)
                    )));
                }
            },
        };
        let items: Vec<(usize, Option<&Value>)> = match &list {
            None => vec![(0, None)],
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i, Some(v)))
                .collect(),
        };
        let mut calls = Vec::with_capacity(items.len());
        for (index, item) in items {
            let scope = Scope {
                item,
                index,
                ..scope
            };
            let args: Vec<(&super::compile::StepArg, Value)> = step
                .args
                .iter()
                .map(|arg| (arg, scope.eval(&arg.value)))
                .collect();
            calls.push(match &step.target {
                Target::Operation(call) => Call::Operation(
                    build_request(call, &args, forwarded).map_err(StepFailure::view)?,
                ),
                Target::View(name) => {
                    let Some(target) = self.views.get(name) else {
                        return Err(StepFailure::view(format!(
                            "view '{name}' is not loaded (called from view '{}')",
                            view.name
                        )));
                    };
                    let map: Map<String, Value> = args
                        .into_iter()
                        .map(|(arg, value)| (arg.name.clone(), value))
                        .collect();
                    Call::View(target, map)
                }
            });
        }
        Ok(calls)
    }

    /// Runs a step's calls under its timeout.
    async fn run_step<'v>(
        &'v self,
        step: &'v StepPlan,
        calls: Vec<Call<'v>>,
        caller: Caller<'v>,
    ) -> StepResult {
        let work = async {
            match &step.for_each {
                None => {
                    let mut values = Vec::new();
                    let mut partial = Vec::new();
                    for call in calls {
                        let (value, inner) = self.call(call, caller).await?;
                        values.push(value);
                        partial.extend(inner);
                    }
                    Ok((values.pop().unwrap_or(Value::Null), partial))
                }
                Some(for_each) => {
                    let pending: Vec<_> = calls
                        .into_iter()
                        .map(|call| self.call(call, caller))
                        .collect();
                    let outcomes: Vec<(Value, Vec<String>)> = futures_util::stream::iter(pending)
                        .buffered(for_each.concurrency)
                        .try_collect()
                        .await?;
                    let mut partial = Vec::new();
                    let mut values = Vec::with_capacity(outcomes.len());
                    for (i, (value, inner)) in outcomes.into_iter().enumerate() {
                        values.push(value);
                        partial.extend(inner.into_iter().map(|p| format!("{i}.{p}")));
                    }
                    Ok((Value::Array(values), partial))
                }
            }
        };
        match tokio::time::timeout(step.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StepFailure(Error::new(
                ErrorKind::UpstreamTimeout,
                format!(
                    "it did not finish within its timeout of {}",
                    show_duration(step.timeout)
                ),
            ))),
        }
    }

    /// Makes one call: an operation through the whole pipeline, or another view.
    fn call<'v>(&'v self, call: Call<'v>, caller: Caller<'v>) -> BoxFuture<'v, StepResult> {
        Box::pin(self.call_inner(call, caller))
    }

    async fn call_inner<'v>(&'v self, call: Call<'v>, caller: Caller<'v>) -> StepResult {
        match call {
            Call::Operation(request) => {
                // As the caller: its address, its client.
                let mut ctx = caller.ctx.child();
                let response = self
                    .serve_in(&mut ctx, request)
                    .await
                    .map_err(StepFailure)?;
                let status = response.status();
                if !status.is_success() {
                    return Err(StepFailure::status(status, response.headers()));
                }
                let cap = usize::try_from(self.limits.max_response_bytes).unwrap_or(usize::MAX);
                let bytes = Limited::new(response.into_body(), cap)
                    .collect()
                    .await
                    .map_err(|e| {
                        StepFailure(Error::new(
                            ErrorKind::UpstreamInvalid,
                            format!("the response could not be read: {e}"),
                        ))
                    })?
                    .to_bytes();
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok((Value::Null, Vec::new()));
                }
                let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                Ok((value, Vec::new()))
            }
            Call::View(view, args) => {
                let values = inputs::from_object(view, args, InputLocation::Body).map_err(|e| {
                    StepFailure::view(format!("view '{}': {}", view.name, e.detail()))
                })?;
                let outcome = self
                    .run_view(view, values, caller)
                    .await
                    .map_err(StepFailure)?;
                Ok((outcome.value, outcome.partial))
            }
        }
    }
}

/// The connection identity in the keys of views called without a client (no store): every
/// step runs on the connections of the configuration file, which every caller shares.
const SHARED_CONNECTION: &str = "shared";

/// The cache key of a view's request: the view, its bound inputs (defaults included, so
/// leaving an input out and giving its default share an entry) and the vary dimensions.
/// With a client (a store is configured) the client always keys the entry, whatever
/// `vary_connection` says: its steps may run on the client's own connections, and one
/// client's answers must never reach another.
fn cache_key(
    view: &ViewPlan,
    policy: &CachePolicy,
    headers: &http::HeaderMap,
    inputs: &Map<String, Value>,
    client: Option<&str>,
) -> String {
    let mut key = KeyBuilder::new(key::VIEWS, &view.name);
    for (name, value) in inputs {
        key.arg("input", name, value);
    }
    match client {
        Some(id) => {
            key.connection(&format!("client:{id}"));
            key.headers(&policy.vary_headers, headers);
        }
        None => {
            key.vary(policy, SHARED_CONNECTION, headers);
        }
    }
    key.finish()
}

/// Who a view runs for: the caller's context (its address and client, the shared table)
/// and the headers its steps' calls carry on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub ctx: &'a RequestCtx<'a>,
    pub forwarded: &'a http::HeaderMap,
}

/// A request of a cached view, on its way to the steps.
struct CachedView<'a> {
    gateway: &'a Gateway,
    view: &'a ViewPlan,
    inputs: Map<String, Value>,
    /// The caller, for the steps (and a background refresh).
    ctx: RequestCtx<'static>,
    forwarded: http::HeaderMap,
}

impl Origin for CachedView<'_> {
    fn wait(&self) -> Duration {
        self.view.longest()
    }

    fn shared(&self) -> Option<&Arc<Gateway>> {
        self.ctx.shared()
    }

    fn refresh(
        self,
        gateway: Arc<Gateway>,
        leader: Leader,
    ) -> impl Future<Output = ()> + Send + 'static {
        refresh(
            gateway,
            self.view.name.clone(),
            self.inputs,
            (self.ctx, self.forwarded),
            leader,
        )
    }

    async fn fetch(self) -> Result<http::Response<UpstreamBody>, Error> {
        let caller = Caller {
            ctx: &self.ctx,
            forwarded: &self.forwarded,
        };
        self.gateway
            .answer_view(self.view, self.inputs, caller)
            .await
    }
}

/// The background refresh of a view's entry within stale-while-revalidate: the view runs
/// again, for the caller that found the entry stale.
async fn refresh(
    gateway: Arc<Gateway>,
    name: String,
    inputs: Map<String, Value>,
    (ctx, forwarded): (RequestCtx<'static>, http::HeaderMap),
    leader: Leader,
) {
    let (Some(view), Some(cache)) = (gateway.views.get(&name), &gateway.traffic.cache) else {
        return;
    };
    let Some(policy) = view.cache.as_deref() else {
        return;
    };
    let caller = Caller {
        ctx: &ctx,
        forwarded: &forwarded,
    };
    let result = gateway.answer_view(view, inputs, caller).await;
    if let Err(error) = stage::land(cache, policy, leader, result, None).await {
        tracing::debug!(view = %name, error = %error, "background refresh failed; the stale entry stays");
    }
}

/// What references read while a step's arguments are evaluated.
#[derive(Clone, Copy)]
struct Scope<'a> {
    inputs: &'a Value,
    results: &'a [Option<Value>],
    item: Option<&'a Value>,
    index: usize,
}

impl Scope<'_> {
    fn lookup(&self, reference: &Reference) -> Value {
        let root = match &reference.root {
            Root::Input(name) => self.inputs.get(name),
            Root::Step(i) => self.results.get(*i).and_then(Option::as_ref),
            Root::Item => self.item,
            Root::Index => return Value::from(self.index),
        };
        root.and_then(|v| follow(v, &reference.path))
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn eval(&self, arg: &Arg) -> Value {
        match arg {
            Arg::Literal(value) => value.clone(),
            Arg::Ref(reference) => self.lookup(reference),
            Arg::Array(items) => Value::Array(items.iter().map(|a| self.eval(a)).collect()),
            Arg::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, a)| (k.clone(), self.eval(a)))
                    .collect(),
            ),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A value as the text of a path, query, header or form value: strings as they are,
/// numbers and booleans as JSON writes them, objects as JSON text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The texts of a value for a parameter with `collection` (lists joined, or one per item
/// for `multi`); `null` sends nothing.
fn texts(value: &Value, collection: CollectionFormat) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => match collection.separator() {
            None => items.iter().map(text_of).collect(),
            Some(separator) => vec![
                items
                    .iter()
                    .map(text_of)
                    .collect::<Vec<_>>()
                    .join(&separator.to_string()),
            ],
        },
        other => vec![text_of(other)],
    }
}

/// The request a client would send for this call: `/connectors/NAME/PATH?QUERY`, headers,
/// and a JSON or urlencoded body.
fn build_request(
    call: &OperationCall,
    args: &[(&super::compile::StepArg, Value)],
    forwarded: &http::HeaderMap,
) -> Result<http::Request<Full<Bytes>>, String> {
    let value_of = |name: &str| {
        args.iter()
            .find(|(arg, _)| arg.name == name)
            .map(|(_, v)| v)
    };
    let mut uri = format!("{CONNECTORS_PREFIX}{}", call.connector);
    for segment in &call.template {
        uri.push('/');
        for piece in segment {
            match piece {
                Piece::Literal(text) => encode::push_path_literal(&mut uri, text),
                Piece::Param(name) => match value_of(name) {
                    Some(value) if !value.is_null() => {
                        encode::push_segment(&mut uri, &text_of(value), false);
                    }
                    _ => return Err(format!("path parameter '{name}' has no value")),
                },
            }
        }
    }
    let mut query = String::new();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    let mut has_form = false;
    let mut body = None;
    let mut builder = http::Request::builder()
        .method(call.method.clone())
        .header(header::ACCEPT, "application/json");
    for (name, value) in forwarded {
        builder = builder.header(name, value);
    }
    for (arg, value) in args {
        match arg.slot {
            Slot::Path | Slot::Input => {}
            Slot::Query(collection) => {
                for text in texts(value, collection) {
                    query.push(if query.is_empty() { '?' } else { '&' });
                    encode::push_component(&mut query, &arg.name);
                    query.push('=');
                    encode::push_component(&mut query, &text);
                }
            }
            Slot::Header(collection) => {
                for text in texts(value, collection) {
                    let value = HeaderValue::from_str(&text).map_err(|_| {
                        format!(
                            "header '{}': the value cannot be sent in a header",
                            arg.name
                        )
                    })?;
                    builder = builder.header(arg.name.as_str(), value);
                }
            }
            Slot::Form(collection) => {
                for text in texts(value, collection) {
                    form.append_pair(&arg.name, &text);
                    has_form = true;
                }
            }
            Slot::Body => {
                if !value.is_null() {
                    body = Some(serde_json::to_vec(value).map_err(|e| e.to_string())?);
                }
            }
        }
    }
    uri.push_str(&query);
    let bytes = if let Some(json) = body {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Bytes::from(json)
    } else if has_form {
        builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        Bytes::from(form.finish())
    } else {
        Bytes::new()
    };
    builder
        .uri(uri)
        .body(Full::new(bytes))
        .map_err(|e| format!("the request cannot be built: {e}"))
}
