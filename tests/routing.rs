//! Ready to shard by provider (deploy/citus.md): every statement the service runs on a table
//! Citus distributes must be routed to one shard group by its distribution column, so that a
//! provider's work stays on the node that holds the provider.
//!
//! `scripts/routing-check.sh` runs the whole suite with `NUMBERING_STATEMENT_LOG` set (the API
//! tests' cluster then logs every statement, as CSV, in that directory), then the ignored test
//! here, which reads the log, keeps the service's own statements (`application_name`
//! `numbering`: the tests' own SQL is not the service's), and checks each one. The checker is
//! a small SQL reader, not a planner; its own tests below show what it passes and flags.
//!
//! A statement touching a distributed table is routed when, for each mention of such a table,
//! - its distribution column is compared with `=` to a parameter or a constant, or with
//!   `= ANY($n)` / `IN (...)`, or
//! - it is joined by `=` on that column to a column so pinned (through any table: Citus, like
//!   PostgreSQL, carries an equality across a join), or
//! - it is written by `INSERT` or `COPY` with the distribution column among the columns: each
//!   row carries its own shard key.
//!
//! Anything else is an exception, listed in [`EXCEPTIONS`] with why it is safe.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The distributed tables and their distribution columns (deploy/citus.md). `accounts` is a
/// reference table (on every node), `schema_migrations` a local table of the coordinator, and
/// temporary tables are the session's own: none of them needs routing.
const DISTRIBUTED: &[(&str, &str)] = &[
    ("numbers", "provider_id"),
    ("number_events", "provider_id"),
    ("account_events", "provider_id"),
    ("series", "provider_id"),
    ("sip_trunks", "provider_id"),
    ("inventory_counts", "provider_id"),
    ("idempotency", "account_id"),
];

