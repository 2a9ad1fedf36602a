//! Numbers in PostgreSQL: the row, lookups, inserts and state changes, each state change
//! written with its event in the caller's transaction.

use std::collections::BTreeMap;

use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql, Type};
use uuid::Uuid;

use super::{GenericClient, Lock, Planned, TypedParam, errors};
use crate::domain::command::Key;
use crate::domain::number::{
    Actor, Assignee, AssigneeKind, Attributes, Number, NumberSource, NumberStatus, NumberType,
    Operation, Reservation,
};
use crate::error::{Error, Result};

pub const COLUMNS: &str = "id, provider_id, e164, holder_id, holder_path, status, series_id, \
     number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels, \
     assignee_kind, assignee_id, assignee_name, assignee_account_id, reserved_for, \
     reservation_tag, reservation_note, reservation_expire_time, aging_end_time, version, \
     create_time, update_time";

/// A number from a row of [`COLUMNS`], by position: looking each column up by name costs a
/// scan of the row's columns per field, and a page decodes thousands of fields.
pub fn from_row(r: &Row) -> Number {
    let Json(labels): Json<BTreeMap<String, String>> = r.get(14);
    let assignee_id: Option<String> = r.get(16);
    let reserved_for: Option<String> = r.get(19);
    Number {
        id: r.get(0),
        owner_id: r.get(1),
        e164: r.get(2),
        holder_id: r.get(3),
        holder_path: r.get(4),
        // CHECK constraints keep these columns to the known words.
        status: NumberStatus::parse(r.get(5)).unwrap_or(NumberStatus::Deleted),
        series_id: r.get(6),
        attributes: Attributes {
            number_type: NumberType::parse(r.get(7)).unwrap_or(NumberType::Unknown),
            source: NumberSource::parse(r.get(8)).unwrap_or(NumberSource::Unspecified),
            carrier: r.get(9),
            sip_trunk: r.get(10),
            billing_reference: r.get(11),
            service_info: r.get(12),
            tags: r.get(13),
            labels,
        },
        assignee: assignee_id.map(|id| Assignee {
            // Written by this service only, from the typed kind.
            kind: r
                .get::<_, Option<&str>>(15)
                .and_then(AssigneeKind::parse)
                .unwrap_or(AssigneeKind::Other),
            id,
            display_name: r.get::<_, Option<String>>(17).unwrap_or_default(),
            account_id: r.get(18),
        }),
        reservation: reserved_for.map(|reserved_for| Reservation {
            reserved_for,
            tag: r.get::<_, Option<String>>(20).unwrap_or_default(),
            note: r.get::<_, Option<String>>(21).unwrap_or_default(),
            expire_time: r.get(22),
        }),
        aging_end_time: r.get(23),
        version: r.get(24),
        create_time: r.get(25),
        update_time: r.get(26),
    }
}

pub fn not_found(name: &str) -> Error {
    Error::NotFound {
        resource_type: "number",
        name: name.to_string(),
    }
}

/// A number by id (deleted ones included: their history is kept), or a live number by E.164.
pub async fn find(db: &impl GenericClient, key: &Key, lock: Lock) -> Result<Number> {
    let lock = lock.clause();
    let row = match key {
        Key::Id(id) => {
            let sql = format!("SELECT {COLUMNS} FROM numbers WHERE id = $1{lock}");
            db.query_opt(&db.prepare_cached(&sql).await?, &[id]).await?
        }
        Key::E164(e164) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM numbers WHERE e164 = $1 AND status <> 'deleted'{lock}"
            );
            db.query_opt(&db.prepare_cached(&sql).await?, &[&e164.as_str()])
                .await?
        }
    };
    row.map(|r| from_row(&r))
        .ok_or_else(|| not_found(&key.to_string()))
}

