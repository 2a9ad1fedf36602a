//! End-to-end tests through real gRPC on real PostgreSQL. One binary, so one cluster per run.

mod allocation;
mod auth;
mod cli;
mod health;
mod helpers;
mod import;
mod metrics;
mod number_pool;
mod requests;
mod tenancy;
mod tls;
