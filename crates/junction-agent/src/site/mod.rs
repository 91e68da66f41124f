//! The agent (`junction agent join|run`): it opens no port; it dials the gateway, keeps
//! that connection up, and performs the requests the gateway sends on it against the
//! backends of its own network that its allowlist names.
//!
//! - [`files`]: AGENTDIR: `agent.toml` (the site's rules) and what joining wrote;
//! - [`allow`]: the allowlist;
//! - [`join`]: exchanging an enrollment token for a certificate, and renewing it;
//! - [`run`]: the connection to the gateway and the requests on it.

pub mod allow;
pub mod files;
pub mod join;
pub mod run;

/// Why the agent cannot do what it was asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SiteError(pub String);

impl From<crate::pki::PkiError> for SiteError {
    fn from(error: crate::pki::PkiError) -> Self {
        SiteError(error.0)
    }
}