/// Numbers by id, in the order of `ids` (ids that name no number are left out).
pub async fn by_ids(db: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Number>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)
         JOIN numbers USING (id) ORDER BY u.ord"
    );
    Ok(db
        .query(&sql, &[&ids])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// The series a number of `owner` belongs to: the one with the longest matching prefix.
pub async fn series_for(db: &impl GenericClient, owner: Uuid, e164: &str) -> Result<Option<Uuid>> {
    Ok(db
        .query_opt(
            "SELECT series FROM series_of($1, $2) AS series",
            &[&owner, &e164],
        )
        .await?
        .map(|r| r.get(0)))
}

/// A number to add.
pub struct Insert<'a> {
    pub owner_id: Uuid,
    pub e164: &'a str,
    pub holder_id: Uuid,
    pub holder_path: &'a str,
    pub attributes: &'a Attributes,
    /// Where quantity allocation finds it (`numbers.pick`).
    pub pick: f64,
}

/// Adds a number (AVAILABLE in its holder), files it in its series, and records the event.
pub async fn insert(db: &impl GenericClient, n: Insert<'_>, actor: &Actor) -> Result<Number> {
    let series = series_for(db, n.owner_id, n.e164).await?;
    let a = n.attributes;
    let sql = format!(
        "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, series_id,
             number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels,
             pick)
         VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &db.prepare_cached(&sql).await?,
            &[
                &Uuid::new_v4(),
                &n.owner_id,
                &n.e164,
                &n.holder_id,
                &n.holder_path,
                &series,
                &a.number_type.as_str(),
                &a.source.as_str(),
                &a.carrier,
                &a.sip_trunk,
                &a.billing_reference,
                &a.service_info,
                &a.tags,
                &Json(&a.labels),
                &n.pick,
            ],
        )
        .await
        .map_err(|e| errors::classify(e, n.e164))?;
    let number = from_row(&row);
    record(db, None, &number, Operation::Add, actor).await?;
    Ok(number)
}

/// Writes a number's operator attributes; no event (history follows holder, status, assignee
/// and reservation).
pub async fn update_attributes(
    db: &impl GenericClient,
    id: Uuid,
    a: &Attributes,
) -> Result<Number> {
    let sql = format!(
        "UPDATE numbers SET number_type = $2, source = $3, carrier = $4, sip_trunk = $5,
             billing_reference = $6, service_info = $7, tags = $8, labels = $9,
             version = version + 1, update_time = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &db.prepare_cached(&sql).await?,
            &[
                &id,
                &a.number_type.as_str(),
                &a.source.as_str(),
                &a.carrier,
                &a.sip_trunk,
                &a.billing_reference,
                &a.service_info,
                &a.tags,
                &Json(&a.labels),
            ],
        )
        .await?;
    Ok(from_row(&row))
}

