//! The one integration-test binary.

mod corpus;
mod gateway;
mod support;
