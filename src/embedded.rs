//! The embedded default: a private PostgreSQL cluster under a data directory, started and owned
//! by this process and stopped when it ends. It listens only on a Unix socket in a directory
//! only its owner can enter. As root, PostgreSQL runs as the `postgres` user.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "PostgreSQL is not installed: install it (Debian/Ubuntu: `sudo apt-get install postgresql`; Fedora: `sudo dnf install postgresql-server`; macOS: `brew install postgresql`) or set DATABASE_URL to a server you run";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{INSTALL_HINT}")]
    NotInstalled,
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

fn failed(what: impl Into<String>, detail: impl ToString) -> EmbeddedError {
    EmbeddedError::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// A running private cluster. Dropping it stops PostgreSQL (fast shutdown) and waits for it.
pub struct EmbeddedPostgres {
    child: Option<Child>,
    /// Closing this pipe tells the guard shell to stop PostgreSQL, even if this process dies.
    guard: Option<ChildStdin>,
    socket_dir: PathBuf,
    log: PathBuf,
}

/// The directory holding PostgreSQL's programs: beside `initdb` on PATH, else the newest
/// version under /usr/lib/postgresql (Debian puts them there, off PATH). The benches find
/// `psql` and `pgbench` here too, so they run the same installation as the cluster.
pub fn bin_dir() -> Result<PathBuf, EmbeddedError> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in on_path {
        let initdb = dir.join("initdb");
        if initdb.is_file() {
            let real = fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(parent) = real.parent() {
                return Ok(parent.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or(EmbeddedError::NotInstalled)
}

fn running_as_root() -> bool {
    // The owner of /proc/self is this process's effective user.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command, run as `postgres` when this process is root (PostgreSQL refuses to run as root).
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), EmbeddedError> {
    let out = cmd.output().map_err(|e| failed(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            what,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// As root, lets the `postgres` user reach `dir`: owns it, and may traverse its ancestors.
fn hand_to_postgres(dir: &Path) -> Result<(), EmbeddedError> {
    run(
        {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir);
            c
        },
        "cannot give the data directory to the postgres user",
    )?;
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        if let Ok(meta) = fs::metadata(a) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                tracing::warn!(dir = %a.display(), "letting the postgres user traverse this directory (o+x) to reach its data directory");
                let _ = fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o001));
            }
        }
        ancestor = a.parent();
    }
    Ok(())
}

impl EmbeddedPostgres {
    /// Starts (creating on first use) the cluster under `data_dir`, with extra server settings
    /// such as `fsync=off` for tests. Blocks until it accepts connections.
    pub fn start(data_dir: &Path, settings: &[(&str, &str)]) -> Result<Self, EmbeddedError> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root();
        if as_postgres {
            run(
                {
                    let mut c = Command::new("id");
                    c.arg("postgres");
                    c
                },
                "running as root needs a `postgres` user to run PostgreSQL (it is created by the postgresql package)",
            )?;
        }
        let pgdata = data_dir.join("pg");
        let socket_dir = data_dir.join("run");
        for d in [&pgdata, &socket_dir] {
            fs::create_dir_all(d)
                .map_err(|e| failed(format!("cannot create {}", d.display()), e))?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                .map_err(|e| failed(format!("cannot restrict {}", d.display()), e))?;
        }
        if as_postgres {
            hand_to_postgres(data_dir)?;
        }
        if !pgdata.join("PG_VERSION").exists() {
            tracing::info!(dir = %pgdata.display(), "creating the private PostgreSQL cluster");
            let mut c = command(&bin.join("initdb"), as_postgres);
            c.arg("-D").arg(&pgdata).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]);
            run(c, "initdb failed")?;
        }
        let log = data_dir.join("postgres.log");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| failed("cannot open the PostgreSQL log", e))?;
        let mut pg = vec![
            bin.join("postgres").display().to_string(),
            "-D".into(),
            pgdata.display().to_string(),
            "-k".into(),
            socket_dir.display().to_string(),
            "-c".into(),
            "listen_addresses=".into(),
        ];
        for (k, v) in settings {
            pg.push("-c".into());
            pg.push(format!("{k}={v}"));
        }
        // The guard shell: PostgreSQL runs in the background; when our end of stdin closes
        // (we stop, or we die), the shell asks PostgreSQL for a fast shutdown and waits.
        let script = r#""$@" & pg=$!; trap 'kill -INT $pg' TERM INT; read -r _; kill -INT $pg 2>/dev/null; wait $pg"#;
        let mut c = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", script, "sh"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script, "sh"]);
            c
        };
        c.args(&pg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file);
        let mut child = c
            .spawn()
            .map_err(|e| failed("cannot start PostgreSQL", e))?;
        let guard = child.stdin.take();
        let mut me = Self {
            child: Some(child),
            guard,
            socket_dir,
            log,
        };
        me.wait_ready(&pgdata)?;
        Ok(me)
    }

    fn wait_ready(&mut self, pgdata: &Path) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // postmaster.pid's eighth line says `ready` once connections are accepted.
            let ready = fs::read_to_string(pgdata.join("postmaster.pid"))
                .map(|s| s.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return Err(failed(
                    "PostgreSQL stopped while starting",
                    format!("see {}", self.log.display()),
                ));
            }
            if Instant::now() > deadline {
                return Err(failed(
                    "PostgreSQL did not start within 60 s",
                    format!("see {}", self.log.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Connection settings for one database of the cluster.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket_dir)
            .user("postgres")
            .dbname(dbname);
        c
    }

    /// A libpq connection string for the same database (for psql, pgbench, logs).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql:///{dbname}?host={}&user=postgres",
            self.socket_dir.display()
        )
    }

    /// Stops PostgreSQL and waits until it is down.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.write_all(b"stop\n");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The default data directory: `$XDG_DATA_HOME/numbering`, else `~/.local/share/numbering`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("numbering");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/numbering")
}