/// Writes where `after` stands (holder, status, assignee, reservation, aging) over `before`,
/// and records the event. The database's checks refuse any inconsistent state.
pub async fn save_state(
    db: &impl GenericClient,
    before: &Number,
    after: &Number,
    op: Operation,
    actor: &Actor,
) -> Result<Number> {
    let sql = format!(
        "UPDATE numbers SET holder_id = $2, holder_path = $3, status = $4,
             assignee_kind = $5, assignee_id = $6, assignee_name = $7, assignee_account_id = $8,
             reserved_for = $9, reservation_tag = $10, reservation_note = $11,
             reservation_expire_time = $12, aging_end_time = $13,
             delete_time = CASE WHEN $4 = 'deleted' THEN now() ELSE NULL END,
             version = version + 1, update_time = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let a = after.assignee.as_ref();
    let r = after.reservation.as_ref();
    let row = db
        .query_one(
            &db.prepare_cached(&sql).await?,
            &[
                &after.id,
                &after.holder_id,
                &after.holder_path,
                &after.status.as_str(),
                &a.map(|a| a.kind.as_str()),
                &a.map(|a| a.id.as_str()),
                &a.map(|a| a.display_name.as_str()),
                &a.and_then(|a| a.account_id),
                &r.map(|r| r.reserved_for.as_str()),
                &r.map(|r| r.tag.as_str()),
                &r.map(|r| r.note.as_str()),
                &r.and_then(|r| r.expire_time),
                &after.aging_end_time,
            ],
        )
        .await?;
    let saved = from_row(&row);
    record(db, Some(before), &saved, op, actor).await?;
    Ok(saved)
}

/// Appends one event to the history (and outbox) in the caller's transaction.
pub async fn record(
    db: &impl GenericClient,
    before: Option<&Number>,
    after: &Number,
    op: Operation,
    actor: &Actor,
) -> Result<()> {
    db.execute(
        &db.prepare_cached(
            "INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id,
             request_id, operation, holder_path, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?,
        &[
            &after.owner_id,
            &after.id,
            &after.e164,
            &actor.subject,
            &actor.account_id,
            &actor.request_id,
            &op.as_str(),
            &after.holder_path,
            &before.map(|b| Json(b.state())),
            &Json(after.state()),
        ],
    )
    .await?;
    Ok(())
}

/// Whose numbers a query may see: the caller's scope, already authorised.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every number (the platform without a holder filter).
    All,
    /// Every number of a provider's tree (its root path is the whole tree).
    Provider(Uuid),
    /// Numbers held in the subtree of a provider's account whose path this is.
    Subtree { provider: Uuid, path: String },
    /// Numbers held by exactly this account.
    Holder(Uuid),
}

/// An E.164 order and the comparisons that go with it: bounds and cursors a page's index takes.
struct Order {
    from: &'static str,
    below: &'static str,
    after: &'static str,
    by: &'static str,
}

/// The column's own order (collation C).
const COLUMN_ORDER: Order = Order {
    from: ">=",
    below: "<",
    after: ">",
    by: "e164",
};

/// The pattern operators' order: byte order, the same as collation C's.
const PATTERN_ORDER: Order = Order {
    from: "~>=~",
    below: "~<~",
    after: "~>~",
    by: "e164 USING ~<~",
};

/// Which of a query's numbers a statement selects: those it asks for, or, for a page of deleted
/// numbers among others, its live ones or its deleted ones (`NumberQuery::select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Asked,
    Live,
    Deleted,
}

/// What List, Search and Export select.
#[derive(Debug, Clone)]
pub struct NumberQuery {
    pub scope: Scope,
    pub owner_id: Option<Uuid>,
    /// Empty means every status but deleted.
    pub statuses: Vec<NumberStatus>,
    pub series_id: Option<Uuid>,
    /// A LIKE pattern on the E.164 (`+1303%`, `+1303555____`).
    pub e164_like: Option<String>,
    pub tag: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub assignee_id: Option<String>,
    pub reservation_tag: Option<String>,
    pub reserved_for: Option<String>,
    pub sip_trunk: Option<String>,
    /// Leave RETURNED numbers out: they have left their holder's own view.
    pub hide_returned: bool,
    /// Select nothing unless this account exists: the scope was built from a kept placement
    /// (`accounts::placement`), not from a read of the account.
    pub live_account: Option<Uuid>,
    /// Read to the end, batch after batch (an export): a subtree is then read in its
    /// provider's E.164 order, filtered by path, one pass over the provider's numbers for the
    /// whole export, instead of holder by holder, which reads up to a batch of every account
    /// of the subtree for each batch.
    pub whole: bool,
}

/// A parameter and its type: a page by prefix is sent typed, planned for its values.
struct Param(Box<dyn ToSql + Sync + Send>, Type);

fn param(value: impl ToSql + Sync + Send + 'static, ty: Type) -> Param {
    Param(Box::new(value), ty)
}

