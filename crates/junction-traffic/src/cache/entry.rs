//! One cached response: status, headers and body, when it was stored and how long it may be
//! served fresh or stale; and its byte encoding for Redis.
//!
//! Times are wall-clock milliseconds since the Unix epoch, so an entry written by one
//! replica ages the same on another. The encoding is versioned and decoded defensively:
//! a value that is not ours (or was cut short) reads as a miss, never as a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Where a request with a policy plan was sent: what its response side needs to read the
/// backend's next links (relative ones resolve against `url`; they must stay below
/// `base`). It travels with the answer, through the cache too. The URL is kept without its
/// query, which may carry credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentTo {
    pub url: String,
    pub base: String,
}

impl SentTo {
    pub fn new(url: &str, base: &str) -> Self {
        SentTo {
            url: url.split_once('?').map_or(url, |(path, _)| path).to_owned(),
            base: base.to_owned(),
        }
    }
}

/// A response as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: StatusCode,
    /// Without hop-by-hop headers, `Age` and `Set-Cookie`.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the response was produced, ms since the epoch (the store time minus the
    /// `Age` the backend reported).
    pub stored_at: u64,
    /// How long after `stored_at` it is fresh.
    pub fresh_for: Duration,
    /// How long after turning stale it may still be served while a refresh runs.
    pub stale_while_revalidate: Duration,
    /// How long after turning stale it may still be served when the backend fails.
    pub stale_if_error: Duration,
    /// Where the request went, for an operation whose response policies run on the entry
    /// for each request that it answers (they resolve next links against it).
    pub sent_to: Option<SentTo>,
}

