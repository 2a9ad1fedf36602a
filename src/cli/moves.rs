//! `numbering allocate|withdraw|transfer|assign|unassign|reserve|unreserve|release|unbind`.

use std::str::FromStr;

use clap::{Args, ValueEnum};
use numbering_client::v1;
use serde_json::Value;

use super::failure::with_id;
use super::output::{self, Output};
use super::{Failure, Mutation, Remote};

/// Which numbers a move takes: a list, or a quantity picked by the service.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// The numbers (E.164 or ids), at most 1000.
    #[arg(required_unless_present = "count", conflicts_with = "count")]
    pub numbers: Vec<String>,
    /// A quantity of AVAILABLE numbers, picked by the service (all or nothing).
    #[arg(long)]
    pub count: Option<i64>,
    /// With --count: only from this series.
    #[arg(long, requires = "count")]
    pub series: Option<String>,
    /// With --count: only numbers under this E.164 prefix.
    #[arg(long, requires = "count")]
    pub prefix: Option<String>,
}

impl From<Selection> for v1::NumberSelection {
    fn from(s: Selection) -> Self {
        use v1::number_selection::Selection as S;
        let selection = match s.count {
            Some(count) => S::Quantity(v1::QuantitySelection {
                count,
                series_id: s.series.unwrap_or_default(),
                prefix: s.prefix.unwrap_or_default(),
            }),
            None => S::Numbers(v1::NumberList { numbers: s.numbers }),
        };
        Self {
            selection: Some(selection),
        }
    }
}

#[derive(Debug, Args)]
pub struct Allocate {
    /// The account the numbers leave.
    #[arg(long)]
    pub from: String,
    /// A descendant of --from.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct Withdraw {
    /// The account the numbers leave, to its parent.
    #[arg(long)]
    pub account: String,
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct Transfer {
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    User,
    Agent,
    Device,
    Service,
    Trunk,
    Other,
}

impl From<Kind> for v1::AssigneeKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::User => Self::User,
            Kind::Agent => Self::Agent,
            Kind::Device => Self::Device,
            Kind::Service => Self::Service,
            Kind::Trunk => Self::Trunk,
            Kind::Other => Self::Other,
        }
    }
}

#[derive(Debug, Args)]
pub struct Assign {
    /// E.164 or number id.
    pub number: String,
    /// What the number is assigned to.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The assignee's id in your own system.
    #[arg(long)]
    pub id: String,
    /// A name people read.
    #[arg(long)]
    pub name: Option<String>,
    /// The assignee's account, when below the holder (the number moves down with it).
    #[arg(long)]
    pub account: Option<String>,
    /// Assign a RESERVED number to someone else than whom it is reserved for.
    #[arg(long)]
    pub override_reservation: bool,
    /// Only if the number's etag still matches.
    #[arg(long)]
    pub etag: Option<String>,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct Reserve {
    /// E.164 or number id.
    pub number: String,
    /// The person or role it is reserved for: user:42, role:reception.
    #[arg(long = "for")]
    pub reserved_for: String,
    /// A short label reservations are grouped by.
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    /// When the reservation ends by itself (RFC 3339: 2026-12-01T00:00:00Z).
    #[arg(long, value_parser = prost_types::Timestamp::from_str)]
    pub expires: Option<prost_types::Timestamp>,
    #[arg(long)]
    pub etag: Option<String>,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

/// A move of one number that takes nothing else.
#[derive(Debug, Args)]
pub struct One {
    /// E.164 or number id.
    pub number: String,
    /// Only if the number's etag still matches.
    #[arg(long)]
    pub etag: Option<String>,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

pub enum Move {
    Unassign,
    Unreserve,
    Release,
    Unbind,
}

fn print_many(out: Output, numbers: &[v1::Number]) {
    out.print(
        Value::Array(numbers.iter().map(output::number).collect()),
        || output::numbers_table(numbers),
    );
}

fn print_one(out: Output, n: &v1::Number) {
    out.print(output::number(n), || {
        output::numbers_table(std::slice::from_ref(n))
    });
}

pub async fn allocate(a: Allocate) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let request = v1::AllocateNumbersRequest {
        from_account_id: a.from,
        to_account_id: a.to,
        selection: Some(a.selection.into()),
        request_id: request_id.clone(),
        validate_only: a.mutation.validate_only,
        ..Default::default()
    };
    let answer = with_id(&request_id, c.allocation.allocate_numbers(request).await)?;
    print_many(a.remote.output, &answer.into_inner().numbers);
    Ok(())
}

pub async fn withdraw(a: Withdraw) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let request = v1::WithdrawNumbersRequest {
        account_id: a.account,
        selection: Some(a.selection.into()),
        request_id: request_id.clone(),
        validate_only: a.mutation.validate_only,
    };
    let answer = with_id(&request_id, c.allocation.withdraw_numbers(request).await)?;
    print_many(a.remote.output, &answer.into_inner().numbers);
    Ok(())
}

pub async fn transfer(a: Transfer) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let request = v1::TransferNumbersRequest {
        from_account_id: a.from,
        to_account_id: a.to,
        selection: Some(a.selection.into()),
        request_id: request_id.clone(),
        validate_only: a.mutation.validate_only,
    };
    let answer = with_id(&request_id, c.allocation.transfer_numbers(request).await)?;
    print_many(a.remote.output, &answer.into_inner().numbers);
    Ok(())
}

