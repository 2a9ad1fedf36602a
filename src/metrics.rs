//! Prometheus metrics on their own HTTP port, every one with HELP and TYPE lines: per-method
//! calls started, handled (by canonical gRPC code) and in flight, and their latency, recorded by
//! [`ObserveLayer`](crate::observe::ObserveLayer); the database pool; the process (from
//! `/proc`); the database: transactions by method and outcome, the wait for a pooled connection,
//! errors by SQLSTATE class; and the business: import rows, sweeps, limit refusals.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The latency buckets, in seconds: a millisecond to ten seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The pool-wait buckets, in seconds: a pooled connection is usually there at once (tens of
/// microseconds); a wait of a second or more is a pool too small for its load.
pub const POOL_WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Starts the exporter's HTTP listener (`GET /metrics`) and installs the global recorder.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(Matcher::Full(POOL_WAIT.into()), POOL_WAIT_BUCKETS)
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {listen}: {e}"))?;
    describe();
    record_process();
    Ok(())
}

/// The HELP (and unit) of every metric the service records.
fn describe() {
    describe_counter!(
        "grpc_server_started_total",
        "gRPC calls started, by method."
    );
    describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls finished, by method and canonical code (OK, INVALID_ARGUMENT, ...)."
    );
    describe_gauge!(
        "grpc_server_in_flight",
        "gRPC calls running now (streams until their end), by method."
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Time from a call's start to its last message, by method."
    );
    describe_gauge!(
        "db_pool_connections",
        "Database connections open in the pool (idle and in use)."
    );
    describe_gauge!(
        "db_pool_max_connections",
        "The most database connections the pool opens."
    );
    describe_gauge!(
        "db_pool_available",
        "Idle database connections in the pool."
    );
    describe_gauge!(
        "db_pool_waiting",
        "Calls waiting for a database connection."
    );
    describe_histogram!(
        TRANSACTION,
        Unit::Seconds,
        "Database transactions, from the first statement to the commit or rollback, by method \
         (the RPC, or Sweep) and outcome: commit, rollback (validate only), replay (a retried \
         request id answered from its stored answer), error."
    );
    describe_histogram!(
        POOL_WAIT,
        Unit::Seconds,
        "Time spent waiting for a pooled database connection (given or refused)."
    );
    describe_counter!(
        DB_ERRORS,
        "Errors the database or its connections answered, by SQLSTATE class (23: integrity, \
         40: serialization or deadlock, 57: cancelled by a deadline or an operator, 08: \
         connection...; connection: lost without a SQLSTATE; client: a value this side could \
         not encode or decode)."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the process."
    );
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "CPU time of the process, user and system."
    );
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!(
        "process_max_fds",
        "The most file descriptors the process may open."
    );
    describe_gauge!("process_threads", "Threads of the process.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "When the process started, in seconds since the Unix epoch."
    );
    describe_counter!(
        "numbering_import_rows_total",
        "CSV rows of ImportNumbers calls, by outcome: read, imported, rejected."
    );
    describe_counter!(
        "numbering_sweeper_runs_total",
        "Rounds of the sweeper (expired reservations, finished aging), by result: ok, error."
    );
    describe_counter!(
        "numbering_swept_numbers_total",
        "Numbers the sweeper returned to AVAILABLE."
    );
    describe_counter!(
        "numbering_limit_refusals_total",
        "Calls refused with RESOURCE_EXHAUSTED because a limit was reached, by limit name."
    );
}

