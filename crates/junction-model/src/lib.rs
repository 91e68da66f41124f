//! The normalized connector model that every importer produces and every later stage reads.
//!
//! A [`Connector`] is one backend API as Junction understands it, whatever format it was
//! written in (a Power Platform package, Swagger 2.0, OpenAPI 3.0 or 3.1, or a WSDL whose
//! operations are served as JSON, see [`soap`]). Schemas are kept
//! as JSON Schema documents (`serde_json::Value`) normalized to draft 2020-12, with every
//! local `$ref` rewritten to `#/definitions/NAME` and checked to exist, so that
//! [`Connector::definitions`] is the one place a reference can point to. Nothing here does
//! I/O; importers build these values, the runtime compiles them into a route table.

mod connector;
mod diag;
mod name;
pub mod oauth;
mod operation;
pub mod secret;
mod security;
pub mod soap;
pub mod units;

pub use connector::{
    ApiProperties, ConnectionParameter, ConnectionParameterSet, ConnectionParameterSets, Connector,
    CustomCode, Extensions, PolicyInstance, SourceFormat, Upstream,
};
pub use diag::{Diagnostic, Diagnostics, Severity, list_or_none};
pub use name::connector_name;
pub use operation::{
    CollectionFormat, Method, Operation, ParamLocation, Parameter, RequestBody, Response,
    UrlEncoding, Visibility,
};
pub use secret::Secret;
pub use security::{ApiKeyLocation, SecurityRequirement, SecurityScheme};
