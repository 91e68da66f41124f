//! Power Platform policy templates and jq transforms: compiled once at load, applied per
//! request. No I/O.
//!
//! A connector package's `policyTemplateInstances` are small, declarative rewrites of the
//! requests and responses of its operations (set a header, route to another path, take
//! the host from a connection value, reshape the JSON body …). This crate:
//!
//! - parses the expression language the templates use ([`expr`]): `@connectionParameters('p')`,
//!   `@headers('h')`, `@queryParameters('q')`, `@body().a.b`, `@item()`, `{…}` interpolation;
//! - compiles each instance into a typed [`Policy`] ([`policy::compile`]), or into
//!   [`Finding`]s that point at the parameter (and the character) that is wrong;
//! - applies compiled policies to a request about to be sent ([`run_request`]) and to a
//!   response ([`run_response`]), as pure functions over the message — the one side call
//!   (`setvaluefromurl`) goes through the [`SideCalls`] trait the runtime implements;
//! - checks host URL templates so that no value can turn the gateway into an open proxy
//!   ([`host`]);
//! - compiles and runs jq programs with jaq ([`jq::Transform`]);
//! - reads a polling trigger's answer with its `pollingtrigger` template ([`trigger`]).

pub mod apply;
pub mod eval;
pub mod expr;
pub mod host;
pub mod jq;
pub mod json;
pub mod policy;
pub mod trigger;

pub use apply::{
    FailureKind, Hosts, Incoming, NextLinks, Outgoing, PolicyError, SideCallError, SideCalls,
    run_request, run_response,
};
pub use eval::{ConnValue, Env};
pub use policy::{Compiled, Finding, Kind, Policy, Section, Severity, compile, is_known};
