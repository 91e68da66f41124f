//! Limit, and the bodies that travel: the request body, read or streamed, never beyond
//! `limits.max_body_bytes`; the body sent upstream; the response body under the deadline.
//!
//! The declared `Content-Length` is checked before anything is read. A body that is read
//! (to validate JSON or parse a form) is collected with a hard cap; a body that streams
//! through to the backend is counted as it goes and fails with [`BodyTooLarge`] once it
//! passes the cap, which the upstream stage turns into 413. The response body streams back
//! as it arrives and fails if the connector's total timeout passes first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Sleep;

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

/// The error a response body fails with when the total timeout passes mid-body.
#[derive(Debug)]
pub struct DeadlinePassed {
    pub timeout: Duration,
}

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the upstream response did not complete within {:?}",
            self.timeout
        )
    }
}

impl std::error::Error for DeadlinePassed {}

/// The error a client's request body fails with when it has not arrived whole within
/// `limits.body_timeout`.
#[derive(Debug)]
pub struct BodyTimedOut {
    pub timeout: Duration,
}

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body did not arrive within {}s",
            self.timeout.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

/// A client's request body that must arrive whole within a time limit (slow-body and
/// stalled-upload connections are cut off). The clock starts when the body is wrapped,
/// right after its head; a body known to be empty never starts one.
#[derive(Debug)]
pub struct ClientBody<B> {
    inner: B,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl<B: Body> ClientBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        ClientBody {
            inner,
            deadline,
            timeout,
        }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let passed = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if passed {
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut {
                        timeout: this.timeout,
                    }))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `limits.body_timeout` refusal, when `error` or one of its causes is [`BodyTimedOut`].
pub(crate) fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(timed_out) = e.downcast_ref::<BodyTimedOut>() {
            return Some(Error::new(ErrorKind::RequestTimeout, timed_out.to_string()));
        }
        current = e.source();
    }
    None
}

pub(crate) fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// Rejects a declared `Content-Length` over the limit.
pub fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), Error> {
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
pub async fn read<B>(body: B, limit: u64) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(error) => Err(timed_out(error.as_ref()).unwrap_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                "the request body could not be read",
            )
            .with_cause(error)
        })),
    }
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

/// The body of an upstream request.
#[derive(Debug, Default)]
pub enum RequestBody {
    #[default]
    Empty,
    /// Bytes already in memory (a validated JSON body, a form).
    Full(Option<Bytes>),
    /// The client's body, streamed and counted against the limit.
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl RequestBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        RequestBody::Full(Some(bytes.into()))
    }

    /// Streams `body`, failing with [`BodyTooLarge`] past `limit` bytes.
    pub(crate) fn stream<B>(body: B, limit: u64) -> Self
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody::Stream(
            Counted {
                inner: body,
                seen: 0,
                limit,
            }
            .boxed_unsync(),
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(bytes) => bytes.is_none(),
            RequestBody::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Stream(body) => body.size_hint(),
        }
    }
}

/// Counts the bytes of a streamed body against the limit.
struct Counted<B> {
    inner: B,
    seen: u64,
    limit: u64,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(BoxError::from(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A backend's response body, streamed as it arrives, failing once the connector's total
/// timeout has passed; or, after the policy stage rewrote it, bytes in memory.
pub struct UpstreamBody {
    inner: Inner,
    timeout: Duration,
    /// The backend's concurrency slot, freed when the body is done with.
    _slot: Option<crate::resilience::concurrency::Slot>,
}

enum Inner {
    Stream {
        body: hyper::body::Incoming,
        deadline: Pin<Box<Sleep>>,
    },
    Full(Option<Bytes>),
    /// Bytes already read, then the rest of the stream.
    Chain {
        head: Option<Bytes>,
        rest: Box<UpstreamBody>,
    },
}

impl UpstreamBody {
    /// `head` (bytes already read from `rest`), then what remains of `rest`.
    pub(crate) fn chain(head: Bytes, rest: UpstreamBody) -> Self {
        UpstreamBody {
            inner: Inner::Chain {
                head: (!head.is_empty()).then_some(head),
                rest: Box::new(rest),
            },
            timeout: Duration::ZERO,
            _slot: None,
        }
    }

    pub(crate) fn new(
        inner: hyper::body::Incoming,
        held: crate::upstream::Held,
        timeout: Duration,
    ) -> Self {
        UpstreamBody {
            inner: Inner::Stream {
                body: inner,
                deadline: held.deadline,
            },
            timeout,
            _slot: held.slot,
        }
    }

    /// A body already in memory.
    pub(crate) fn full(bytes: Bytes) -> Self {
        UpstreamBody {
            inner: Inner::Full(Some(bytes)),
            timeout: Duration::ZERO,
            _slot: None,
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Stream { body, deadline } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BoxError::from))),
                Poll::Pending => match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BoxError::from(DeadlinePassed {
                        timeout: this.timeout,
                    })))),
                    Poll::Pending => Poll::Pending,
                },
            },
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Chain { head, rest } => match head.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Stream { body, .. } => body.is_end_stream(),
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Chain { head, rest } => head.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Stream { body, .. } => body.size_hint(),
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Chain { head, rest } => {
                let before = head.as_ref().map_or(0, |b| b.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + before);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + before);
                }
                hint
            }
        }
    }
}

/// Reads a response body whole, up to `limit` bytes, under its deadline.
pub(crate) async fn read_response(body: UpstreamBody, limit: u64) -> Result<Bytes, Error> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "the backend's response is larger than limits.max_response_bytes ({limit} bytes), and it must be read whole (for policies, a transform, paging or a SOAP answer)"
            ),
        )),
        Err(error) if is_deadline(error.as_ref()) => Err(Error::new(
            ErrorKind::UpstreamTimeout,
            "the backend did not send its whole response in time",
        )),
        Err(error) => Err(Error::new(
            ErrorKind::UpstreamUnreachable,
            "the backend broke off its response",
        )
        .with_cause(error)),
    }
}

fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<DeadlinePassed>() {
            return true;
        }
        current = e.source();
    }
    false
}
