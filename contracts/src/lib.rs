//! The data contracts of the promotion worker, generated from `proto/`.
//!
//! - [`promo::v1`]: the workflow's public messages — the spec a planner submits, approval
//!   decisions, status, assessment summary and post-event report. These are the Temporal payloads
//!   (proto3 JSON), so the Web UI and the `temporal` CLI show and accept readable JSON.
//! - [`retail::v1`]: the integration services the activities call (product master, locations,
//!   inventory positions, demand, supplier funding, ERP prices, replenishment, channel publication,
//!   sales) plus the reference server's admin service. A retailer implements these against its own
//!   ERP/WMS/POS; `promo-systems` implements them over SQLite.
//! - [`money`]: money is a decimal string on the wire and [`rust_decimal::Decimal`] in code;
//!   conversions refuse malformed values with an error naming the field.
//! - [`domain`]: validated domain types converted from the wire types with `TryFrom`.

pub mod domain;
pub mod money;

/// Well-known protobuf types with proto3-JSON serde (used by the generated code).
pub use pbjson_types;

/// Generated code: one module per proto package.
#[allow(missing_docs, unreachable_pub, clippy::all)]
mod generated {
    pub mod retail {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/retail.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/retail.v1.serde.rs"));
        }
    }
    pub mod promo {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/promo.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/promo.v1.serde.rs"));
        }
    }
}

pub use generated::{promo, retail};

/// The encoded `FileDescriptorSet` of every contract (for reflection and tooling).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