pub async fn assign(a: Assign) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let kind = v1::AssigneeKind::from(a.kind);
    let request = v1::AssignNumberRequest {
        number: a.number,
        assignee: Some(v1::Assignee {
            kind: kind.into(),
            id: a.id,
            display_name: a.name.unwrap_or_default(),
            account_id: a.account.unwrap_or_default(),
        }),
        override_reservation: a.override_reservation,
        etag: a.etag.unwrap_or_default(),
        request_id: request_id.clone(),
        validate_only: a.mutation.validate_only,
        ..Default::default()
    };
    let n = with_id(&request_id, c.allocation.assign_number(request).await)?.into_inner();
    print_one(a.remote.output, &n);
    Ok(())
}

pub async fn reserve(a: Reserve) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let request = v1::ReserveNumberRequest {
        number: a.number,
        reservation: Some(v1::Reservation {
            reserved_for: a.reserved_for,
            tag: a.tag.unwrap_or_default(),
            note: a.note.unwrap_or_default(),
            expire_time: a.expires,
        }),
        etag: a.etag.unwrap_or_default(),
        request_id: request_id.clone(),
        validate_only: a.mutation.validate_only,
    };
    let n = with_id(&request_id, c.allocation.reserve_number(request).await)?.into_inner();
    print_one(a.remote.output, &n);
    Ok(())
}

pub async fn one(which: Move, a: One) -> Result<(), Failure> {
    let mut c = a.remote.connect().await?;
    let request_id = a.mutation.request_id();
    let (number, etag, validate_only) = (
        a.number,
        a.etag.unwrap_or_default(),
        a.mutation.validate_only,
    );
    let id = request_id.clone();
    let answer = match which {
        Move::Unassign => {
            c.allocation
                .unassign_number(v1::UnassignNumberRequest {
                    number,
                    etag,
                    request_id: id,
                    validate_only,
                })
                .await
        }
        Move::Unreserve => {
            c.allocation
                .unreserve_number(v1::UnreserveNumberRequest {
                    number,
                    etag,
                    request_id: id,
                    validate_only,
                })
                .await
        }
        Move::Release => {
            c.allocation
                .release_number(v1::ReleaseNumberRequest {
                    number,
                    etag,
                    request_id: id,
                    validate_only,
                })
                .await
        }
        Move::Unbind => {
            c.allocation
                .unbind_number(v1::UnbindNumberRequest {
                    number,
                    etag,
                    request_id: id,
                    validate_only,
                })
                .await
        }
    };
    let n = with_id(&request_id, answer)?.into_inner();
    print_one(a.remote.output, &n);
    Ok(())
}
