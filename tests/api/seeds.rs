//! The seed flows that are one call each (issue 10, items 4 to 8): allocation and assignment
//! that bind the provider portal's attributes, SIP trunks as a resource, reservations found by
//! tag and by whom they are for, series found by name and prefix, closing an account, and the
//! state of a number before it existed. (Reassigning across sub-teams is in
//! `allocation::assign`.)

use numbering_client::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{TestApp, Tree, assert_error, assert_invalid, assert_violates, ok, spawn_app};
use crate::requests::{
    a_day_ago, agent, allocate, assign, get_account, list_numbers, mask, named, quantity, resume,
    state_at, withdraw,
};

/// The tree with `n` numbers in the provider's pool.
async fn stocked(n: u64) -> (TestApp, Tree, Vec<String>) {
    let app = spawn_app().await;
    let t = app.tree().await;
    let numbers = app.add_numbers(&t.provider, n).await;
    (app, t, numbers)
}

/// The provider portal's attributes: a trunk, a billing reference, service information.
fn portal_attributes(trunk: &str) -> Option<pb::Number> {
    Some(pb::Number {
        sip_trunk: trunk.into(),
        billing_reference: "BILL-7".into(),
        service_info: "call centre, 20 seats".into(),
        ..Default::default()
    })
}

const PORTAL_PATHS: &[&str] = &["sip_trunk", "billing_reference", "service_info"];

fn with_attributes(
    request: pb::AllocateNumbersRequest,
    trunk: &str,
    paths: &[&str],
) -> pb::AllocateNumbersRequest {
    pb::AllocateNumbersRequest {
        attributes: portal_attributes(trunk),
        attributes_mask: mask(paths),
        ..request
    }
}

