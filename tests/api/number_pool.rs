//! NumberPool: a provider adds, updates and deletes its numbers, files them in series, and
//! everyone lists, searches, exports and counts the numbers of their own subtree, and no more.

use std::collections::BTreeMap;

use numbering_client::Clients;
use numbering_client::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    assert_error, assert_invalid, assert_violates, export_csv, ok, spawn_app, violated_fields,
};
use crate::requests::{
    add_number, add_number_into, add_numbers, create_series, delete_number, export, get_e164,
    get_number, inventory, list_numbers, mask,
};

/// The E.164s of the first page of numbers `filter` selects.
async fn listed(c: &mut Clients, filter: pb::NumberFilter) -> Vec<String> {
    let page = ok(c.number_pool.list_numbers(list_numbers(filter)).await);
    page.numbers.into_iter().map(|n| n.e164).collect()
}

#[tokio::test]
async fn a_provider_adds_a_number_in_international_or_national_form() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    app.trunk(&provider, "trunk-7").await;
    let mut c = app.admin(&provider).await;
    let mut req = add_number(&provider, "+1 (303) 555-0100");
    let n = req.number.as_mut().unwrap();
    n.sip_trunk = "trunk-7".into();
    n.billing_reference = "BILL-1".into();
    n.source = pb::NumberSource::Purchased as i32;
    n.tags = vec!["vip".into(), "sales".into(), "vip".into()];
    n.labels = BTreeMap::from([("site".into(), "denver".into())]);
    let added = ok(c.number_pool.add_number(req).await);
    assert_eq!(added.e164, "+13035550100");
    assert_eq!(added.owner_id, provider.id);
    assert_eq!(added.holder_id, provider.id);
    assert_eq!(added.status, pb::NumberStatus::Available as i32);
    assert_eq!(added.number_type, pb::NumberType::GeographicOrMobile as i32);
    assert_eq!(added.tags, ["sales", "vip"]);
    assert_eq!(added.sip_trunk, "trunk-7");

    let mut national = add_number(&provider, "020 7946 0018");
    national.region = "GB".into();
    let gb = ok(c.number_pool.add_number(national).await);
    assert_eq!(gb.e164, "+442079460018");
    assert_eq!(gb.number_type, pb::NumberType::Geographic as i32);

    let by_e164 = ok(c.number_pool.get_number(get_e164("+1 303 555 0100")).await);
    assert_eq!(by_e164, added);
    let by_id = ok(c.number_pool.get_number(get_number(&added.id)).await);
    assert_eq!(by_id, added);
    assert_eq!(app.events_of(&added.id).await, 1);
}

#[tokio::test]
async fn bad_numbers_are_refused_with_the_field_and_the_reason() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    for input in [
        "303 555 0100",
        "+1 303 555 01",
        "+1234567890123456",
        "not a number",
        "",
        "+999 123",
    ] {
        let status = assert_error(
            c.number_pool.add_number(add_number(&provider, input)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["number.e164"], "{input}");
    }
    let mut unknown_region = add_number(&provider, "303 555 0100");
    unknown_region.region = "XX".into();
    assert_invalid(c.number_pool.add_number(unknown_region).await, &["region"]);
    let mut long = add_number(&provider, "+13035550100");
    long.number.as_mut().unwrap().service_info = "x".repeat(2000);
    long.number.as_mut().unwrap().tags = (0..40).map(|i| format!("t{i}")).collect();
    let status = assert_error(c.number_pool.add_number(long).await, Code::InvalidArgument);
    let fields = violated_fields(&status);
    assert!(
        fields.contains(&"number.service_info".to_string()),
        "{fields:?}"
    );
    assert!(fields.contains(&"number.tags".to_string()), "{fields:?}");
    assert!(app.live_numbers().await.is_empty());
}

#[tokio::test]
async fn a_number_is_unique_among_live_numbers() {
    let app = spawn_app().await;
    let acme = app.provider("Acme").await;
    let other = app.provider("Other").await;
    let mut c = app.platform();
    app.add_number(&acme, "+13035550100").await;
    assert_error(
        c.number_pool
            .add_number(add_number(&acme, "+13035550100"))
            .await,
        Code::AlreadyExists,
    );
    assert_error(
        c.number_pool
            .add_number(add_number(&other, "+1 303 555 0100"))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(app.live_numbers().await.len(), 1);
}

#[tokio::test]
async fn only_a_providers_admin_adds_numbers_to_it() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut sub_admin = app.admin(&child).await;
    assert_error(
        sub_admin
            .number_pool
            .add_number(add_number(&provider, "+13035550100"))
            .await,
        Code::PermissionDenied,
    );
    assert_violates(
        sub_admin
            .number_pool
            .add_number(add_number(&child, "+13035550100"))
            .await,
        "NOT_A_PROVIDER",
    );
    let mut operator = app.operator(&provider).await;
    assert_error(
        operator
            .number_pool
            .add_number(add_number(&provider, "+13035550100"))
            .await,
        Code::PermissionDenied,
    );
    assert!(app.live_numbers().await.is_empty());
}

#[tokio::test]
async fn a_number_can_be_added_straight_into_a_sub_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let stranger = app.provider("Other").await;
    let mut c = app.platform();
    let into_child = add_number_into(&provider, &child, "+13035550100");
    let n = ok(c.number_pool.add_number(into_child).await);
    assert_eq!(n.holder_id, child.id);
    assert_eq!(n.owner_id, provider.id);
    let into_stranger = add_number_into(&provider, &stranger, "+13035550101");
    assert_violates(
        c.number_pool.add_number(into_stranger).await,
        "OUTSIDE_OWNER_TREE",
    );
}

#[tokio::test]
async fn a_batch_answers_per_number_or_all_or_nothing() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    app.add_number(&provider, "+13035550102").await;
    let batch = |all_or_nothing: bool| {
        let requests = ["+13035550100", "bad", "+13035550102", "+13035550101"]
            .map(|e164| add_number(&provider, e164))
            .to_vec();
        add_numbers(&provider, requests, all_or_nothing)
    };
    assert_invalid(
        c.number_pool.batch_add_numbers(batch(true)).await,
        &["requests[1].number.e164"],
    );
    assert_eq!(app.live_numbers().await.len(), 1);

    let answer = ok(c.number_pool.batch_add_numbers(batch(false)).await);
    let added: Vec<bool> = answer.results.iter().map(|r| r.number.is_some()).collect();
    assert_eq!(added, [true, false, false, true]);
    assert_eq!(
        answer.results[1].error.as_ref().unwrap().code,
        Code::InvalidArgument as i32
    );
    assert_eq!(
        answer.results[2].error.as_ref().unwrap().code,
        Code::AlreadyExists as i32
    );
    assert_eq!(app.live_numbers().await.len(), 3);

    let too_many = (0..1001)
        .map(|i| add_number(&provider, &format!("+1303555{i:04}")))
        .collect();
    assert_invalid(
        c.number_pool
            .batch_add_numbers(add_numbers(&provider, too_many, false))
            .await,
        &["requests"],
    );
}

#[tokio::test]
async fn a_batchs_numbers_share_one_pick_and_each_batch_draws_its_own() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let sql = app.connect_sql().await;
    let mut picks = Vec::new();
    for block in ["+1303555", "+1720555"] {
        let requests = (0..50)
            .map(|i| add_number(&provider, &format!("{block}{i:04}")))
            .collect();
        ok(c.number_pool
            .batch_add_numbers(add_numbers(&provider, requests, true))
            .await);
        // Where quantity allocation finds them: one value for the whole batch, so that an
        // allocation takes the batch's numbers together, as they lie in the table.
        let rows = sql
            .query(
                "SELECT DISTINCT pick FROM numbers WHERE e164 LIKE $1",
                &[&format!("{block}%")],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{block}: the batch's numbers share a pick");
        picks.push(rows[0].get::<_, f64>(0));
    }
    assert_ne!(picks[0], picks[1], "each batch draws its own pick");
}

