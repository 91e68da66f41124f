//! The request pipeline: configuration, the compiled route table, binding and validation,
//! upstream calls.
//!
//! Junction compiles, then serves. [`Config::load`] reads `junction.toml`;
//! [`Gateway::compile`] turns the configuration and the loaded connectors into an immutable
//! table of per-operation plans (route pieces, parameter plans, compiled validators,
//! upstream base URL, credentials); [`Gateway::handle`] runs one request through it:
//!
//! ```text
//! route → rate limit → body limit → bind + validate → cache → request policies
//!       → upstream (auth, backend guards, call) → response policies → cache store
//!       → response
//! ```
//!
//! [`Gateway::handle_view`] serves `/views/{name}`: it binds the view's inputs and runs its
//! steps ([`view`]), each call going through [`Gateway::handle`] like a client's; a view
//! with a cache policy is answered through the same cache stage as an operation.
//!
//! Modules follow that order. Every failure is an [`Error`] that knows its HTTP status and
//! whose fault it is; `junction-server` turns it into problem+json.

pub mod config;
pub mod connection;
mod context;
mod error;
mod gateway;
mod host;

mod auth;
mod bind;
mod body;
mod encode;
pub mod next_link;
mod paging;
mod pipeline;
mod plan;
mod policy;
mod route;
mod schema;
mod strict_json;
mod trigger;
mod upstream;
pub mod view;

// Traffic: the response cache, rate limits and resilience, with their Redis link.
pub mod cache;
pub use junction_traffic::{ratelimit, redis_link, resilience};
mod traffic;

// Telemetry: request counters, latency histograms, the last hour's statistics and the
// access log.
pub use junction_telemetry::stats;
pub mod telemetry;

pub use auth::fetches_tokens;
pub use body::{
    BodyTimedOut, BodyTooLarge, ClientBody, DeadlinePassed, RequestBody, UpstreamBody,
    check_declared_length, read as read_body,
};
pub use config::{
    AgentsConfig, Config, ConfigError, ConnectorConfig, Limits, LogConfig, NamedTransform,
    NextLinksConfig, OAuthOverrides, OperationConfig, Paging, TelemetryConfig, Transforms,
    UpstreamDefaults, ViewConfig,
};
pub use connection::{Admission, Admitted, BoxFuture, ResolvedConnection, UnauthorizedHook};
pub use context::RequestCtx;
pub use error::{BoxError, Error, ErrorKind, InputLocation, PROBLEM_BASE, Source, Violation};
pub use gateway::{Compiled, ConnectorSummary, Gateway, OperationSummary, SharedGateway};
pub use host::valid_host;
pub use junction_model::Secret;
pub use pipeline::CONNECTORS_PREFIX;
pub use policy::NEXT_LINK_PARAMETER;
pub use traffic::{RetryCounts, TrafficStatus};
pub use trigger::TriggerPoll;
pub use upstream::agent::{AGENT_PROBLEM, AgentPools, Link, LinkInfo};
pub use upstream::{Forwarder, SentTo, USER_AGENT, install_crypto_provider, strip_hop_by_hop};
pub use view::{PARTIAL_HEADER, VIEWS_PREFIX, ViewSource};