/// What an entry may be used for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Stale, within stale-while-revalidate (and so usable on error too when the
    /// stale-if-error window is at least as long).
    Revalidate,
    /// Stale, only usable when the backend fails.
    OnErrorOnly,
    Expired,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl CachedResponse {
    /// The entry's age at `now` (ms since the epoch).
    pub fn age(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.stored_at))
    }

    /// Whole seconds of age, for the `Age` header.
    pub fn age_secs(&self, now: u64) -> u64 {
        self.age(now).as_secs()
    }

    pub fn freshness(&self, now: u64) -> Freshness {
        let age = self.age(now);
        if age < self.fresh_for {
            return Freshness::Fresh;
        }
        let stale = age - self.fresh_for;
        if stale < self.stale_while_revalidate {
            Freshness::Revalidate
        } else if stale < self.stale_if_error {
            Freshness::OnErrorOnly
        } else {
            Freshness::Expired
        }
    }

    /// Whether the entry may stand in for a failed backend call at `now`.
    pub fn usable_on_error(&self, now: u64) -> bool {
        let age = self.age(now);
        age < self.fresh_for
            || age.saturating_sub(self.fresh_for)
                < self.stale_if_error.max(self.stale_while_revalidate)
    }

    /// How long a store keeps the entry from `now`: until neither window can use it.
    pub fn keep_for(&self, now: u64) -> Duration {
        let lifetime = self.fresh_for + self.stale_while_revalidate.max(self.stale_if_error);
        (Duration::from_millis(self.stored_at) + lifetime)
            .saturating_sub(Duration::from_millis(now))
    }

    /// Bytes the entry takes, roughly: body plus headers plus a fixed overhead.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 8)
            .sum();
        (self.body.len() + headers + 64) as u64
    }

    /// The entry as bytes, for Redis.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.status.as_u16().to_be_bytes());
        for value in [
            self.stored_at,
            ms(self.fresh_for),
            ms(self.stale_while_revalidate),
            ms(self.stale_if_error),
        ] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        match &self.sent_to {
            None => out.push(0),
            Some(sent) => {
                out.push(1);
                for text in [&sent.url, &sent.base] {
                    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        let count = u16::try_from(self.headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (name, value) in self.headers.iter().take(usize::from(count)) {
            let name = name.as_str().as_bytes();
            out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(name.get(..usize::from(u16::MAX)).unwrap_or(name));
            let value = value.as_bytes();
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads [`encode`](Self::encode)'s bytes; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<CachedResponse> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let status = StatusCode::from_u16(u16::from_be_bytes(reader.array()?)).ok()?;
        let stored_at = u64::from_be_bytes(reader.array()?);
        let fresh_for = Duration::from_millis(u64::from_be_bytes(reader.array()?));
        let stale_while_revalidate = Duration::from_millis(u64::from_be_bytes(reader.array()?));
        let stale_if_error = Duration::from_millis(u64::from_be_bytes(reader.array()?));
        let sent_to = match reader.array::<1>()? {
            [0] => None,
            [1] => Some(SentTo {
                url: reader.text()?,
                base: reader.text()?,
            }),
            _ => return None,
        };
        let count = u16::from_be_bytes(reader.array()?);
        let mut headers = HeaderMap::with_capacity(usize::from(count));
        for _ in 0..count {
            let name_len = u16::from_be_bytes(reader.array()?);
            let name = HeaderName::from_bytes(reader.take(usize::from(name_len))?).ok()?;
            let value_len = u32::from_be_bytes(reader.array()?);
            let value =
                HeaderValue::from_bytes(reader.take(usize::try_from(value_len).ok()?)?).ok()?;
            headers.append(name, value);
        }
        Some(CachedResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(reader.0),
            stored_at,
            fresh_for,
            stale_while_revalidate,
            stale_if_error,
            sent_to,
        })
    }
}

/// Marks (and versions) an encoded entry.
const MAGIC: &[u8] = b"JNC2";

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn text(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.array()?);
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn sample(stored_at: u64) -> CachedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        CachedResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"{\"id\":42}"),
            stored_at,
            fresh_for: Duration::from_secs(10),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(60),
            sent_to: None,
        }
    }

    #[test]
    fn encodes_and_decodes() {
        let entry = sample(1_700_000_000_000);
        let decoded = CachedResponse::decode(&entry.encode()).unwrap();
        assert_eq!(decoded, entry);
        let all: Vec<_> = decoded.headers.get_all("x-many").iter().collect();
        assert_eq!(all, ["1", "2"]);
    }

    #[test]
    fn where_the_request_went_is_kept() {
        let entry = CachedResponse {
            sent_to: Some(SentTo {
                url: "https://api.example.com/v1/items".into(),
                base: "https://api.example.com/v1".into(),
            }),
            ..sample(5)
        };
        assert_eq!(CachedResponse::decode(&entry.encode()).unwrap(), entry);
    }

    #[test]
    fn garbage_and_truncated_values_decode_to_nothing() {
        let bytes = sample(1).encode();
        for cut in 0..bytes.len() - sample(1).body.len() {
            assert!(
                CachedResponse::decode(&bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        assert!(CachedResponse::decode(b"not ours").is_none());
        let mut bad_status = bytes.clone();
        bad_status[4] = 0;
        bad_status[5] = 7;
        assert!(CachedResponse::decode(&bad_status).is_none());
    }

    #[test]
    fn freshness_windows() {
        let entry = sample(1_000_000);
        let at = |secs: u64| 1_000_000 + secs * 1000;
        assert_eq!(entry.freshness(at(0)), Freshness::Fresh);
        assert_eq!(entry.freshness(at(9)), Freshness::Fresh);
        assert_eq!(entry.freshness(at(10)), Freshness::Revalidate);
        assert_eq!(entry.freshness(at(14)), Freshness::Revalidate);
        assert_eq!(entry.freshness(at(15)), Freshness::OnErrorOnly);
        assert_eq!(entry.freshness(at(69)), Freshness::OnErrorOnly);
        assert_eq!(entry.freshness(at(70)), Freshness::Expired);
        assert!(entry.usable_on_error(at(69)));
        assert!(!entry.usable_on_error(at(70)));
        assert_eq!(entry.keep_for(at(0)), Duration::from_secs(70));
        assert_eq!(entry.keep_for(at(80)), Duration::ZERO);
        assert_eq!(entry.age_secs(at(3)), 3);
        // A clock that went backwards gives age zero, not a panic.
        assert_eq!(entry.age(0), Duration::ZERO);
    }
}