#[tokio::test]
async fn update_changes_the_masked_attributes_and_honours_the_etag() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let n = app.add_number(&provider, "+13035550100").await;
    app.trunk(&provider, "trunk-9").await;
    let update = |etag: &str, paths: &[&str]| pb::UpdateNumberRequest {
        number: Some(pb::Number {
            id: n.id.clone(),
            sip_trunk: "trunk-9".into(),
            carrier: "ignored".into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: mask(paths),
        ..Default::default()
    };
    let updated = ok(c
        .number_pool
        .update_number(update(&n.etag, &["sip_trunk"]))
        .await);
    assert_eq!(updated.sip_trunk, "trunk-9");
    assert_eq!(updated.carrier, "");
    assert_error(
        c.number_pool
            .update_number(update(&n.etag, &["sip_trunk"]))
            .await,
        Code::Aborted,
    );
    assert_invalid(
        c.number_pool.update_number(update("", &["e164"])).await,
        &["update_mask.e164"],
    );
    let child = app.child(&provider, "Sub").await;
    let mut sub = app.admin(&child).await;
    assert_error(
        sub.number_pool
            .update_number(update("", &["sip_trunk"]))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn the_owners_attributes_change_only_by_the_owners_admins_not_the_holders() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    app.trunk(&team, "team-trunk").await;
    let mut req = add_number(&provider, "+13035550100");
    if let Some(n) = req.number.as_mut() {
        n.carrier = "Acme Carrier".into();
        n.billing_reference = "BILL-42".into();
        n.source = pb::NumberSource::Purchased as i32;
    }
    let n = ok(app.platform().number_pool.add_number(req).await);
    app.allocate_named(&provider, &team, &[&n.e164]).await;
    let update = |paths: &[&str]| pb::UpdateNumberRequest {
        number: Some(pb::Number {
            id: n.id.clone(),
            carrier: "Cheap Carrier".into(),
            billing_reference: "MINE".into(),
            source: pb::NumberSource::Byoc as i32,
            sip_trunk: "team-trunk".into(),
            ..Default::default()
        }),
        update_mask: mask(paths),
        ..Default::default()
    };
    // The team holds the number and administers its own attributes...
    let mut team_admin = app.admin(&team).await;
    let own = ok(team_admin
        .number_pool
        .update_number(update(&["sip_trunk"]))
        .await);
    assert_eq!(own.sip_trunk, "team-trunk");
    // ...but not the owner's: each field is refused, alone or among others, and nothing changes.
    for paths in [
        &["carrier"][..],
        &["billing_reference"],
        &["source"],
        &["sip_trunk", "billing_reference", "carrier"],
    ] {
        let events = app.events_of(&n.id).await;
        let status = assert_error(
            team_admin.number_pool.update_number(update(paths)).await,
            Code::PermissionDenied,
        );
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "OWNER_ONLY_FIELD");
        let owners: Vec<&str> = paths
            .iter()
            .copied()
            .filter(|p| *p != "sip_trunk")
            .collect();
        assert_eq!(info.metadata["fields"], owners.join(","));
        let now = ok(team_admin.number_pool.get_number(get_number(&n.id)).await);
        assert_eq!(
            (
                now.carrier.as_str(),
                now.billing_reference.as_str(),
                now.source
            ),
            (
                "Acme Carrier",
                "BILL-42",
                pb::NumberSource::Purchased as i32
            )
        );
        assert_eq!(app.events_of(&n.id).await, events);
    }
    // The owner's admin changes them while the team holds the number.
    let mut owner_admin = app.admin(&provider).await;
    let changed = ok(owner_admin
        .number_pool
        .update_number(update(&["carrier", "billing_reference", "source"]))
        .await);
    assert_eq!(
        (changed.carrier.as_str(), changed.billing_reference.as_str()),
        ("Cheap Carrier", "MINE")
    );
}

#[tokio::test]
async fn the_owner_deletes_an_available_number_and_its_history_stays() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let n = app.add_number(&provider, "+13035550100").await;
    ok(c.number_pool.delete_number(delete_number(&n.id)).await);
    assert!(app.live_numbers().await.is_empty());
    let gone = ok(c.number_pool.get_number(get_number(&n.id)).await);
    assert_eq!(gone.status, pb::NumberStatus::Deleted as i32);
    assert_eq!(app.events_of(&n.id).await, 2);
    // The same E.164 may come back later as a new number.
    let again = app.add_number(&provider, "+13035550100").await;
    assert_ne!(again.id, n.id);
}

#[tokio::test]
async fn a_number_held_by_a_sub_account_or_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut c = app.admin(&provider).await;
    let held = app.add_number(&provider, "+13035550100").await;
    app.allocate_named(&provider, &child, &[&held.e164]).await;
    let reserved = app.add_number(&provider, "+13035550101").await;
    app.reserve(&reserved.e164, "role:reception").await;
    for (number, rule) in [
        (&held, "NUMBER_HELD_BY_SUB_ACCOUNT"),
        (&reserved, "NUMBER_IN_USE"),
    ] {
        assert_violates(
            c.number_pool.delete_number(delete_number(&number.id)).await,
            rule,
        );
        // Added, then allocated or reserved: the refused delete left no event.
        assert_eq!(app.events_of(&number.id).await, 2);
    }
    assert_eq!(app.live_numbers().await.len(), 2);
    // A sub-account's admin is not the owner.
    let mut sub = app.admin(&child).await;
    assert_error(
        sub.number_pool.delete_number(delete_number(&held.id)).await,
        Code::PermissionDenied,
    );
    // The database refuses it too, whatever the code does: this one goes around the API on
    // purpose, to prove the table's own constraint.
    let direct = app
        .sql
        .execute(
            "UPDATE numbers SET status = 'deleted', delete_time = now() WHERE id = $1",
            &[&uuid::Uuid::parse_str(&held.id).unwrap()],
        )
        .await;
    assert!(direct.is_err());
}