impl NumberQuery {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            owner_id: None,
            statuses: Vec::new(),
            series_id: None,
            e164_like: None,
            tag: None,
            labels: BTreeMap::new(),
            assignee_id: None,
            reservation_tag: None,
            reserved_for: None,
            sip_trunk: None,
            hide_returned: false,
            live_account: None,
            whole: false,
        }
    }

    /// The literal head of the E.164 pattern (`+1303` of `+1303555____`), empty when none.
    fn prefix(&self) -> String {
        self.e164_like
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take_while(|c| *c != '%' && *c != '_')
            .collect()
    }

    /// The E.164 order this query's pages are read in. Every number has no index of its own
    /// in E.164 order but the live numbers' index, in the pattern order (migration 8 says why
    /// that index is not in the column's). A provider's or a holder's page, a subtree's (read
    /// holder by holder, or in its provider's order) and any that includes deleted numbers (not
    /// in that index) ask for the column's own, which only the scope's index (or the deleted
    /// numbers') yields.
    fn order(&self) -> &'static Order {
        if matches!(self.scope, Scope::All) && !self.with_deleted() {
            &PATTERN_ORDER
        } else {
            &COLUMN_ORDER
        }
    }

    /// Whether a page is read holder by holder (a subtree's, but an export's: see `whole`).
    fn each_holder(&self) -> bool {
        matches!(self.scope, Scope::Subtree { .. }) && !self.whole
    }

    /// Whether the query bounds the E.164 by a prefix: a range whose best plan depends on it.
    fn by_prefix(&self) -> bool {
        !self.prefix().is_empty()
    }

    /// Whether a page by prefix selects by nothing but what its scope's index holds (the
    /// provider or holder, or none, and the E.164 range of the prefix), besides the root's
    /// existence and returned numbers: its best plan, whatever the prefix, is then that index
    /// read in order from the prefix, stopping after the page. Any other filter may be rare
    /// enough that another index and a sort are cheaper, which only the values tell.
    ///
    /// But a provider's statuses: no index narrows a provider's numbers by status (the
    /// status-only ones hold every provider's), so its best plan is its own index's range, and
    /// read in order it never reads more of it than read whole and sorted. Planned for the
    /// values, the planner took the whole range for a few rows (the provider's share of the
    /// table times the prefix's, where a prefix lies within one provider) and read and sorted
    /// it: 700 numbers for a page in the test, a provider's 1,000,000 under a prefix at scale.
    fn index_ordered(&self) -> bool {
        let head = self.prefix();
        !head.is_empty()
            && self.e164_like.as_deref() == Some(format!("{head}%").as_str())
            && !matches!(self.scope, Scope::Subtree { .. })
            && self.owner_id.is_none()
            && (self.statuses.is_empty() || matches!(self.scope, Scope::Provider(_)))
            && self.series_id.is_none()
            && self.tag.is_none()
            && self.labels.is_empty()
            && self.assignee_id.is_none()
            && self.reservation_tag.is_none()
            && self.reserved_for.is_none()
            && self.sip_trunk.is_none()
    }

    /// Whether deleted numbers are among those selected. Never in a subtree: a subtree is
    /// below a provider, and a deleted number is its provider's (`numbers_deleted_with_owner`).
    fn with_deleted(&self) -> bool {
        self.statuses.contains(&NumberStatus::Deleted)
            && !matches!(self.scope, Scope::Subtree { .. })
    }

    /// Whether the query selects deleted numbers beside live ones: a page is then the first of
    /// a page of each (`select`).
    fn deleted_among_others(&self) -> bool {
        self.with_deleted() && self.statuses.iter().any(|s| *s != NumberStatus::Deleted)
    }

    /// The WHERE clause and its parameters ($1...).
    fn where_clause(&self) -> (String, Vec<Param>) {
        let mut params = Vec::new();
        let (clause, _) = self.conditions(false, Part::Asked, &mut params);
        (clause, params)
    }

    /// The conditions on the numbers of `part`, their parameters (appended to `params`, which
    /// numbers them), and, for a subtree read holder by holder (`each_holder`), the conditions
    /// on the accounts `a` whose numbers are read.
    fn conditions(
        &self,
        each_holder: bool,
        part: Part,
        params: &mut Vec<Param>,
    ) -> (String, Vec<String>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut accounts: Vec<String> = Vec::new();
        // Whether the statement selects deleted numbers only.
        let deleted = self.with_deleted()
            && (part == Part::Deleted || self.statuses.iter().all(|s| *s == NumberStatus::Deleted));
        let mut bind = |clauses: &mut Vec<String>, sql: &str, p: Param| {
            params.push(p);
            clauses.push(sql.replace('?', &format!("${}", params.len())));
        };
        match &self.scope {
            Scope::All => {}
            Scope::Provider(p) => bind(&mut clauses, "provider_id = ?", param(*p, Type::UUID)),
            Scope::Subtree { provider, path } => {
                // Holder by holder, the provider as a one-element array: it routes the
                // statement (Citus prunes by `= ANY` as by `=`), but no longer makes the
                // provider's index (`provider_id, e164`) a way to read an account's page in
                // order, filtering by holder: the planner costs that as if the account's
                // numbers were spread evenly through the provider's, and with numbers stored in
                // E.164 order it looks cheaper than the account's own index.
                let provider_is = if each_holder {
                    "provider_id = ANY(ARRAY[?::uuid])"
                } else {
                    "provider_id = ?"
                };
                bind(&mut clauses, provider_is, param(*provider, Type::UUID));
                if each_holder {
                    // The subtree's accounts by their paths, as a range (a cached statement's
                    // generic plan takes it as index bounds, not a `LIKE $n`): under collation
                    // C, every path below `/…/r/` sorts in [`/…/r/`, `/…/r0`).
                    clauses.push("holder_id = a.id".into());
                    let below = format!("{}0", path.strip_suffix('/').unwrap_or(path));
                    bind(
                        &mut accounts,
                        "a.path >= ?",
                        param(path.clone(), Type::TEXT),
                    );
                    bind(&mut accounts, "a.path < ?", param(below, Type::TEXT));
                } else {
                    bind(
                        &mut clauses,
                        "holder_path LIKE ?",
                        param(format!("{path}%"), Type::TEXT),
                    );
                }
            }
            // A deleted number is back with its provider (`numbers_deleted_with_owner`): the
            // deleted numbers an account holds are those of the provider it is, read in order
            // from the provider's deleted numbers' index. Asked by holder too, the planner
            // costs the pair as a few rows and read all of the provider's and sorted them.
            Scope::Holder(h) if deleted => {
                bind(&mut clauses, "provider_id = ?", param(*h, Type::UUID))
            }
            Scope::Holder(h) => bind(&mut clauses, "holder_id = ?", param(*h, Type::UUID)),
        }
        // Spelled out so that the partial indexes (WHERE status <> 'deleted', WHERE status =
        // 'deleted') apply, under a cached statement's generic plan too.
        if deleted {
            clauses.push("status = 'deleted'".into());
        } else {
            if part == Part::Live || !self.with_deleted() {
                clauses.push("status <> 'deleted'".into());
            }
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .filter(|s| part == Part::Asked || **s != NumberStatus::Deleted)
                .map(|s| s.as_str().into())
                .collect();
            if !statuses.is_empty() && statuses.iter().all(|s| s == "deleted") {
                // A subtree asked for its deleted numbers (the only query that asks for
                // nothing but deleted numbers and is not `deleted`): it has none
                // (`with_deleted`), and the database need not read every account's numbers to
                // find that out.
                clauses.push("false".into());
            } else if !statuses.is_empty() {
                bind(
                    &mut clauses,
                    "status = ANY(?)",
                    param(statuses, Type::TEXT_ARRAY),
                );
            }
        }
        if self.hide_returned {
            clauses.push("status <> 'returned'".into());
        }
        if let Some(o) = self.owner_id {
            bind(&mut clauses, "provider_id = ?", param(o, Type::UUID));
        }
        if let Some(s) = self.series_id {
            bind(&mut clauses, "series_id = ?", param(s, Type::UUID));
        }
        if let Some(like) = &self.e164_like {
            // The literal head of the pattern as a range: a prepared statement's generic plan
            // cannot turn `LIKE $n` into index bounds, but it can use these. Under collation C,
            // every string that starts with `head` sorts in [head, head || ':').
            let head = self.prefix();
            if !head.is_empty() {
                let order = self.order();
                let (from, below) = (order.from, order.below);
                bind(
                    &mut clauses,
                    &format!("e164 {from} ?"),
                    param(head.clone(), Type::TEXT),
                );
                bind(
                    &mut clauses,
                    &format!("e164 {below} ?"),
                    param(format!("{head}:"), Type::TEXT),
                );
            }
            if like != &format!("{head}%") {
                bind(&mut clauses, "e164 LIKE ?", param(like.clone(), Type::TEXT));
            }
        }
        if let Some(t) = &self.tag {
            bind(&mut clauses, "? = ANY(tags)", param(t.clone(), Type::TEXT));
        }
        if !self.labels.is_empty() {
            bind(
                &mut clauses,
                "labels @> ?",
                param(Json(self.labels.clone()), Type::JSONB),
            );
        }
        if let Some(a) = &self.assignee_id {
            bind(
                &mut clauses,
                "assignee_id = ?",
                param(a.clone(), Type::TEXT),
            );
        }
        if let Some(t) = &self.reservation_tag {
            bind(
                &mut clauses,
                "reservation_tag = ?",
                param(t.clone(), Type::TEXT),
            );
        }
        if let Some(r) = &self.reserved_for {
            bind(
                &mut clauses,
                "reserved_for = ?",
                param(r.clone(), Type::TEXT),
            );
        }
        if let Some(t) = &self.sip_trunk {
            bind(&mut clauses, "sip_trunk = ?", param(t.clone(), Type::TEXT));
        }
        if let Some(a) = self.live_account {
            // Uncorrelated: evaluated once, before the first row (a one-time filter).
            bind(
                &mut clauses,
                "EXISTS (SELECT 1 FROM accounts WHERE id = ? AND delete_time IS NULL)",
                param(a, Type::UUID),
            );
        }
        if clauses.is_empty() {
            clauses.push("true".into());
        }
        (clauses.join(" AND "), accounts)
    }

    /// The full SELECT in E.164 order after `after` (E.164 and id), at most `limit` rows.
    ///
    /// Live numbers have unique E.164s (`numbers_live_e164`), so without the deleted ones the
    /// E.164 alone orders them, and the scope's index (`provider_id, e164`, `holder_id, e164`)
    /// yields a page in order, stopping after it; a tie-break on the id would make the database
    /// read and sort every number of the scope under the prefix first. Deleted numbers share
    /// E.164s; with them the id breaks ties, and they have indexes of their own: a provider's
    /// (`provider_id, e164, id`) and every provider's (`e164, create_time`). A page of deleted
    /// numbers among live ones is the first of a page of each, a provider's or an account's
    /// each read in order from its own index (the platform's live half has no index in the
    /// column's order, and reads and sorts its live numbers): no index holds both, and a
    /// provider's page read every number of the table and sorted them (200,000 rows for a page
    /// in the test's layout); a provider's page of deleted numbers read every provider's before
    /// its own from theirs (5,802).
    ///
    /// A subtree has no index in E.164 order, and read in another scope's (every number's, its
    /// provider's) filtered by path, a page reads every number that comes before the subtree's
    /// (a sub-account given a block of its provider's numbers: all the blocks before it, 900,000
    /// entries and 150 ms a page at 1,000,000 numbers). So it is read holder by holder: each of
    /// the subtree's accounts gives at most a page from its own index (`holder_id, e164`), and
    /// the page is the first of those. A page then costs at most a page per account of the
    /// subtree, or the subtree's numbers if fewer, wherever its numbers lie.
    fn select(&self, after: Option<&(String, Uuid)>, limit: i64) -> (String, Vec<Param>) {
        let unique = !self.with_deleted();
        let each_holder = self.each_holder();
        let parts: &[Part] = if self.deleted_among_others() {
            &[Part::Live, Part::Deleted]
        } else {
            &[Part::Asked]
        };
        let mut params = Vec::new();
        let (mut clauses, mut accounts) = (Vec::new(), Vec::new());
        for part in parts {
            let (clause, of_accounts) = self.conditions(each_holder, *part, &mut params);
            clauses.push(clause);
            accounts = of_accounts;
        }
        if let Some((e164, id)) = after {
            params.push(param(e164.clone(), Type::TEXT));
            let cursor = if unique {
                let after = self.order().after;
                format!(" AND e164 {after} ${}", params.len())
            } else {
                // The E.164 bound on its own too: an index of the scope's live numbers (in E.164
                // order, without the id) takes it as where to start.
                params.push(param(*id, Type::UUID));
                let (e164, id) = (params.len() - 1, params.len());
                format!(" AND e164 >= ${e164} AND (e164, id) > (${e164}, ${id})")
            };
            for clause in &mut clauses {
                clause.push_str(&cursor);
            }
        }
        let order = if unique { self.order().by } else { "e164, id" };
        // The limit is a literal, not a parameter: under a cached statement's generic plan,
        // `LIMIT $n` is costed as a tenth of the rows and can lose the index-ordered plan that
        // stops after the page. Page sizes are a few bounded integers, so few statements.
        let sql = if each_holder {
            let (clause, accounts) = (&clauses[0], accounts.join(" AND "));
            format!(
                "SELECT n.* FROM accounts a CROSS JOIN LATERAL (SELECT {COLUMNS} FROM numbers \
                 WHERE {clause} ORDER BY {order} LIMIT {limit}) n \
                 WHERE {accounts} ORDER BY n.e164 LIMIT {limit}"
            )
        } else if let [clause] = clauses.as_slice() {
            format!("SELECT {COLUMNS} FROM numbers WHERE {clause} ORDER BY {order} LIMIT {limit}")
        } else {
            // The live half in E.164 order alone, which its numbers' uniqueness makes the
            // same as with the id: asked with the id, a page by prefix was planned to read and
            // sort the scope's live numbers under the prefix (700 rows for a page in the test).
            let pages: Vec<String> = clauses
                .iter()
                .zip(parts)
                .map(|(clause, part)| {
                    let order = if *part == Part::Live { "e164" } else { order };
                    format!(
                        "(SELECT {COLUMNS} FROM numbers WHERE {clause} \
                         ORDER BY {order} LIMIT {limit})"
                    )
                })
                .collect();
            format!(
                "{} ORDER BY {order} LIMIT {limit}",
                pages.join(" UNION ALL ")
            )
        };
        (sql, params)
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.0.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn typed(params: &[Param]) -> Vec<TypedParam<'_>> {
    params
        .iter()
        .map(|p| (p.0.as_ref() as &(dyn ToSql + Sync), p.1.clone()))
        .collect()
}

