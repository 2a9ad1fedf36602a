//! End-to-end tests through real gRPC on real PostgreSQL. One binary, so one cluster per run.

mod allocation;
mod auth;
mod cli;
mod codes;
mod fairness;
mod faults;
mod fuzz;
mod health;
mod helpers;
mod idempotency;
mod import;
mod jwks;
mod metrics;
mod model;
mod number_pool;
mod observe;
mod otlp;
mod pg_tls;
mod requests;
mod schema;
mod seeds;
mod tenancy;
mod tls;
mod watch;
