//! Operations and their parameters, bodies and responses.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::connector::Extensions;
use crate::security::SecurityRequirement;

/// An HTTP method an operation can be declared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
    Trace,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Put,
        Method::Post,
        Method::Delete,
        Method::Options,
        Method::Head,
        Method::Patch,
        Method::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
        }
    }

    /// Whether repeating the request has no further effect (RFC 9110 §9.2.2).
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = ();
    /// Parses a method name in any case (`get`, `GET`).
    fn from_str(s: &str) -> Result<Self, ()> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

/// `x-ms-visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Important,
    #[default]
    None,
    Advanced,
    Internal,
}

impl Visibility {
    /// Reads an `x-ms-visibility` value, in any case; unknown values read as `None`.
    pub fn parse(value: &str) -> Visibility {
        match value.to_ascii_lowercase().as_str() {
            "important" => Visibility::Important,
            "advanced" => Visibility::Advanced,
            "internal" => Visibility::Internal,
            _ => Visibility::None,
        }
    }
}

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ParamLocation {
    Path,
    Query,
    Header,
    Cookie,
    /// A form field: Swagger `in: formData`, or a property of an OpenAPI 3
    /// `application/x-www-form-urlencoded` or `multipart/form-data` request body.
    FormData,
}

impl ParamLocation {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamLocation::Path => "path",
            ParamLocation::Query => "query",
            ParamLocation::Header => "header",
            ParamLocation::Cookie => "cookie",
            ParamLocation::FormData => "formData",
        }
    }
}

/// How an array parameter is written (Swagger `collectionFormat`, or OpenAPI 3
/// `style` + `explode` mapped onto the same choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionFormat {
    /// `a,b,c`
    #[default]
    Csv,
    /// `a b c`
    Ssv,
    /// `a\tb\tc`
    Tsv,
    /// `a|b|c`
    Pipes,
    /// `x=a&x=b&x=c` (query and form fields only)
    Multi,
}

impl CollectionFormat {
    /// Its Swagger 2.0 name: `csv`, `ssv`, `tsv`, `pipes` or `multi`.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionFormat::Csv => "csv",
            CollectionFormat::Ssv => "ssv",
            CollectionFormat::Tsv => "tsv",
            CollectionFormat::Pipes => "pipes",
            CollectionFormat::Multi => "multi",
        }
    }

    /// The format a Swagger 2.0 name (any case) stands for.
    pub fn from_name(name: &str) -> Option<CollectionFormat> {
        [
            CollectionFormat::Csv,
            CollectionFormat::Ssv,
            CollectionFormat::Tsv,
            CollectionFormat::Pipes,
            CollectionFormat::Multi,
        ]
        .into_iter()
        .find(|format| name.eq_ignore_ascii_case(format.as_str()))
    }

    /// The separator between items, or `None` for `multi`.
    pub fn separator(self) -> Option<char> {
        match self {
            CollectionFormat::Csv => Some(','),
            CollectionFormat::Ssv => Some(' '),
            CollectionFormat::Tsv => Some('\t'),
            CollectionFormat::Pipes => Some('|'),
            CollectionFormat::Multi => None,
        }
    }
}

/// `x-ms-url-encoding`: how often a path value is percent-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlEncoding {
    #[default]
    Single,
    Double,
}

/// A non-body parameter: path, query, header, cookie or form field.
#[derive(Debug, Clone, Serialize)]
pub struct Parameter {
    pub name: String,
    pub location: ParamLocation,
    pub required: bool,
    pub description: Option<String>,
    /// `x-ms-summary`: the title the user sees.
    pub summary: Option<String>,
    /// The value's JSON Schema (`type`, `format`, `enum`, `items`, bounds …). Swagger 2.0
    /// keeps these on the parameter itself; the importer gathers them here.
    pub schema: Value,
    /// The value sent when the client supplies none (`default`, also of internal parameters).
    pub default: Option<Value>,
    pub collection_format: CollectionFormat,
    pub url_encoding: UrlEncoding,
    pub visibility: Visibility,
    /// Whether this is a file (Swagger `type: file`, or `format: binary` in a multipart body).
    pub is_file: bool,
    pub extensions: Extensions,
    /// JSON pointer of the parameter in the source file.
    pub pointer: String,
}

/// A request body described by a schema: Swagger `in: body`, or an OpenAPI 3 `requestBody`
/// whose media type is not a form.
#[derive(Debug, Clone, Serialize)]
pub struct RequestBody {
    /// Swagger's body parameter name (`body` for OpenAPI 3).
    pub name: String,
    pub required: bool,
    pub description: Option<String>,
    pub summary: Option<String>,
    /// Media types accepted, first preferred (Swagger `consumes`, OpenAPI `content` keys).
    pub media_types: Vec<String>,
    pub schema: Value,
    pub visibility: Visibility,
    pub extensions: Extensions,
    pub pointer: String,
}

/// One declared response.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    /// `200`, `2XX` or `default`.
    pub status: String,
    pub description: Option<String>,
    pub schema: Option<Value>,
    /// Response header names declared for it.
    pub headers: Vec<String>,
}

/// One operation: a method on a path template.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// `operationId`, or `METHOD path` when the definition gives none (with a warning).
    pub id: String,
    pub method: Method,
    /// Path template relative to the base path, e.g. `/items/{id}`.
    pub path: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// Path, query, header, cookie and form parameters, path-level ones merged in.
    pub parameters: Vec<Parameter>,
    pub body: Option<RequestBody>,
    /// Media types of the request (`consumes`): decides JSON, urlencoded or multipart.
    pub consumes: Vec<String>,
    /// Media types of the response (`produces`).
    pub produces: Vec<String>,
    pub responses: Vec<Response>,
    /// Overrides [`crate::Connector::security`] when present.
    pub security: Option<Vec<SecurityRequirement>>,
    pub deprecated: bool,
    pub visibility: Visibility,
    pub tags: Vec<String>,
    pub extensions: Extensions,
    /// How the operation talks SOAP, for operations imported from a WSDL (their JSON body
    /// becomes an envelope, their answer JSON again).
    pub soap: Option<crate::soap::SoapOperation>,
    pub pointer: String,
}

impl Operation {
    /// Whether the operation is a trigger (`x-ms-trigger`), which is not called directly.
    pub fn is_trigger(&self) -> bool {
        self.extensions.contains_key("x-ms-trigger")
    }

    /// Whether form fields must go as `multipart/form-data` rather than urlencoded.
    pub fn is_multipart(&self) -> bool {
        self.parameters
            .iter()
            .any(|p| p.location == ParamLocation::FormData && p.is_file)
            || self.consumes.iter().any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
            })
    }

    /// The parameters that travel in `location`.
    pub fn parameters_in(&self, location: ParamLocation) -> impl Iterator<Item = &Parameter> {
        self.parameters
            .iter()
            .filter(move |p| p.location == location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_in_any_case() {
        assert_eq!("get".parse::<Method>(), Ok(Method::Get));
        assert_eq!("PaTcH".parse::<Method>(), Ok(Method::Patch));
        assert!("x-ms-notification-content".parse::<Method>().is_err());
        assert!(Method::Put.is_idempotent());
        assert!(!Method::Post.is_idempotent());
    }

    #[test]
    fn visibility_reads_any_case() {
        assert_eq!(Visibility::parse("Internal"), Visibility::Internal);
        assert_eq!(Visibility::parse("none"), Visibility::None);
    }
}
