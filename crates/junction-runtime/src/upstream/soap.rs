//! The SOAP codec: an operation's JSON arguments written as a SOAP envelope, and the
//! envelope of the answer read back into JSON (or a fault into a problem), both driven by
//! the XML types the WSDL declared (`junction_model::soap`, `docs/soap.md`).
//!
//! [`write`] makes the request body, [`read`] the answer; [`wsse`] writes a WS-Security
//! UsernameToken header when the connection asks for one.

mod read;
mod write;
pub(crate) mod wsse;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use junction_model::Operation;
use junction_model::soap::{SoapMessage, SoapOperation, SoapService, SoapVersion};

pub(crate) use read::read;
pub(crate) use write::write;

/// The SOAP 1.1 `SOAPAction` header.
const SOAP_ACTION: HeaderName = HeaderName::from_static("soapaction");

/// How one operation talks SOAP, compiled at load.
#[derive(Debug)]
pub(crate) struct SoapPlan {
    pub version: SoapVersion,
    /// The WSDL operation's name, for messages.
    pub operation: String,
    /// `Content-Type` of the request envelope (with the SOAP 1.2 `action`).
    pub content_type: HeaderValue,
    /// `SOAPAction` (SOAP 1.1).
    pub action: Option<HeaderValue>,
    pub input: SoapMessage,
    /// `None`: a one-way operation.
    pub output: Option<SoapMessage>,
    pub types: Arc<SoapService>,
}

impl SoapPlan {
    /// The plan of `op`, when it is a SOAP operation (`types`: its connector's).
    pub(crate) fn compile(types: &Arc<SoapService>, op: &Operation) -> Option<SoapPlan> {
        let soap: &SoapOperation = op.soap.as_ref()?;
        let quoted = format!("\"{}\"", soap.action.replace('"', ""));
        let (content_type, action) = match soap.version {
            SoapVersion::Soap11 => (
                HeaderValue::from_static("text/xml; charset=utf-8"),
                HeaderValue::from_str(&quoted).ok(),
            ),
            SoapVersion::Soap12 => {
                let media = if soap.action.is_empty() {
                    "application/soap+xml; charset=utf-8".to_owned()
                } else {
                    format!("application/soap+xml; charset=utf-8; action={quoted}")
                };
                (
                    HeaderValue::from_str(&media).unwrap_or(HeaderValue::from_static(
                        "application/soap+xml; charset=utf-8",
                    )),
                    None,
                )
            }
        };
        Some(SoapPlan {
            version: soap.version,
            operation: soap.name.clone(),
            content_type,
            action,
            input: soap.input.clone(),
            output: soap.output.clone(),
            types: types.clone(),
        })
    }

    /// Sets the envelope's `Content-Type` and `SOAPAction` in `headers`, and asks for XML.
    pub(crate) fn headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        if let Some(action) = &self.action {
            headers.insert(SOAP_ACTION, action.clone());
        }
        let accept = match self.version {
            SoapVersion::Soap11 => "text/xml",
            SoapVersion::Soap12 => "application/soap+xml",
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    }
}