#[tokio::test]
async fn series_file_numbers_by_longest_prefix_and_refile_on_change() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let denver = app.add_number(&provider, "+13035550100").await;
    let boston = app.add_number(&provider, "+16175550100").await;
    let series = |prefix: &str, name: &str| create_series(&provider, prefix, name);
    let us = ok(c.number_pool.create_series(series("+1", "USA")).await);
    let co = ok(c.number_pool.create_series(series("+1303", "Denver")).await);
    assert_eq!(
        ok(c.number_pool.get_number(get_number(&denver.id)).await).series_id,
        co.id
    );
    assert_eq!(
        ok(c.number_pool.get_number(get_number(&boston.id)).await).series_id,
        us.id
    );
    let later = app.add_number(&provider, "+13035550199").await;
    assert_eq!(later.series_id, co.id);

    ok(c.number_pool
        .delete_series(pb::DeleteSeriesRequest {
            id: co.id.clone(),
            ..Default::default()
        })
        .await);
    assert_eq!(
        ok(c.number_pool.get_number(get_number(&denver.id)).await).series_id,
        us.id
    );

    assert_error(
        c.number_pool.create_series(series("+1", "Again")).await,
        Code::AlreadyExists,
    );
    assert_invalid(
        c.number_pool.create_series(series("1303", "")).await,
        &["series.prefix", "series.display_name"],
    );
    let listed = ok(c
        .number_pool
        .list_series(pb::ListSeriesRequest {
            provider_id: provider.id.clone(),
            ..Default::default()
        })
        .await);
    assert_eq!(listed.series.len(), 1);
    let child = app.child(&provider, "Sub").await;
    let mut sub = app.admin(&child).await;
    assert_error(
        sub.number_pool
            .create_series(series("+1720", "Sneaky"))
            .await,
        Code::PermissionDenied,
    );
    let renamed = ok(c
        .number_pool
        .update_series(pb::UpdateSeriesRequest {
            series: Some(pb::Series {
                id: us.id.clone(),
                display_name: "United States".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
            ..Default::default()
        })
        .await);
    assert_eq!(renamed.display_name, "United States");
    assert_eq!(renamed.prefix, "+1");
}

#[tokio::test]
async fn list_filters_and_pages_in_e164_order_across_changes() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    app.add_range(&provider, 13035550100, 10).await;
    app.add_range(&provider, 16175550100, 3).await;
    let filter = pb::NumberFilter {
        prefix: "+1303".into(),
        ..Default::default()
    };
    let page = |token: String| pb::ListNumbersRequest {
        page_size: 4,
        page_token: token,
        ..list_numbers(filter.clone())
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = ok(c.number_pool.list_numbers(page(token)).await);
        seen.extend(answer.numbers.iter().map(|n| n.e164.clone()));
        pages += 1;
        if pages == 1 {
            // A number added behind the cursor is not seen again; one ahead of it is.
            app.add_number(&provider, "+13035550099").await;
            app.add_number(&provider, "+13035550150").await;
        }
        if answer.next_page_token.is_empty() {
            break;
        }
        token = answer.next_page_token;
    }
    let mut expected: Vec<String> = (13035550100u64..13035550110)
        .map(|n| format!("+{n}"))
        .collect();
    expected.push("+13035550150".into());
    assert_eq!(seen, expected);

    let first = ok(c.number_pool.list_numbers(page(String::new())).await);
    let other_filter = pb::ListNumbersRequest {
        page_size: 4,
        page_token: first.next_page_token,
        ..list_numbers(pb::NumberFilter {
            prefix: "+1617".into(),
            ..Default::default()
        })
    };
    assert_invalid(
        c.number_pool.list_numbers(other_filter).await,
        &["page_token"],
    );
    let bad = list_numbers(pb::NumberFilter {
        prefix: "1303".into(),
        statuses: vec![42],
        ..Default::default()
    });
    assert_invalid(
        c.number_pool.list_numbers(bad).await,
        &["filter.statuses", "filter.prefix"],
    );
}

#[tokio::test]
async fn list_filters_by_tag_label_status_and_holder_subtree() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let sub_team = app.child(&team, "Sub-team").await;
    let mut c = app.admin(&provider).await;
    let mut tagged = add_number(&provider, "+13035550100");
    tagged.number.as_mut().unwrap().tags = vec!["vip".into()];
    tagged.number.as_mut().unwrap().labels = BTreeMap::from([("site".into(), "denver".into())]);
    let vip = ok(c.number_pool.add_number(tagged).await);
    let a = app.add_number(&provider, "+13035550101").await;
    let b = app.add_number(&provider, "+13035550102").await;
    app.allocate_named(&provider, &team, &[&a.e164]).await;
    app.allocate_named(&provider, &sub_team, &[&b.e164]).await;
    let by_tag = pb::NumberFilter {
        tag: "vip".into(),
        ..Default::default()
    };
    assert_eq!(listed(&mut c, by_tag).await, vec![vip.e164.clone()]);
    let by_label = pb::NumberFilter {
        labels: BTreeMap::from([("site".into(), "denver".into())]),
        ..Default::default()
    };
    assert_eq!(listed(&mut c, by_label).await, vec![vip.e164.clone()]);
    let team_only = pb::NumberFilter {
        holder_id: team.id.clone(),
        ..Default::default()
    };
    assert_eq!(listed(&mut c, team_only).await, vec![a.e164.clone()]);
    let subtree = pb::NumberFilter {
        holder_id: team.id.clone(),
        include_subtree: true,
        ..Default::default()
    };
    assert_eq!(
        listed(&mut c, subtree).await,
        [a.e164.clone(), b.e164.clone()]
    );
    let reserved = pb::NumberFilter {
        statuses: vec![pb::NumberStatus::Reserved as i32],
        ..Default::default()
    };
    assert!(listed(&mut c, reserved).await.is_empty());
}

#[tokio::test]
async fn a_sub_account_sees_only_its_own_subtrees_numbers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let a = app.child(&provider, "A").await;
    let b = app.child(&provider, "B").await;
    app.add_numbers(&provider, 3).await;
    app.allocate_named(&provider, &a, &["+13035550100"]).await;
    app.allocate_named(&provider, &b, &["+13035550101"]).await;
    let mut a_viewer = app.viewer(&a).await;
    let mine = ok(a_viewer
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await);
    let e164s: Vec<_> = mine.numbers.iter().map(|n| n.e164.as_str()).collect();
    assert_eq!(e164s, ["+13035550100"]);
    let sibling = list_numbers(pb::NumberFilter {
        holder_id: b.id.clone(),
        ..Default::default()
    });
    assert_error(
        a_viewer.number_pool.list_numbers(sibling).await,
        Code::PermissionDenied,
    );
    for elsewhere in ["+13035550101", "+13035550199"] {
        assert_error(
            a_viewer.number_pool.get_number(get_e164(elsewhere)).await,
            Code::PermissionDenied,
        );
    }
    let csv = export_csv(&mut a_viewer, export()).await;
    assert!(csv.contains("+13035550100"));
    assert!(!csv.contains("+13035550101"));
    assert!(!csv.contains("+13035550102"));
}

#[tokio::test]
async fn search_finds_available_numbers_by_prefix_wildcards_vanity_and_runs() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    app.add_range(&provider, 13035550100, 5).await; // 0100..0104
    app.add_range(&provider, 13035550110, 2).await; // 0110..0111
    app.add_number(&provider, "+18003569377").await; // 1-800-FLOWERS
    let mut search = async |pattern: &str, consecutive: i32| {
        let request = pb::SearchAvailableNumbersRequest {
            holder_id: provider.id.clone(),
            pattern: pattern.into(),
            consecutive,
            page_size: 0,
            ..Default::default()
        };
        c.number_pool.search_available_numbers(request).await
    };
    let found = |r: pb::SearchAvailableNumbersResponse| {
        r.numbers.into_iter().map(|n| n.e164).collect::<Vec<_>>()
    };
    let by_prefix = ok(search("+1303555011", 0).await);
    assert_eq!(found(by_prefix), ["+13035550110", "+13035550111"]);
    let wild = ok(search("+1303555010?", 0).await);
    assert_eq!(found(wild).len(), 5);
    let star = ok(search("+1*11", 0).await);
    assert_eq!(found(star), ["+13035550111"]);
    let vanity = ok(search("+1800FLOWERS", 0).await);
    assert_eq!(found(vanity), ["+18003569377"]);
    let runs = ok(search("+1303", 3).await);
    assert_eq!(runs.ranges.len(), 1);
    assert_eq!(runs.ranges[0].first_e164, "+13035550100");
    assert_eq!(runs.ranges[0].last_e164, "+13035550102");
    assert_eq!(found(runs).len(), 3);
    assert_invalid(search("1303%", 0).await, &["pattern"]);
}