/// The statements that are not routed by their shard key, each with why that is safe on Citus
/// (it runs them as multi-shard statements, correct but fanned out to every shard) and what
/// would route it. Those that lock rows (`FOR UPDATE`) Citus refuses across shards: they are
/// the blocking items of deploy/citus.md ("What needs a change"). A statement is excepted when
/// it contains the pattern. Keep this the one list: deploy/citus.md refers to it.
const EXCEPTIONS: &[(&str, &str)] = &[
    // Allocations run together (src/store/together.rs): one group may hold calls of several
    // accounts, so its request ids are claimed and recorded set-based across them.
    (
        "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(account_id, actor, method, request_id, i) JOIN idempotency d",
        "a group's request ids read in one statement: each row is keyed by its account_id, a \
         multi-shard probe by the full key at most one row per call. On Citus, groups are formed \
         per provider (the queue keyed by the calls' provider) and the read is then routed",
    ),
    (
        "INSERT INTO idempotency (account_id, actor, method, request_id, authority, fingerprint, response) SELECT * FROM unnest(",
        "a group's answers recorded in one statement: rows carry their account_id (the shard \
         key); Citus splits an INSERT ... SELECT from unnest by shard",
    ),
    // Background work across every provider (src/sweeper.rs, Db::prune_answers).
    (
        "FROM numbers WHERE status = 'reserved' AND reservation_expire_time <= $1",
        "sweeper: expired reservations of every provider, a batch at a time with SKIP LOCKED, once \
         per sweep interval, not per call; on Citus it runs per provider or per shard (a row \
         lock must be routed)",
    ),
    (
        "FROM numbers WHERE status = 'aging' AND aging_end_time <= $1",
        "sweeper: ended aging of every provider, as above",
    ),
    (
        "DELETE FROM idempotency WHERE ctid = ANY(ARRAY(",
        "sweeper: prunes old answers of every account; ctid is per shard, so on Citus this \
         becomes `DELETE ... WHERE create_time < $1` per shard (run_command_on_shards) or a \
         partition drop; background, not per call",
    ),
    // Platform-wide reads: the platform's own view spans every provider by design.
    (
        "FROM numbers WHERE status <> 'deleted' ORDER BY",
        "the platform's ListNumbers/ExportNumbers of every provider (Scope::All): cross-provider \
         by design; a multi-shard scan in E.164 order, each shard's LIMIT pushed down and merged \
         on the coordinator. A platform call that names the owner is routed",
    ),
    (
        "FROM numbers WHERE status <> 'deleted' AND e164 ~>=~ $1 AND e164 ~<~ $2",
        "the same platform-wide list under a prefix (read in the live E.164 index's order)",
    ),
    (
        "FROM numbers WHERE status <> 'deleted' AND e164 ~>~ $1 ORDER BY",
        "the same platform-wide list after its cursor (its next pages)",
    ),
    (
        "FROM numbers WHERE status <> 'deleted' AND status = ANY($1)",
        "the same platform-wide list filtered by status",
    ),
    (
        "FROM numbers WHERE true",
        "the same platform-wide list with deleted numbers included",
    ),
    (
        "FROM numbers WHERE status = 'deleted'",
        "the same platform-wide list of deleted numbers only (every provider's deleted numbers' \
         index, numbers_deleted_e164)",
    ),
    (
        "FROM numbers WHERE status <> 'deleted' AND status <> 'returned'",
        "the same platform-wide list with returned numbers left out",
    ),
    // Global uniqueness of live E.164 numbers: a cross-provider feature by design.
    (
        "FROM numbers WHERE e164 = $1 AND status <> 'deleted'",
        "a number by its E.164 (GetNumber by e164, GetNumberStateAt, add/import duplicate \
         checks): E.164 is unique across providers, so the key does not say the provider; a \
         multi-shard index probe returning at most one row. Routing it needs the e164 → \
         provider lookup table of deploy/citus.md",
    ),
    (
        "WHERE EXISTS (SELECT 1 FROM numbers n WHERE n.e164 = s.e164 AND n.status <> 'deleted')",
        "import: numbers already present under any provider (global E.164 uniqueness): a \
         multi-shard semi-join of the staged rows; see the e164 lookup table",
    ),
    (
        "FROM numbers WHERE id = ANY($1) OR (e164 = ANY($2) AND status <> 'deleted')",
        "a selection by number ids and E.164s (moves, updates): the request names numbers, not \
         their provider; multi-shard lock by primary key. Fix: `AND provider_id = $3` with the \
         source account's provider (src/store/allocation.rs, the lead's file)",
    ),
    // By a number's id: the request names the number only.
    (
        "FROM numbers WHERE id = $1",
        "a number by id (GetNumber, UpdateNumber, locks): the id does not say the provider; a \
         multi-shard primary-key probe. Fix: resolve the provider first (the caller's account is \
         in the reference table) and add `AND provider_id = $n`",
    ),
    (
        "UPDATE numbers SET number_type = $2",
        "UpdateNumber by id, after the lock above: same key, same fix",
    ),
    (
        "UPDATE numbers SET holder_id = $2, holder_path = $3, status = $4",
        "one number's move by id (src/store/numbers.rs): same fix, the number's provider_id is \
         in the row just locked",
    ),
    (
        "FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord) JOIN numbers USING (id)",
        "an idempotent replay re-reads the numbers of the first answer by id: multi-shard by \
         primary key, on retries only",
    ),
    (
        "WITH moved AS ( UPDATE numbers n SET holder_id = u.holder_id",
        "save_moves (src/store/allocation.rs, the lead's file): the numbers were locked by the \
         pick, all of one provider; fix: `AND n.provider_id = $22` with that provider",
    ),
    (
        "FROM number_events WHERE number_id = $1",
        "a number's history by number id (ListNumberHistory, GetNumberStateAt): multi-shard \
         index probe; fix: pass the number's provider_id, read just before",
    ),
    // By the holding account: its provider is known (the account was read) but not passed.
    (
        "FROM numbers WHERE holder_id = $1",
        "numbers held by an account (pick, lists by holder, free runs, deletes' in-use checks): the holder \
         is in one provider, read from the reference table just before; fix: add `AND \
         provider_id = $n` (src/store/allocation.rs, numbers.rs: files of other engineers)",
    ),
    // By a child resource's own id.
    (
        "FROM series WHERE id = $1",
        "a series by id (Get/Update/DeleteSeries): the id does not say the provider; fix: the \
         caller's provider, from the reference table, as `AND provider_id = $n`",
    ),
    (
        "UPDATE series SET display_name = $2",
        "UpdateSeries by id: as above",
    ),
    (
        "DELETE FROM series WHERE id = $1",
        "DeleteSeries by id: as above",
    ),
    (
        "FROM sip_trunks WHERE id = $1",
        "a SIP trunk by id (Update/DeleteSipTrunk): as series",
    ),
    (
        "UPDATE sip_trunks SET name = $2",
        "UpdateSipTrunk by id: as above",
    ),
    (
        "DELETE FROM sip_trunks WHERE id = $1",
        "DeleteSipTrunk by id: as above",
    ),
    (
        "FROM sip_trunks t JOIN accounts a ON a.id = t.account_id WHERE t.account_id = ANY($1)",
        "the trunks of an account and its ancestors (one provider's path): fix: add `AND \
         t.provider_id = $2`",
    ),
];

