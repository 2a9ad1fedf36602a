//! pgbench's script, taken from the server itself. During the warm-up, pg_stat_statements
//! counts what the server runs and the cluster logs every statement with its parameters. The
//! statements run once or more per allocation are the captured ones; one logged allocation
//! (BEGIN to COMMIT) gives their order, their text as sent, and their values. A value that is the
//! same in every allocation is written into the script as it is; one that changes must be
//! explained, or the capture fails: the random start of the pick (a fresh random number), or a
//! column of the number the allocation took (read by the statement that picks it, with `\gset`).
//! Whatever the server's SQL becomes, pgbench runs the same, or the bench says why it cannot.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use numbering::store::numbers::COLUMNS;

use crate::common::{BoxError, Cluster, has_pg_stat_statements};

/// The prefix of the variables `\gset` fills from the picked number's row.
const PICKED: &str = "p_";

/// The cluster settings the capture needs: pg_stat_statements preloaded (when installed, and
/// with planning time when BENCH_STATEMENTS asks for it), and a CSV log to read statements from.
pub fn settings(statements: bool) -> Vec<(&'static str, &'static str)> {
    if !has_pg_stat_statements() {
        return Vec::new();
    }
    let mut settings = vec![
        ("shared_preload_libraries", "pg_stat_statements"),
        ("logging_collector", "on"),
        ("log_destination", "csvlog"),
        ("log_filename", "bench.log"),
        ("log_rotation_size", "0"),
        ("log_rotation_age", "0"),
    ];
    if statements {
        settings.push(("pg_stat_statements.track_planning", "on"));
    }
    settings
}

/// The statement log and the statistics, recording while the warm-up runs.
pub struct Recording<'a> {
    cluster: &'a Cluster,
    log: PathBuf,
    offset: u64,
    /// Whether the statistics go on after the capture (BENCH_STATEMENTS).
    statements: bool,
}

const MARK: &str = "numbering bench: capture ends";

impl<'a> Recording<'a> {
    /// Starts recording; `None` when the cluster has no pg_stat_statements.
    pub async fn start(cluster: &'a Cluster, statements: bool) -> Result<Option<Self>, BoxError> {
        let preloaded: String = cluster
            .sql
            .query_one("SELECT current_setting('shared_preload_libraries')", &[])
            .await?
            .get(0);
        if !preloaded.contains("pg_stat_statements") {
            return Ok(None);
        }
        let row = cluster
            .sql
            .query_one(
                "SELECT pg_current_logfile('csvlog'), current_setting('data_directory')",
                &[],
            )
            .await?;
        let (file, data): (Option<String>, String) = (row.get(0), row.get(1));
        let log = PathBuf::from(data).join(file.ok_or("the cluster keeps no CSV log")?);
        let offset = std::fs::metadata(&log)?.len();
        run(
            &cluster.sql,
            &[
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
                "SELECT pg_stat_statements_reset()",
                "ALTER SYSTEM SET log_min_duration_statement = 0",
                "ALTER SYSTEM SET log_parameter_max_length = -1",
                "SELECT pg_reload_conf()",
            ],
        )
        .await?;
        Ok(Some(Self {
            cluster,
            log,
            offset,
            statements,
        }))
    }

    /// Stops recording after `allocations` allocations and reads what they ran.
    pub async fn finish(self, allocations: u64) -> Result<Captured, BoxError> {
        let sql = &self.cluster.sql;
        sql.batch_execute(&format!("SELECT '{MARK}'")).await?;
        let log = self.read_log().await?;
        let per_allocation = tracked(sql, allocations).await?;
        run(
            sql,
            &[
                "ALTER SYSTEM RESET log_min_duration_statement",
                "ALTER SYSTEM RESET log_parameter_max_length",
            ],
        )
        .await?;
        if !self.statements {
            // Counting every statement costs a little; the rest of the bench does without.
            run(sql, &["ALTER SYSTEM SET pg_stat_statements.track = 'none'"]).await?;
        }
        run(sql, &["SELECT pg_reload_conf()"]).await?;
        Captured::new(sql, allocations, &log, per_allocation).await
    }

