//! Joining (`junction agent join`): an enrollment token exchanged for a certificate whose
//! key is made here and never leaves this host; and renewing that certificate before it
//! expires (when a third of its validity is left), over a connection that shows it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use junction_store::now_ms;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::json;

use super::SiteError;
use super::files::{self, Enrollment, Identity};
use super::run::dial;
use crate::enroll::{Joined, split_token};
use crate::pki::{self, GATEWAY_NAME};

/// How long a join or renewal exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `host:port` of a gateway address `https://HOST:PORT`.
pub fn gateway_authority(gateway: &str) -> Result<String, SiteError> {
    let uri: http::Uri = gateway
        .parse()
        .map_err(|e| SiteError(format!("--gateway `{gateway}`: {e}")))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("https"), Some(authority)) => Ok(format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(443)
        )),
        _ => Err(SiteError(format!(
            "--gateway `{gateway}` is not the gateway's agents listener as https://HOST:PORT"
        ))),
    }
}

/// Joins the gateway at `gateway` with `token` as `name`, writing the result into `dir`.
pub async fn join(
    gateway: &str,
    token: &str,
    name: &str,
    dir: &Path,
) -> Result<Enrollment, SiteError> {
    let authority = gateway_authority(gateway)?;
    let Some((_, pin)) = split_token(token) else {
        return Err(SiteError(
            "the token is not an enrollment token (jat1_…, from `junction agents enroll`)"
                .to_owned(),
        ));
    };
    let proxy = match files::load_site(dir) {
        Ok(site) => site.proxy,
        Err(_) => None,
    };
    let (key, csr) = pki::agent_key_and_request(name)?;
    let tls = pki::joining_tls(pin)?;
    let body = json!({ "token": token.trim(), "name": name, "csr": csr });
    let joined = exchange(tls, &authority, proxy.as_deref(), "/agents/join", &body).await?;
    let enrollment = Enrollment {
        gateway: gateway.to_owned(),
        agent: joined.agent,
        pool: joined.pool,
        not_after: joined.not_after,
        cert_days: joined.cert_days,
    };
    let identity = Identity {
        ca: joined.ca,
        cert: joined.cert,
        key,
    };
    files::write_enrollment(dir, &enrollment, &identity)?;
    Ok(enrollment)
}

/// Whether the certificate has a third of its validity or less left.
pub fn due_for_renewal(enrollment: &Enrollment) -> bool {
    let validity = i64::from(enrollment.cert_days) * 86_400_000;
    enrollment.not_after - now_ms() < validity / 3
}

/// Renews the agent's certificate with a new key; the files of `dir` are replaced.
pub async fn renew(
    dir: &Path,
    enrollment: &Enrollment,
    identity: &Identity,
    proxy: Option<&str>,
) -> Result<Enrollment, SiteError> {
    let authority = gateway_authority(&enrollment.gateway)?;
    let tls = pki::agent_tls(
        &identity.ca,
        &identity.cert,
        &identity.key,
        pki::ALPN_ENROLL,
    )?;
    let (key, csr) = pki::agent_key_and_request(&enrollment.agent)?;
    let joined = exchange(
        tls,
        &authority,
        proxy,
        "/agents/renew",
        &json!({ "csr": csr }),
    )
    .await?;
    let renewed = Enrollment {
        not_after: joined.not_after,
        cert_days: joined.cert_days,
        ..enrollment.clone()
    };
    let identity = Identity {
        ca: joined.ca,
        cert: joined.cert,
        key,
    };
    files::write_enrollment(dir, &renewed, &identity)?;
    Ok(renewed)
}

/// One HTTP/1.1 exchange with the agents listener.
async fn exchange(
    tls: ClientConfig,
    authority: &str,
    proxy: Option<&str>,
    path: &str,
    body: &serde_json::Value,
) -> Result<Joined, SiteError> {
    let work = async {
        let stream = dial(authority, proxy).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let name = ServerName::try_from(GATEWAY_NAME)
            .map_err(|e| SiteError(format!("{GATEWAY_NAME}: {e}")))?;
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| SiteError(format!("TLS with the gateway at {authority} failed: {e}")))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| SiteError(format!("the gateway at {authority}: {e}")))?;
        tokio::spawn(connection);
        let request = http::Request::post(path)
            .header(http::header::HOST, GATEWAY_NAME)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| SiteError(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SiteError(format!("the gateway at {authority}: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), 256 * 1024)
            .collect()
            .await
            .map_err(|e| SiteError(format!("the gateway's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(SiteError(format!(
                "the gateway refused ({status}): {detail}"
            )));
        }
        serde_json::from_slice::<Joined>(&bytes)
            .map_err(|e| SiteError(format!("the gateway's answer is not an enrollment: {e}")))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .map_err(|_| SiteError(format!("the gateway at {authority} did not answer in time")))?
}