/// What the checker makes of one statement.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// No distributed table, or a statement Citus propagates itself (DDL, transaction control).
    NotDistributed,
    Routed,
    /// The distributed tables it touches without routing.
    Unrouted(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Param,
    Literal,
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
            out.push(Token::Literal);
        } else if c == '"' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            out.push(Token::Word(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else if c == '$' && next.is_some_and(|d| d.is_ascii_digit()) {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token::Param);
        } else if c == '$' {
            // A dollar-quoted body ($$ ... $$ or $tag$ ... $tag$): one literal.
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let tag: String = chars[start..=i.min(chars.len() - 1)].iter().collect();
            let rest: String = chars.get(i + 1..).unwrap_or_default().iter().collect();
            let end = rest.find(&tag).map_or(chars.len(), |p| {
                i + 1 + rest[..p].chars().count() + tag.chars().count()
            });
            i = end;
            out.push(Token::Literal);
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Literal);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

/// Words that end a table reference rather than name its alias.
const NOT_ALIAS: &[&str] = &[
    "where",
    "set",
    "on",
    "join",
    "left",
    "right",
    "inner",
    "full",
    "cross",
    "natural",
    "using",
    "order",
    "group",
    "limit",
    "for",
    "returning",
    "values",
    "select",
    "union",
    "having",
    "window",
    "from",
    "default",
    "tablesample",
    "offset",
    "fetch",
    "except",
    "intersect",
];

/// Statements Citus propagates or that touch no table.
const NOT_ROUTED_KINDS: &[&str] = &[
    "create",
    "alter",
    "drop",
    "comment",
    "grant",
    "revoke",
    "listen",
    "unlisten",
    "notify",
    "set",
    "reset",
    "show",
    "begin",
    "start",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "discard",
];

struct Mention {
    table: String,
    column: &'static str,
    /// The name the statement refers to it by (its alias, else its name).
    name: String,
    /// An INSERT or COPY whose column list holds the distribution column.
    carries_key: bool,
}

fn check(sql: &str) -> Verdict {
    let all = tokens(sql);
    let mut unrouted = Vec::new();
    let mut any = false;
    for stmt in all.split(|t| *t == Token::Punct(';')) {
        match check_one(stmt) {
            Verdict::NotDistributed => {}
            Verdict::Routed => any = true,
            Verdict::Unrouted(tables) => {
                any = true;
                unrouted.extend(tables)
            }
        }
    }
    if !unrouted.is_empty() {
        unrouted.sort();
        unrouted.dedup();
        Verdict::Unrouted(unrouted)
    } else if any {
        Verdict::Routed
    } else {
        Verdict::NotDistributed
    }
}

fn check_one(t: &[Token]) -> Verdict {
    match word(t.first()) {
        None => return Verdict::NotDistributed,
        Some(w) if NOT_ROUTED_KINDS.contains(&w) => return Verdict::NotDistributed,
        _ => {}
    }
    let mut mentions = Vec::new();
    for (i, tok) in t.iter().enumerate() {
        let Token::Word(name) = tok else { continue };
        let Some(&(table, column)) = DISTRIBUTED.iter().find(|(d, _)| d == name) else {
            continue;
        };
        let before = if i == 0 { None } else { word(t.get(i - 1)) };
        let Some(before) = before
            .filter(|b| ["from", "join", "update", "into", "using", "copy", "only"].contains(b))
        else {
            continue;
        };
        let mut alias = table.to_string();
        let mut j = i + 1;
        if word(t.get(j)) == Some("as") {
            j += 1;
        }
        if let Some(a) = word(t.get(j)).filter(|a| !NOT_ALIAS.contains(a)) {
            alias = a.to_string();
        }
        let carries_key = (before == "into" || before == "copy") && {
            // The column list right after the name (or its alias).
            let open = (i + 1..t.len().min(i + 4)).find(|&k| t[k] == Token::Punct('('));
            open.is_some_and(|o| {
                t[o + 1..]
                    .iter()
                    .take_while(|x| **x != Token::Punct(')'))
                    .any(|x| word(Some(x)) == Some(column))
            })
        };
        mentions.push(Mention {
            table: table.to_string(),
            column,
            name: alias,
            carries_key,
        });
    }
    if mentions.is_empty() {
        return Verdict::NotDistributed;
    }
    // Column references: `q.col` as "q.col", a bare `col` as that of the one mention when
    // there is only one, else as itself.
    let only = (mentions.len() == 1).then(|| mentions[0].name.clone());
    let reference = |k: usize| -> Option<(String, usize)> {
        let w = word(t.get(k))?;
        if t.get(k + 1) == Some(&Token::Punct('.')) {
            let col = word(t.get(k + 2))?;
            return Some((format!("{w}.{col}"), k + 3));
        }
        if k > 0 && t.get(k - 1) == Some(&Token::Punct('.')) {
            return None;
        }
        let name = match &only {
            Some(m) => format!("{m}.{w}"),
            None => w.to_string(),
        };
        Some((name, k + 1))
    };
    let pinned_value = |k: usize| -> bool {
        match t.get(k) {
            Some(Token::Param | Token::Literal) => true,
            Some(Token::Word(w)) if w == "any" => {
                t.get(k + 1) == Some(&Token::Punct('('))
                    && matches!(t.get(k + 2), Some(Token::Param) | Some(Token::Word(_)))
                    && word(t.get(k + 2)).is_none_or(|w| w == "array")
            }
            _ => false,
        }
    };
    // Equalities: pins (column = value) and edges (column = column).
    let mut pinned: BTreeSet<String> = BTreeSet::new();
    let mut edges: Vec<(String, String)> = Vec::new();
    for k in 0..t.len() {
        let Some((left, after)) = reference(k) else {
            continue;
        };
        // value = column
        if k >= 2 && t.get(k - 1) == Some(&Token::Punct('=')) && pinned_value(k - 2) {
            pinned.insert(left.clone());
        }
        match t.get(after) {
            Some(Token::Punct('=')) => {
                if pinned_value(after + 1) {
                    pinned.insert(left);
                } else if let Some((right, _)) = reference(after + 1) {
                    edges.push((left, right));
                }
            }
            Some(Token::Word(w)) if w == "in" && t.get(after + 1) == Some(&Token::Punct('(')) => {
                pinned.insert(left);
            }
            _ => {}
        }
    }
    loop {
        let before = pinned.len();
        for (a, b) in &edges {
            if pinned.contains(a) || pinned.contains(b) {
                pinned.insert(a.clone());
                pinned.insert(b.clone());
            }
        }
        if pinned.len() == before {
            break;
        }
    }
    let unrouted: Vec<String> = mentions
        .iter()
        .filter(|m| !m.carries_key && !pinned.contains(&format!("{}.{}", m.name, m.column)))
        .map(|m| m.table.clone())
        .collect();
    if unrouted.is_empty() {
        Verdict::Routed
    } else {
        Verdict::Unrouted(unrouted)
    }
}

/// Whitespace collapsed, comments dropped: the form exceptions are written in.
fn normalise(sql: &str) -> String {
    let without_comments: String = sql
        .lines()
        .map(|l| match l.find("--") {
            // Comments in the service's SQL never follow a quote on their line.
            Some(p) if !l[..p].contains('\'') => &l[..p],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The service's statements in PostgreSQL's CSV logs under `dir`, with how often each ran.
fn recorded(dir: &Path) -> BTreeMap<String, u64> {
    // csvlog columns (PostgreSQL 13 and later): message 13, application_name 22.
    const MESSAGE: usize = 13;
    const APPLICATION: usize = 22;
    let mut seen = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the statement log {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no CSV statement log in {}",
        dir.display()
    );
    for file in files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(&file)
            .expect("open the statement log");
        for record in reader.records() {
            let record = record.expect("a CSV log record");
            if record.get(APPLICATION) != Some(numbering::store::APPLICATION_NAME) {
                continue;
            }
            let message = record.get(MESSAGE).unwrap_or_default();
            let text = if let Some(text) = message.strip_prefix("statement: ") {
                text
            } else if let Some((_, text)) = message
                .strip_prefix("execute ")
                .and_then(|r| r.split_once(": "))
            {
                text
            } else {
                continue;
            };
            *seen.entry(normalise(text)).or_insert(0) += 1;
        }
    }
    seen
}

/// Reads what the suite recorded and checks every statement. Run by scripts/routing-check.sh
/// after the suite, with NUMBERING_STATEMENT_LOG naming the log's directory.
#[test]
#[ignore = "reads the statement log of a recorded run: scripts/routing-check.sh"]
fn every_recorded_statement_on_a_distributed_table_is_routed_by_its_provider() {
    let dir = std::env::var_os("NUMBERING_STATEMENT_LOG")
        .expect("NUMBERING_STATEMENT_LOG names the directory of a recorded run");
    let statements = recorded(Path::new(&dir));
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut routed = 0;
    let mut failures = Vec::new();
    for (sql, calls) in &statements {
        match check(sql) {
            Verdict::NotDistributed => {}
            Verdict::Routed => routed += 1,
            Verdict::Unrouted(tables) => {
                match EXCEPTIONS.iter().find(|(pattern, _)| sql.contains(pattern)) {
                    Some((pattern, _)) => *counts.entry(pattern).or_default() += calls,
                    None => failures.push(format!("{tables:?} ({calls} calls): {sql}")),
                }
            }
        }
    }
    println!(
        "{} distinct statements recorded; {routed} routed by their shard key",
        statements.len()
    );
    for (pattern, why) in EXCEPTIONS {
        match counts.get(pattern) {
            Some(calls) => println!("exception ({calls} calls): {pattern}\n    {why}"),
            None => println!("exception not seen in this run: {pattern}"),
        }
    }
    // An empty or foreign log must not pass: the suite adds numbers and moves them.
    assert!(
        statements
            .keys()
            .any(|s| s.starts_with("INSERT INTO numbers"))
            && routed >= 20,
        "the log holds too little of the suite to judge: was it recorded?"
    );
    assert!(
        failures.is_empty(),
        "statements on distributed tables not routed by their shard key (route them, or add \
         an exception with why it is safe):\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_statement_keyed_by_its_provider_is_routed() {
    for sql in [
        "SELECT * FROM numbers WHERE provider_id = $1 AND holder_path LIKE $2",
        "SELECT * FROM numbers n WHERE n.provider_id = ANY($1)",
        "UPDATE numbers n SET series_id = NULL WHERE n.provider_id = $1 AND n.e164 LIKE $2",
        "SELECT * FROM numbers WHERE $1 = provider_id",
        "SELECT 1 FROM series WHERE id = $1 AND provider_id = $2",
        "SELECT * FROM idempotency WHERE account_id = $1 AND actor = $2",
    ] {
        assert_eq!(check(sql), Verdict::Routed, "{sql}");
    }
}

#[test]
fn a_statement_without_its_provider_is_flagged() {
    for (sql, table) in [
        ("SELECT * FROM numbers WHERE id = $1", "numbers"),
        (
            "SELECT * FROM numbers WHERE holder_id = $1 AND status = 'available'",
            "numbers",
        ),
        ("UPDATE numbers SET status = $2 WHERE id = $1", "numbers"),
        ("DELETE FROM series WHERE id = $1", "series"),
        // A greater-or-equal is not an equality, nor is the provider of another table.
        ("SELECT * FROM numbers WHERE provider_id >= $1", "numbers"),
        (
            "SELECT * FROM accounts a JOIN inventory_counts c ON c.account_id = a.id \
             WHERE a.provider_id = $1",
            "inventory_counts",
        ),
        // The column list of an insert without the shard key.
        (
            "INSERT INTO number_events (number_id, e164) VALUES ($1, $2)",
            "number_events",
        ),
    ] {
        assert_eq!(check(sql), Verdict::Unrouted(vec![table.into()]), "{sql}");
    }
}

#[test]
fn a_join_on_the_provider_with_a_routed_table_routes_the_other() {
    let joined = "SELECT * FROM accounts a JOIN inventory_counts c ON c.account_id = a.id \
                  AND c.provider_id = a.provider_id WHERE a.provider_id = $1";
    assert_eq!(check(joined), Verdict::Routed);
    let chained = "SELECT * FROM numbers n JOIN number_events e ON e.provider_id = n.provider_id \
                   AND e.number_id = n.id WHERE n.provider_id = $1";
    assert_eq!(check(chained), Verdict::Routed);
    // Joined on the provider, but neither side is pinned: every shard.
    let loose = "SELECT * FROM numbers n JOIN number_events e ON e.provider_id = n.provider_id";
    assert_eq!(
        check(loose),
        Verdict::Unrouted(vec!["number_events".into(), "numbers".into()])
    );
}

#[test]
fn rows_that_carry_their_provider_are_routed_and_other_statements_are_not_judged() {
    for sql in [
        "INSERT INTO number_events (provider_id, number_id) VALUES ($1, $2)",
        "INSERT INTO inventory_counts AS c (provider_id, account_id) SELECT $1, $2",
        "COPY numbers (id, provider_id, e164) FROM STDIN",
    ] {
        assert_eq!(check(sql), Verdict::Routed, "{sql}");
    }
    for sql in [
        "CREATE TABLE numbers (id uuid)",
        "SAVEPOINT item",
        "SELECT id FROM accounts WHERE id = $1",
        "COPY import_rows (line, e164) FROM STDIN",
        "SELECT 'FROM numbers WHERE id = 1'",
    ] {
        assert_eq!(check(sql), Verdict::NotDistributed, "{sql}");
    }
    // Several statements in one message: each is judged.
    assert_eq!(
        check("SAVEPOINT a; DELETE FROM sip_trunks WHERE id = $1; RELEASE SAVEPOINT a"),
        Verdict::Unrouted(vec!["sip_trunks".into()])
    );
}

#[test]
fn comments_are_dropped_and_whitespace_collapsed_before_matching_exceptions() {
    assert_eq!(
        normalise("SELECT a, -- why\n   b\n\tFROM numbers -- tail\nWHERE id = '--x'"),
        "SELECT a, b FROM numbers WHERE id = '--x'"
    );
}
