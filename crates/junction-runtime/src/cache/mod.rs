//! The cache stage of the pipeline ([`stage`]), over the response cache of
//! `junction-traffic` (its stores, keys, rules and entries, re-exported here).

pub use junction_traffic::cache::*;
pub(crate) mod stage;
