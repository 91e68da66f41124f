//! Traffic controls of the gateway: the response cache's stores and rules, rate limits,
//! circuit breakers, concurrency limits and retries, and the Redis link they share.
//!
//! Each control is a value the pipeline consults at its stage (`junction-runtime`): the
//! cache stage keys, looks up and stores through [`cache::ResponseCache`]; the rate-limit
//! stage counts through a [`ratelimit::Limit`]; the upstream exchange passes a backend's
//! [`resilience`] guards. Each has two backends: in this process (the default) and on Redis
//! (shared by replicas), behind one trait.

pub mod cache;
pub mod ratelimit;
pub mod redis_link;
pub mod resilience;
pub mod status;

/// A boxed error, as the HTTP stack passes them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
