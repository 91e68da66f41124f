//! How a built request reaches its backend: directly, over HTTP/1.1 or HTTP/2 (TLS by
//! rustls with the platform's roots), with a pooled client shared by every connector with
//! the same connect timeout; or through an outbound agent in a private network
//! ([`super::agent`]).

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::agent::AgentPools;
use super::pool::{self, ClientError, HttpClient};
use crate::body::RequestBody;

/// How a connector's requests travel.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// Straight to the backend's address, with a pooled client.
    Direct(HttpClient),
    /// Through an agent of the pool named, over the connection it opened to the gateway.
    Agent { pool: String, pools: AgentPools },
}

impl Transport {
    /// Sends `request` and waits for the response head.
    pub(crate) async fn request(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        match self {
            Transport::Direct(client) => client.request(request).await,
            Transport::Agent { pool, pools } => pools.request(pool, request).await,
        }
    }
}

/// Builds a pooled client (see [`pool`]). One is shared by every connector with the same
/// connect timeout.
pub(crate) fn client(connect_timeout: Duration) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot set up TLS for upstream calls: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let tls = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool::IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(https);
    Ok(HttpClient::new(connect_timeout, tls))
}

/// The client of an outbound agent (`junction agent run`): it sends what the gateway asks
/// to the backends of the agent's network with the gateway's own pooled client, both
/// bodies streamed.
#[derive(Debug, Clone)]
pub struct Forwarder(HttpClient);

impl Forwarder {
    pub fn new(connect_timeout: Duration) -> Result<Forwarder, String> {
        client(connect_timeout).map(Forwarder)
    }

    /// Sends `request` (absolute URI) and returns the response head with its streamed body.
    pub async fn send(
        &self,
        request: http::Request<Incoming>,
    ) -> Result<http::Response<Incoming>, crate::BoxError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, RequestBody::stream(body, u64::MAX));
        Ok(self.0.request(request).await?)
    }
}
