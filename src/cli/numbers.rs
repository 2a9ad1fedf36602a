//! `numbering numbers add|import|export|search|list|inventory|history`.

use clap::{Args, Subcommand, ValueEnum};
use numbering_client::tonic::{Code, Status};
use numbering_client::{Clients, StatusExt, v1};
use prost::Message;
use serde_json::{Value, json};

use super::failure::{describe, exit_code_of, with_id};
use super::output::{self, Output, table};
use super::{Failure, Mutation, key_value, transfer};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Adds numbers to a provider's pool: one, or up to 1000 in one call.
    Add(AddArgs),
    /// Imports a CSV file of any size, streamed in chunks, with a progress bar.
    Import(transfer::ImportArgs),
    /// Exports the numbers a filter selects as CSV (the columns import reads), to FILE or stdout.
    Export(transfer::ExportArgs),
    /// Searches an account's AVAILABLE numbers by pattern, vanity letters or consecutive runs.
    Search {
        /// The account whose AVAILABLE numbers are searched.
        #[arg(long)]
        holder: String,
        /// +1303 (prefix), +1303555???? or +1*0100 (wildcards), or vanity letters (+1800FLOWERS).
        #[arg(long, default_value = "")]
        pattern: String,
        /// Only runs of this many consecutive numbers.
        #[arg(long, default_value_t = 0)]
        consecutive: i32,
        /// Most numbers (or runs) to answer, at most 1000.
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Lists the numbers a filter selects, in E.164 order.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Most numbers to list; 0 lists them all.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Counts an account's numbers by status, in total and per series.
    Inventory {
        /// The account.
        account: String,
        /// Count its whole subtree, not the account alone.
        #[arg(long)]
        subtree: bool,
    },
    /// The events of one number, oldest first.
    History {
        /// E.164 or number id.
        number: String,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The provider that adds (and owns) the numbers.
    #[arg(long)]
    pub owner: String,
    /// The numbers: E.164 (+13035550100), or national with --region.
    #[arg(required = true, num_args = 1..)]
    pub numbers: Vec<String>,
    /// ISO 3166 region (US, GB) for national numbers.
    #[arg(long)]
    pub region: Option<String>,
    /// Allocate the numbers to this descendant of the owner at once.
    #[arg(long)]
    pub holder: Option<String>,
    #[arg(long)]
    pub carrier: Option<String>,
    #[arg(long)]
    pub sip_trunk: Option<String>,
    /// A tag (repeat for more).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// With several numbers: add all or none.
    #[arg(long)]
    pub all_or_nothing: bool,
    #[command(flatten)]
    pub mutation: Mutation,
}

/// A status a filter selects.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Available,
    Reserved,
    Assigned,
    Returned,
    Aging,
    Deleted,
}

impl From<StatusArg> for v1::NumberStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Available => Self::Available,
            StatusArg::Reserved => Self::Reserved,
            StatusArg::Assigned => Self::Assigned,
            StatusArg::Returned => Self::Returned,
            StatusArg::Aging => Self::Aging,
            StatusArg::Deleted => Self::Deleted,
        }
    }
}

/// Which numbers a list or an export selects; every option set must match.
#[derive(Debug, Clone, Args)]
pub struct Filter {
    /// Numbers owned by this provider.
    #[arg(long)]
    pub owner: Option<String>,
    /// Numbers held by this account.
    #[arg(long)]
    pub holder: Option<String>,
    /// With --holder: held by it or any descendant.
    #[arg(long, requires = "holder")]
    pub subtree: bool,
    /// In this status (repeat for more) [default: any but deleted].
    #[arg(long = "status", value_enum)]
    pub statuses: Vec<StatusArg>,
    /// In this series.
    #[arg(long)]
    pub series: Option<String>,
    /// Under this E.164 prefix, such as +1303.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Carrying this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Carrying this label, key=value (repeat for more).
    #[arg(long = "label", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Assigned to this assignee id.
    #[arg(long)]
    pub assignee: Option<String>,
}

impl From<Filter> for v1::NumberFilter {
    fn from(f: Filter) -> Self {
        Self {
            holder_id: f.holder.unwrap_or_default(),
            include_subtree: f.subtree,
            owner_id: f.owner.unwrap_or_default(),
            statuses: f
                .statuses
                .into_iter()
                .map(|s| v1::NumberStatus::from(s).into())
                .collect(),
            series_id: f.series.unwrap_or_default(),
            prefix: f.prefix.unwrap_or_default(),
            tag: f.tag.unwrap_or_default(),
            labels: f.labels.into_iter().collect(),
            assignee_id: f.assignee.unwrap_or_default(),
            ..Default::default()
        }
    }
}

