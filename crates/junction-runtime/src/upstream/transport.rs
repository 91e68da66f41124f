//! How a built request reaches its backend: today directly, over HTTP/1.1 or HTTP/2 (TLS
//! by rustls with the platform's roots), with a pooled client shared by every connector
//! with the same connect timeout. This is the one place another way to reach a backend (an
//! outbound agent in a private network) is added, as a variant.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::pool::{self, ClientError, HttpClient};
use crate::body::RequestBody;

/// How a connector's requests travel.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// Straight to the backend's address, with a pooled client.
    Direct(HttpClient),
}

impl Transport {
    /// Sends `request` and waits for the response head.
    pub(crate) async fn request(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        match self {
            Transport::Direct(client) => client.request(request).await,
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