    /// The log written since the start, up to the mark, once the logger has written it.
    async fn read_log(&self) -> Result<Vec<Logged>, BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let bytes = std::fs::read(&self.log)?;
            let since = bytes
                .get(usize::try_from(self.offset)?..)
                .unwrap_or_default();
            // The logger may be halfway through a record: read again until the mark is in.
            let read = parse_log(since);
            if let Ok(entries) = &read
                && entries.iter().any(|e| e.text.contains(MARK))
            {
                return read;
            }
            if Instant::now() > deadline {
                read?;
                return Err(
                    format!("{} never logged the capture's end", self.log.display()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs each statement on its own: ALTER SYSTEM refuses to share a transaction.
async fn run(sql: &tokio_postgres::Client, statements: &[&str]) -> Result<(), BoxError> {
    for statement in statements {
        sql.batch_execute(statement).await?;
    }
    Ok(())
}

/// One statement the server ran, as the log has it.
struct Logged {
    session: String,
    line: i64,
    query_id: i64,
    text: String,
    params: Vec<Option<String>>,
}

/// The statements the cluster ran, from its CSV log: simple statements and executions of
/// prepared ones, each with its parameters.
fn parse_log(csv: &[u8]) -> Result<Vec<Logged>, BoxError> {
    // The columns of PostgreSQL's csvlog (14 and later).
    const SESSION: usize = 5;
    const LINE: usize = 6;
    const MESSAGE: usize = 13;
    const DETAIL: usize = 14;
    const QUERY_ID: usize = 25;
    let mut entries = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv);
    for record in reader.records() {
        let record = record?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        let Some(text) = statement_of(field(MESSAGE)) else {
            continue;
        };
        let params = parameters(field(DETAIL))
            .ok_or_else(|| format!("unreadable parameters: {}", field(DETAIL)))?;
        entries.push(Logged {
            session: field(SESSION).to_string(),
            line: field(LINE).parse()?,
            query_id: field(QUERY_ID).parse().unwrap_or(0),
            text: text.to_string(),
            params,
        });
    }
    Ok(entries)
}

/// The statement of a `duration: … ms  statement: …` or `… execute <name>: …` message.
fn statement_of(message: &str) -> Option<&str> {
    let (_, rest) = message.strip_prefix("duration: ")?.split_once(" ms  ")?;
    if let Some(text) = rest.strip_prefix("statement: ") {
        return Some(text);
    }
    Some(rest.strip_prefix("execute ")?.split_once(": ")?.1)
}

/// The values of `parameters: $1 = '…', $2 = NULL`, unquoted; none for an empty detail.
fn parameters(detail: &str) -> Option<Vec<Option<String>>> {
    let mut values = Vec::new();
    if detail.is_empty() {
        return Some(values);
    }
    let mut rest = detail.strip_prefix("parameters: ")?;
    loop {
        let (n, after) = rest.strip_prefix('$')?.split_once(" = ")?;
        if n.parse::<usize>().ok()? != values.len() + 1 {
            return None;
        }
        let after = if let Some(after) = after.strip_prefix("NULL") {
            values.push(None);
            after
        } else {
            let (value, after) = unquote(after)?;
            values.push(Some(value));
            after
        };
        match after.strip_prefix(", ") {
            Some(next) => rest = next,
            None => return after.is_empty().then_some(values),
        }
    }
}

/// A single-quoted SQL string at the start of `s` (quotes doubled inside), and what follows.
fn unquote(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if chars.next_if(|(_, c)| *c == '\'').is_some() {
            value.push('\'');
        } else {
            return Some((value, &body[i + 1..]));
        }
    }
    None
}

/// What pg_stat_statements counted for one statement.
#[derive(Clone)]
struct Tracked {
    query_id: i64,
    calls: i64,
    rows: i64,
    query: String,
}

/// The statements the database ran at least once per allocation.
async fn tracked(sql: &tokio_postgres::Client, allocations: u64) -> Result<Vec<Tracked>, BoxError> {
    let rows = sql
        .query(
            "SELECT queryid, calls, rows, regexp_replace(query, '\\s+', ' ', 'g')
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND calls >= $1
             ORDER BY queryid",
            &[&i64::try_from(allocations)?],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Tracked {
            query_id: r.get(0),
            calls: r.get(1),
            rows: r.get(2),
            query: r.get(3),
        })
        .collect())
}

/// Where the script takes one parameter's value from.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// The same in every allocation.
    Constant(Option<String>),
    /// A fresh random number in [0, 1).
    Random,
    /// A column of the picked number's row; `array` when the server sends it as a one-element
    /// array.
    Picked { column: String, array: bool },
}

