//! One builder per request the tests send: a test names what it asks for, and sets by hand
//! (`..requests::allocate(..)`) only the fields its scenario is about.

use std::time::SystemTime;

use numbering_client::v1 as pb;
use pb::number_selection::Selection;
use prost_types::FieldMask;

// ---------------------------------------------------------------------------------------------
// Selections: which numbers a move takes.

/// Numbers picked by the server, as `q` describes them.
pub fn quantity_of(q: pb::QuantitySelection) -> Option<pb::NumberSelection> {
    Some(pb::NumberSelection {
        selection: Some(Selection::Quantity(q)),
    })
}

/// `count` unused numbers of the holder, whichever.
pub fn quantity(count: i64) -> Option<pb::NumberSelection> {
    quantity_of(pb::QuantitySelection {
        count,
        ..Default::default()
    })
}

/// `count` unused numbers of one series.
pub fn from_series(count: i64, series_id: &str) -> Option<pb::NumberSelection> {
    quantity_of(pb::QuantitySelection {
        count,
        series_id: series_id.into(),
        ..Default::default()
    })
}

/// `count` unused numbers under an E.164 prefix.
pub fn under_prefix(count: i64, prefix: &str) -> Option<pb::NumberSelection> {
    quantity_of(pb::QuantitySelection {
        count,
        prefix: prefix.into(),
        ..Default::default()
    })
}

/// These numbers, each named by its E.164 or its id.
pub fn named(numbers: &[&str]) -> Option<pb::NumberSelection> {
    Some(pb::NumberSelection {
        selection: Some(Selection::Numbers(pb::NumberList {
            numbers: numbers.iter().map(|n| n.to_string()).collect(),
        })),
    })
}

// ---------------------------------------------------------------------------------------------
// Moves between accounts.

pub fn allocate(
    from: &pb::Account,
    to: &pb::Account,
    selection: Option<pb::NumberSelection>,
) -> pb::AllocateNumbersRequest {
    pb::AllocateNumbersRequest {
        from_account_id: from.id.clone(),
        to_account_id: to.id.clone(),
        selection,
        ..Default::default()
    }
}

pub fn allocate_quantity(
    from: &pb::Account,
    to: &pb::Account,
    count: i64,
) -> pb::AllocateNumbersRequest {
    allocate(from, to, quantity(count))
}

pub fn allocate_named(
    from: &pb::Account,
    to: &pb::Account,
    numbers: &[&str],
) -> pb::AllocateNumbersRequest {
    allocate(from, to, named(numbers))
}

/// Back from `account` to its parent.
pub fn withdraw(
    account: &pb::Account,
    selection: Option<pb::NumberSelection>,
) -> pb::WithdrawNumbersRequest {
    pb::WithdrawNumbersRequest {
        account_id: account.id.clone(),
        selection,
        ..Default::default()
    }
}