pub async fn run(mut c: Clients, command: Command, out: Output) -> Result<(), Failure> {
    match command {
        Command::Add(args) => add(&mut c, args, out).await,
        Command::Import(args) => transfer::import(&mut c, args, out).await,
        Command::Export(args) => transfer::export(&mut c, args, out).await,
        Command::Search {
            holder,
            pattern,
            consecutive,
            limit,
        } => {
            let found = c
                .number_pool
                .search_available_numbers(v1::SearchAvailableNumbersRequest {
                    holder_id: holder,
                    pattern,
                    consecutive,
                    page_size: limit,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let ranges: Vec<Value> = found
                .ranges
                .iter()
                .map(|r| json!({"first_e164": r.first_e164, "last_e164": r.last_e164}))
                .collect();
            let value = json!({
                "numbers": found.numbers.iter().map(output::number).collect::<Vec<_>>(),
                "ranges": ranges,
            });
            out.print(value, || {
                if found.ranges.is_empty() {
                    output::numbers_table(&found.numbers)
                } else {
                    let mut t = table(&["FIRST", "LAST"]);
                    for r in &found.ranges {
                        t.add_row(vec![r.first_e164.clone(), r.last_e164.clone()]);
                    }
                    t
                }
            });
            Ok(())
        }
        Command::List { filter, limit } => {
            let filter = v1::NumberFilter::from(filter);
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let want = if limit == 0 {
                    1000
                } else {
                    (limit - all.len()).min(1000)
                };
                let page = c
                    .number_pool
                    .list_numbers(v1::ListNumbersRequest {
                        filter: Some(filter.clone()),
                        page_size: want as i32,
                        page_token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.numbers);
                if page.next_page_token.is_empty() || (limit != 0 && all.len() >= limit) {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.print(
                Value::Array(all.iter().map(output::number).collect()),
                || output::numbers_table(&all),
            );
            Ok(())
        }
        Command::Inventory { account, subtree } => {
            let inventory = c
                .number_pool
                .get_inventory(v1::GetInventoryRequest {
                    account_id: account,
                    include_subtree: subtree,
                })
                .await?
                .into_inner();
            out.print(output::inventory(&inventory), || {
                output::inventory_table(&inventory)
            });
            Ok(())
        }
        Command::History { number } => {
            let mut events = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = c
                    .allocation
                    .list_number_events(v1::ListNumberEventsRequest {
                        number: number.clone(),
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                events.extend(page.events);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.print(
                Value::Array(events.iter().map(output::event).collect()),
                || output::events_table(&events),
            );
            Ok(())
        }
    }
}

async fn add(c: &mut Clients, args: AddArgs, out: Output) -> Result<(), Failure> {
    let request_id = args.mutation.request_id();
    let one = |e164: String| v1::AddNumberRequest {
        owner_id: args.owner.clone(),
        number: Some(v1::Number {
            e164,
            carrier: args.carrier.clone().unwrap_or_default(),
            sip_trunk: args.sip_trunk.clone().unwrap_or_default(),
            tags: args.tags.clone(),
            ..Default::default()
        }),
        region: args.region.clone().unwrap_or_default(),
        holder_id: args.holder.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let [e164] = args.numbers.as_slice() {
        let request = v1::AddNumberRequest {
            request_id: request_id.clone(),
            validate_only: args.mutation.validate_only,
            ..one(e164.clone())
        };
        let n = with_id(&request_id, c.number_pool.add_number(request).await)?.into_inner();
        out.print(output::number(&n), || {
            output::numbers_table(std::slice::from_ref(&n))
        });
        return Ok(());
    }
    let request = v1::BatchAddNumbersRequest {
        owner_id: args.owner.clone(),
        requests: args.numbers.iter().cloned().map(one).collect(),
        all_or_nothing: args.all_or_nothing,
        request_id: request_id.clone(),
        validate_only: args.mutation.validate_only,
    };
    let results = with_id(&request_id, c.number_pool.batch_add_numbers(request).await)?
        .into_inner()
        .results;
    // Each failed number: its status, with the details a single call would carry.
    let failed: Vec<(&String, Status)> = args
        .numbers
        .iter()
        .zip(&results)
        .filter_map(|(asked, r)| r.error.as_ref().map(|e| (asked, item_status(e))))
        .collect();
    let value = Value::Array(
        args.numbers
            .iter()
            .zip(&results)
            .map(|(asked, r)| match (&r.number, &r.error) {
                (Some(n), _) => json!({"number": asked, "result": output::number(n)}),
                (None, Some(e)) => json!({"number": asked, "error": {
                    "code": super::failure::code_name(Code::from(e.code)),
                    "message": e.message,
                    "reason": item_status(e).get_details_error_info().map(|i| i.reason),
                }}),
                (None, None) => json!({"number": asked}),
            })
            .collect(),
    );
    out.print(value, || {
        let mut t = table(&["NUMBER", "RESULT", "STATUS", "ID"]);
        for (asked, r) in args.numbers.iter().zip(&results) {
            match (&r.number, &r.error) {
                (Some(n), _) => t.add_row(vec![
                    n.e164.clone(),
                    "added".into(),
                    output::status_short(n.status),
                    n.id.clone(),
                ]),
                (None, e) => t.add_row(vec![
                    asked.clone(),
                    e.as_ref()
                        .map(|e| super::failure::code_name(Code::from(e.code)).to_string())
                        .unwrap_or_default(),
                    String::new(),
                    String::new(),
                ]),
            };
        }
        t
    });
    match failed.first() {
        None => Ok(()),
        Some((_, first)) => {
            for (asked, status) in &failed {
                for (i, line) in describe(status).iter().enumerate() {
                    match i {
                        0 => eprintln!("error: {asked}: {line}"),
                        _ => eprintln!("  {line}"),
                    }
                }
            }
            Err(Failure::Reported(exit_code_of(first.code())))
        }
    }
}

/// A batch item's google.rpc.Status as a tonic Status, so that its details read the same way.
pub(super) fn item_status(s: &numbering_client::tonic_types::pb::Status) -> Status {
    Status::with_details(
        Code::from(s.code),
        s.message.clone(),
        s.encode_to_vec().into(),
    )
}