/// One statement of the script.
struct Statement {
    text: String,
    tracked: Tracked,
    values: Vec<Value>,
    /// SQL names of the parameters' types, and of their elements for arrays.
    types: Vec<(String, Option<String>)>,
    /// Whether `\gset` reads the picked number's row from this statement.
    picks: bool,
}

/// The statements of one allocation, ready to become a pgbench script.
pub struct Captured {
    allocations: u64,
    logged: usize,
    statements: Vec<Statement>,
}

impl Captured {
    async fn new(
        sql: &tokio_postgres::Client,
        allocations: u64,
        log: &[Logged],
        mut tracked: Vec<Tracked>,
    ) -> Result<Self, BoxError> {
        let transactions = transactions(log);
        let mut shapes: HashMap<Vec<&str>, Vec<&[&Logged]>> = HashMap::new();
        for t in &transactions {
            shapes
                .entry(t.iter().map(|l| l.text.as_str()).collect())
                .or_default()
                .push(t.as_slice());
        }
        let Some(same) = shapes.into_values().max_by_key(Vec::len) else {
            return Err("the warm-up logged no transaction".into());
        };
        if (same.len() as u64) * 2 < allocations {
            return Err(format!(
                "only {} of {allocations} allocations ran the same statements: no script",
                same.len()
            )
            .into());
        }
        let first = same[0];
        let values = values(sql, &same).await?;
        let mut statements: Vec<Statement> = Vec::new();
        for (i, logged) in first.iter().enumerate() {
            let again = statements.iter().find(|s| s.text == logged.text);
            let counted = match again {
                // The same statement again (the two account reads): counted once for both.
                Some(earlier) => earlier.tracked.clone(),
                None => {
                    let found = tracked.iter().position(|t| {
                        (logged.query_id != 0 && t.query_id == logged.query_id)
                            || squeeze(&logged.text) == t.query
                    });
                    let found = found.ok_or_else(|| {
                        format!(
                            "the allocation runs a statement pg_stat_statements did not count once per allocation: {}",
                            squeeze(&logged.text)
                        )
                    })?;
                    tracked.remove(found)
                }
            };
            let types = types(sql, &logged.text).await?;
            if types.len() != values[i].len() {
                return Err(format!(
                    "{} parameters logged, {} prepared: {}",
                    values[i].len(),
                    types.len(),
                    squeeze(&logged.text)
                )
                .into());
            }
            statements.push(Statement {
                text: logged.text.clone(),
                tracked: counted,
                types,
                values: values[i].clone(),
                picks: false,
            });
        }
        if let Some(t) = tracked.first() {
            return Err(format!(
                "a statement runs once per allocation outside its transaction, where the script cannot put it: {}",
                t.query
            )
            .into());
        }
        choose_pick(&mut statements)?;
        Ok(Self {
            allocations,
            logged: same.len(),
            statements,
        })
    }

