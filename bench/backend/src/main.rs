//! The benchmarks' backend: answers every request from memory, on one single-threaded
//! runtime, so that it costs the proxies in front of it as little CPU as possible.
//!
//! `junction-bench-backend [ADDR]` (default `127.0.0.1:18001`) serves, for any method:
//!
//! | path prefix | answer |
//! |---|---|
//! | `/items/`  | a small JSON object (about 100 bytes) |
//! | `/large/`  | a 100 KB JSON document |
//! | `/slow/`   | the small JSON object, 20 ms later |
//! | `/soap/`   | a SOAP 1.1 envelope of 10 items (`GetItemsResponse`, `bench/junction/connectors/bench-soap/Items.wsdl`), after reading the request |
//! | `/healthz` | `ok` |
//!
//! Query strings and the rest of the path are ignored, so the same URLs work directly and
//! through a proxy. Responses carry `Content-Length` and `Content-Type: application/json`
//! (`text/xml` for `/soap/`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The latency of `/slow/`.
const SLOW: Duration = Duration::from_millis(20);
/// The size of the `/large/` document.
const LARGE_BYTES: usize = 100 * 1024;

const SMALL: &str =
    r#"{"id":42,"name":"widget","price":9.99,"in_stock":true,"tags":["blue","small"]}"#;

/// The SOAP answer: 10 items, each with an attribute, text, numbers, a boolean, a date and
/// a repeated element.
fn soap_items() -> Bytes {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope \
         xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
         <GetItemsResponse xmlns=\"urn:junction:bench:items\">",
    );
    for i in 1..=10 {
        out.push_str(&format!(
            "<item id=\"{i}\"><name>widget {i} &amp; co</name><price>{i}.99</price>\
             <quantity>{}</quantity><inStock>{}</inStock><updated>2026-11-{i:02}T10:00:00Z</updated>\
             <tag>blue</tag><tag>small</tag></item>",
            i * 7,
            i % 2 == 0
        ));
    }
    out.push_str("</GetItemsResponse></s:Body></s:Envelope>");
    Bytes::from(out)
}

/// A JSON array of item objects, padded to exactly [`LARGE_BYTES`].
fn large() -> Bytes {
    let mut out = String::with_capacity(LARGE_BYTES);
    out.push('[');
    let mut i = 0u32;
    loop {
        let item = format!(
            r#"{{"id":{i},"name":"item {i}","price":{}.{:02},"in_stock":{},"tags":["a","b"]}}"#,
            i % 1000,
            i % 100,
            i.is_multiple_of(2)
        );
        // Room for a comma, the item, a padding object and the closing bracket.
        if out.len() + item.len() + 40 > LARGE_BYTES {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
        i += 1;
    }
    let pad = LARGE_BYTES.saturating_sub(out.len() + r#",{"pad":""}]"#.len());
    out.push_str(r#",{"pad":""#);
    out.push_str(&" ".repeat(pad));
    out.push_str(r#""}]"#);
    Bytes::from(out)
}

fn respond(body: &Bytes, status: StatusCode, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.clone()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{arg}` is not IP:PORT ({e})"),
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 18001)),
    };
    let small = Bytes::from_static(SMALL.as_bytes());
    let large = large();
    let soap = soap_items();
    let ok = Bytes::from_static(b"ok");
    let missing = Bytes::from_static(br#"{"error":"not found"}"#);

    let listener = TcpListener::bind(addr).await?;
    println!("backend listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("backend: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (small, large, soap, ok, missing) = (
            small.clone(),
            large.clone(),
            soap.clone(),
            ok.clone(),
            missing.clone(),
        );
        let service = service_fn(move |request: Request<Incoming>| {
            let path = request.uri().path();
            if path.starts_with("/soap/") {
                let soap = soap.clone();
                return Box::pin(async move {
                    // The envelope is read whole, as a SOAP service must before answering.
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(respond(&soap, StatusCode::OK, "text/xml; charset=utf-8"))
                })
                    as std::pin::Pin<
                        Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>,
                    >;
            }
            let (body, status, slow) = if path.starts_with("/items/") {
                (small.clone(), StatusCode::OK, false)
            } else if path.starts_with("/large/") {
                (large.clone(), StatusCode::OK, false)
            } else if path.starts_with("/slow/") {
                (small.clone(), StatusCode::OK, true)
            } else if path == "/healthz" {
                (ok.clone(), StatusCode::OK, false)
            } else {
                (missing.clone(), StatusCode::NOT_FOUND, false)
            };
            Box::pin(async move {
                if slow {
                    tokio::time::sleep(SLOW).await;
                }
                Ok::<_, Infallible>(respond(&body, status, "application/json"))
            })
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_document_is_100_kb_of_json() {
        let body = large();
        assert_eq!(body.len(), LARGE_BYTES);
        assert!(body.starts_with(b"[{") && body.ends_with(b"\"}]"));
    }
}
