//! `GET /triggers/{name}/events` on the data plane: a trigger's stored events as
//! Server-Sent Events (`id:` the event's number, `data:` its JSON), oldest first, then
//! each new one as it is stored. A client that reconnects with `Last-Event-ID` (or
//! `?after=N`) goes on after that event. The caller needs the grant `trigger:NAME`.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, header};
use junction_model::Method;
use junction_runtime::{Error, InputLocation, Violation};
use tokio::sync::watch;

use super::{Trigger, Triggers};
use crate::access::store_error;

/// Events read from the store at once.
const BATCH: i64 = 200;

/// How often a waiting stream looks in the store (events another replica stored).
const STORE_CHECK: Duration = Duration::from_secs(1);

/// A comment line after this much silence keeps proxies from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /triggers/{name}/events` of `trigger`, for a client granted it: the event stream.
pub(super) fn serve(
    triggers: &Arc<Triggers>,
    trigger: Arc<Trigger>,
    parts: &http::request::Parts,
) -> Result<http::Response<Body>, Error> {
    if parts.method != http::Method::GET {
        return Err(Error::method_not_allowed(
            &parts.method,
            &format!("the events of trigger '{}'", trigger.name),
            vec![Method::Get],
        ));
    }
    let after = resume_point(parts)?;
    let cursor = Cursor {
        triggers: triggers.clone(),
        notices: trigger.stored.subscribe(),
        trigger,
        after,
        stopped: triggers.stopped.clone(),
    };
    let stream = futures_util::stream::unfold(cursor, Cursor::next);
    let mut response = http::Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The event to go on after: `Last-Event-ID`, else `?after=N`, else none (every event).
fn resume_point(parts: &http::request::Parts) -> Result<i64, Error> {
    let invalid = |location, name: &str, text: &str| {
        Error::invalid(vec![Violation::parameter(
            location,
            name,
            format!("`{text}` is not an event id (a whole number)"),
        )])
    };
    if let Some(value) = parts.headers.get("last-event-id") {
        let text = value.to_str().unwrap_or_default().trim();
        return text
            .parse::<i64>()
            .map_err(|_| invalid(InputLocation::Header, "Last-Event-ID", text));
    }
    match parts
        .uri
        .query()
        .and_then(|query| query_value(query, "after"))
    {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| invalid(InputLocation::Query, "after", &text)),
        None => Ok(0),
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Where one stream is.
struct Cursor {
    triggers: Arc<Triggers>,
    trigger: Arc<Trigger>,
    notices: watch::Receiver<u64>,
    /// The last event sent.
    after: i64,
    stopped: watch::Receiver<bool>,
}

impl Cursor {
    /// The next chunk of the stream: stored events after the cursor, or a keep-alive
    /// comment; `None` when the server stops or the store fails (the client reconnects
    /// with `Last-Event-ID`).
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Cursor)> {
        let store = self.triggers.access.vault.store().clone();
        let mut silent = Duration::ZERO;
        loop {
            let events = match store
                .trigger_events(&self.trigger.name, self.after, BATCH)
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    let error = store_error(error);
                    tracing::warn!(trigger = %self.trigger.name, %error, "an event stream ended");
                    return None;
                }
            };
            if !events.is_empty() {
                let mut out = String::new();
                for event in events {
                    let _ = write!(out, "id: {}\ndata: {}\n\n", event.id, event.payload);
                    self.after = event.id;
                }
                return Some((Ok(Bytes::from(out)), self));
            }
            if silent >= KEEP_ALIVE {
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
            }
            tokio::select! {
                changed = self.notices.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(STORE_CHECK) => silent += STORE_CHECK,
                _ = self.stopped.wait_for(|stop| *stop) => return None,
            }
        }
    }
}