    /// The pgbench script: the statements in order, each with its values.
    pub fn script(&self) -> String {
        let mut script = String::new();
        let random = self
            .statements
            .iter()
            .any(|s| s.values.contains(&Value::Random));
        if random {
            script.push_str("\\set r random(0, 999999999)\n");
        }
        for s in &self.statements {
            let text = bind(&s.text, |n| {
                let i = n.checked_sub(1)?;
                let (ty, element) = s.types.get(i)?;
                Some(render(s.values.get(i)?, ty, element.as_deref()))
            });
            let text = text.trim_end().trim_end_matches(';');
            if s.picks {
                script.push_str(&format!("{text} \\gset {PICKED}\n"));
            } else {
                script.push_str(&format!("{text};\n"));
            }
        }
        script
    }
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pgbench runs what the server ran for one allocation, captured from pg_stat_statements in a warm-up of {} allocations ({} logged alike):",
            self.allocations, self.logged
        )?;
        writeln!(f, "{:>9} {:>9}  statement", "per alloc", "rows/call")?;
        for s in &self.statements {
            let t = &s.tracked;
            let query: String = t.query.chars().take(110).collect();
            writeln!(
                f,
                "{:>9.2} {:>9.2}  {query}",
                t.calls as f64 / self.allocations as f64,
                t.rows as f64 / t.calls.max(1) as f64,
            )?;
            let varying: Vec<String> = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Constant(_) => None,
                    Value::Random => Some(format!("${} random", i + 1)),
                    Value::Picked { column, .. } => {
                        Some(format!("${} the picked number's {column}", i + 1))
                    }
                })
                .collect();
            if s.picks {
                writeln!(f, "{:>21}  (picks the number: \\gset {PICKED}*)", "")?;
            }
            if !varying.is_empty() {
                writeln!(f, "{:>21}  (values: {})", "", varying.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Whitespace collapsed, as the statistics show a query.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The complete transactions of the log (BEGIN or START TRANSACTION to COMMIT), each session's
/// in order.
fn transactions(log: &[Logged]) -> Vec<Vec<&Logged>> {
    let mut sessions: BTreeMap<&str, Vec<&Logged>> = BTreeMap::new();
    for l in log {
        sessions.entry(&l.session).or_default().push(l);
    }
    let mut done = Vec::new();
    for mut statements in sessions.into_values() {
        statements.sort_by_key(|l| l.line);
        let mut open: Option<Vec<&Logged>> = None;
        for l in statements {
            let command = squeeze(&l.text).trim_end_matches(';').to_ascii_uppercase();
            let first = command.split(' ').next().unwrap_or_default();
            if first == "BEGIN" || command.starts_with("START TRANSACTION") {
                open = Some(vec![l]);
            } else if let Some(t) = open.as_mut() {
                t.push(l);
                if first == "COMMIT" || first == "END" {
                    done.extend(open.take());
                }
            }
        }
    }
    done
}

/// Where each parameter of each statement takes its value from, seen over all the allocations.
async fn values(
    sql: &tokio_postgres::Client,
    same: &[&[&Logged]],
) -> Result<Vec<Vec<Value>>, BoxError> {
    let picked = picked_rows(sql, same).await?;
    let mut all = Vec::new();
    for (i, logged) in same[0].iter().enumerate() {
        let mut values = Vec::new();
        for n in 0..logged.params.len() {
            let seen: Vec<Option<&str>> = same.iter().map(|t| t[i].params[n].as_deref()).collect();
            values.push(value_of(&seen, &picked).ok_or_else(|| {
                format!(
                    "${} of `{}` changes from one allocation to the next ({:?}, {:?}) and the capture cannot tell from where",
                    n + 1,
                    squeeze(&logged.text).chars().take(80).collect::<String>(),
                    seen[0],
                    seen.get(1).copied().flatten()
                )
            })?);
        }
        all.push(values);
    }
    Ok(all)
}

/// What one parameter was in each allocation: a constant, a column of that allocation's picked
/// number, or a random number.
fn value_of(seen: &[Option<&str>], picked: &[HashMap<String, String>]) -> Option<Value> {
    if seen.iter().all(|v| *v == seen[0]) {
        return Some(Value::Constant(seen[0].map(str::to_string)));
    }
    for column in columns() {
        for array in [false, true] {
            let matches = seen.iter().zip(picked).all(|(v, row)| {
                let Some(col) = row.get(&column) else {
                    return false;
                };
                let expected = if array {
                    format!("{{{col}}}")
                } else {
                    col.clone()
                };
                *v == Some(expected.as_str())
            });
            if matches {
                return Some(Value::Picked { column, array });
            }
        }
    }
    let random = seen.iter().all(|v| {
        v.and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|x| (0.0..1.0).contains(&x))
    });
    random.then_some(Value::Random)
}

/// The columns of a number's row, as the store reads them.
fn columns() -> Vec<String> {
    COLUMNS.split(',').map(|c| c.trim().to_string()).collect()
}

/// For each allocation, the row (as text) of the one number among its values that the numbers
/// table has: the number it took. Empty when there is none or more than one.
async fn picked_rows(
    sql: &tokio_postgres::Client,
    same: &[&[&Logged]],
) -> Result<Vec<HashMap<String, String>>, BoxError> {
    let is_uuid = |s: &str| uuid::Uuid::parse_str(s).is_ok();
    let candidates: Vec<Vec<String>> = same
        .iter()
        .map(|t| {
            let mut ids: Vec<String> = t
                .iter()
                .flat_map(|l| l.params.iter().flatten())
                .map(|v| v.trim_start_matches('{').trim_end_matches('}').to_string())
                .filter(|v| is_uuid(v))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        })
        .collect();
    let all: Vec<uuid::Uuid> = candidates
        .iter()
        .flatten()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok())
        .collect();
    let columns = columns();
    let select: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let rows = sql
        .query(
            &format!(
                "SELECT id::text, {} FROM numbers WHERE id = ANY($1)",
                select.join(", ")
            ),
            &[&all],
        )
        .await?;
    let numbers: HashMap<String, HashMap<String, String>> = rows
        .iter()
        .map(|r| {
            let row = columns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| r.get::<_, Option<String>>(i + 1).map(|v| (c.clone(), v)))
                .collect();
            (r.get(0), row)
        })
        .collect();
    Ok(candidates
        .iter()
        .map(|ids| {
            let found: Vec<&HashMap<String, String>> =
                ids.iter().filter_map(|id| numbers.get(id)).collect();
            match found.as_slice() {
                [one] => (*one).clone(),
                _ => HashMap::new(),
            }
        })
        .collect())
}

