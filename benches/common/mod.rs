//! What every benchmark needs: a private PostgreSQL cluster with a `bench` database, the
//! PostgreSQL programs that go with it, accounts and numbers in bulk, the real server binary, and
//! the sums of a report. Shared by the bench targets with `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use numbering::domain::account::child_path;
use numbering::embedded::EmbeddedPostgres;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A private cluster in a fresh directory, with an empty database `bench`.
pub struct Cluster {
    pub pg: EmbeddedPostgres,
    pub dir: PathBuf,
    /// A connection to `bench`.
    pub sql: tokio_postgres::Client,
}

impl Cluster {
    /// Starts a cluster with these server settings under a directory named after the bench.
    pub async fn start(name: &str, settings: &[(&str, &str)]) -> Result<Self, BoxError> {
        let dir =
            std::env::temp_dir().join(format!("numbering-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pg = {
            let (dir, settings) = (dir.clone(), owned(settings));
            tokio::task::spawn_blocking(move || {
                let settings: Vec<(&str, &str)> = settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                EmbeddedPostgres::start(&dir, &settings)
            })
            .await??
        };
        connect(&pg, "postgres")
            .await?
            .batch_execute("CREATE DATABASE bench")
            .await?;
        let sql = connect(&pg, "bench").await?;
        Ok(Self { pg, dir, sql })
    }

    pub fn stop(mut self) {
        self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn connect(
    pg: &EmbeddedPostgres,
    dbname: &str,
) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = pg.config(dbname).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn pg_config(arg: &str) -> Option<PathBuf> {
    let out = Command::new("pg_config").arg(arg).output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.is_dir()).then_some(dir)
}

/// A PostgreSQL program (`psql`, `pgbench`) of the same installation as the cluster's server.
pub fn pg_program(name: &str) -> PathBuf {
    numbering::embedded::bin_dir()
        .ok()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether the installation has the pg_stat_statements module, to preload in the cluster.
pub fn has_pg_stat_statements() -> bool {
    let beside = numbering::embedded::bin_dir()
        .ok()
        .and_then(|b| b.parent().map(|p| p.join("lib")));
    [beside, pg_config("--pkglibdir")]
        .into_iter()
        .flatten()
        .any(|lib| lib.join("pg_stat_statements.so").is_file())
}

/// Creates an account through the API: a provider, or a child of `parent`.
pub async fn create_account(
    c: &mut Clients,
    parent: Option<&pb::Account>,
    name: &str,
) -> Result<pb::Account, BoxError> {
    let request = pb::CreateAccountRequest {
        account: Some(pb::Account {
            parent_id: parent.map(|p| p.id.clone()).unwrap_or_default(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(c.tenancy.create_account(request).await?.into_inner())
}

/// Puts `count` AVAILABLE numbers in the provider's pool, +1 (2000000000 + `from`) upwards, a
/// million per statement. Straight into the table: the API would take minutes for what a
/// benchmark only needs to exist. Laid out as ImportNumbers lays out a file in E.164 order:
/// ids in increasing order, and one pick per run of 1,000 rows (spread by the golden ratio
/// where the import draws them at random).
pub async fn seed_numbers(
    sql: &tokio_postgres::Client,
    provider: &pb::Account,
    from: i64,
    count: i64,
) -> Result<(), BoxError> {
    let id = Uuid::parse_str(&provider.id)?;
    let path = child_path("", id);
    let mut done = 0;
    while done < count {
        let n = (count - done).min(1_000_000);
        sql.execute(
            "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, pick)
             SELECT ('00000001-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, $1,
                    '+1' || (2000000000 + g)::text, $1, $2, 'available', r - floor(r)
             FROM generate_series($3::bigint, $4::bigint) g,
                  LATERAL (SELECT (g / 1000) * 0.6180339887498949::float8 AS r) run",
            &[&id, &path, &(from + done), &(from + done + n - 1)],
        )
        .await?;
        done += n;
    }
    sql.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// The cluster and the release server binary on it, with authentication off (loopback).
pub struct Bench {
    pub cluster: Cluster,
    pub server: Server,
    pub endpoint: String,
}

/// The server's process, killed when dropped: a bench that fails half-way leaves no server
/// behind.
pub struct Server(Child);

impl Server {
    /// Starts `command` as a process killed when the bench ends.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.spawn().map(Self)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a cluster with `settings` and the server binary on it; waits until it has migrated.
pub async fn start(name: &str, settings: &[(&str, &str)]) -> Result<Bench, BoxError> {
    let cluster = Cluster::start(name, settings).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!(
        "host={} user=postgres dbname=bench",
        cluster.dir.join("run").display()
    );
    let server = Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env("NUMBERING_LOG", "warn")
        .env("NUMBERING_DB_MAX_CONNECTIONS", "40")
        .spawn()
        .map(Server)?;
    let bench = Bench {
        cluster,
        server,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    // Wait until it is SERVING: migrated, and its database found ready (calls before that are
    // answered UNAVAILABLE).
    for _ in 0..600 {
        if bench.serving().await {
            return Ok(bench);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the server did not start".into())
}

impl Bench {
    /// Whether the server's health service answers SERVING.
    async fn serving(&self) -> bool {
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(self.endpoint.clone()) else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    }

    pub async fn clients(&self) -> Result<Clients, BoxError> {
        Ok(numbering_client::connect(self.endpoint.clone(), None).await?)
    }

    /// The server's resident memory now and at its peak, in MiB.
    pub fn server_memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn stop(self) {
        drop(self.server);
        self.cluster.stop();
    }
}

/// Environment variable as a number (`1_000_000` reads too), with a default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile of sorted samples (the default when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Whether the bench was asked for a short run (`-- --quick` or BENCH_QUICK=1).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick") || env_u64("BENCH_QUICK", 0) == 1
}

/// The full-size value, or the small one in a quick run.
pub fn sized(full: u64, small: u64) -> u64 {
    if quick() { small } else { full }
}

/// Where the figures were taken: the date, the cores and CPU model, the cluster's PostgreSQL.
pub async fn machine(sql: &tokio_postgres::Client) -> Result<String, BoxError> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version: String = sql
        .query_one("SELECT current_setting('server_version')", &[])
        .await?
        .get(0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(format!(
        "{date}; {cores} cores, {model}; PostgreSQL {version}"
    ))
}

/// Latencies of calls, in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, elapsed: Duration) {
        self.0
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile in milliseconds.
    pub fn ms(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        f64::from(percentile(&self.0, p)) / 1000.0
    }
}

/// What one pgbench run did.
pub struct PgbenchRun {
    pub tps: f64,
    pub transactions: u64,
    pub latency_ms: f64,
}

/// Runs pgbench with `script` (prepared statements, two threads, no vacuum), `clients` clients
/// for `seconds`, each `-D` variable defined.
pub fn pgbench(
    url: &str,
    script: &std::path::Path,
    clients: u64,
    seconds: u64,
    variables: &[(&str, String)],
) -> Result<PgbenchRun, BoxError> {
    let mut command = Command::new(pg_program("pgbench"));
    command
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(script);
    for (name, value) in variables {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let out = command.arg(url).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    match (
        field("tps ="),
        field("number of transactions actually processed:"),
        field("latency average ="),
    ) {
        (Some(tps), Some(transactions), Some(latency_ms)) if out.status.success() => {
            Ok(PgbenchRun {
                tps,
                transactions: transactions as u64,
                latency_ms,
            })
        }
        _ => Err(format!(
            "pgbench failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into()),
    }
}

/// Runs `\copy table (columns) FROM file` with psql, as an operator would; answers its time.
pub fn psql_copy(url: &str, target: &str, file: &std::path::Path) -> Result<Duration, BoxError> {
    let started = std::time::Instant::now();
    let out = Command::new(pg_program("psql"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c"])
        .arg(format!("\\copy {target} FROM '{}'", file.display()))
        .output()?;
    if !out.status.success() {
        return Err(format!("\\copy {target}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(started.elapsed())
}

/// Sends `data` (text COPY format) to `COPY ... FROM STDIN`; answers the rows copied.
pub async fn copy_in(
    sql: &tokio_postgres::Client,
    statement: &str,
    data: String,
) -> Result<u64, BoxError> {
    use futures::SinkExt;
    let sink = sql.copy_in::<_, bytes::Bytes>(statement).await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(data)).await?;
    Ok(sink.finish().await?)
}

/// Imports `csv` through ImportNumbers (best effort) into `owner`'s pool; answers the result
/// and the time from the first message to the result.
pub async fn import_csv(
    c: &mut Clients,
    owner: &pb::Account,
    csv: &str,
) -> Result<(pb::ImportResult, Duration), BoxError> {
    use pb::import_numbers_request::Part;
    let messages: Vec<pb::ImportNumbersRequest> = std::iter::once(pb::ImportNumbersRequest {
        part: Some(Part::Options(pb::ImportOptions {
            owner_id: owner.id.clone(),
            mode: pb::ImportMode::BestEffort as i32,
            ..Default::default()
        })),
    })
    .chain(
        csv.as_bytes()
            .chunks(1 << 20)
            .map(|c| pb::ImportNumbersRequest {
                part: Some(Part::Chunk(c.to_vec())),
            }),
    )
    .collect();
    let started = std::time::Instant::now();
    let mut answers = c
        .number_pool
        .import_numbers(futures::stream::iter(messages))
        .await?
        .into_inner();
    let mut result = None;
    while let Some(a) = answers.message().await? {
        if let Some(pb::import_numbers_response::Part::Result(r)) = a.part {
            result = Some(r);
        }
    }
    let elapsed = started.elapsed();
    Ok((result.ok_or("the import answered no result")?, elapsed))
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A page of 100 of the owner's numbers whose E.164 starts with `prefix`, through ListNumbers.
pub async fn list_page(
    c: &mut Clients,
    owner_id: &str,
    prefix: &str,
) -> Result<pb::ListNumbersResponse, BoxError> {
    Ok(c.number_pool
        .list_numbers(pb::ListNumbersRequest {
            filter: Some(pb::NumberFilter {
                owner_id: owner_id.into(),
                prefix: prefix.into(),
                ..Default::default()
            }),
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner())
}

/// The bare query that [`list_page`] amounts to: all columns, 101 rows (the 101st tells whether
/// there is a next page), in E.164 order (unique among live numbers). Parameters: the owner, the prefix, and the prefix followed by `:`.
pub async fn prepare_bare_page(
    sql: &tokio_postgres::Client,
) -> Result<tokio_postgres::Statement, BoxError> {
    Ok(sql
        .prepare(&format!(
            "SELECT {} FROM numbers WHERE provider_id = $1 AND status <> 'deleted' AND e164 >= $2 AND e164 < $3 ORDER BY e164 LIMIT 101",
            numbering::store::numbers::COLUMNS
        ))
        .await?)
}

/// The bare query of GetAccount: one account by id, all columns. Parameter: the id.
pub async fn prepare_bare_account(
    sql: &tokio_postgres::Client,
) -> Result<tokio_postgres::Statement, BoxError> {
    Ok(sql
        .prepare(&format!(
            "SELECT {} FROM accounts WHERE id = $1 AND delete_time IS NULL",
            numbering::store::accounts::COLUMNS
        ))
        .await?)
}
