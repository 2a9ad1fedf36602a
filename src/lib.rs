//! numbering: the inventory of telephone numbers for platforms with nested accounts, over gRPC.
//! Three services (Tenancy, NumberPool, Allocation) share one domain and one PostgreSQL store.

pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod flows;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod niceness;
pub mod observe;
pub mod paging;
pub mod server;
pub mod startup;
pub mod store;
pub mod sweeper;
pub mod telemetry;

pub use startup::{BoxError, run};