/// The SQL types of a statement's parameters, as the database infers them, with the element type
/// of each array.
async fn types(
    sql: &tokio_postgres::Client,
    text: &str,
) -> Result<Vec<(String, Option<String>)>, BoxError> {
    if !text.contains('$') {
        return Ok(Vec::new());
    }
    let statement = sql.prepare(text).await?;
    let mut types = Vec::new();
    for t in statement.params() {
        let row = sql
            .query_one(
                "SELECT format_type(oid, NULL),
                        CASE WHEN typcategory = 'A' THEN format_type(typelem, NULL) END
                 FROM pg_type WHERE oid = $1",
                &[&t.oid()],
            )
            .await?;
        types.push((row.get(0), row.get(1)));
    }
    Ok(types)
}

/// Marks the statement that reads the picked number's row: the last one before the first use
/// of a picked column that selects the store's columns from `numbers`, one row a call.
fn choose_pick(statements: &mut [Statement]) -> Result<(), BoxError> {
    let Some(first_use) = statements
        .iter()
        .position(|s| s.values.iter().any(|v| matches!(v, Value::Picked { .. })))
    else {
        return Ok(());
    };
    let reads_row = format!("SELECT {} FROM numbers", squeeze(COLUMNS));
    let pick = statements[..first_use]
        .iter()
        .rposition(|s| {
            squeeze(&s.text).starts_with(&reads_row) && s.tracked.rows == s.tracked.calls
        })
        .ok_or("no statement before the move reads the number it takes, one row a call")?;
    statements[pick].picks = true;
    Ok(())
}

/// `text` with each `$n` outside quotes replaced by `value(n)` (left as it is without one, for
/// pgbench to refuse).
fn bind(text: &str, value: impl Fn(usize) -> Option<String>) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                n.push(d);
            }
            match n.parse().ok().and_then(&value) {
                Some(v) => out.push_str(&v),
                None => out.push_str(&format!("${n}")),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One value in the script, of SQL type `ty`.
fn render(value: &Value, ty: &str, element: Option<&str>) -> String {
    match value {
        Value::Constant(None) => format!("CAST(NULL AS {ty})"),
        Value::Constant(Some(v)) => format!("CAST({} AS {ty})", literal(v)),
        Value::Random => format!("CAST(CAST(:r AS double precision) / 1e9 AS {ty})"),
        Value::Picked { column, array } => {
            let var = format!(":{PICKED}{column}");
            match (array, element) {
                (true, Some(element)) => format!("CAST(ARRAY[CAST({var} AS {element})] AS {ty})"),
                _ => format!("CAST({var} AS {ty})"),
            }
        }
    }
}

/// A string literal. pgbench takes `:name` for a variable even between quotes, so a colon
/// before a name character is spliced in with chr(58).
fn literal(v: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let clashes = v.char_indices().any(|(i, c)| {
        c == ':' && v[i + 1..].starts_with(|n: char| n.is_alphanumeric() || n == '_')
    });
    if !clashes {
        return quote(v);
    }
    let parts: Vec<String> = v.split(':').map(quote).collect();
    format!("({})", parts.join(" || chr(58) || "))
}