/// One page of a query.
pub async fn list(
    db: &impl Planned,
    q: &NumberQuery,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Result<Vec<Number>> {
    let (sql, params) = q.select(after, limit);
    // A page by prefix with other filters (or a subtree's) is planned for its values, every
    // time: a cached statement's generic plan cannot see the prefix, costs its range at 0.5%
    // of the scope, often fewer rows than a page, and then reads and sorts the whole range (13
    // ms a page of a provider with 10,000 numbers); planned for the values, the planner weighs
    // the filters against the range. Still one round trip; the planning costs the database
    // 0.1-0.2 ms. A page by prefix alone (`index_ordered`: or a provider's by prefix and
    // status) has one best plan, its scope's index read in order, and runs cached with sorting
    // off, which leaves that plan to the generic one too.
    let index_ordered = q.index_ordered();
    let statement = if q.by_prefix() && !index_ordered {
        None
    } else {
        Some(db.prepare_cached(&sql).await?)
    };
    let page = async {
        match &statement {
            Some(statement) => db.query(statement, &refs(&params)).await,
            None => db.query_planned(&sql, &typed(&params)).await,
        }
    };
    let rows = if q.each_holder() || index_ordered {
        // A page by prefix alone: above. A subtree's page: each account's page must be read
        // in its own index's order, stopping after the page. The planner costs an account's numbers at the table's
        // average, times its provider's share (a few rows), and reads them all by bitmap and
        // sorts them instead (seen in the scale bench); for a customer of 1,000,000 numbers
        // that is the 1,000,000 for every page.
        //
        // So these statements run with sorting off (`SET LOCAL` in a transaction of its own,
        // sent with it: BEGIN, the page and COMMIT in one round trip, each sent when first
        // polled, in that order), which leaves the ordered read as the plan; the top-N of a
        // subtree's accounts' pages has no other plan and stays. Sorting off adds its penalty
        // to that top-N's cost, far above `jit_above_cost`: JIT goes off with it, whatever the
        // session says. `db` is a pooled connection outside any transaction (`Planned`).
        let (begun, rows, ended) = futures::future::join3(
            db.batch_execute("BEGIN; SET LOCAL enable_sort = off; SET LOCAL jit = off"),
            page,
            db.batch_execute("COMMIT"),
        )
        .await;
        let rows = rows?;
        begun?;
        ended?;
        rows
    } else {
        page.await?
    };
    Ok(rows.iter().map(from_row).collect())
}

/// Runs of `run` consecutive numbers among those a query selects (same length, each one more
/// than the last), in E.164 order: the first and last E.164 of each run's first `run` numbers.
pub async fn consecutive_runs(
    db: &impl GenericClient,
    q: &NumberQuery,
    run: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let (clause, mut params) = q.where_clause();
    params.push(param(run, Type::INT8));
    let run_param = params.len();
    params.push(param(limit, Type::INT8));
    let limit_param = params.len();
    // Numbers of one run share (length, value - position); e164 fits in a bigint (15 digits).
    let sql = format!(
        "WITH selected AS (
             SELECT e164, length(e164) AS len,
                    substr(e164, 2)::bigint - row_number() OVER (PARTITION BY length(e164) ORDER BY e164) AS run_key
             FROM numbers WHERE {clause}),
         runs AS (
             SELECT min(e164) AS first_e164, len, count(*) AS size FROM selected
             GROUP BY len, run_key HAVING count(*) >= ${run_param})
         SELECT first_e164,
                '+' || (substr(first_e164, 2)::bigint + ${run_param} - 1)::text AS last_e164
         FROM runs ORDER BY first_e164 LIMIT ${limit_param}"
    );
    Ok(db
        .query(&db.prepare_cached(&sql).await?, &refs(&params))
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The numbers a query selects between two E.164 numbers of the same length, both included:
/// the numbers of one run [`consecutive_runs`] found.
pub async fn in_range(
    db: &impl GenericClient,
    q: &NumberQuery,
    first: &str,
    last: &str,
) -> Result<Vec<Number>> {
    let (clause, mut params) = q.where_clause();
    params.push(param(first.to_string(), Type::TEXT));
    params.push(param(last.to_string(), Type::TEXT));
    let (a, b) = (params.len() - 1, params.len());
    let sql = format!(
        "SELECT {COLUMNS} FROM numbers
         WHERE {clause} AND e164 BETWEEN ${a} AND ${b} AND length(e164) = length(${a})
         ORDER BY e164"
    );
    Ok(db
        .query(&db.prepare_cached(&sql).await?, &refs(&params))
        .await?
        .iter()
        .map(from_row)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::COLUMNS;

    /// `from_row` reads the columns by position: this is the order it reads them in.
    #[test]
    fn from_row_reads_the_columns_in_their_listed_order() {
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        let read = [
            "id",
            "provider_id",
            "e164",
            "holder_id",
            "holder_path",
            "status",
            "series_id",
            "number_type",
            "source",
            "carrier",
            "sip_trunk",
            "billing_reference",
            "service_info",
            "tags",
            "labels",
            "assignee_kind",
            "assignee_id",
            "assignee_name",
            "assignee_account_id",
            "reserved_for",
            "reservation_tag",
            "reservation_note",
            "reservation_expire_time",
            "aging_end_time",
            "version",
            "create_time",
            "update_time",
        ];
        assert_eq!(names, read);
    }
}
