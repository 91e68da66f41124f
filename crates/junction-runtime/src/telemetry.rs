//! Telemetry (`junction-telemetry`, re-exported here), and its exporter started on the
//! gateway's own pooled HTTP client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::BodyExt;
pub use junction_telemetry::*;

use crate::body::RequestBody;
use crate::error::ErrorKind;
use crate::upstream::{self, USER_AGENT};

/// The problem types of the gateway, in [`ErrorKind::ALL`]'s order, which the metrics
/// count failed requests by.
pub fn problem_types() -> &'static [&'static str] {
    static TYPES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| ErrorKind::ALL.iter().map(|k| k.slug()).collect())
}

/// Starts the OTLP exporter of `settings`, posting on a pooled client of its own. Fails when
/// no HTTP client can be built (TLS set-up) or the endpoint is not usable.
pub fn start_exporter(
    settings: otlp::ExporterSettings,
) -> Result<(Arc<otlp::Tracer>, otlp::Exporter), String> {
    let client = upstream::client(Duration::from_secs(5))?;
    let post: otlp::Post = Arc::new(move |uri, body: Bytes| {
        let client = client.clone();
        Box::pin(async move {
            let mut request = http::Request::new(RequestBody::full(body));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = uri;
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            request
                .headers_mut()
                .insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("the request failed: {e}"))?;
            let status = response.status();
            // Read the answer to its end, so the connection can be used again.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        })
    });
    otlp::Exporter::start(settings, post)
}
