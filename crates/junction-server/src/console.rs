//! The web console at `/console/` on the admin listener: a static shell (HTML, CSS and
//! JavaScript modules) compiled into the binary, that reads and drives the admin API.
//!
//! The shell itself holds no data and loads without the admin token; everything it shows
//! comes from `/api/v1`, which the token protects. It is served under a strict
//! Content-Security-Policy (`default-src 'self'`: no inline script or style, no other
//! origin), so nothing but these files ever runs in the page.

use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};

/// The console's files: name, media type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("console/dom.js"),
    ),
    (
        "forms.js",
        "text/javascript; charset=utf-8",
        include_str!("console/forms.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("console/charts.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("console/favicon.svg"),
    ),
];

/// The policy every console file is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /console`: to `/console/`, so relative links resolve.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: the shell.
pub async fn index() -> Response {
    asset_named("index.html")
}

/// `GET /console/{asset}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    asset_named(&name)
}

fn asset_named(name: &str) -> Response {
    let Some((_, media_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (
            StatusCode::NOT_FOUND,
            secured(),
            "no such console file\n".to_owned(),
        )
            .into_response();
    };
    let mut response = (secured(), *body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

/// The headers of every console response.
fn secured() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Small files, and a new binary may bring new ones: always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}
