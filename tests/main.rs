//! The one integration-test binary.

mod gateway;
mod support;
