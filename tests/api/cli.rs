//! The operator command line, driven as a person would: the real binary serves a fresh database,
//! and the same binary runs each command as a subprocess (`numbering <group> <command>`).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{As, BinaryServer, SECRET, spawn_binary, token};

/// Runs `numbering args...` against `server` with `token`; stdin closed, stderr not a terminal.
fn numbering(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(args)
        .env("NUMBERING_SERVER", server)
        .env("NUMBERING_TOKEN", token)
        .env_remove("NUMBERING_OUTPUT")
        .env_remove("NUMBERING_JWT_HS256_SECRET")
        .env_remove("NUMBERING_JWT_ISSUER")
        .output()
        .expect("run the binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks the exit code; answers stdout.
fn exits(out: Output, code: i32) -> Output {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// The JSON a command printed with `--output json`, after checking it succeeded.
fn json(out: Output) -> Value {
    let out = exits(out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The server, killed when the test ends, even by a failed assertion.
struct Running(BinaryServer);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.process.kill();
        let _ = self.0.process.wait();
    }
}

async fn serve() -> Running {
    Running(spawn_binary(&[]).await)
}

/// The command line as the platform.
struct Operator {
    server: String,
    token: String,
}

impl Operator {
    fn new(server: &Running) -> Self {
        Self {
            server: server.0.endpoint.clone(),
            token: token(As::Platform),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        numbering(&self.server, &self.token, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        json(self.run(&args))
    }

    fn id(&self, args: &[&str]) -> String {
        self.json(args)["id"].as_str().expect("an id").to_string()
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// (e164, carrier) of each row of a CSV with those columns among others.
fn rows(csv_text: &str) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().expect("a header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (e164, carrier) = (col("e164"), col("carrier"));
    let mut rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a row");
            (r[e164].to_string(), r[carrier].to_string())
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn an_operator_builds_a_tree_imports_allocates_counts_and_exports_from_the_command_line() {
    let server = serve().await;
    let op = Operator::new(&server);
    let dir = tempfile::tempdir().unwrap();

    let provider = op.id(&["accounts", "create", "--name", "Acme", "--kind", "provider"]);
    let sales = op.id(&[
        "accounts", "create", "--name", "Sales", "--parent", &provider,
    ]);
    let west = op.id(&["accounts", "create", "--name", "West", "--parent", &sales]);
    let tree = stdout(&exits(op.run(&["accounts", "list", &provider]), 0));
    let line = |name: &str| tree.lines().find(|l| l.contains(name)).unwrap_or_default();
    assert!(line("Sales").contains("└─ Sales"), "{tree}");
    assert!(
        line("West").contains("   └─ West"),
        "West under Sales:\n{tree}"
    );
    assert!(line("West").contains(&west), "{tree}");

    exits(
        op.run(&[
            "numbers",
            "add",
            "--owner",
            &provider,
            "+13035550100",
            "+13035550101",
        ]),
        0,
    );

    // Five good rows and one bad: the import goes on, and the rejects file holds the bad one.
    let good = "+13035550200,Acme\n+13035550201,Acme\n+13035550202,Beta\n+13035550203,Beta\n+13035550204,Acme\n";
    let csv_file = path(dir.path(), "numbers.csv");
    std::fs::write(&csv_file, format!("e164,carrier\n{good}+1303555,Acme\n")).unwrap();
    let rejects = path(dir.path(), "rejects.csv");
    let import = [
        "numbers",
        "import",
        &csv_file,
        "--owner",
        &provider,
        "--rejects",
        &rejects,
        "--request-id",
        "import-1",
    ];
    let summary = op.json(&import);
    assert_eq!(summary["rows_read"], 6, "{summary}");
    assert_eq!(summary["rows_imported"], 5, "{summary}");
    assert_eq!(summary["rows_rejected"], 1, "{summary}");
    assert_eq!(summary["request_id"], "import-1");
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let rejected: Vec<&str> = rejected.lines().collect();
    assert_eq!(rejected.len(), 2, "a header and the bad row: {rejected:?}");
    assert_eq!(rejected[0], "line,e164,reason,message");
    assert!(rejected[1].starts_with("7,+1303555,"), "{rejected:?}");
    // The table form says the same to a person, on stdout.
    let again = stdout(&exits(op.run(&import), 0));
    assert!(again.contains("import-1"), "{again}");

    let moved = op.json(&[
        "allocate", "--from", &provider, "--to", &sales, "--count", "3",
    ]);
    let moved = moved.as_array().expect("the numbers moved");
    assert_eq!(moved.len(), 3);
    assert!(
        moved.iter().all(|n| n["holder_id"] == sales.as_str()),
        "{moved:?}"
    );

    // Counted by the server, read as JSON: the retried import added nothing twice.
    let inventory = op.json(&["numbers", "inventory", &provider]);
    assert_eq!(inventory["totals"]["total"], 7, "{inventory}");
    assert_eq!(inventory["totals"]["available"], 4, "{inventory}");
    assert_eq!(
        inventory["totals"]["allocated_to_children"], 3,
        "{inventory}"
    );
    let of_sales = op.json(&["numbers", "inventory", &sales, "--subtree"]);
    assert_eq!(of_sales["totals"]["available"], 3, "{of_sales}");

    // The export of what was imported holds exactly the imported rows.
    let exported = path(dir.path(), "export.csv");
    let answer = op.json(&[
        "numbers",
        "export",
        &exported,
        "--owner",
        &provider,
        "--prefix",
        "+130355502",
    ]);
    assert_eq!(answer["numbers"], 5, "{answer}");
    let exported = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(rows(&exported), rows(&format!("e164,carrier\n{good}")));
    // To stdout, with nothing else on it.
    let all = stdout(&exits(
        op.run(&["numbers", "export", "--owner", &provider]),
        0,
    ));
    assert!(all.starts_with("e164,"), "{all}");
    assert_eq!(all.lines().count(), 1 + 7, "{all}");
}

#[tokio::test]
async fn refusals_exit_with_a_code_per_kind_and_the_server_s_reason_on_stderr() {
    let mut server = serve().await;
    let op = Operator::new(&server);
    let provider = op.id(&["accounts", "create", "--name", "Acme"]);
    exits(
        op.run(&["numbers", "add", "--owner", &provider, "+13035550100"]),
        0,
    );

    // An illegal move: refused (4), the rule named, nothing changed.
    let refused = exits(op.run(&["unbind", "+13035550100"]), 4);
    let err = stderr(&refused);
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    assert!(err.contains("reason: NUMBER_NOT_RETURNED"), "{err}");
    let history = op.json(&["numbers", "history", "+13035550100"]);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");

    // A bad number: bad input (2), the field named.
    let bad = stderr(&exits(
        op.run(&["numbers", "add", "--owner", &provider, "12ab"]),
        2,
    ));
    assert!(bad.contains("INVALID_ARGUMENT"), "{bad}");
    assert!(bad.contains("field number.e164"), "{bad}");
    // A usage error is bad input too.
    exits(op.run(&["allocate", "--from", &provider]), 2);

    // An unknown account: not found (3).
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = stderr(&exits(op.run(&["accounts", "get", &unknown]), 3));
    assert!(missing.contains("NOT_FOUND"), "{missing}");

    // No server: unavailable (5).
    let _ = server.0.process.kill();
    let _ = server.0.process.wait();
    let gone = stderr(&exits(op.run(&["accounts", "get", &provider]), 5));
    assert!(gone.contains("UNAVAILABLE"), "{gone}");
}

#[tokio::test]
async fn a_token_minted_from_the_server_s_secret_is_accepted_and_another_secret_s_is_not() {
    let server = serve().await;
    let mint = |args: &[&str], secret: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_numbering"))
            .arg("token")
            .args(args)
            .env("NUMBERING_JWT_HS256_SECRET", secret)
            .env("NUMBERING_JWT_ISSUER", "numbering-tests")
            .output()
            .expect("run the binary");
        stdout(&exits(out, 0)).trim().to_string()
    };
    let platform = mint(&["--role", "platform"], SECRET);
    let create = |token: &str, args: &[&str]| {
        let mut all = vec!["accounts", "create", "--output", "json"];
        all.extend(args);
        numbering(&server.0.endpoint, token, &all)
    };
    let provider = json(create(&platform, &["--name", "Acme"]));
    let provider = provider["id"].as_str().unwrap();

    // An admin of the provider may create below it, not a provider of its own.
    let admin = mint(
        &["--account", provider, "--role", "admin", "--ttl", "10m"],
        SECRET,
    );
    json(create(&admin, &["--name", "Sales", "--parent", provider]));
    let denied = stderr(&exits(create(&admin, &["--name", "Mine"]), 4));
    assert!(denied.contains("PERMISSION_DENIED"), "{denied}");

    let forged = mint(
        &["--role", "platform"],
        "another-secret-another-secret-0123456789",
    );
    let refused = stderr(&exits(create(&forged, &["--name", "Forged"]), 4));
    assert!(refused.contains("UNAUTHENTICATED"), "{refused}");
}

#[tokio::test]
async fn a_file_larger_than_one_grpc_message_imports_in_chunks_without_a_bar_off_a_terminal() {
    let server = serve().await;
    let op = Operator::new(&server);
    let provider = op.id(&["accounts", "create", "--name", "Acme"]);
    // 5,000 rows of about 1 KiB: more than the 4 MiB one message may carry.
    let info = "x".repeat(1000);
    let mut csv_text = String::from("e164,service_info\n");
    for i in 0..5000u64 {
        csv_text.push_str(&format!("+1303556{i:04},{info}\n"));
    }
    assert!(csv_text.len() > 4 << 20);
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path(), "big.csv");
    std::fs::write(&file, csv_text).unwrap();
    let out = exits(
        op.run(&["numbers", "import", &file, "--owner", &provider]),
        0,
    );
    let summary = stdout(&out);
    assert!(summary.contains("5000"), "{summary}");
    let err = stderr(&out);
    assert!(
        !err.contains("ETA"),
        "no progress bar when stderr is not a terminal: {err}"
    );
    let inventory = op.json(&["numbers", "inventory", &provider]);
    assert_eq!(inventory["totals"]["total"], 5000, "{inventory}");
}

#[tokio::test]
async fn over_tls_the_command_line_trusts_the_ca_file_it_is_given_and_no_other() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture = |name: &str| fixtures.join(name).display().to_string();
    let server = Running(
        spawn_binary(&[
            ("NUMBERING_TLS_CERT_FILE", fixture("tls-test-cert.pem")),
            ("NUMBERING_TLS_KEY_FILE", fixture("tls-test-key.pem")),
            (
                "NUMBERING_HEALTH_LISTEN",
                format!("127.0.0.1:{}", crate::helpers::free_port()),
            ),
        ])
        .await,
    );
    // The certificate names localhost.
    let port = server.0.endpoint.rsplit(':').next().unwrap().to_string();
    let op = Operator {
        server: format!("https://localhost:{port}"),
        token: token(As::Platform),
    };
    let ca = fixture("tls-test-ca.pem");
    let mut created = None;
    // The server migrates its database after it listens: wait for the first success.
    for _ in 0..50 {
        let out = op.run(&[
            "accounts",
            "create",
            "--name",
            "Acme",
            "--ca-file",
            &ca,
            "-o",
            "json",
        ]);
        if out.status.success() {
            created = Some(json(out));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let created = created.expect("the server answered over TLS");
    assert_eq!(created["display_name"], "Acme");
    // Without the CA, the server's certificate is not trusted: no connection.
    let untrusted = stderr(&exits(
        op.run(&["accounts", "get", created["id"].as_str().unwrap()]),
        5,
    ));
    assert!(untrusted.contains("UNAVAILABLE"), "{untrusted}");
}

#[tokio::test]
async fn an_operator_renames_relabels_sets_a_quota_and_deletes_an_account_from_the_command_line() {
    let server = serve().await;
    let op = Operator::new(&server);
    let provider = op.id(&["accounts", "create", "--name", "Acme"]);
    let team = op.id(&[
        "accounts", "create", "--name", "Team", "--parent", &provider, "--label", "cost=1",
    ]);

    let updated = op.json(&[
        "accounts",
        "update",
        &team,
        "--name",
        "Support",
        "--label",
        "cost=2",
        "--label",
        "site=west",
        "--max-numbers",
        "5",
    ]);
    assert_eq!(updated["display_name"], "Support", "{updated}");
    assert_eq!(updated["labels"]["cost"], "2", "{updated}");
    assert_eq!(updated["labels"]["site"], "west", "{updated}");
    assert_eq!(updated["max_numbers"], 5, "{updated}");
    // Only the fields given change: the quota goes, the name stays.
    let unlimited = op.json(&["accounts", "update", &team, "--no-max-numbers"]);
    assert_eq!(unlimited["display_name"], "Support", "{unlimited}");
    assert!(unlimited["max_numbers"].is_null(), "{unlimited}");
    // Nothing to change is bad input, before any call.
    exits(op.run(&["accounts", "update", &team]), 2);

    // A provider with a sub-account cannot go: refused, nothing changed.
    let refused = stderr(&exits(op.run(&["accounts", "delete", &provider]), 4));
    assert!(refused.contains("FAILED_PRECONDITION"), "{refused}");
    assert_eq!(
        op.json(&["accounts", "delete", &team])["deleted"],
        team.as_str()
    );
    exits(op.run(&["accounts", "get", &team]), 3);
}

#[tokio::test]
async fn an_operator_creates_lists_and_deletes_sip_trunks_from_the_command_line() {
    let server = serve().await;
    let op = Operator::new(&server);
    let provider = op.id(&["accounts", "create", "--name", "Acme"]);
    let team = op.id(&[
        "accounts", "create", "--name", "Team", "--parent", &provider,
    ]);
    let edge = op.id(&["trunks", "create", "--account", &provider, "--name", "edge"]);
    let own = op.id(&["trunks", "create", "--account", &team, "--name", "pbx"]);
    // The same name twice in one account: refused.
    exits(
        op.run(&["trunks", "create", "--account", &team, "--name", "pbx"]),
        4,
    );

    let names = |listed: Value| -> Vec<String> {
        listed
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let listed = op.json(&["trunks", "list", "--account", &team]);
    assert_eq!(names(listed), ["pbx"], "a list of one is an array too");
    let inherited = op.json(&["trunks", "list", "--account", &team, "--inherited"]);
    assert_eq!(names(inherited), ["edge", "pbx"]);
    let table = stdout(&exits(op.run(&["trunks", "list", "--account", &team]), 0));
    assert!(table.contains("pbx") && table.contains(&own), "{table}");

    assert_eq!(
        op.json(&["trunks", "delete", &edge])["deleted"],
        edge.as_str()
    );
    let left = op.json(&["trunks", "list", "--account", &team, "--inherited"]);
    assert_eq!(names(left), ["pbx"]);
}

#[tokio::test]
async fn a_csv_of_changes_is_applied_row_by_row_with_each_rows_result() {
    let server = serve().await;
    let op = Operator::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let provider = op.id(&["accounts", "create", "--name", "Acme"]);
    for n in ["+13035550170", "+13035550171", "+13035550172"] {
        exits(op.run(&["numbers", "add", "--owner", &provider, n]), 0);
    }
    let write = |name: &str, text: &str| {
        let file = path(dir.path(), name);
        std::fs::write(&file, text).unwrap();
        file
    };

    // A row without its required column: bad input, and no row is sent.
    let broken = write(
        "broken.csv",
        "number,reserved_for\n+13035550170,user:1\n+13035550171,\n",
    );
    let err = stderr(&exits(op.run(&["batch", "reserve", &broken]), 2));
    assert!(err.contains("reserved_for"), "{err}");
    let history = op.json(&["numbers", "history", "+13035550170"]);
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(1),
        "only added: {history}"
    );

    // Two rows done, one refused: each row's result, the refusal on stderr, its exit code.
    let reserve = write(
        "reserve.csv",
        "number,reserved_for,tag\n+13035550170,user:1,vip\n+13035550171,role:desk,\n+19995550100,user:2,\n",
    );
    let out = op.run(&["batch", "reserve", &reserve, "--output", "json"]);
    let code = out.status.code();
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code, Some(3), "{results}\n{}", stderr(&out));
    assert!(stderr(&out).contains("+19995550100"), "{}", stderr(&out));
    let results = results.as_array().expect("one result a row");
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0]["result"]["status"], "NUMBER_STATUS_RESERVED",
        "{results:?}"
    );
    assert_eq!(
        results[1]["result"]["status"], "NUMBER_STATUS_RESERVED",
        "{results:?}"
    );
    assert_eq!(results[2]["error"]["code"], "NOT_FOUND", "{results:?}");

    let assign = write(
        "assign.csv",
        "kind,id,number,name\nagent,a-7,+13035550172,Seven\n",
    );
    let assigned = op.json(&["batch", "assign", &assign]);
    assert_eq!(
        assigned[0]["result"]["status"], "NUMBER_STATUS_ASSIGNED",
        "{assigned}"
    );
    let table = stdout(&exits(op.run(&["batch", "unassign", &assign]), 0));
    assert!(
        table.contains("+13035550172") && table.contains("OK"),
        "{table}"
    );
}
