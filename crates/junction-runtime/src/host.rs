//! Host names as the gateway accepts them from clients: in `Host`, and so in the links it
//! builds from it.

/// Whether `value` is `host[:port]`: a name of letters, digits, `-`, `.` and `_`, an IPv4
/// address, or an IPv6 address in brackets, then optionally a port. Anything else (quotes,
/// `<`, `@`, `/`, spaces, `%`-escapes) could change the meaning of a URL built from it.
pub fn valid_host(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let valid_port =
        |port: &str| !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok();
    if let Some(rest) = value.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        return address.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port));
    }
    let (name, port) = match value.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (value, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && port.is_none_or(valid_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses_with_a_port() {
        for good in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:9090",
            "a_b.local",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a\"b<c>",
            "a b",
            "user@host",
            "host:",
            "host:99999",
            "host:1:2",
            "[::1",
            "[nothost]:1",
            "host/path",
            "ho%73t",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
