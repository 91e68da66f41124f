//! View files compiled into immutable plans: every name and reference resolved against the
//! loaded connectors and the other views, every problem a diagnostic naming file, line, key
//! and why.
//!
//! Checked at load: the TOML itself (unknown keys are errors); input types and schemas (a
//! default that its own schema refuses); each step's target (`CONNECTOR.OPERATION_ID` that
//! exists and is served, or a view that exists); each argument (a parameter or the body of
//! the operation, an input of the called view; every required one given); each reference
//! (`$inputs.NAME` declared, `$steps.NAME` a step of the view, `$item`/`$index` only under
//! `for_each`); timeouts, `concurrency`, `fallback` only with `optional = true`; the jq
//! `shape`; and cycles, between the steps of a view and between views calling views, spelt
//! out as `a → b → c → a`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::config::spanned::Spanned;
use indexmap::IndexMap;
use jsonschema::{Draft, Validator};
use junction_model::{
    CollectionFormat, Connector, Diagnostic, Diagnostics, Operation, ParamLocation, Severity,
    list_or_none,
};
use junction_policy::jq::Transform;
use serde::Serialize;
use serde_json::{Map, Value};

use super::syntax::{
    self, ArgText, PathStep, RawReference, RawRoot, RawStep, RawView, is_identifier, toml_to_json,
};
use super::{ViewSource, view_name};
use crate::cache::CachePolicy;
use crate::config::units;
use crate::plan::{Scalar, Shape};
use crate::route::{self, Piece};

/// Default `concurrency` of a `for_each` step.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The shape used when a view declares none: every step's result by name.
pub const DEFAULT_SHAPE: &str = ".steps";

/// Every view, compiled. Immutable once built.
#[derive(Debug, Default)]
pub struct Views {
    views: HashMap<String, Arc<ViewPlan>>,
    order: Vec<String>,
}

/// A view as `junction export` and the admin API describe it.
#[derive(Debug, Clone, Serialize)]
pub struct ViewSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub inputs: Vec<InputSummary>,
    /// The JSON Schema of the result, when the file declares one (`output`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The steps, by name, with what each calls (`CONNECTOR.OPERATION_ID` or `view NAME`).
    pub steps: Vec<(String, String)>,
    /// The edges between steps: `(step, a step it reads or waits for)`. Steps with none
    /// run at once, in parallel.
    pub dependencies: Vec<(String, String)>,
}