fn preconditions(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_precondition_failure()
        .map(|p| {
            p.violations
                .into_iter()
                .map(|v| (v.r#type, v.subject))
                .collect()
        })
        .unwrap_or_default()
}

async fn listed(c: &mut numbering_client::Clients, filter: pb::NumberFilter) -> Vec<String> {
    let page = ok(c.number_pool.list_numbers(list_numbers(filter)).await);
    page.numbers.into_iter().map(|n| n.e164).collect()
}

// ---------------------------------------------------------------------------------------------
// 4. Bind with attributes.

#[tokio::test]
async fn allocating_a_list_or_a_quantity_binds_the_portal_attributes_in_the_same_step() {
    let (app, t, numbers) = stocked(4).await;
    app.trunk(&t.a, "a-trunk").await;
    let mut admin = app.admin(&t.provider).await;
    let listed_request = with_attributes(
        allocate(&t.provider, &t.a, named(&[&numbers[0], &numbers[1]])),
        "a-trunk",
        PORTAL_PATHS,
    );
    let counted_request = with_attributes(
        allocate(&t.provider, &t.a, quantity(2)),
        "a-trunk",
        PORTAL_PATHS,
    );
    for request in [listed_request, counted_request] {
        let moved = ok(admin.allocation.allocate_numbers(request).await).numbers;
        assert_eq!(moved.len(), 2);
        for n in &moved {
            assert_eq!(n.holder_id, t.a.id);
            assert_eq!(n.sip_trunk, "a-trunk");
            assert_eq!(n.billing_reference, "BILL-7");
            assert_eq!(n.service_info, "call centre, 20 seats");
            assert_eq!(app.operations(&n.e164).await, ["add", "allocate", "update"]);
        }
    }
}

#[tokio::test]
async fn binding_refuses_an_unknown_trunk_and_the_owners_attributes_to_a_holders_admin() {
    let (app, t, numbers) = stocked(2).await;
    app.trunk(&t.b, "b-trunk").await;
    app.trunk(&t.a, "a-trunk").await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0], &numbers[1]])
        .await;
    let mut provider_admin = app.admin(&t.provider).await;
    let mut a_admin = app.admin(&t.a).await;
    let before = app.snapshot().await;
    // A trunk of a sibling is not one the receiving account may use.
    assert_violates(
        provider_admin
            .allocation
            .allocate_numbers(with_attributes(
                allocate(&t.a, &t.a1, named(&[&numbers[0]])),
                "b-trunk",
                &["sip_trunk"],
            ))
            .await,
        "SIP_TRUNK_NOT_FOUND",
    );
    // Team A's admin assigns its own number with its trunk, but not with a billing reference:
    // that is the owner's.
    let with = |paths: &[&str]| pb::AssignNumberRequest {
        attributes: portal_attributes("a-trunk"),
        attributes_mask: mask(paths),
        ..assign(&numbers[0], agent("7", None))
    };
    let status = assert_error(
        a_admin.allocation.assign_number(with(PORTAL_PATHS)).await,
        Code::PermissionDenied,
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "OWNER_ONLY_FIELD"
    );
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused bind changed something"
    );
    let bound = ok(a_admin
        .allocation
        .assign_number(with(&["sip_trunk", "service_info"]))
        .await);
    assert_eq!(bound.status, pb::NumberStatus::Assigned as i32);
    assert_eq!(bound.sip_trunk, "a-trunk");
    assert_eq!(bound.billing_reference, "");
    // The provider's admin binds all three, assigning into a sub-team in one call.
    let bound = ok(provider_admin
        .allocation
        .assign_number(pb::AssignNumberRequest {
            attributes: portal_attributes("a-trunk"),
            attributes_mask: mask(PORTAL_PATHS),
            ..assign(&numbers[1], agent("8", Some(&t.a1)))
        })
        .await);
    assert_eq!(
        (bound.holder_id.as_str(), bound.billing_reference.as_str()),
        (t.a1.id.as_str(), "BILL-7")
    );
    // Attributes without a mask say which they set: bad input.
    assert_invalid(
        provider_admin
            .allocation
            .allocate_numbers(pb::AllocateNumbersRequest {
                attributes: portal_attributes("a-trunk"),
                ..allocate(&t.provider, &t.a, quantity(1))
            })
            .await,
        &["attributes_mask"],
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SIP trunks.

fn rename(trunk: &pb::SipTrunk, name: &str) -> pb::UpdateSipTrunkRequest {
    pb::UpdateSipTrunkRequest {
        sip_trunk: Some(pb::SipTrunk {
            id: trunk.id.clone(),
            name: name.into(),
            etag: trunk.etag.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn delete_trunk(trunk: &pb::SipTrunk) -> pb::DeleteSipTrunkRequest {
    pb::DeleteSipTrunkRequest {
        id: trunk.id.clone(),
        ..Default::default()
    }
}

fn set_trunk(number: &pb::Number, trunk: &str) -> pb::UpdateNumberRequest {
    pb::UpdateNumberRequest {
        number: Some(pb::Number {
            id: number.id.clone(),
            sip_trunk: trunk.into(),
            ..Default::default()
        }),
        update_mask: mask(&["sip_trunk"]),
        ..Default::default()
    }
}

fn trunk_names(trunks: &[pb::SipTrunk]) -> Vec<&str> {
    trunks.iter().map(|t| t.name.as_str()).collect()
}

#[tokio::test]
async fn trunks_are_created_listed_renamed_and_deleted_once_no_number_uses_them() {
    let (app, t, numbers) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0], &numbers[1]])
        .await;
    let main = app.trunk(&t.provider, "main").await;
    let mut a_admin = app.admin(&t.a).await;
    let a_trunk = ok(a_admin
        .number_pool
        .create_sip_trunk(pb::CreateSipTrunkRequest {
            sip_trunk: Some(pb::SipTrunk {
                account_id: t.a.id.clone(),
                name: "a-main".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await);
    let list = |inherited: bool| pb::ListSipTrunksRequest {
        account_id: t.a.id.clone(),
        include_inherited: inherited,
    };
    let own = ok(a_admin.number_pool.list_sip_trunks(list(false)).await).sip_trunks;
    assert_eq!(trunk_names(&own), ["a-main"]);
    // Team A's admin does not see the provider's trunk; the provider's admin sees both.
    let seen = ok(a_admin.number_pool.list_sip_trunks(list(true)).await).sip_trunks;
    assert_eq!(trunk_names(&seen), ["a-main"]);
    let mut provider_admin = app.admin(&t.provider).await;
    let all = ok(provider_admin.number_pool.list_sip_trunks(list(true)).await).sip_trunks;
    assert_eq!(trunk_names(&all), ["main", "a-main"]);

    // Numbers name their holder's trunk or an inherited one.
    let n0 = app.get(&numbers[0]).await;
    let n1 = app.get(&numbers[1]).await;
    ok(a_admin
        .number_pool
        .update_number(set_trunk(&n0, "a-main"))
        .await);
    ok(a_admin
        .number_pool
        .update_number(set_trunk(&n1, "main"))
        .await);
    // A rename carries the numbers along.
    let renamed = ok(a_admin
        .number_pool
        .update_sip_trunk(rename(&a_trunk, "a-primary"))
        .await);
    assert_eq!(renamed.name, "a-primary");
    assert_eq!(app.get(&numbers[0]).await.sip_trunk, "a-primary");
    // A trunk in use is not deleted: the refusal names the numbers in the way.
    let before = app.snapshot().await;
    for (trunk, e164) in [(&renamed, &numbers[0]), (&main, &numbers[1])] {
        let status = assert_error(
            provider_admin
                .number_pool
                .delete_sip_trunk(delete_trunk(trunk))
                .await,
            Code::FailedPrecondition,
        );
        let in_the_way = preconditions(&status);
        assert!(
            in_the_way
                .iter()
                .all(|(kind, _)| kind == "SIP_TRUNK_IN_USE")
        );
        assert!(
            in_the_way.contains(&("SIP_TRUNK_IN_USE".into(), format!("numbers/{e164}"))),
            "{in_the_way:?}"
        );
    }
    assert_eq!(app.snapshot().await, before);
    // List and search select by trunk.
    let on_main = pb::NumberFilter {
        sip_trunk: "main".into(),
        ..Default::default()
    };
    assert_eq!(listed(&mut a_admin, on_main).await, [numbers[1].clone()]);
    let found = ok(a_admin
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: t.a.id.clone(),
            sip_trunk: "a-primary".into(),
            ..Default::default()
        })
        .await)
    .numbers;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].e164, numbers[0]);
    // Once no number names it, the trunk goes.
    ok(a_admin
        .number_pool
        .update_number(set_trunk(&app.get(&numbers[0]).await, ""))
        .await);
    ok(a_admin
        .number_pool
        .delete_sip_trunk(delete_trunk(&renamed))
        .await);
    let left = ok(provider_admin.number_pool.list_sip_trunks(list(true)).await).sip_trunks;
    assert_eq!(trunk_names(&left), ["main"]);
}

#[tokio::test]
async fn a_number_names_only_a_trunk_of_its_holder_or_above_and_a_name_means_one_trunk_on_a_path() {
    let (app, t, numbers) = stocked(1).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    app.trunk(&t.b, "b-trunk").await;
    app.trunk(&t.a1, "a1-trunk").await;
    let n = app.get(&numbers[0]).await;
    let mut admin = app.admin(&t.provider).await;
    let before = app.snapshot().await;
    // A sibling's trunk, a sub-team's trunk, a name nobody has.
    for name in ["b-trunk", "a1-trunk", "nowhere"] {
        assert_violates(
            admin.number_pool.update_number(set_trunk(&n, name)).await,
            "SIP_TRUNK_NOT_FOUND",
        );
    }
    assert_eq!(app.snapshot().await, before);
    // A sibling may have a trunk of the same name; an ancestor or a descendant may not.
    app.trunk(&t.a, "b-trunk").await;
    let again = |account: &pb::Account| pb::CreateSipTrunkRequest {
        sip_trunk: Some(pb::SipTrunk {
            account_id: account.id.clone(),
            name: "a1-trunk".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    for account in [&t.a, &t.a1, &t.provider] {
        assert_error(
            admin.number_pool.create_sip_trunk(again(account)).await,
            Code::AlreadyExists,
        );
    }
    // Another team's admin cannot see, let alone change, team B's trunks.
    let mut a_admin = app.admin(&t.a).await;
    assert_error(
        a_admin
            .number_pool
            .list_sip_trunks(pb::ListSipTrunksRequest {
                account_id: t.b.id.clone(),
                include_inherited: false,
            })
            .await,
        Code::PermissionDenied,
    );
    assert_invalid(
        admin
            .number_pool
            .create_sip_trunk(pb::CreateSipTrunkRequest::default())
            .await,
        &["sip_trunk.account_id", "sip_trunk.name"],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Reservations and tags.

fn reservation(number: &str, reserved_for: &str, tag: &str) -> pb::ReserveNumberRequest {
    pb::ReserveNumberRequest {
        number: number.into(),
        reservation: Some(pb::Reservation {
            reserved_for: reserved_for.into(),
            tag: tag.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn counts(tags: &[pb::TagCount]) -> Vec<(&str, i64)> {
    tags.iter().map(|t| (t.tag.as_str(), t.count)).collect()
}

#[tokio::test]
async fn reservations_are_found_by_tag_and_by_whom_they_are_for_and_tags_are_counted_in_scope() {
    let (app, t, numbers) = stocked(5).await;
    app.allocate_named(
        &t.provider,
        &t.a,
        &[&numbers[0], &numbers[1], &numbers[2], &numbers[3]],
    )
    .await;
    app.allocate_named(&t.provider, &t.b, &[&numbers[4]]).await;
    let mut a_operator = app.operator(&t.a).await;
    for (n, who, tag) in [
        (&numbers[0], "role:reception", "front-desk"),
        (&numbers[1], "role:reception", "front-desk"),
        (&numbers[2], "user:42", "vip"),
    ] {
        ok(a_operator
            .allocation
            .reserve_number(reservation(n, who, tag))
            .await);
    }
    let mut b_operator = app.operator(&t.b).await;
    ok(b_operator
        .allocation
        .reserve_number(reservation(&numbers[4], "user:42", "vip"))
        .await);
    let mut admin = app.admin(&t.provider).await;
    let mut tagged = app.get(&numbers[3]).await;
    tagged.tags = vec!["sales".into()];
    ok(admin
        .number_pool
        .update_number(pb::UpdateNumberRequest {
            number: Some(tagged),
            update_mask: mask(&["tags"]),
            ..Default::default()
        })
        .await);

    let by_tag = pb::NumberFilter {
        holder_id: t.a.id.clone(),
        reservation_tag: "front-desk".into(),
        ..Default::default()
    };
    assert_eq!(listed(&mut a_operator, by_tag).await, &numbers[0..2]);
    let by_whom = pb::NumberFilter {
        reserved_for: "user:42".into(),
        ..Default::default()
    };
    assert_eq!(
        listed(&mut a_operator, by_whom.clone()).await,
        [numbers[2].clone()]
    );
    assert_eq!(
        listed(&mut admin, by_whom).await,
        [numbers[2].clone(), numbers[4].clone()]
    );
    let found = ok(a_operator
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: t.a.id.clone(),
            reservation_tag: "front-desk".into(),
            pattern: "+1303555010?".into(),
            ..Default::default()
        })
        .await)
    .numbers;
    let found: Vec<&str> = found.iter().map(|n| n.e164.as_str()).collect();
    assert_eq!(found, [numbers[0].as_str(), numbers[1].as_str()]);

    let tags = |account: &pb::Account| pb::ListTagsRequest {
        account_id: account.id.clone(),
    };
    let in_a = ok(a_operator.number_pool.list_tags(tags(&t.a)).await);
    assert_eq!(
        counts(&in_a.reservation_tags),
        [("front-desk", 2), ("vip", 1)]
    );
    assert_eq!(counts(&in_a.number_tags), [("sales", 1)]);
    let everywhere = ok(admin.number_pool.list_tags(tags(&t.provider)).await);
    assert_eq!(
        counts(&everywhere.reservation_tags),
        [("front-desk", 2), ("vip", 2)]
    );
    assert_error(
        a_operator.number_pool.list_tags(tags(&t.b)).await,
        Code::PermissionDenied,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Series.

#[tokio::test]
async fn series_are_found_by_name_and_by_prefix_page_by_page() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for (prefix, name) in [
        ("+1", "United States"),
        ("+1303", "Denver"),
        ("+1720", "Denver North"),
        ("+44", "United Kingdom"),
    ] {
        ok(app
            .platform()
            .number_pool
            .create_series(crate::requests::create_series(&provider, prefix, name))
            .await);
    }
    let mut viewer = app.viewer(&provider).await;
    let list = |name: &str, prefix: &str, page_size: i32, token: &str| pb::ListSeriesRequest {
        provider_id: provider.id.clone(),
        name_contains: name.into(),
        prefix: prefix.into(),
        page_size,
        page_token: token.into(),
    };
    let prefixes = |r: &pb::ListSeriesResponse| -> Vec<String> {
        r.series.iter().map(|s| s.prefix.clone()).collect()
    };
    let denver = ok(viewer
        .number_pool
        .list_series(list("dENVER", "", 0, ""))
        .await);
    assert_eq!(prefixes(&denver), ["+1303", "+1720"]);
    let us = ok(viewer.number_pool.list_series(list("", "+1", 0, "")).await);
    assert_eq!(prefixes(&us), ["+1", "+1303", "+1720"]);
    let united = ok(viewer
        .number_pool
        .list_series(list("united", "+4", 0, ""))
        .await);
    assert_eq!(prefixes(&united), ["+44"]);
    // Pages keep the filter; a token used with another filter is refused.
    let first = ok(viewer
        .number_pool
        .list_series(list("denver", "", 1, ""))
        .await);
    assert_eq!(prefixes(&first), ["+1303"]);
    let second = ok(viewer
        .number_pool
        .list_series(list("denver", "", 1, &first.next_page_token))
        .await);
    assert_eq!(prefixes(&second), ["+1720"]);
    assert_eq!(second.next_page_token, "");
    assert_error(
        viewer
            .number_pool
            .list_series(list("united", "", 1, &first.next_page_token))
            .await,
        Code::InvalidArgument,
    );
    assert_invalid(
        viewer.number_pool.list_series(list("", "44", 0, "")).await,
        &["prefix"],
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Closed accounts, and the state before a number existed.

fn close(account: &pb::Account) -> pb::CloseAccountRequest {
    pb::CloseAccountRequest {
        id: account.id.clone(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_account_closes_once_its_numbers_are_withdrawn_then_takes_nothing_and_stays_readable() {
    let (app, t, numbers) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    app.allocate_named(&t.provider, &t.a1, &[&numbers[1]]).await;
    let mut admin = app.admin(&t.provider).await;
    let before = app.snapshot().await;
    let status = assert_error(
        admin.tenancy.close_account(close(&t.a)).await,
        Code::FailedPrecondition,
    );
    let in_the_way = preconditions(&status);
    for e164 in &numbers {
        assert!(
            in_the_way.contains(&("ACCOUNT_HOLDS_NUMBERS".into(), format!("numbers/{e164}"))),
            "{in_the_way:?}"
        );
    }
    assert_eq!(app.snapshot().await, before);
    // Closing is the parent's call.
    let mut a_admin = app.admin(&t.a).await;
    assert_error(
        a_admin.tenancy.close_account(close(&t.a)).await,
        Code::PermissionDenied,
    );
    // Withdrawn, the numbers are out of the way.
    ok(admin
        .allocation
        .withdraw_numbers(withdraw(&t.a1, named(&[&numbers[1]])))
        .await);
    ok(admin
        .allocation
        .withdraw_numbers(withdraw(&t.a, named(&[&numbers[0], &numbers[1]])))
        .await);
    let closed = ok(admin.tenancy.close_account(close(&t.a)).await);
    assert_eq!(closed.state, pb::AccountState::Closed as i32);
    // Recorded like every change of an account.
    let events = ok(admin
        .tenancy
        .list_account_events(pb::ListAccountEventsRequest {
            account_id: t.a.id.clone(),
            ..Default::default()
        })
        .await)
    .events;
    let last = events.last().expect("the account's events");
    assert_eq!(last.operation, pb::AccountOperation::Close as i32);
    assert_eq!(
        last.after.as_ref().map(|a| a.state),
        Some(pb::AccountState::Closed as i32)
    );
    // Nothing new goes in or below; it is not resumed; it stays readable with its history.
    let before = app.snapshot().await;
    for to in [&t.a, &t.a1] {
        assert_violates(
            admin
                .allocation
                .allocate_numbers(allocate(&t.provider, to, named(&[&numbers[0]])))
                .await,
            "ACCOUNT_NOT_ACTIVE",
        );
    }
    assert_violates(
        admin.tenancy.resume_account(resume(&t.a.id)).await,
        "ACCOUNT_NOT_ACTIVE",
    );
    assert_eq!(app.snapshot().await, before);
    let read = ok(admin.tenancy.get_account(get_account(&t.a.id)).await);
    assert_eq!(read.state, pb::AccountState::Closed as i32);
    let history = ok(admin
        .allocation
        .list_number_events(crate::requests::events(&numbers[0]))
        .await)
    .events;
    assert!(
        history
            .iter()
            .any(|e| e.after.as_ref().unwrap().holder_id == t.a.id)
    );
}

#[tokio::test]
async fn the_state_of_a_number_before_it_was_added_says_so_to_whoever_sees_it() {
    let (app, t, numbers) = stocked(1).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    let id = app.get(&numbers[0]).await.id;
    let mut a_viewer = app.viewer(&t.a).await;
    for key in [&numbers[0], &id] {
        assert_violates(
            a_viewer
                .allocation
                .get_number_state_at(state_at(key, a_day_ago()))
                .await,
            "NUMBER_NOT_YET_ADDED",
        );
    }
    // A caller that does not see the number learns nothing.
    let mut b_viewer = app.viewer(&t.b).await;
    assert_error(
        b_viewer
            .allocation
            .get_number_state_at(state_at(&numbers[0], a_day_ago()))
            .await,
        Code::PermissionDenied,
    );
}
