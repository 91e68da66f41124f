//! Limit: the request body, read or streamed, never beyond `limits.max_body_bytes`.
//!
//! The declared `Content-Length` is checked before anything is read. A body that is read
//! (to validate JSON or parse a form) is collected with a hard cap; a body that streams
//! through to the backend is counted as it goes and the stream fails with [`BodyTooLarge`]
//! when the cap is passed, which the upstream stage turns into 413.

use std::fmt;

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyDataStream, BodyExt, LengthLimitError, Limited};

use crate::error::{BoxError, Error, ErrorKind};

/// The error a streamed body fails with once it passes the limit.
#[derive(Debug)]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body exceeds the limit of {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

pub(crate) fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// Rejects a declared `Content-Length` over the limit.
pub(crate) fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), Error> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body of {length} bytes exceeds the limit of {limit} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Whether the body is known to be empty.
pub(crate) fn is_empty<B: Body>(body: &B) -> bool {
    body.size_hint().exact() == Some(0)
}

/// Reads the whole body, up to `limit` bytes.
pub(crate) async fn read<B>(body: B, limit: u64) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(error) => Err(Error::new(
            ErrorKind::InvalidRequest,
            "the request body could not be read",
        )
        .with_cause(error)),
    }
}

/// Streams the body on to the backend, failing with [`BodyTooLarge`] past `limit` bytes.
pub(crate) fn stream<B>(body: B, limit: u64) -> reqwest::Body
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut seen: u64 = 0;
    let counted = BodyDataStream::new(body).map(move |chunk| {
        let chunk = chunk.map_err(Into::<BoxError>::into)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            return Err(BoxError::from(BodyTooLarge { limit }));
        }
        Ok(chunk)
    });
    reqwest::Body::wrap_stream(counted)
}

/// The limit, when `error` or one of its causes is [`BodyTooLarge`].
pub(crate) fn limit_exceeded(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(too_large) = e.downcast_ref::<BodyTooLarge>() {
            return Some(too_large.limit);
        }
        current = e.source();
    }
    None
}