#[tokio::test]
async fn inventory_counts_an_account_alone_or_with_its_subtree() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let mut c = app.admin(&provider).await;
    let denver = app.series(&provider, "+1303").await;
    app.add_range(&provider, 13035550100, 6).await;
    app.add_number(&provider, "+442079460018").await;
    app.allocate_named(&provider, &team, &["+13035550100", "+13035550101"])
        .await;
    let own = ok(c
        .number_pool
        .get_inventory(inventory(&provider.id, false))
        .await);
    let totals = own.totals.unwrap();
    assert_eq!(
        (totals.total, totals.available, totals.allocated_to_children),
        (7, 5, 2)
    );
    let in_denver = own
        .series
        .iter()
        .find(|s| s.series_id == denver.id)
        .unwrap()
        .counts
        .unwrap();
    assert_eq!(
        (
            in_denver.total,
            in_denver.available,
            in_denver.allocated_to_children
        ),
        (6, 4, 2)
    );
    let whole = ok(c
        .number_pool
        .get_inventory(inventory(&provider.id, true))
        .await)
    .totals
    .unwrap();
    assert_eq!((whole.total, whole.available), (7, 7));
    let mut team_viewer = app.viewer(&team).await;
    let t = ok(team_viewer
        .number_pool
        .get_inventory(inventory(&team.id, false))
        .await)
    .totals
    .unwrap();
    assert_eq!((t.total, t.available), (2, 2));
    assert_error(
        team_viewer
            .number_pool
            .get_inventory(inventory(&provider.id, false))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn retries_of_an_add_return_the_first_answer() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let mut req = add_number(&provider, "+13035550100");
    req.request_id = "add-1".into();
    let first = ok(c.number_pool.add_number(req.clone()).await);
    let again = ok(c.number_pool.add_number(req.clone()).await);
    assert_eq!(first, again);
    req.number.as_mut().unwrap().e164 = "+13035550101".into();
    assert_error(c.number_pool.add_number(req).await, Code::InvalidArgument);
    assert_eq!(app.live_numbers().await.len(), 1);
    let mut dry = add_number(&provider, "+13035550102");
    dry.validate_only = true;
    ok(c.number_pool.add_number(dry).await);
    assert_eq!(app.live_numbers().await.len(), 1);
}

#[tokio::test]
async fn adding_straight_into_a_sub_account_respects_its_quota() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut c = app.platform();
    app.set_quota(&child, 1).await;
    let into_child = |e164: &str| add_number_into(&provider, &child, e164);
    ok(c.number_pool.add_number(into_child("+13035550100")).await);
    let status = assert_error(
        c.number_pool.add_number(into_child("+13035550101")).await,
        Code::ResourceExhausted,
    );
    assert!(tonic_types::StatusExt::get_details_quota_failure(&status).is_some());
    assert_eq!(app.live_numbers().await.len(), 1);
}

#[tokio::test]
async fn nothing_is_added_to_a_suspended_provider() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    app.suspend(&provider).await;
    assert_violates(
        app.platform()
            .number_pool
            .add_number(add_number(&provider, "+13035550100"))
            .await,
        "ACCOUNT_NOT_ACTIVE",
    );
    assert!(app.live_numbers().await.is_empty());
}

#[tokio::test]
async fn a_search_for_consecutive_numbers_answers_at_most_a_page_of_numbers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    // Four blocks of 60 consecutive numbers, apart from each other.
    for block in 0..4 {
        app.add_range(&provider, 13035550000 + block * 100, 60)
            .await;
    }
    let runs = c
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: provider.id.clone(),
            pattern: "+1303".into(),
            consecutive: 50,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(runs.ranges.len(), 2);
    assert_eq!(runs.numbers.len(), 100);
    let longer_than_a_page = c
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: provider.id.clone(),
            pattern: "+1303".into(),
            consecutive: 60,
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(longer_than_a_page.ranges.len(), 1);
    assert_eq!(longer_than_a_page.numbers.len(), 10);
}

#[tokio::test]
async fn a_list_rooted_at_an_account_deleted_since_its_last_list_is_refused_as_before() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let number = app.add_number(&t.provider, "+13035550100").await;
    app.allocate_named(&t.provider, &t.a1, &[&number.e164])
        .await;
    let (mut provider, mut own) = (app.admin(&t.provider).await, app.admin(&t.a1).await);
    let of_a1 = || pb::NumberFilter {
        holder_id: t.a1.id.clone(),
        ..Default::default()
    };
    let listed = |page: pb::ListNumbersResponse| -> Vec<String> {
        page.numbers.into_iter().map(|n| n.e164).collect()
    };
    // Listed twice each: the second list starts from what the first one learnt of the account.
    for _ in 0..2 {
        let mine = ok(own
            .number_pool
            .list_numbers(crate::requests::list_numbers(Default::default()))
            .await);
        assert_eq!(listed(mine), vec![number.e164.clone()]);
        let below = ok(provider
            .number_pool
            .list_numbers(crate::requests::list_numbers(of_a1()))
            .await);
        assert_eq!(listed(below), vec![number.e164.clone()]);
    }
    ok(provider
        .allocation
        .withdraw_numbers(crate::requests::withdraw(
            &t.a1,
            crate::requests::named(&[&number.e164]),
        ))
        .await);
    // Empty now, and still there: an empty page, not a refusal.
    let empty = ok(own
        .number_pool
        .list_numbers(crate::requests::list_numbers(Default::default()))
        .await);
    assert!(empty.numbers.is_empty());

    ok(provider
        .tenancy
        .delete_account(crate::requests::delete_account(&t.a1.id))
        .await);
    assert_error(
        own.number_pool
            .list_numbers(crate::requests::list_numbers(Default::default()))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        provider
            .number_pool
            .list_numbers(crate::requests::list_numbers(of_a1()))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        app.platform()
            .number_pool
            .list_numbers(crate::requests::list_numbers(of_a1()))
            .await,
        Code::NotFound,
    );
    // Out of scope is refused from the kept placement as from a read: a sibling's admin.
    let mut sibling = app.admin(&t.b).await;
    let of_a = pb::NumberFilter {
        holder_id: t.a.id.clone(),
        ..Default::default()
    };
    ok(provider
        .number_pool
        .list_numbers(crate::requests::list_numbers(of_a.clone()))
        .await);
    assert_error(
        sibling
            .number_pool
            .list_numbers(crate::requests::list_numbers(of_a))
            .await,
        Code::PermissionDenied,
    );
}

/// `count` providers, each with 10,000 AVAILABLE numbers it holds itself, in a block of its
/// own: +1 (`base` + p × `step` + 0..9,999), straight into the table.
async fn providers_with_blocks(
    app: &crate::helpers::TestApp,
    sql: &tokio_postgres::Client,
    count: i64,
    base: i64,
    step: i64,
) -> Vec<pb::Account> {
    let mut providers = Vec::new();
    for p in 0..count {
        let provider = app.provider(&format!("Pool {p}")).await;
        let id = uuid::Uuid::parse_str(&provider.id).unwrap();
        sql.execute(
            "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
             SELECT gen_random_uuid(), $1, '+1' || ($3::bigint + g)::text, $1, $2, 'available'
             FROM generate_series(0, 9999) g",
            &[
                &id,
                &numbering::domain::account::child_path("", id),
                &(base + p * step),
            ],
        )
        .await
        .unwrap();
        providers.push(provider);
    }
    providers
}

