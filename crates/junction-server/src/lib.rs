//! The HTTP servers: the data plane and the admin plane, each on its own listener. Every
//! error becomes RFC 9457 problem+json in one place, [`problem`].
//!
//! For tests: [`Server::start`] serves on the addresses of a [`junction_runtime::Config`]
//! (port 0 binds a free port, read back from [`RunningServer::data_addr`]), and
//! [`data_router`] / [`admin_router`] give the routers to drive without sockets.

pub mod access;
mod admin;
pub mod agents;
mod call;
pub mod catalog;
pub mod console;
mod data;
mod jwt;
mod listener;
pub mod oauth;
pub mod problem;
mod server;
mod standby;
mod test_call;
pub mod tls;
pub mod triggers;
pub mod try_call;

pub use access::{Access, AccessAdmission, AccessError, install_admission};
pub use admin::{admin_router, admin_router_with};
pub use catalog::Catalog;
pub use data::{data_router, serve_request, serve_request_from};
pub use server::{RunningServer, SHUTDOWN_GRACE, Server, StartError, shutdown_signal};
pub use test_call::run as test_connection;
pub use triggers::Triggers;
