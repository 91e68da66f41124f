//! The one integration-test binary.

// Tests fail by panicking; the workspace's no-panic lints are for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent;
mod cache;
mod cli;
mod clients;
mod compat;
mod connections;
mod console;
mod corpus;
mod example;
mod export;
mod fuzz;
mod gateway;
mod harness;
mod hostile;
mod limits;
mod oauth;
mod oauth_packages;
mod oidc;
mod policies;
mod prism;
mod redis_support;
mod schema;
mod soap;
mod store;
mod support;
mod telemetry;
mod tracing;
mod traffic;
mod triggers;
mod views;