#[tokio::test]
async fn pages_of_a_big_pool_by_prefix_come_whole_in_e164_order_and_end_at_the_prefix() {
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    // Three providers of 10,000 numbers in adjacent blocks: a prefix's last page must end at
    // the prefix, not run into the next numbers of the table.
    let providers = providers_with_blocks(&app, &sql, 3, 3_035_000_000, 10_000).await;
    sql.batch_execute("ANALYZE numbers").await.unwrap();
    let mut c = app.platform();
    for (owner, prefix, expected) in [
        // The second provider's last 100 numbers (+1303501990..+1303501999x).
        (1, "+130350199", (19_900..20_000).collect::<Vec<u64>>()),
        // A prefix that spans the first two providers' blocks: only the owner's numbers.
        (0, "+13035", (0..10_000).collect()),
    ] {
        let filter = pb::NumberFilter {
            owner_id: providers[owner].id.clone(),
            prefix: prefix.into(),
            ..Default::default()
        };
        let seen = every_page(&mut c, filter, 1000).await;
        let expected: Vec<String> = expected
            .into_iter()
            .map(|g| format!("+1{}", 3_035_000_000_u64 + g))
            .collect();
        assert_eq!(seen, expected, "{prefix}");
    }
}

/// Every page of a list, `size` at a time, following the page tokens (at most 100 pages).
async fn every_page(c: &mut Clients, filter: pb::NumberFilter, size: i32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let mut request = list_numbers(filter.clone());
        request.page_size = size;
        request.page_token = token;
        let page = ok(c.number_pool.list_numbers(request).await);
        seen.extend(page.numbers.into_iter().map(|n| n.e164));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
    panic!("the pages never end: {} numbers so far", seen.len());
}

#[tokio::test]
async fn pages_of_every_providers_numbers_and_of_a_subtree_come_whole_in_e164_order() {
    // These pages are read in the live E.164 index's order (the pattern operators'), their
    // prefix and cursor compared the same way; a provider's page in the column's own.
    let app = spawn_app().await;
    let acme = app.provider("Acme").await;
    let other = app.provider("Other").await;
    app.add_range(&acme, 13035550100, 6).await;
    app.add_range(&other, 13035550106, 6).await;
    app.add_range(&acme, 13035550112, 3).await;
    app.add_range(&other, 17205550100, 2).await;
    let team = app.child(&acme, "Team").await;
    let sub = app.child(&team, "Sub").await;
    app.allocate_named(&acme, &team, &["+13035550101", "+13035550114"])
        .await;
    app.allocate_named(&acme, &sub, &["+13035550100", "+13035550113"])
        .await;

    let mut platform = app.platform();
    let under_303: Vec<String> = (13035550100u64..13035550115)
        .map(|n| format!("+{n}"))
        .collect();
    for size in [1, 2, 4] {
        let every = pb::NumberFilter {
            prefix: "+1303".into(),
            ..Default::default()
        };
        assert_eq!(every_page(&mut platform, every, size).await, under_303);
        let subtree = pb::NumberFilter {
            holder_id: team.id.clone(),
            include_subtree: true,
            prefix: "+1303555011".into(),
            ..Default::default()
        };
        assert_eq!(
            every_page(&mut platform, subtree, size).await,
            ["+13035550113", "+13035550114"]
        );
    }
    let mut everything = under_303.clone();
    everything.extend(["+17205550100".to_string(), "+17205550101".to_string()]);
    assert_eq!(
        every_page(&mut platform, pb::NumberFilter::default(), 5).await,
        everything
    );
    let subtree = pb::NumberFilter {
        holder_id: team.id.clone(),
        include_subtree: true,
        ..Default::default()
    };
    assert_eq!(
        every_page(&mut platform, subtree, 1).await,
        [
            "+13035550100",
            "+13035550101",
            "+13035550113",
            "+13035550114"
        ]
    );
}

