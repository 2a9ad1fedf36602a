//! End-to-end tests through real gRPC on real PostgreSQL. One binary, so one cluster per run.

mod allocation;
mod auth;
mod codes;
mod fairness;
mod fuzz;
mod health;
mod helpers;
mod idempotency;
mod import;
mod metrics;
mod model;
mod number_pool;
mod requests;
mod tenancy;
mod tls;
mod watch;
