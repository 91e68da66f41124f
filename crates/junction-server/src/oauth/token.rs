//! Token endpoint requests and their answers: only the standard error code of a refusal
//! is ever shown, never the rest of a token answer.

use std::time::Duration;

use junction_runtime::{Error, ErrorKind};
use junction_store::{SecretString, now_ms};
use serde_json::Value;

use super::app::TokenRequest;

/// Tokens from a token endpoint, and when the access token expires.
#[derive(Debug)]
pub struct Tokens {
    pub access: SecretString,
    pub refresh: Option<SecretString>,
    pub expires_at: Option<i64>,
}

/// Sends `request` (a form) and reads the tokens of the answer.
pub async fn post(http: &reqwest::Client, request: TokenRequest) -> Result<Tokens, Error> {
    let failed = |why: String| Error::new(ErrorKind::UpstreamInvalid, why);
    let response = http
        .post(&request.url)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(request.body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| failed("the token endpoint cannot be reached".into()).with_cause(e))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|_| failed(format!("the token endpoint answered {status} without JSON")))?;
    if !status.is_success() {
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let kind = if code == "invalid_grant" {
            ErrorKind::ConnectionUnauthenticated
        } else {
            ErrorKind::UpstreamInvalid
        };
        return Err(Error::new(
            kind,
            format!("the token endpoint refused the request ({status}, {code})"),
        ));
    }
    let Some(access_token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(failed(
            "the token endpoint's answer has no access_token".into(),
        ));
    };
    Ok(Tokens {
        access: SecretString::from(access_token.to_owned()),
        refresh: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(|t| SecretString::from(t.to_owned())),
        expires_at: body
            .get("expires_in")
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
            .map(|s| now_ms() + s * 1000),
    })
}