/// The index entries the connection's statements have read in `index` so far.
async fn index_reads(db: &deadpool_postgres::Object, index: &str) -> i64 {
    db.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    db.query_one(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = $1",
        &[&index],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_page_by_prefix_reads_about_a_page_of_the_index_on_every_call() {
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    // 20 providers of 10,000 numbers each, each its own block of E.164s.
    let providers: Vec<uuid::Uuid> =
        providers_with_blocks(&app, &sql, 20, 2_000_000_000, 1_000_000)
            .await
            .iter()
            .map(|p| uuid::Uuid::parse_str(&p.id).unwrap())
            .collect();
    // The inserts' own index reads counted now, not during a page.
    sql.batch_execute("ANALYZE numbers; SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();

    // The store's page of 100 (and its look-ahead) of one provider's numbers (or one holder's:
    // here each provider holds its own), under a prefix they share with the others (`+120`,
    // the 20 blocks), under their own block's, or under none, from one pooled connection, more
    // often than it takes a cached statement to go to its generic plan (five calls). Were the
    // live numbers' E.164 index in the column's order, the database could read a page from it
    // filtering by provider, costed as if each provider's numbers were spread evenly: here
    // every block before the provider's (190,101 entries). A generic plan cannot see the prefix
    // and may read and sort the provider's whole block (10,000). With only the scope's own
    // index in that order, and sorting off for the page, a page reads it in order and stops
    // after it, planned for its values or not.
    let db = numbering::store::Db::new(app.database.clone(), 1).unwrap();
    let client = db.client().await.unwrap();
    let calls = [
        (19, "+120"),
        (11, "+120"),
        (19, "+12019"),
        (5, ""),
        (19, "+120"),
        (7, "+12007"),
        (19, ""),
        (13, "+120"),
        (3, "+12003"),
        (19, "+120"),
    ];
    let indexes = [
        "numbers_provider_e164",
        "numbers_holder_e164",
        "numbers_live_e164",
    ];
    for (p, prefix) in calls {
        use numbering::store::numbers::{NumberQuery, Scope};
        for scope in [Scope::Provider(providers[p]), Scope::Holder(providers[p])] {
            let mut q = NumberQuery::new(scope);
            // As ListNumbers asks: the root's existence checked in the page's statement.
            q.live_account = Some(providers[p]);
            if !prefix.is_empty() {
                q.e164_like = Some(format!("{prefix}%"));
            }
            let mut before = 0;
            for index in indexes {
                before += index_reads(&client, index).await;
            }
            let page = numbering::store::numbers::list(&client, &q, None, 101)
                .await
                .unwrap();
            let mut read = -before;
            for index in indexes {
                read += index_reads(&client, index).await;
            }
            assert_eq!(page.len(), 101);
            assert_eq!(page[0].e164, format!("+1{}", 2_000_000_000 + p * 1_000_000));
            assert!(
                (101..=150).contains(&read),
                "provider {p} under '{prefix}': read {read} index entries for a page"
            );
        }
    }
    // Those pages by prefix ran on cached statements: after five calls, each from its generic
    // plan, planned once (sorting off leaves the ordered read as the generic plan too); the
    // connection's sorting is back on after them.
    let plans: Vec<(String, i64)> = client
        .query(
            "SELECT statement, generic_plans FROM pg_prepared_statements
             WHERE statement LIKE '%FROM numbers WHERE%e164 >=%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for scope in ["provider_id = $1", "holder_id = $1"] {
        let generic: i64 = plans
            .iter()
            .filter(|(sql, _)| sql.contains(scope))
            .map(|(_, n)| n)
            .sum();
        assert!(
            generic >= 2,
            "{scope}: {generic} generic plans in {plans:?}"
        );
    }
    let sorting: String = client
        .query_one("SHOW enable_sort", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sorting, "on");
    // Every provider's numbers (the platform's page) in the live numbers' index order.
    for (prefix, first) in [("", 2_000_000_000), ("+12019", 2_019_000_000)] {
        let mut q =
            numbering::store::numbers::NumberQuery::new(numbering::store::numbers::Scope::All);
        if !prefix.is_empty() {
            q.e164_like = Some(format!("{prefix}%"));
        }
        let before = index_reads(&client, "numbers_live_e164").await;
        let page = numbering::store::numbers::list(&client, &q, None, 101)
            .await
            .unwrap();
        let read = index_reads(&client, "numbers_live_e164").await - before;
        assert_eq!(page.len(), 101);
        assert_eq!(page[0].e164, format!("+1{first}"));
        assert!(
            (101..=150).contains(&read),
            "every provider's under '{prefix}': read {read} entries"
        );
    }
}

/// The rows of `numbers` the connection's statements have read so far, by index or by scan.
async fn rows_read(db: &deadpool_postgres::Object) -> i64 {
    db.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    db.query_one(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables
         WHERE relname = 'numbers'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_page_with_deleted_numbers_reads_about_a_page_wherever_the_provider_lies() {
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    // 20 providers of 10,000 numbers in blocks, the first 300 of each deleted: a provider's
    // deleted numbers come after every other provider's numbers before its block.
    let accounts = providers_with_blocks(&app, &sql, 20, 2_000_000_000, 1_000_000).await;
    let providers: Vec<uuid::Uuid> = accounts
        .iter()
        .map(|p| uuid::Uuid::parse_str(&p.id).unwrap())
        .collect();
    sql.execute(
        "UPDATE numbers SET status = 'deleted', delete_time = now()
         WHERE (substr(e164, 2)::bigint - 12000000000) % 1000000 < 300",
        &[],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE numbers; SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();

    // Provider 19's deleted numbers, alone or among its available ones, a page of 100 and its
    // look-ahead, from one pooled connection more often than it takes a cached statement to
    // go to its generic plan. Read in order from the index of every number's E.164s, filtered
    // by provider, a page would read the 190,000 numbers before the provider's block.
    use numbering::domain::number::NumberStatus;
    use numbering::store::numbers::{NumberQuery, Scope};
    let db = numbering::store::Db::new(app.database.clone(), 1).unwrap();
    let client = db.client().await.unwrap();
    let first = 2_019_000_000u64;
    let scopes = [Scope::Provider(providers[19]), Scope::Holder(providers[19])];
    let asked = [
        vec![NumberStatus::Deleted],
        vec![NumberStatus::Available, NumberStatus::Deleted],
    ];
    for _ in 0..7 {
        for (scope, statuses) in scopes
            .iter()
            .flat_map(|s| asked.iter().map(move |a| (s, a)))
        {
            let mut q = NumberQuery::new(scope.clone());
            q.statuses = statuses.clone();
            let before = rows_read(&client).await;
            let page = numbering::store::numbers::list(&client, &q, None, 101)
                .await
                .unwrap();
            let read = rows_read(&client).await - before;
            let e164s: Vec<String> = page.iter().map(|n| n.e164.clone()).collect();
            let expected: Vec<String> = (first..first + 101).map(|n| format!("+1{n}")).collect();
            assert_eq!(e164s, expected, "{scope:?} {statuses:?}");
            assert!(page.iter().all(|n| n.status == NumberStatus::Deleted));
            assert!(
                read <= 2 * 101 + 50,
                "{scope:?} {statuses:?}: read {read} rows for a page"
            );
        }
    }
    // A page further on: past the deleted numbers, the available ones after them.
    let mut q = NumberQuery::new(Scope::Provider(providers[19]));
    q.statuses = vec![NumberStatus::Available, NumberStatus::Deleted];
    let last_deleted = format!("+1{}", first + 299);
    let after = sql
        .query_one(
            "SELECT id FROM numbers WHERE e164 = $1 AND status = 'deleted'",
            &[&last_deleted],
        )
        .await
        .unwrap()
        .get(0);
    let page = numbering::store::numbers::list(&client, &q, Some(&(last_deleted, after)), 3)
        .await
        .unwrap();
    let e164s: Vec<String> = page.iter().map(|n| n.e164.clone()).collect();
    assert_eq!(
        e164s,
        (first + 300..first + 303)
            .map(|n| format!("+1{n}"))
            .collect::<Vec<_>>()
    );
    assert!(page.iter().all(|n| n.status == NumberStatus::Available));

    // The same by prefix (planned for its values, the bounds in each half): a page from the
    // start, all deleted, and one that crosses from the deleted numbers to the live ones.
    let mut q = NumberQuery::new(Scope::Provider(providers[19]));
    q.statuses = vec![NumberStatus::Available, NumberStatus::Deleted];
    q.e164_like = Some(format!("+1{}%", first / 1000));
    // Each time from a new sample of the table: the planner, planning for the values, took
    // the live half's range for a few rows (the provider's share times the prefix's: 21 for
    // 700) and read it whole and sorted it under some samples and not others.
    let pages = (0..6).flat_map(|_| [(0u64, 101usize), (250, 50)]);
    for (i, (start, deleted)) in pages.enumerate() {
        if i % 2 == 0 {
            sql.batch_execute("ANALYZE numbers; SELECT pg_stat_force_next_flush()")
                .await
                .unwrap();
        }
        let after = match start {
            0 => None,
            n => {
                let e164 = format!("+1{}", first + n - 1);
                let id = sql
                    .query_one(
                        "SELECT id FROM numbers WHERE e164 = $1 AND status = 'deleted'",
                        &[&e164],
                    )
                    .await
                    .unwrap()
                    .get(0);
                Some((e164, id))
            }
        };
        let before = rows_read(&client).await;
        let page = numbering::store::numbers::list(&client, &q, after.as_ref(), 101)
            .await
            .unwrap();
        let read = rows_read(&client).await - before;
        let e164s: Vec<String> = page.iter().map(|n| n.e164.clone()).collect();
        let expected: Vec<String> = (first + start..first + start + 101)
            .map(|n| format!("+1{n}"))
            .collect();
        assert_eq!(e164s, expected);
        let gone = page.iter().filter(|n| n.status == NumberStatus::Deleted);
        assert_eq!(gone.count(), deleted, "from {start}");
        assert!(read <= 2 * 101 + 50, "from {start}: read {read} rows");
    }

    // A deleted E.164 added again: the live number and the deleted one share it, ordered by
    // id, and a cursor between them gives the second.
    let again = format!("+1{first}");
    sql.execute(
        "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
         SELECT gen_random_uuid(), id, $2, id, path, 'available' FROM accounts WHERE id = $1",
        &[&providers[19], &again],
    )
    .await
    .unwrap();
    for scope in [Scope::Provider(providers[19]), Scope::Holder(providers[19])] {
        let mut q = NumberQuery::new(scope);
        q.statuses = vec![NumberStatus::Deleted, NumberStatus::Available];
        let both = numbering::store::numbers::list(&client, &q, None, 2)
            .await
            .unwrap();
        assert_eq!([&both[0].e164, &both[1].e164], [&again, &again]);
        assert!(both[0].id < both[1].id);
        let after = (again.clone(), both[0].id);
        let next = numbering::store::numbers::list(&client, &q, Some(&after), 2)
            .await
            .unwrap();
        assert_eq!(next[0].id, both[1].id);
        assert_eq!(next[1].e164, format!("+1{}", first + 1));
        // Asked twice for deleted numbers alone, the same as once.
        q.statuses = vec![NumberStatus::Deleted, NumberStatus::Deleted];
        let before = rows_read(&client).await;
        let page = numbering::store::numbers::list(&client, &q, None, 101)
            .await
            .unwrap();
        assert!(rows_read(&client).await - before <= 101 + 50);
        assert!(page.iter().all(|n| n.status == NumberStatus::Deleted));
    }

    // A sub-account holds no deleted numbers (they are back with their provider): its
    // subtree asked for them is empty, without reading its numbers, and so are its own.
    let reseller = app.child(&accounts[19], "Reseller").await;
    let reseller_id = uuid::Uuid::parse_str(&reseller.id).unwrap();
    let path: String = sql
        .query_one("SELECT path FROM accounts WHERE id = $1", &[&reseller_id])
        .await
        .unwrap()
        .get(0);
    sql.execute(
        "UPDATE numbers SET holder_id = $1, holder_path = $2
         WHERE provider_id = $3 AND status = 'available' AND e164 >= '+12019000300'
           AND e164 < '+12019000400'",
        &[&reseller_id, &path, &providers[19]],
    )
    .await
    .unwrap();
    for whole in [false, true] {
        let mut q = NumberQuery::new(Scope::Subtree {
            provider: providers[19],
            path: path.clone(),
        });
        q.statuses = vec![NumberStatus::Deleted];
        q.whole = whole;
        let before = rows_read(&client).await;
        let page = numbering::store::numbers::list(&client, &q, None, 101)
            .await
            .unwrap();
        assert!(page.is_empty());
        assert_eq!(rows_read(&client).await - before, 0, "whole: {whole}");
        q.statuses = vec![NumberStatus::Available, NumberStatus::Deleted];
        let page = numbering::store::numbers::list(&client, &q, None, 101)
            .await
            .unwrap();
        assert_eq!(page.len(), 100, "whole: {whole}");
    }
    let mut q = NumberQuery::new(Scope::Holder(reseller_id));
    q.statuses = vec![NumberStatus::Deleted];
    let page = numbering::store::numbers::list(&client, &q, None, 101)
        .await
        .unwrap();
    assert!(page.is_empty());
}

/// A provider of 30,000 numbers (+13000000000...) in one block; a reseller's three customers
/// hold the last 3,000 (a block of 1,000 each), a sibling of the reseller 100 in the middle:
/// the provider, the reseller and its path.
async fn a_reseller_at_the_end(
    app: &crate::helpers::TestApp,
    sql: &tokio_postgres::Client,
) -> (uuid::Uuid, uuid::Uuid, String) {
    let provider = app.provider("Carrier").await;
    let reseller = app.child(&provider, "Reseller").await;
    let customers = [
        app.child(&reseller, "C1").await,
        app.child(&reseller, "C2").await,
        app.child(&reseller, "C3").await,
    ];
    let sibling = app.child(&provider, "Sibling").await;
    let id = |a: &pb::Account| uuid::Uuid::parse_str(&a.id).unwrap();
    let customers: Vec<uuid::Uuid> = customers.iter().map(id).collect();
    // Stored in no order (each account's numbers spread through the table, as numbers moved
    // one by one lie), so that reading an account's numbers in its index's order does not
    // look cheaper to the planner than reading them all and sorting them.
    sql.execute(
        "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
         SELECT gen_random_uuid(), $1, '+1' || (3000000000 + g)::text, a.id, a.path, 'available'
         FROM generate_series(0, 29999) g
         JOIN accounts a ON a.id = CASE WHEN g >= 27000 THEN ($2::uuid[])[1 + (g - 27000) / 1000]
                                        WHEN g >= 15000 AND g < 15100 THEN $3
                                        ELSE $1 END
         ORDER BY random()",
        &[&id(&provider), &customers, &id(&sibling)],
    )
    .await
    .unwrap();
    // The inserts' own index reads (the triggers' checks) counted now, not during a page.
    sql.batch_execute("ANALYZE numbers; SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let path = sql
        .query_one("SELECT path FROM accounts WHERE id = $1", &[&id(&reseller)])
        .await
        .unwrap()
        .get(0);
    (id(&provider), id(&reseller), path)
}

#[tokio::test]
async fn a_subtree_page_reads_a_page_per_account_not_the_numbers_before_the_subtree() {
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    let (provider, reseller, reseller_path) = a_reseller_at_the_end(&app, &sql).await;

    // Pages of the reseller's subtree (its four accounts), from one pooled connection past the
    // five calls after which a cached statement takes its generic plan: the first page, one
    // after a cursor in the second customer's block, and both under a prefix. Read in E.164
    // order from every number's index or the provider's, filtering by path, each page would
    // read the 27,000 numbers before the subtree's first; holder by holder it reads at most a
    // page of each account's own index.
    let db = numbering::store::Db::new(app.database.clone(), 1).unwrap();
    let client = db.client().await.unwrap();
    let indexes = [
        "numbers_provider_e164",
        "numbers_holder_e164",
        "numbers_live_e164",
        "numbers_holder_path",
    ];
    let cursor = ("+13000028499".to_string(), uuid::Uuid::nil());
    // Then beside five other providers (50,000 numbers), with the accounts' numbers estimated
    // as on a platform of many small accounts (n_distinct 800: 100 numbers an account, times
    // the provider's share of the table, 37% here), fewer than a page: the planner would then
    // rather read an account's numbers whole and sort them than read them in order (1,000 for
    // each customer, as the scale bench showed), unless sorting is off.
    for estimate in ["as analysed", "small accounts"] {
        if estimate == "small accounts" {
            providers_with_blocks(&app, &sql, 5, 4_000_000_000, 1_000_000).await;
            sql.batch_execute(
                "ALTER TABLE numbers ALTER COLUMN holder_id SET (n_distinct = 800);
                 ANALYZE numbers; SELECT pg_stat_force_next_flush()",
            )
            .await
            .unwrap();
        }
        for round in 0..4 {
            for (prefix, after, first) in [
                ("", None, 27_000),
                ("", Some(&cursor), 28_500),
                ("+1300002", None, 27_000),
                ("+1300002", Some(&cursor), 28_500),
            ] {
                use numbering::store::numbers::{NumberQuery, Scope};
                let mut q = NumberQuery::new(Scope::Subtree {
                    provider,
                    path: reseller_path.clone(),
                });
                q.live_account = Some(reseller);
                if !prefix.is_empty() {
                    q.e164_like = Some(format!("{prefix}%"));
                }
                let mut before = 0;
                for index in indexes {
                    before += index_reads(&client, index).await;
                }
                let page = numbering::store::numbers::list(&client, &q, after, 101)
                    .await
                    .unwrap();
                let mut read = -before;
                for index in indexes {
                    read += index_reads(&client, index).await;
                }
                let expected: Vec<String> = (first..first + 101)
                    .map(|g| format!("+1{}", 3_000_000_000_i64 + g))
                    .collect();
                let got: Vec<String> = page.into_iter().map(|n| n.e164).collect();
                assert_eq!(
                    got, expected,
                    "{estimate}, round {round}, under '{prefix}', after {after:?}"
                );
                assert!(
                    read <= 4 * 101 + 50,
                    "{estimate}, round {round}, under '{prefix}', after {after:?}: read {read} index entries"
                );
            }
        }
    }
    // Sorting was off for the pages' own transactions only: the pooled connection is back to
    // the default, outside any transaction.
    let sort: String = client
        .query_one("SHOW enable_sort", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sort, "on");
}

#[tokio::test]
async fn a_subtrees_export_has_its_numbers_in_e164_order_across_batches() {
    // An export reads in batches of 1,000 in the provider's E.164 order, filtered by path (a
    // page is read holder by holder): the reseller's 3,000 numbers, three batches, and none of
    // its sibling's or the provider's.
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    let (_, reseller, _) = a_reseller_at_the_end(&app, &sql).await;
    let csv = export_csv(
        &mut app.platform(),
        pb::ExportNumbersRequest {
            filter: Some(pb::NumberFilter {
                holder_id: reseller.to_string(),
                include_subtree: true,
                ..Default::default()
            }),
        },
    )
    .await;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "e164").unwrap();
    let exported: Vec<String> = lines
        .map(|l| l.split(',').nth(column).unwrap().to_string())
        .collect();
    let expected: Vec<String> = (27_000..30_000)
        .map(|g| format!("+1{}", 3_000_000_000_i64 + g))
        .collect();
    assert_eq!(exported, expected);
}

#[tokio::test]
async fn a_list_with_deleted_numbers_pages_through_numbers_that_shared_an_e164() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    // +13035550100 carried by three numbers over time, two of them deleted.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let n = app.add_number(&provider, "+13035550100").await;
        ok(c.number_pool.delete_number(delete_number(&n.id)).await);
        ids.push(n.id);
    }
    ids.push(app.add_number(&provider, "+13035550100").await.id);
    app.add_number(&provider, "+13035550101").await;
    ids.sort();
    // Pages of one: live numbers alone are ordered by E.164; with deleted ones the id breaks
    // the ties, and no number is skipped or repeated across the pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let mut request = list_numbers(pb::NumberFilter {
            prefix: "+1303".into(),
            statuses: vec![
                pb::NumberStatus::Available as i32,
                pb::NumberStatus::Deleted as i32,
            ],
            ..Default::default()
        });
        request.page_size = 1;
        request.page_token = token;
        let page = ok(c.number_pool.list_numbers(request).await);
        seen.extend(page.numbers.into_iter().map(|n| (n.e164, n.id)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let (e164s, in_order): (Vec<String>, Vec<String>) = seen.into_iter().unzip();
    assert_eq!(
        e164s,
        [
            "+13035550100",
            "+13035550100",
            "+13035550100",
            "+13035550101"
        ]
    );
    assert_eq!(in_order[..3], ids[..]);
    // Without the deleted ones, one number per E.164.
    let live = pb::NumberFilter {
        prefix: "+1303".into(),
        ..Default::default()
    };
    assert_eq!(listed(&mut c, live).await, ["+13035550100", "+13035550101"]);
}

/// Every number a query selects, from the store's pages of `size`, each after the last one's
/// E.164 and id (at most 500: pages that repeat end).
async fn store_pages(
    db: &deadpool_postgres::Object,
    query: &numbering::store::numbers::NumberQuery,
    size: i64,
) -> Vec<(String, uuid::Uuid)> {
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = numbering::store::numbers::list(db, query, after.as_ref(), size)
            .await
            .unwrap();
        listed.extend(page.iter().map(|n| (n.e164.clone(), n.id)));
        match page.last() {
            Some(n) if page.len() as i64 == size && listed.len() < 500 => {
                after = Some((n.e164.clone(), n.id))
            }
            _ => return listed,
        }
    }
}

#[tokio::test]
async fn every_filter_with_deleted_numbers_pages_as_its_definition_says() {
    use numbering::domain::number::NumberStatus::{self, Available, Deleted, Returned};
    use numbering::store::numbers::{NumberQuery, Scope};
    let app = spawn_app().await;
    let sql = app.connect_sql().await;
    let (p, q) = (app.provider("P").await, app.provider("Q").await);
    let s = app.child(&p, "S").await;
    let id = |a: &pb::Account| uuid::Uuid::parse_str(&a.id).unwrap();
    let (p, q, s) = (id(&p), id(&q), id(&s));
    // Pairs of numbers on one E.164, under two prefixes: the first of each pair deleted (P's
    // or Q's), the second P's or Q's in turn: P's available with P or with S, or returned to
    // S; Q's available or deleted too. E.164s of P and Q interleaved.
    sql.execute(
        "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, delete_time)
         SELECT gen_random_uuid(), x.provider, e.e164, h.id, h.path, x.status,
                CASE WHEN x.status = 'deleted' THEN now() END
         FROM (
           SELECT CASE WHEN k % 3 = 0 THEN $2::uuid ELSE $1 END AS provider,
                  'deleted' AS status, 'provider' AS held, k
           FROM generate_series(0, 59) k
           UNION ALL
           SELECT CASE WHEN k % 2 = 0 THEN $1::uuid ELSE $2 END,
                  CASE k % 6 WHEN 1 THEN 'deleted' WHEN 5 THEN 'deleted'
                             WHEN 4 THEN 'returned' ELSE 'available' END,
                  CASE WHEN k % 6 IN (2, 4) THEN 'child' ELSE 'provider' END, k
           FROM generate_series(0, 59) k
         ) x
         CROSS JOIN LATERAL (SELECT CASE WHEN x.k < 30 THEN '+13035550' ELSE '+14045550' END
                               || lpad(x.k::text, 3, '0') AS e164) e
         JOIN accounts h ON h.id = CASE WHEN x.held = 'child' THEN $3 ELSE x.provider END",
        &[&p, &q, &s],
    )
    .await
    .unwrap();
    let s_path: String = sql
        .query_one("SELECT path FROM accounts WHERE id = $1", &[&s])
        .await
        .unwrap()
        .get(0);
    sql.batch_execute("ANALYZE numbers").await.unwrap();

    let db = numbering::store::Db::new(app.database.clone(), 1).unwrap();
    let client = db.client().await.unwrap();
    let scopes = [
        (Scope::All, "true".to_string()),
        (Scope::Provider(p), format!("provider_id = '{p}'")),
        (Scope::Provider(q), format!("provider_id = '{q}'")),
        (Scope::Holder(p), format!("holder_id = '{p}'")),
        (Scope::Holder(s), format!("holder_id = '{s}'")),
        (
            Scope::Subtree {
                provider: p,
                path: s_path.clone(),
            },
            format!("holder_path LIKE '{s_path}%'"),
        ),
    ];
    let asked: [&[NumberStatus]; 6] = [
        &[],
        &[Available],
        &[Deleted],
        &[Available, Deleted],
        &[Returned, Deleted],
        &[Available, Returned, Deleted],
    ];
    let mut compared = 0;
    for (scope, scope_sql) in &scopes {
        for statuses in asked {
            for hide_returned in [false, true] {
                for owner in [None, Some(p), Some(q)] {
                    for prefix in [None, Some("+1303%")] {
                        let mut query = NumberQuery::new(scope.clone());
                        query.statuses = statuses.to_vec();
                        query.hide_returned = hide_returned;
                        query.owner_id = owner;
                        query.e164_like = prefix.map(String::from);
                        // What the filter says, from the rows themselves.
                        let wanted: Vec<&str> = if statuses.is_empty() {
                            vec!["available", "returned"]
                        } else {
                            statuses.iter().map(|s| s.as_str()).collect()
                        };
                        let expected: Vec<(String, uuid::Uuid)> = sql
                            .query(
                                &format!(
                                    "SELECT e164, id FROM numbers WHERE {scope_sql}
                                     AND status = ANY($1) AND NOT ($2 AND status = 'returned')
                                     AND ($3::uuid IS NULL OR provider_id = $3)
                                     AND ($4::text IS NULL OR e164 LIKE $4)
                                     ORDER BY e164, id"
                                ),
                                &[&wanted, &hide_returned, &owner, &prefix],
                            )
                            .await
                            .unwrap()
                            .iter()
                            .map(|r| (r.get(0), r.get(1)))
                            .collect();
                        let listed = store_pages(&client, &query, 7).await;
                        // Live numbers have one number per E.164: the id orders only deleted
                        // ones, and whatever the store's statements, the pages come to this.
                        assert_eq!(
                            listed, expected,
                            "{scope:?} {statuses:?} hide_returned {hide_returned} owner {owner:?} prefix {prefix:?}"
                        );
                        compared += expected.len();
                    }
                }
            }
        }
    }
    // The layout gave the comparisons something to find.
    assert!(compared > 3_000, "{compared} numbers compared");
}
