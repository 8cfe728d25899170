//! The assessment engines: pure functions over data streamed from the integration services.
//! No I/O here, so they are unit-tested directly and benchmarked on in-memory columns.

pub mod alignment;
pub mod anomaly;
pub mod drift;
pub mod forecast;
pub mod funding;
pub mod replenish;
pub mod stockout;
pub mod uplift;