pub fn transfer(
    from: &pb::Account,
    to: &pb::Account,
    selection: Option<pb::NumberSelection>,
) -> pb::TransferNumbersRequest {
    pb::TransferNumbersRequest {
        from_account_id: from.id.clone(),
        to_account_id: to.id.clone(),
        selection,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Changes of one number.

/// Agent `id`, of `account` when given (else of the number's holder).
pub fn agent(id: &str, account: Option<&pb::Account>) -> Option<pb::Assignee> {
    Some(pb::Assignee {
        kind: pb::AssigneeKind::Agent as i32,
        id: id.into(),
        display_name: format!("Agent {id}"),
        account_id: account.map(|a| a.id.clone()).unwrap_or_default(),
    })
}

pub fn assign(number: &str, assignee: Option<pb::Assignee>) -> pb::AssignNumberRequest {
    pb::AssignNumberRequest {
        number: number.into(),
        assignee,
        ..Default::default()
    }
}

pub fn reassign(number: &str, assignee: Option<pb::Assignee>) -> pb::ReassignNumberRequest {
    pb::ReassignNumberRequest {
        number: number.into(),
        assignee,
        ..Default::default()
    }
}

pub fn unassign(number: &str) -> pb::UnassignNumberRequest {
    pb::UnassignNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

/// A reservation for `reserved_for` with the front desk's tag and note.
pub fn reserve(number: &str, reserved_for: &str) -> pb::ReserveNumberRequest {
    pb::ReserveNumberRequest {
        number: number.into(),
        reservation: Some(pb::Reservation {
            reserved_for: reserved_for.into(),
            tag: "front-desk".into(),
            note: "kept for the new reception".into(),
            expire_time: None,
        }),
        ..Default::default()
    }
}

pub fn unreserve(number: &str) -> pb::UnreserveNumberRequest {
    pb::UnreserveNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

pub fn release(number: &str) -> pb::ReleaseNumberRequest {
    pb::ReleaseNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

pub fn unbind(number: &str) -> pb::UnbindNumberRequest {
    pb::UnbindNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// History.

/// The first page of a number's events, of the server's default size.
pub fn events(number: &str) -> pb::ListNumberEventsRequest {
    pb::ListNumberEventsRequest {
        number: number.into(),
        ..Default::default()
    }
}

pub fn events_page(number: &str, page_size: i32, page_token: &str) -> pb::ListNumberEventsRequest {
    pb::ListNumberEventsRequest {
        number: number.into(),
        page_size,
        page_token: page_token.into(),
    }
}

pub fn state_at(number: &str, time: Option<prost_types::Timestamp>) -> pb::GetNumberStateAtRequest {
    pb::GetNumberStateAtRequest {
        number: number.into(),
        time,
    }
}

/// A day ago: before any test's first event.
pub fn a_day_ago() -> Option<prost_types::Timestamp> {
    Some((SystemTime::now() - std::time::Duration::from_secs(86400)).into())
}

// ---------------------------------------------------------------------------------------------
// The number pool.

/// Adds `e164` (any form the server reads) to `owner`'s pool.
pub fn add_number(owner: &pb::Account, e164: &str) -> pb::AddNumberRequest {
    pb::AddNumberRequest {
        owner_id: owner.id.clone(),
        number: Some(pb::Number {
            e164: e164.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds `e164` to `owner` and allocates it to `holder` at once.
pub fn add_number_into(
    owner: &pb::Account,
    holder: &pb::Account,
    e164: &str,
) -> pb::AddNumberRequest {
    pb::AddNumberRequest {
        holder_id: holder.id.clone(),
        ..add_number(owner, e164)
    }
}

pub fn add_numbers(
    owner: &pb::Account,
    requests: Vec<pb::AddNumberRequest>,
    all_or_nothing: bool,
) -> pb::BatchAddNumbersRequest {
    pb::BatchAddNumbersRequest {
        owner_id: owner.id.clone(),
        requests,
        all_or_nothing,
        ..Default::default()
    }
}

pub fn get_number(id: &str) -> pb::GetNumberRequest {
    pb::GetNumberRequest {
        key: Some(pb::get_number_request::Key::Id(id.into())),
    }
}

pub fn get_e164(e164: &str) -> pb::GetNumberRequest {
    pb::GetNumberRequest {
        key: Some(pb::get_number_request::Key::E164(e164.into())),
    }
}

pub fn delete_number(id: &str) -> pb::DeleteNumberRequest {
    pb::DeleteNumberRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// The first page of the numbers `filter` selects.
pub fn list_numbers(filter: pb::NumberFilter) -> pb::ListNumbersRequest {
    pb::ListNumbersRequest {
        filter: Some(filter),
        ..Default::default()
    }
}

/// Every number the caller sees, as CSV.
pub fn export() -> pb::ExportNumbersRequest {
    pb::ExportNumbersRequest { filter: None }
}

pub fn inventory(account_id: &str, include_subtree: bool) -> pb::GetInventoryRequest {
    pb::GetInventoryRequest {
        account_id: account_id.into(),
        include_subtree,
    }
}

pub fn create_series(provider: &pb::Account, prefix: &str, name: &str) -> pb::CreateSeriesRequest {
    pb::CreateSeriesRequest {
        provider_id: provider.id.clone(),
        series: Some(pb::Series {
            prefix: prefix.into(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts.

/// A new account named `name` under `parent_id` (empty: a provider).
pub fn create_account(parent_id: &str, name: &str) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        account: Some(pb::Account {
            parent_id: parent_id.into(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn get_account(id: &str) -> pb::GetAccountRequest {
    pb::GetAccountRequest { id: id.into() }
}

pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Changes the `paths` of the account `account.id` to the values `account` has.
pub fn update_account(account: pb::Account, paths: &[&str]) -> pb::UpdateAccountRequest {
    pb::UpdateAccountRequest {
        account: Some(account),
        update_mask: mask(paths),
        ..Default::default()
    }
}

/// At most `max_numbers` numbers in the account's subtree.
pub fn set_quota(account_id: &str, max_numbers: i64) -> pb::UpdateAccountRequest {
    update_account(
        pb::Account {
            id: account_id.into(),
            max_numbers: Some(max_numbers),
            ..Default::default()
        },
        &["max_numbers"],
    )
}

pub fn set_aging_period(account_id: &str, seconds: i64) -> pb::UpdateAccountRequest {
    update_account(
        pb::Account {
            id: account_id.into(),
            aging_period: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        },
        &["aging_period"],
    )
}

pub fn suspend(id: &str) -> pb::SuspendAccountRequest {
    pb::SuspendAccountRequest {
        id: id.into(),
        ..Default::default()
    }
}

pub fn resume(id: &str) -> pb::ResumeAccountRequest {
    pb::ResumeAccountRequest {
        id: id.into(),
        ..Default::default()
    }
}

pub fn delete_account(id: &str) -> pb::DeleteAccountRequest {
    pb::DeleteAccountRequest {
        id: id.into(),
        ..Default::default()
    }
}
