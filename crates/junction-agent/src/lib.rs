//! Outbound agents: the enrollment desk and certificate authority of the gateway, and the
//! agent that runs inside a private network and dials out to it (docs/agent.md).
//!
//! - [`pki`]: the gateway's certificate authority, the certificates it signs, TLS settings;
//! - [`enroll`]: enrollment tokens, joining and renewing, on the gateway's side;
//! - [`site`]: the agent (`junction agent join|run`): its files, its allowlist, the
//!   connection it keeps to the gateway, and the requests it forwards.
//!
//! The gateway's agents listener is `junction_server::agents`; the transport that sends
//! requests through agents is `junction_runtime`'s `upstream::agent`.

pub mod enroll;
pub mod pki;
pub mod site;

pub use tokio_rustls;
