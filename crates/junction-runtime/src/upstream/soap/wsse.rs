//! WS-Security UsernameToken (OASIS Username Token Profile 1.0/1.1) in the envelope's
//! header: the password as text, or as its digest `Base64(SHA-1(nonce + created +
//! password))` with a fresh nonce and creation time for every request.

use std::time::SystemTime;

use sha1::{Digest, Sha1};

use super::write::escape;
use crate::Secret;
use crate::encode::base64;

const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PROFILE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0";
const BASE64_ENCODING: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// A connection's UsernameToken credentials.
#[derive(Debug, Clone)]
pub(crate) struct UsernameToken {
    pub username: Secret,
    pub password: Secret,
    /// `PasswordDigest` rather than `PasswordText`.
    pub digest: bool,
}

impl UsernameToken {
    /// Reads the `ws_security` connection value: `PasswordText` or `PasswordDigest` (any
    /// case); `None` for anything else.
    pub(crate) fn kind(value: &str) -> Option<bool> {
        match value.trim().to_ascii_lowercase().as_str() {
            "passwordtext" | "text" => Some(false),
            "passworddigest" | "digest" => Some(true),
            _ => None,
        }
    }

    /// Writes the `wsse:Security` header element.
    pub(crate) fn write(&self, out: &mut String) {
        let mut nonce = [0_u8; 16];
        if getrandom::fill(&mut nonce).is_err() {
            nonce = fastrand::u128(..).to_le_bytes();
        }
        let created = crate::telemetry::rfc3339(SystemTime::now());
        self.write_with(out, &nonce, &created);
    }

    fn write_with(&self, out: &mut String, nonce: &[u8], created: &str) {
        out.push_str("<wsse:Security xmlns:wsse=\"");
        out.push_str(WSSE_NS);
        out.push_str("\" xmlns:wsu=\"");
        out.push_str(WSU_NS);
        out.push_str("\" soap:mustUnderstand=\"1\"><wsse:UsernameToken><wsse:Username>");
        escape(out, self.username.expose(), false);
        out.push_str("</wsse:Username><wsse:Password Type=\"");
        out.push_str(PROFILE);
        if self.digest {
            out.push_str("#PasswordDigest\">");
            let mut sha = Sha1::new();
            sha.update(nonce);
            sha.update(created.as_bytes());
            sha.update(self.password.expose().as_bytes());
            out.push_str(&base64(&sha.finalize()));
        } else {
            out.push_str("#PasswordText\">");
            escape(out, self.password.expose(), false);
        }
        out.push_str("</wsse:Password><wsse:Nonce EncodingType=\"");
        out.push_str(BASE64_ENCODING);
        out.push_str("\">");
        out.push_str(&base64(nonce));
        out.push_str("</wsse:Nonce><wsu:Created>");
        out.push_str(created);
        out.push_str("</wsu:Created></wsse:UsernameToken></wsse:Security>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_profiles() {
        // The Username Token Profile's formula, checked against Python:
        // base64(sha1(b"0123456789abcdef" + b"2026-01-01T00:00:00.000Z" + b"secret")).
        let token = UsernameToken {
            username: Secret::new("alice".to_owned()),
            password: Secret::new("secret".to_owned()),
            digest: true,
        };
        let mut out = String::new();
        token.write_with(&mut out, b"0123456789abcdef", "2026-01-01T00:00:00.000Z");
        assert!(out.contains("#PasswordDigest\">Jcd++c9gZ/c4zFSpJtkPJ3kxLec=</wsse:Password>"));
        assert!(out.contains("<wsse:Nonce EncodingType="));
        assert!(!out.contains("secret"));
        assert_eq!(UsernameToken::kind("PasswordDigest"), Some(true));
        assert_eq!(UsernameToken::kind("passwordtext"), Some(false));
        assert_eq!(UsernameToken::kind("other"), None);
    }
}