/// One input of a view.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub name: String,
    /// Its JSON Schema (`type`, bounds, `default`, `description` …).
    pub schema: Value,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `important`, `advanced` or `internal` (`x-ms-visibility`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

/// One view, compiled.
#[derive(Debug)]
pub(crate) struct ViewPlan {
    pub name: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub inputs: Vec<InputPlan>,
    pub steps: Vec<StepPlan>,
    pub shape: Transform,
    pub output: Option<Value>,
    /// `[view.NAME.cache]` of `junction.toml`, resolved; `None` when the view is not cached.
    pub cache: Option<Box<CachePolicy>>,
    /// The view's request counters, attached by the gateway once compiled.
    pub metrics: std::sync::OnceLock<Arc<crate::telemetry::RouteMetrics>>,
}

impl ViewPlan {
    /// The longest the view may take: every step's timeout, one after the other (a step's
    /// timeout covers all its calls, a called view's included).
    pub fn longest(&self) -> Duration {
        self.steps.iter().map(|step| step.timeout).sum()
    }
}

/// One input, compiled.
pub(crate) struct InputPlan {
    pub name: String,
    pub shape: Shape,
    pub schema: Value,
    pub validator: Validator,
    pub required: bool,
    pub default: Option<Value>,
    pub summary: Option<String>,
    pub visibility: Option<String>,
}

impl fmt::Debug for InputPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputPlan")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// One step, compiled.
#[derive(Debug)]
pub(crate) struct StepPlan {
    pub name: String,
    pub target: Target,
    pub args: Vec<StepArg>,
    pub timeout: Duration,
    pub optional: bool,
    pub fallback: Value,
    pub for_each: Option<ForEach>,
    /// Indices of the steps this one reads or waits for.
    pub deps: Vec<usize>,
}

impl StepPlan {
    /// What the step calls, for messages: `directory.GetEmployee` or `view home`.
    pub fn label(&self) -> String {
        match &self.target {
            Target::Operation(call) => format!("{}.{}", call.connector, call.operation),
            Target::View(name) => format!("view {name}"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ForEach {
    pub list: Reference,
    pub concurrency: usize,
}

#[derive(Debug)]
pub(crate) enum Target {
    Operation(OperationCall),
    View(String),
}

/// How to call one operation through the gateway.
#[derive(Debug)]
pub(crate) struct OperationCall {
    pub connector: String,
    pub operation: String,
    pub method: http::Method,
    pub template: Vec<Vec<Piece>>,
}

/// One argument: where it goes and its value.
#[derive(Debug)]
pub(crate) struct StepArg {
    pub name: String,
    pub slot: Slot,
    pub value: Arg,
}

/// Where an argument travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Path,
    Query(CollectionFormat),
    Header(CollectionFormat),
    Form(CollectionFormat),
    Body,
    /// An input of the called view.
    Input,
}

/// An argument value: a literal, a reference, or a list or table holding references.
#[derive(Debug)]
pub(crate) enum Arg {
    Literal(Value),
    Ref(Reference),
    Array(Vec<Arg>),
    Object(Vec<(String, Arg)>),
}

#[derive(Debug)]
pub(crate) struct Reference {
    pub root: Root,
    pub path: Vec<PathStep>,
    /// As written, for messages.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Root {
    Input(String),
    Step(usize),
    Item,
    Index,
}

impl Views {
    /// Compiles `sources` against `connectors`. `served(connector, operation_id)` tells
    /// whether the gateway serves an operation, `cache(view)` gives a view's cache policy.
    /// Problems go to `diagnostics` (errors make the views unusable; the caller refuses the
    /// table).
    pub fn compile(
        sources: &[ViewSource],
        connectors: &[Connector],
        served: &dyn Fn(&str, &str) -> bool,
        cache: &dyn Fn(&str) -> Option<CachePolicy>,
        default_timeout: Duration,
        diagnostics: &mut Diagnostics,
    ) -> Views {
        let mut parsed: Vec<(String, &ViewSource, RawView)> = Vec::new();
        let mut files: HashMap<String, String> = HashMap::new();
        for source in sources {
            let file = source.file.display().to_string();
            match toml::from_str::<RawView>(&source.text) {
                Ok(raw) => {
                    let name = view_name(&source.file);
                    if let Some(other) = files.get(&name) {
                        diagnostics.push(Diagnostic::new(
                            Severity::Error,
                            "duplicate-view",
                            &file,
                            "",
                            format!("view '{name}' is already declared by {other}"),
                        ));
                        continue;
                    }
                    files.insert(name.clone(), file);
                    parsed.push((name, source, raw));
                }
                Err(error) => {
                    let mut d = Diagnostic::new(
                        Severity::Error,
                        "view-syntax",
                        &file,
                        "",
                        error.message().trim().to_owned(),
                    );
                    if let Some(span) = syntax::error_span(&error) {
                        let (line, column) = syntax::position(&source.text, span.start);
                        d = d.at(line, column);
                    }
                    diagnostics.push(d);
                }
            }
        }

        // Inputs first: steps calling a view check their arguments against its inputs.
        let mut headers: HashMap<String, Vec<(String, bool)>> = HashMap::new();
        let mut compiled_inputs = Vec::new();
        for (name, source, raw) in &parsed {
            let mut report = Report::new(source, diagnostics);
            let inputs = compile_inputs(raw, &mut report);
            headers.insert(
                name.clone(),
                inputs
                    .iter()
                    .map(|i| (i.name.clone(), i.required && i.default.is_none()))
                    .collect(),
            );
            compiled_inputs.push((inputs, report.errors));
        }

        let by_name: HashMap<&str, &Connector> =
            connectors.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut views = Views::default();
        // Each view and the views its steps call, for the cycle check.
        let mut calls: Vec<(String, Vec<ViewCall>)> = Vec::new();
        for ((name, source, raw), (inputs, input_errors)) in parsed.iter().zip(compiled_inputs) {
            let mut report = Report::new(source, diagnostics);
            report.errors = input_errors;
            let context = Context {
                connectors: &by_name,
                served,
                views: &headers,
            };
            let plan = compile_view(name, raw, inputs, &context, default_timeout, &mut report);
            let mut edges = Vec::new();
            for (step_name, step) in &raw.step {
                if let Some(view) = &step.get_ref().view {
                    let (line, column) = syntax::position(&source.text, view.span().start);
                    edges.push(ViewCall {
                        to: view.get_ref().clone(),
                        file: source.file.display().to_string(),
                        at: (line, column),
                        step: step_name.clone(),
                    });
                }
            }
            calls.push((name.clone(), edges));
            if let Some(mut plan) = plan
                && report.errors == 0
            {
                plan.cache = cache(name).map(Box::new);
                views.order.push(name.clone());
                views.views.insert(name.clone(), Arc::new(plan));
            }
        }

        // Views calling views: a cycle would never end.
        let index: HashMap<&str, usize> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.as_str(), i))
            .collect();
        let graph: Vec<Vec<usize>> = calls
            .iter()
            .map(|(_, edges)| {
                edges
                    .iter()
                    .filter_map(|call| index.get(call.to.as_str()).copied())
                    .collect()
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|i| calls.get(*i).map(|(n, _)| n.as_str()))
                .collect();
            let first = cycle.first().and_then(|i| calls.get(*i));
            let second = names.get(1).copied().unwrap_or_default();
            if let Some((_, edges)) = first
                && let Some(call) = edges.iter().find(|call| call.to == second)
            {
                let step = &call.step;
                diagnostics.push(
                    Diagnostic::new(
                        Severity::Error,
                        "view-cycle",
                        &call.file,
                        format!("/step/{step}/view"),
                        format!(
                            "`step.{step}.view`: views call each other in a cycle: {}",
                            names.join(" → ")
                        ),
                    )
                    .at(call.at.0, call.at.1),
                );
            }
            for name in names {
                views.views.remove(name);
                views.order.retain(|n| n != name);
            }
        }
        views
    }

    /// Gives every view its series in `metrics`.
    pub(crate) fn attach_metrics(&self, metrics: &crate::telemetry::Metrics) {
        for (name, plan) in &self.views {
            let _ = plan
                .metrics
                .set(metrics.route(crate::telemetry::RouteName::View(name.clone())));
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&ViewPlan> {
        self.views.get(name).map(Arc::as_ref)
    }

    /// Whether there is no view.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Every view, in file order.
    pub fn summaries(&self) -> Vec<ViewSummary> {
        self.order
            .iter()
            .filter_map(|name| self.views.get(name))
            .map(|plan| ViewSummary {
                name: plan.name.clone(),
                summary: plan.summary.clone(),
                description: plan.description.clone(),
                inputs: plan
                    .inputs
                    .iter()
                    .map(|i| InputSummary {
                        name: i.name.clone(),
                        schema: i.schema.clone(),
                        required: i.required,
                        summary: i.summary.clone(),
                        visibility: i.visibility.clone(),
                    })
                    .collect(),
                output: plan.output.clone(),
                steps: plan
                    .steps
                    .iter()
                    .map(|s| (s.name.clone(), s.label()))
                    .collect(),
                dependencies: plan
                    .steps
                    .iter()
                    .flat_map(|s| {
                        s.deps.iter().filter_map(|&d| {
                            let on = plan.steps.get(d)?;
                            Some((s.name.clone(), on.name.clone()))
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A step that calls a view, for the cycle check between views.
struct ViewCall {
    to: String,
    file: String,
    at: (u32, u32),
    step: String,
}

/// Where diagnostics of one file go.
struct Report<'a> {
    file: String,
    text: &'a str,
    diagnostics: &'a mut Diagnostics,
    errors: usize,
}

impl<'a> Report<'a> {
    fn new(source: &'a ViewSource, diagnostics: &'a mut Diagnostics) -> Self {
        Report {
            file: source.file.display().to_string(),
            text: &source.text,
            diagnostics,
            errors: 0,
        }
    }

    /// An error about `key` (`step.profile.args.id`), at `span` when known.
    fn error(
        &mut self,
        code: &'static str,
        key: &str,
        span: Option<Range<usize>>,
        message: impl fmt::Display,
    ) {
        let pointer = if key.is_empty() {
            String::new()
        } else {
            format!("/{}", key.replace('.', "/"))
        };
        let text = if key.is_empty() {
            message.to_string()
        } else {
            format!("`{key}`: {message}")
        };
        let mut d = Diagnostic::new(Severity::Error, code, &self.file, pointer, text);
        if let Some(span) = span {
            let (line, column) = syntax::position(self.text, span.start);
            d = d.at(line, column);
        }
        self.diagnostics.push(d);
        self.errors += 1;
    }
}

const INPUT_TYPES: [&str; 6] = ["string", "integer", "number", "boolean", "array", "object"];
/// JSON Schema keywords an input may use besides `type`.
const SCHEMA_KEYWORDS: [&str; 17] = [
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "additionalProperties",
    "title",
];

fn compile_inputs(raw: &RawView, report: &mut Report<'_>) -> Vec<InputPlan> {
    let mut inputs = Vec::new();
    for (name, table) in &raw.input {
        let key = format!("input.{name}");
        let span = table.span();
        if !is_identifier(name) {
            report.error(
                "view-input",
                &key,
                Some(span.clone()),
                format!(
                    "`{name}` is not a usable input name (a letter or `_`, then letters, digits or `_`)"
                ),
            );
            continue;
        }
        let mut schema = Map::new();
        let mut required = false;
        let mut default = None;
        let mut summary = None;
        let mut visibility = None;
        let mut ok = true;
        for (k, value) in table.get_ref() {
            let at = Some(value.span());
            let item_key = format!("{key}.{k}");
            match (k.as_str(), value.get_ref()) {
                ("type", toml::Value::String(t)) if INPUT_TYPES.contains(&t.as_str()) => {
                    schema.insert("type".into(), Value::String(t.clone()));
                }
                ("type", other) => {
                    report.error(
                        "view-input",
                        &item_key,
                        at,
                        format!(
                            "{} is not a type; write one of {}",
                            toml_to_json(other),
                            INPUT_TYPES.join(", ")
                        ),
                    );
                    ok = false;
                }
                ("required", toml::Value::Boolean(b)) => required = *b,
                ("default", v) => default = Some(toml_to_json(v)),
                ("description", toml::Value::String(s)) => {
                    schema.insert("description".into(), Value::String(s.clone()));
                }
                ("summary", toml::Value::String(s)) => summary = Some(s.clone()),
                ("visibility", toml::Value::String(s))
                    if ["important", "advanced", "internal", "none"].contains(&s.as_str()) =>
                {
                    visibility = Some(s.clone());
                }
                ("required" | "description" | "summary" | "visibility", other) => {
                    report.error(
                        "view-input",
                        &item_key,
                        at,
                        format!(
                            "{} is not allowed here ({})",
                            toml_to_json(other),
                            match k.as_str() {
                                "required" => "true or false",
                                "visibility" => "important, advanced, internal or none",
                                _ => "a string",
                            }
                        ),
                    );
                    ok = false;
                }
                (k, v) if SCHEMA_KEYWORDS.contains(&k) => {
                    schema.insert(k.to_owned(), toml_to_json(v));
                }
                (k, _) => {
                    report.error(
                        "view-input",
                        &item_key,
                        at,
                        format!(
                            "unknown key `{k}`: an input takes type, required, default, description, summary, visibility and the JSON Schema keywords {}",
                            SCHEMA_KEYWORDS.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        schema
            .entry("type")
            .or_insert_with(|| Value::String("string".into()));
        let schema = Value::Object(schema);
        let validator = match jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
        {
            Ok(v) => v,
            Err(e) => {
                report.error(
                    "view-input",
                    &key,
                    Some(span.clone()),
                    format!("the schema does not compile: {e}"),
                );
                continue;
            }
        };
        if let Some(value) = &default
            && let Some(e) = validator.iter_errors(value).next()
        {
            report.error(
                "view-input",
                &format!("{key}.default"),
                Some(span.clone()),
                format!("the default does not fit the input's own schema: {e}"),
            );
            continue;
        }
        let mut schema = schema;
        if let (Some(d), Value::Object(map)) = (&default, &mut schema) {
            map.insert("default".into(), d.clone());
        }
        inputs.push(InputPlan {
            name: name.clone(),
            shape: shape_of(&schema),
            schema,
            validator,
            required,
            default,
            summary,
            visibility,
        });
    }
    inputs
}

fn scalar_of(ty: Option<&str>) -> Scalar {
    match ty {
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        Some("string") => Scalar::String,
        _ => Scalar::Any,
    }
}

fn shape_of(schema: &Value) -> Shape {
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => Shape::Array(scalar_of(
            schema
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str),
        )),
        Some("object") => Shape::Object,
        other => Shape::Scalar(scalar_of(other)),
    }
}

struct Context<'a> {
    connectors: &'a HashMap<&'a str, &'a Connector>,
    served: &'a dyn Fn(&str, &str) -> bool,
    /// Every view's inputs: (name, required without default).
    views: &'a HashMap<String, Vec<(String, bool)>>,
}

/// What a reference may name in one step.
struct Scope<'a> {
    inputs: &'a [InputPlan],
    steps: &'a IndexMap<String, Spanned<RawStep>>,
    for_each: bool,
}

fn compile_view(
    name: &str,
    raw: &RawView,
    inputs: Vec<InputPlan>,
    context: &Context<'_>,
    default_timeout: Duration,
    report: &mut Report<'_>,
) -> Option<ViewPlan> {
    let view_timeout = match &raw.timeout {
        Some(value) => timeout(value, "timeout", report).unwrap_or(default_timeout),
        None => default_timeout,
    };
    let shape_code = raw
        .shape
        .as_ref()
        .map_or(DEFAULT_SHAPE, |s| s.get_ref().as_str());
    let shape = match Transform::compile(shape_code) {
        Ok(t) => Some(t),
        Err(error) => {
            report.error(
                "view-shape",
                "shape",
                raw.shape.as_ref().map(Spanned::span),
                format!("the jq program does not compile: {error}"),
            );
            None
        }
    };
    if raw.step.is_empty() {
        report.error(
            "view-step",
            "step",
            None,
            "a view needs at least one step ([step.NAME] with `operation` or `view`)",
        );
    }
    let mut steps = Vec::new();
    for (step_name, step) in &raw.step {
        let key = format!("step.{step_name}");
        if !is_identifier(step_name) {
            report.error(
                "view-step",
                &key,
                Some(step.span()),
                format!(
                    "`{step_name}` is not a usable step name (a letter or `_`, then letters, digits or `_`)"
                ),
            );
            continue;
        }
        let scope = Scope {
            inputs: &inputs,
            steps: &raw.step,
            for_each: step.get_ref().for_each.is_some(),
        };
        if let Some(plan) =
            compile_step(step_name, step, &key, &scope, context, view_timeout, report)
        {
            steps.push(plan);
        }
    }

    // Cycles between steps.
    if steps.len() == raw.step.len() {
        let graph: Vec<Vec<usize>> = steps.iter().map(|s| s.deps.clone()).collect();
        if let Some(cycle) = find_cycle(&graph) {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|i| steps.get(*i).map(|s| s.name.as_str()))
                .collect();
            let first = names.first().copied().unwrap_or_default();
            report.error(
                "view-cycle",
                &format!("step.{first}"),
                raw.step.get(first).map(Spanned::span),
                format!(
                    "the steps depend on each other in a cycle: {} (each uses the result of the next)",
                    names.join(" → ")
                ),
            );
        }
    }

    let output = raw.output.as_ref().map(|o| toml_to_json(o.get_ref()));
    if report.errors > 0 {
        return None;
    }
    Some(ViewPlan {
        name: name.to_owned(),
        summary: raw.summary.as_ref().map(|s| s.get_ref().clone()),
        description: raw.description.as_ref().map(|s| s.get_ref().clone()),
        inputs,
        steps,
        shape: shape?,
        output,
        cache: None,
        metrics: std::sync::OnceLock::new(),
    })
}

fn timeout(value: &Spanned<String>, key: &str, report: &mut Report<'_>) -> Option<Duration> {
    match units::parse_duration(value.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            report.error(
                "view-step",
                key,
                Some(value.span()),
                "a timeout of zero would fail every call",
            );
            None
        }
        Err(why) => {
            report.error("view-step", key, Some(value.span()), why);
            None
        }
    }
}

fn compile_step(
    name: &str,
    step: &Spanned<RawStep>,
    key: &str,
    scope: &Scope<'_>,
    context: &Context<'_>,
    view_timeout: Duration,
    report: &mut Report<'_>,
) -> Option<StepPlan> {
    let raw = step.get_ref();
    let errors_before = report.errors;
    let mut deps = BTreeSet::new();

    // What it calls.
    let target = match (&raw.operation, &raw.view) {
        (Some(op), None) => resolve_operation(op, &format!("{key}.operation"), context, report)
            .map(|(connector, operation)| (Some((connector, operation)), None)),
        (None, Some(view)) => {
            if context.views.contains_key(view.get_ref()) {
                Some((None, Some(view.get_ref().clone())))
            } else {
                let mut known: Vec<&str> = context.views.keys().map(String::as_str).collect();
                known.sort_unstable();
                report.error(
                    "view-step",
                    &format!("{key}.view"),
                    Some(view.span()),
                    format!(
                        "there is no view named '{}' (views: {})",
                        view.get_ref(),
                        list_or_none(&known)
                    ),
                );
                None
            }
        }
        (Some(_), Some(_)) => {
            report.error(
                "view-step",
                key,
                Some(step.span()),
                "a step calls one operation or one view, not both",
            );
            None
        }
        (None, None) => {
            report.error(
                "view-step",
                key,
                Some(step.span()),
                "a step needs `operation = \"CONNECTOR.OPERATION_ID\"` or `view = \"NAME\"`",
            );
            None
        }
    };

    // for_each and its bound.
    let for_each = match &raw.for_each {
        Some(text) => {
            let k = format!("{key}.for_each");
            let outer = Scope {
                for_each: false,
                ..*scope
            };
            match syntax::parse_reference(text.get_ref())
                .and_then(|r| resolve(&r, text.get_ref(), &outer, &mut deps))
            {
                Ok(list) => Some(list),
                Err(why) => {
                    report.error("view-reference", &k, Some(text.span()), why);
                    None
                }
            }
        }
        None => None,
    };
    let concurrency = match (&raw.concurrency, &raw.for_each) {
        (Some(n), Some(_)) => match usize::try_from(*n.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                report.error(
                    "view-step",
                    &format!("{key}.concurrency"),
                    Some(n.span()),
                    format!(
                        "{} is not a number of calls at once (1 or more)",
                        n.get_ref()
                    ),
                );
                DEFAULT_CONCURRENCY
            }
        },
        (Some(n), None) => {
            report.error(
                "view-step",
                &format!("{key}.concurrency"),
                Some(n.span()),
                "`concurrency` bounds the calls of a `for_each` step; this step has no `for_each`",
            );
            DEFAULT_CONCURRENCY
        }
        (None, _) => DEFAULT_CONCURRENCY,
    };

    let optional = raw.optional.as_ref().is_some_and(|o| *o.get_ref());
    let fallback = match &raw.fallback {
        Some(value) if !optional => {
            report.error(
                "view-step",
                &format!("{key}.fallback"),
                Some(value.span()),
                "a fallback is used when an optional step fails; add `optional = true`",
            );
            Value::Null
        }
        Some(value) => toml_to_json(value.get_ref()),
        None => Value::Null,
    };
    let step_timeout = match &raw.timeout {
        Some(value) => timeout(value, &format!("{key}.timeout"), report).unwrap_or(view_timeout),
        None => view_timeout,
    };

    if let Some(after) = &raw.after {
        for item in after.get_ref() {
            match scope.steps.get_index_of(item.get_ref().as_str()) {
                Some(i) => {
                    deps.insert(i);
                }
                None => report.error(
                    "view-reference",
                    &format!("{key}.after"),
                    Some(item.span()),
                    format!(
                        "there is no step '{}' (steps: {})",
                        item.get_ref(),
                        step_list(scope.steps)
                    ),
                ),
            }
        }
    }

    // Arguments.
    let mut args = Vec::new();
    for (arg_name, value) in &raw.args {
        let k = format!("{key}.args.{arg_name}");
        let slot = match &target {
            Some((Some((connector, op)), _)) => match slot_for(connector, op, arg_name) {
                Ok(slot) => Some(slot),
                Err(why) => {
                    report.error("view-argument", &k, Some(value.span()), why);
                    None
                }
            },
            Some((None, Some(view))) => {
                let inputs = context.views.get(view).map(Vec::as_slice).unwrap_or(&[]);
                if inputs.iter().any(|(n, _)| n == arg_name) {
                    Some(Slot::Input)
                } else {
                    let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
                    report.error(
                        "view-argument",
                        &k,
                        Some(value.span()),
                        format!(
                            "view '{view}' has no input '{arg_name}' (inputs: {})",
                            list_or_none(&names)
                        ),
                    );
                    None
                }
            }
            _ => None,
        };
        let compiled = compile_arg(value.get_ref(), &k, value.span(), scope, &mut deps, report);
        if let (Some(slot), Some(value)) = (slot, compiled) {
            args.push(StepArg {
                name: arg_name.clone(),
                slot,
                value,
            });
        }
    }

    // Every required argument given.
    match &target {
        Some((Some((connector, op)), _)) => {
            for p in &op.parameters {
                if p.required && p.default.is_none() && !raw.args.contains_key(&p.name) {
                    report.error(
                        "view-argument",
                        &format!("{key}.args"),
                        Some(step.span()),
                        format!(
                            "operation {}.{} needs argument '{}' ({} parameter)",
                            connector.name,
                            op.id,
                            p.name,
                            p.location.as_str()
                        ),
                    );
                }
            }
            if let Some(body) = &op.body
                && body.required
                && !raw.args.contains_key(&body.name)
                && !raw.args.contains_key("body")
            {
                report.error(
                    "view-argument",
                    &format!("{key}.args"),
                    Some(step.span()),
                    format!(
                        "operation {}.{} needs argument 'body' (its request body)",
                        connector.name, op.id
                    ),
                );
            }
        }
        Some((None, Some(view))) => {
            for (input, required) in context.views.get(view).map(Vec::as_slice).unwrap_or(&[]) {
                if *required && !raw.args.contains_key(input) {
                    report.error(
                        "view-argument",
                        &format!("{key}.args"),
                        Some(step.span()),
                        format!("view '{view}' needs argument '{input}' (a required input)"),
                    );
                }
            }
        }
        _ => {}
    }

    if report.errors > errors_before {
        return None;
    }
    let target = match target? {
        (Some((connector, op)), _) => Target::Operation(OperationCall {
            connector: connector.name.clone(),
            operation: op.id.clone(),
            method: http::Method::from_bytes(op.method.as_str().as_bytes())
                .unwrap_or(http::Method::GET),
            template: route::parse_template(&op.path),
        }),
        (None, Some(view)) => Target::View(view),
        (None, None) => return None,
    };
    Some(StepPlan {
        name: name.to_owned(),
        target,
        args,
        timeout: step_timeout,
        optional,
        fallback,
        for_each: for_each.map(|list| ForEach { list, concurrency }),
        deps: deps.into_iter().collect(),
    })
}

fn resolve_operation<'c>(
    value: &Spanned<String>,
    key: &str,
    context: &Context<'c>,
    report: &mut Report<'_>,
) -> Option<(&'c Connector, &'c Operation)> {
    let text = value.get_ref();
    let Some((connector_name, operation_id)) = text.split_once('.') else {
        report.error(
            "view-step",
            key,
            Some(value.span()),
            format!(
                "`{text}` is not CONNECTOR.OPERATION_ID (for example \"directory.GetEmployee\")"
            ),
        );
        return None;
    };
    let Some(connector) = context.connectors.get(connector_name).copied() else {
        let mut known: Vec<&str> = context.connectors.keys().copied().collect();
        known.sort_unstable();
        report.error(
            "view-step",
            key,
            Some(value.span()),
            format!(
                "there is no connector named '{connector_name}' (connectors: {})",
                list_or_none(&known)
            ),
        );
        return None;
    };
    let operation = connector.operation(operation_id);
    match operation {
        Some(op) if !op.is_trigger() && (context.served)(&connector.name, &op.id) => {
            if op.is_multipart() {
                report.error(
                    "view-step",
                    key,
                    Some(value.span()),
                    format!(
                        "operation {connector_name}.{operation_id} takes a multipart form, which views cannot send"
                    ),
                );
                return None;
            }
            Some((connector, op))
        }
        Some(_) => {
            report.error(
                "view-step",
                key,
                Some(value.span()),
                format!(
                    "operation {connector_name}.{operation_id} is not served (a trigger, or another operation has its route)"
                ),
            );
            None
        }
        None => {
            let known: Vec<&str> = connector
                .operations
                .iter()
                .filter(|o| !o.is_trigger())
                .map(|o| o.id.as_str())
                .take(20)
                .collect();
            report.error(
                "view-step",
                key,
                Some(value.span()),
                format!(
                    "connector '{connector_name}' has no operation '{operation_id}' (operations: {})",
                    list_or_none(&known)
                ),
            );
            None
        }
    }
}

fn slot_for(connector: &Connector, op: &Operation, name: &str) -> Result<Slot, String> {
    if let Some(p) = op.parameters.iter().find(|p| p.name == name) {
        return match p.location {
            ParamLocation::Path => Ok(Slot::Path),
            ParamLocation::Query => Ok(Slot::Query(p.collection_format)),
            ParamLocation::Header => Ok(Slot::Header(p.collection_format)),
            ParamLocation::FormData => Ok(Slot::Form(p.collection_format)),
            ParamLocation::Cookie => Err(format!(
                "'{name}' is a cookie parameter of {}.{}, which views cannot set",
                connector.name, op.id
            )),
        };
    }
    if let Some(body) = &op.body
        && (body.name == name || name == "body")
    {
        return Ok(Slot::Body);
    }
    let mut known: Vec<&str> = op.parameters.iter().map(|p| p.name.as_str()).collect();
    if op.body.is_some() {
        known.push("body");
    }
    Err(format!(
        "operation {}.{} has no parameter '{name}' (it takes: {})",
        connector.name,
        op.id,
        list_or_none(&known)
    ))
}

fn compile_arg(
    value: &toml::Value,
    key: &str,
    span: Range<usize>,
    scope: &Scope<'_>,
    deps: &mut BTreeSet<usize>,
    report: &mut Report<'_>,
) -> Option<Arg> {
    match value {
        toml::Value::String(text) => match syntax::arg_text(text) {
            Ok(ArgText::Literal(s)) => Some(Arg::Literal(Value::String(s))),
            Ok(ArgText::Reference(r)) => match resolve(&r, text, scope, deps) {
                Ok(reference) => Some(Arg::Ref(reference)),
                Err(why) => {
                    report.error("view-reference", key, Some(span), why);
                    None
                }
            },
            Err(why) => {
                report.error("view-reference", key, Some(span), why);
                None
            }
        },
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(compile_arg(
                    item,
                    &format!("{key}[{i}]"),
                    span.clone(),
                    scope,
                    deps,
                    report,
                )?);
            }
            Some(collapse_array(out))
        }
        toml::Value::Table(table) => {
            let mut out = Vec::new();
            for (k, item) in table {
                out.push((
                    k.clone(),
                    compile_arg(
                        item,
                        &format!("{key}.{k}"),
                        span.clone(),
                        scope,
                        deps,
                        report,
                    )?,
                ));
            }
            Some(collapse_object(out))
        }
        other => Some(Arg::Literal(toml_to_json(other))),
    }
}

/// A list of literals is one literal.
fn collapse_array(items: Vec<Arg>) -> Arg {
    if items.iter().all(|a| matches!(a, Arg::Literal(_))) {
        Arg::Literal(Value::Array(
            items
                .into_iter()
                .filter_map(|a| match a {
                    Arg::Literal(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ))
    } else {
        Arg::Array(items)
    }
}

fn collapse_object(entries: Vec<(String, Arg)>) -> Arg {
    if entries.iter().all(|(_, a)| matches!(a, Arg::Literal(_))) {
        Arg::Literal(Value::Object(
            entries
                .into_iter()
                .filter_map(|(k, a)| match a {
                    Arg::Literal(v) => Some((k, v)),
                    _ => None,
                })
                .collect(),
        ))
    } else {
        Arg::Object(entries)
    }
}

fn resolve(
    raw: &RawReference,
    text: &str,
    scope: &Scope<'_>,
    deps: &mut BTreeSet<usize>,
) -> Result<Reference, String> {
    let root = match &raw.root {
        RawRoot::Input(name) => {
            if !scope.inputs.iter().any(|i| &i.name == name) {
                let names: Vec<&str> = scope.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(format!(
                    "`{text}`: the view has no input '{name}' (inputs: {})",
                    list_or_none(&names)
                ));
            }
            Root::Input(name.clone())
        }
        RawRoot::Step(name) => match scope.steps.get_index_of(name.as_str()) {
            Some(i) => {
                deps.insert(i);
                Root::Step(i)
            }
            None => {
                return Err(format!(
                    "`{text}`: there is no step '{name}' (steps: {})",
                    step_list(scope.steps)
                ));
            }
        },
        RawRoot::Item | RawRoot::Index if !scope.for_each => {
            return Err(format!(
                "`{text}`: $item and $index exist only in the arguments of a step with `for_each`"
            ));
        }
        RawRoot::Item => Root::Item,
        RawRoot::Index => Root::Index,
    };
    Ok(Reference {
        root,
        path: raw.path.clone(),
        text: text.to_owned(),
    })
}

fn step_list(steps: &IndexMap<String, Spanned<RawStep>>) -> String {
    let names: Vec<&str> = steps.keys().map(String::as_str).collect();
    list_or_none(&names)
}

/// A cycle in `graph` (edges from a node to the nodes it depends on), as the list of nodes
/// along it with the first repeated at the end: `[a, b, c, a]`.
pub(crate) fn find_cycle(graph: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: usize,
        graph: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        if let Some(mark) = marks.get_mut(node) {
            *mark = Mark::Open;
        }
        stack.push(node);
        for &next in graph.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            match marks.get(next).copied() {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack.get(start..).unwrap_or(&[]).to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(Mark::New) => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        if let Some(mark) = marks.get_mut(node) {
            *mark = Mark::Done;
        }
        None
    }
    let mut marks = vec![Mark::New; graph.len()];
    let mut stack = Vec::new();
    for node in 0..graph.len() {
        if marks.get(node) == Some(&Mark::New)
            && let Some(cycle) = visit(node, graph, &mut marks, &mut stack)
        {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn cycles_are_found_and_spelt_in_order() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2, 0])
        );
        assert_eq!(find_cycle(&[vec![], vec![1]]), Some(vec![1, 1]));
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![1]]),
            Some(vec![1, 2, 1])
        );
    }
}