/// The label every path outside the served methods shares: a caller cannot add series (and
/// memory) by calling paths that do not exist.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The paths (`/package.Service/Method`) of every method in the encoded descriptor sets.
pub fn methods(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut paths = HashSet::new();
    for bytes in descriptor_sets {
        let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(*bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
}

/// The pool's size and idle connections, sampled with each health check.
pub fn record_pool(status: deadpool_postgres::Status) {
    metrics::gauge!("db_pool_connections").set(status.size as f64);
    metrics::gauge!("db_pool_max_connections").set(status.max_size as f64);
    metrics::gauge!("db_pool_available").set(status.available as f64);
    metrics::gauge!("db_pool_waiting").set(status.waiting as f64);
}

/// The rows of one import: read, imported and rejected.
pub fn record_import(read: i64, imported: i64, rejected: i64) {
    for (outcome, n) in [
        ("read", read),
        ("imported", imported),
        ("rejected", rejected),
    ] {
        metrics::counter!("numbering_import_rows_total", "outcome" => outcome)
            .increment(n.max(0) as u64);
    }
}

const TRANSACTION: &str = "db_transaction_seconds";
const POOL_WAIT: &str = "db_pool_wait_seconds";
const DB_ERRORS: &str = "db_errors_total";

/// Handles of labelled series, made the first time a label set is seen: recording again finds
/// the handle under a read lock and allocates nothing (a label set built per call would).
struct Series<H>(OnceLock<RwLock<HashMap<[&'static str; 2], H>>>);

impl<H: Clone> Series<H> {
    const fn new() -> Self {
        Self(OnceLock::new())
    }

    fn get(&self, labels: [&'static str; 2], make: impl FnOnce() -> H) -> H {
        let map = self.0.get_or_init(Default::default);
        if let Some(h) = map.read().ok().and_then(|m| m.get(&labels).cloned()) {
            return h;
        }
        let mut map = map.write().unwrap_or_else(|e| e.into_inner());
        map.entry(labels).or_insert_with(make).clone()
    }
}

static TRANSACTIONS: Series<Histogram> = Series::new();
static ERRORS: Series<Counter> = Series::new();

/// One database transaction being timed: recorded when dropped, as an `error` unless
/// [`Transaction::end`] named another outcome, so every early return is counted.
pub struct Transaction {
    method: &'static str,
    outcome: &'static str,
    start: Instant,
}

impl Transaction {
    pub fn start(method: &'static str) -> Self {
        Self {
            method,
            outcome: "error",
            start: Instant::now(),
        }
    }

    /// How the transaction ended: `commit`, `rollback` or `replay`.
    pub fn end(&mut self, outcome: &'static str) {
        self.outcome = outcome;
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let (method, outcome) = (self.method, self.outcome);
        TRANSACTIONS
            .get(
                [method, outcome],
                || metrics::histogram!(TRANSACTION, "method" => method, "outcome" => outcome),
            )
            .record(self.start.elapsed());
    }
}

/// A wait for a pooled connection: recorded when dropped, whether one came or not.
pub struct PoolWait(Instant);

impl PoolWait {
    pub fn start() -> Self {
        Self(Instant::now())
    }
}

impl Drop for PoolWait {
    fn drop(&mut self) {
        metrics::histogram!(POOL_WAIT).record(self.0.elapsed());
    }
}

/// An error the database answered, by its SQLSTATE class (or `connection` / `client`).
pub fn record_db_error(class: &'static str) {
    ERRORS
        .get(
            [class, ""],
            || metrics::counter!(DB_ERRORS, "class" => class),
        )
        .increment(1);
}

/// One round of the sweeper and the numbers it freed (`None`: it failed).
pub fn record_sweep(swept: Option<usize>) {
    let result = if swept.is_some() { "ok" } else { "error" };
    metrics::counter!("numbering_sweeper_runs_total", "result" => result).increment(1);
    metrics::counter!("numbering_swept_numbers_total").increment(swept.unwrap_or(0) as u64);
}

/// A call refused because the limit `name` was reached.
pub fn record_limit_refusal(name: &'static str) {
    metrics::counter!("numbering_limit_refusals_total", "limit" => name).increment(1);
}

/// The process's memory, CPU time, file descriptors and threads, read from `/proc/self` (on
/// other systems, nothing). Sampled with each health check.
pub fn record_process() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf reads configuration values; it has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // Numbered as in proc(5) from 3 (state), which is fields[0].
    if let (Some(utime), Some(stime)) = (field(11), field(12))
        && ticks > 0.0
    {
        metrics::counter!("process_cpu_seconds_total").absolute(((utime + stime) / ticks) as u64);
    }
    if let Some(threads) = field(17) {
        metrics::gauge!("process_threads").set(threads);
    }
    if let Some(rss) = field(21) {
        metrics::gauge!("process_resident_memory_bytes").set(rss * page);
    }
    if let (Some(start), Some(boot)) = (field(19), boot_time())
        && ticks > 0.0
    {
        metrics::gauge!("process_start_time_seconds").set(boot + start / ticks);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        metrics::gauge!("process_max_fds").set(limit.rlim_cur as f64);
    }
}

/// When the machine booted, in seconds since the Unix epoch (`btime` in /proc/stat).
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
