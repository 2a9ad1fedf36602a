use std::collections::BTreeMap;

use numbering_client::Clients;
use numbering_client::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{
    As, TestApp, assert_error, spawn_app, violated_fields, violated_preconditions,
};

fn add(owner: &pb::Account, e164: &str) -> pb::AddNumberRequest {
    pb::AddNumberRequest {
        owner_id: owner.id.clone(),
        number: Some(pb::Number {
            e164: e164.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn add_ok(c: &mut Clients, owner: &pb::Account, e164: &str) -> pb::Number {
    c.number_pool
        .add_number(add(owner, e164))
        .await
        .unwrap()
        .into_inner()
}

/// Adds `count` numbers from `first` upwards (same length) through BatchAddNumbers.
async fn add_range(c: &mut Clients, owner: &pb::Account, first: u64, count: u64) {
    let requests = (first..first + count)
        .map(|n| add(owner, &format!("+{n}")))
        .collect::<Vec<_>>();
    for chunk in requests.chunks(1000) {
        let answer = c
            .number_pool
            .batch_add_numbers(pb::BatchAddNumbersRequest {
                owner_id: owner.id.clone(),
                requests: chunk.to_vec(),
                all_or_nothing: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.results.iter().all(|r| r.number.is_some()));
    }
}

async fn count_live(app: &TestApp) -> i64 {
    app.sql
        .query_one(
            "SELECT count(*) FROM numbers WHERE status <> 'deleted'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn events_of(app: &TestApp, number_id: &str) -> i64 {
    let id = uuid::Uuid::parse_str(number_id).unwrap();
    app.sql
        .query_one(
            "SELECT count(*) FROM number_events WHERE number_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Moves a number to another holder directly in the database (allocation has its own service).
async fn move_to(app: &TestApp, number: &pb::Number, holder: &pb::Account) {
    let n = uuid::Uuid::parse_str(&number.id).unwrap();
    let h = uuid::Uuid::parse_str(&holder.id).unwrap();
    app.sql
        .execute(
            "UPDATE numbers SET holder_id = a.id, holder_path = a.path FROM accounts a WHERE numbers.id = $1 AND a.id = $2",
            &[&n, &h],
        )
        .await
        .unwrap();
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn a_provider_adds_a_number_in_international_or_national_form() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let mut req = add(&provider, "+1 (303) 555-0100");
    let n = req.number.as_mut().unwrap();
    n.sip_trunk = "trunk-7".into();
    n.billing_reference = "BILL-1".into();
    n.source = pb::NumberSource::Purchased as i32;
    n.tags = vec!["vip".into(), "sales".into(), "vip".into()];
    n.labels = BTreeMap::from([("site".into(), "denver".into())]);
    let added = c.number_pool.add_number(req).await.unwrap().into_inner();
    assert_eq!(added.e164, "+13035550100");
    assert_eq!(added.owner_id, provider.id);
    assert_eq!(added.holder_id, provider.id);
    assert_eq!(added.status, pb::NumberStatus::Available as i32);
    assert_eq!(added.number_type, pb::NumberType::GeographicOrMobile as i32);
    assert_eq!(added.tags, ["sales", "vip"]);
    assert_eq!(added.sip_trunk, "trunk-7");

    let mut national = add(&provider, "020 7946 0018");
    national.region = "GB".into();
    let gb = c
        .number_pool
        .add_number(national)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gb.e164, "+442079460018");
    assert_eq!(gb.number_type, pb::NumberType::Geographic as i32);

    let by_e164 = c
        .number_pool
        .get_number(pb::GetNumberRequest {
            key: Some(pb::get_number_request::Key::E164("+1 303 555 0100".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_e164, added);
    let by_id = c
        .number_pool
        .get_number(pb::GetNumberRequest {
            key: Some(pb::get_number_request::Key::Id(added.id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, added);
    assert_eq!(events_of(&app, &added.id).await, 1);
}

#[tokio::test]
async fn bad_numbers_are_refused_with_the_field_and_the_reason() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    for input in [
        "303 555 0100",
        "+1 303 555 01",
        "+1234567890123456",
        "not a number",
        "",
        "+999 123",
    ] {
        let status = assert_error(
            c.number_pool.add_number(add(&provider, input)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["number.e164"], "{input}");
    }
    let mut unknown_region = add(&provider, "303 555 0100");
    unknown_region.region = "XX".into();
    let status = assert_error(
        c.number_pool.add_number(unknown_region).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["region"]);
    let mut long = add(&provider, "+13035550100");
    long.number.as_mut().unwrap().service_info = "x".repeat(2000);
    long.number.as_mut().unwrap().tags = (0..40).map(|i| format!("t{i}")).collect();
    let status = assert_error(c.number_pool.add_number(long).await, Code::InvalidArgument);
    let fields = violated_fields(&status);
    assert!(
        fields.contains(&"number.service_info".to_string()),
        "{fields:?}"
    );
    assert!(fields.contains(&"number.tags".to_string()), "{fields:?}");
    assert_eq!(count_live(&app).await, 0);
}

#[tokio::test]
async fn a_number_is_unique_among_live_numbers() {
    let app = spawn_app().await;
    let acme = app.provider("Acme").await;
    let other = app.provider("Other").await;
    let mut c = app.clients(As::Platform).await;
    add_ok(&mut c, &acme, "+13035550100").await;
    assert_error(
        c.number_pool.add_number(add(&acme, "+13035550100")).await,
        Code::AlreadyExists,
    );
    assert_error(
        c.number_pool
            .add_number(add(&other, "+1 303 555 0100"))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(count_live(&app).await, 1);
}

#[tokio::test]
async fn only_a_providers_admin_adds_numbers_to_it() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut sub_admin = app.clients(As::Admin(&child.id)).await;
    assert_error(
        sub_admin
            .number_pool
            .add_number(add(&provider, "+13035550100"))
            .await,
        Code::PermissionDenied,
    );
    let status = assert_error(
        sub_admin
            .number_pool
            .add_number(add(&child, "+13035550100"))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(violated_preconditions(&status), vec!["NOT_A_PROVIDER"]);
    let mut operator = app.clients(As::Operator(&provider.id)).await;
    assert_error(
        operator
            .number_pool
            .add_number(add(&provider, "+13035550100"))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(count_live(&app).await, 0);
}

#[tokio::test]
async fn a_number_can_be_added_straight_into_a_sub_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let stranger = app.provider("Other").await;
    let mut c = app.clients(As::Platform).await;
    let mut req = add(&provider, "+13035550100");
    req.holder_id = child.id.clone();
    let n = c.number_pool.add_number(req).await.unwrap().into_inner();
    assert_eq!(n.holder_id, child.id);
    assert_eq!(n.owner_id, provider.id);
    let mut req = add(&provider, "+13035550101");
    req.holder_id = stranger.id.clone();
    let status = assert_error(
        c.number_pool.add_number(req).await,
        Code::FailedPrecondition,
    );
    assert_eq!(violated_preconditions(&status), vec!["OUTSIDE_OWNER_TREE"]);
}

#[tokio::test]
async fn a_batch_answers_per_number_or_all_or_nothing() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    add_ok(&mut c, &provider, "+13035550102").await;
    let batch = |all_or_nothing: bool| pb::BatchAddNumbersRequest {
        owner_id: provider.id.clone(),
        requests: vec![
            add(&provider, "+13035550100"),
            add(&provider, "bad"),
            add(&provider, "+13035550102"),
            add(&provider, "+13035550101"),
        ],
        all_or_nothing,
        ..Default::default()
    };
    let status = assert_error(
        c.number_pool.batch_add_numbers(batch(true)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["requests[1].number.e164"]);
    assert_eq!(count_live(&app).await, 1);

    let answer = c
        .number_pool
        .batch_add_numbers(batch(false))
        .await
        .unwrap()
        .into_inner();
    let ok: Vec<bool> = answer.results.iter().map(|r| r.number.is_some()).collect();
    assert_eq!(ok, [true, false, false, true]);
    assert_eq!(
        answer.results[1].error.as_ref().unwrap().code,
        Code::InvalidArgument as i32
    );
    assert_eq!(
        answer.results[2].error.as_ref().unwrap().code,
        Code::AlreadyExists as i32
    );
    assert_eq!(count_live(&app).await, 3);

    let too_many = pb::BatchAddNumbersRequest {
        owner_id: provider.id.clone(),
        requests: (0..1001)
            .map(|i| add(&provider, &format!("+1303555{i:04}")))
            .collect(),
        ..Default::default()
    };
    let status = assert_error(
        c.number_pool.batch_add_numbers(too_many).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["requests"]);
}

#[tokio::test]
async fn update_changes_the_masked_attributes_and_honours_the_etag() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let n = add_ok(&mut c, &provider, "+13035550100").await;
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
    let updated = c
        .number_pool
        .update_number(update(&n.etag, &["sip_trunk"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.sip_trunk, "trunk-9");
    assert_eq!(updated.carrier, "");
    assert_error(
        c.number_pool
            .update_number(update(&n.etag, &["sip_trunk"]))
            .await,
        Code::Aborted,
    );
    let status = assert_error(
        c.number_pool.update_number(update("", &["e164"])).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["update_mask.e164"]);
    let child = app.child(&provider, "Sub").await;
    let mut sub = app.clients(As::Admin(&child.id)).await;
    assert_error(
        sub.number_pool
            .update_number(update("", &["sip_trunk"]))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn the_owner_deletes_an_available_number_and_its_history_stays() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let n = add_ok(&mut c, &provider, "+13035550100").await;
    c.number_pool
        .delete_number(pb::DeleteNumberRequest {
            id: n.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(count_live(&app).await, 0);
    let gone = c
        .number_pool
        .get_number(pb::GetNumberRequest {
            key: Some(pb::get_number_request::Key::Id(n.id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.status, pb::NumberStatus::Deleted as i32);
    assert_eq!(events_of(&app, &n.id).await, 2);
    // The same E.164 may come back later as a new number.
    let again = add_ok(&mut c, &provider, "+13035550100").await;
    assert_ne!(again.id, n.id);
}

#[tokio::test]
async fn a_number_held_by_a_sub_account_or_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let held = add_ok(&mut c, &provider, "+13035550100").await;
    move_to(&app, &held, &child).await;
    let reserved = add_ok(&mut c, &provider, "+13035550101").await;
    let id = uuid::Uuid::parse_str(&reserved.id).unwrap();
    app.sql
        .execute(
            "UPDATE numbers SET status = 'reserved', reserved_for = 'role:reception' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    for (number, rule) in [
        (&held, "NUMBER_HELD_BY_SUB_ACCOUNT"),
        (&reserved, "NUMBER_IN_USE"),
    ] {
        let status = assert_error(
            c.number_pool
                .delete_number(pb::DeleteNumberRequest {
                    id: number.id.clone(),
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
        );
        assert_eq!(violated_preconditions(&status), vec![rule]);
        assert_eq!(events_of(&app, &number.id).await, 1);
    }
    assert_eq!(count_live(&app).await, 2);
    // A sub-account's admin is not the owner.
    let mut sub = app.clients(As::Admin(&child.id)).await;
    assert_error(
        sub.number_pool
            .delete_number(pb::DeleteNumberRequest {
                id: held.id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    // The database refuses it too, whatever the code does.
    let hid = uuid::Uuid::parse_str(&held.id).unwrap();
    let direct = app
        .sql
        .execute(
            "UPDATE numbers SET status = 'deleted', delete_time = now() WHERE id = $1",
            &[&hid],
        )
        .await;
    assert!(direct.is_err());
}

#[tokio::test]
async fn series_file_numbers_by_longest_prefix_and_refile_on_change() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let denver = add_ok(&mut c, &provider, "+13035550100").await;
    let boston = add_ok(&mut c, &provider, "+16175550100").await;
    let series = |prefix: &str, name: &str| pb::CreateSeriesRequest {
        provider_id: provider.id.clone(),
        series: Some(pb::Series {
            prefix: prefix.into(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let us = c
        .number_pool
        .create_series(series("+1", "USA"))
        .await
        .unwrap()
        .into_inner();
    let co = c
        .number_pool
        .create_series(series("+1303", "Denver"))
        .await
        .unwrap()
        .into_inner();
    let get = |id: &str| pb::GetNumberRequest {
        key: Some(pb::get_number_request::Key::Id(id.into())),
    };
    assert_eq!(
        c.number_pool
            .get_number(get(&denver.id))
            .await
            .unwrap()
            .into_inner()
            .series_id,
        co.id
    );
    assert_eq!(
        c.number_pool
            .get_number(get(&boston.id))
            .await
            .unwrap()
            .into_inner()
            .series_id,
        us.id
    );
    let later = add_ok(&mut c, &provider, "+13035550199").await;
    assert_eq!(later.series_id, co.id);

    c.number_pool
        .delete_series(pb::DeleteSeriesRequest {
            id: co.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        c.number_pool
            .get_number(get(&denver.id))
            .await
            .unwrap()
            .into_inner()
            .series_id,
        us.id
    );

    assert_error(
        c.number_pool.create_series(series("+1", "Again")).await,
        Code::AlreadyExists,
    );
    let status = assert_error(
        c.number_pool.create_series(series("1303", "")).await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        vec!["series.prefix", "series.display_name"]
    );
    let listed = c
        .number_pool
        .list_series(pb::ListSeriesRequest {
            provider_id: provider.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.series.len(), 1);
    let child = app.child(&provider, "Sub").await;
    let mut sub = app.clients(As::Admin(&child.id)).await;
    assert_error(
        sub.number_pool
            .create_series(series("+1720", "Sneaky"))
            .await,
        Code::PermissionDenied,
    );
    let renamed = c
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
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "United States");
    assert_eq!(renamed.prefix, "+1");
}

#[tokio::test]
async fn list_filters_and_pages_in_e164_order_across_changes() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    add_range(&mut c, &provider, 13035550100, 10).await;
    add_range(&mut c, &provider, 16175550100, 3).await;
    let filter = pb::NumberFilter {
        prefix: "+1303".into(),
        ..Default::default()
    };
    let page = |token: String| pb::ListNumbersRequest {
        filter: Some(filter.clone()),
        page_size: 4,
        page_token: token,
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = c
            .number_pool
            .list_numbers(page(token))
            .await
            .unwrap()
            .into_inner();
        seen.extend(answer.numbers.iter().map(|n| n.e164.clone()));
        pages += 1;
        if pages == 1 {
            // A number added behind the cursor is not seen again; one ahead of it is.
            add_ok(&mut c, &provider, "+13035550099").await;
            add_ok(&mut c, &provider, "+13035550150").await;
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

    let first = c
        .number_pool
        .list_numbers(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let other_filter = pb::ListNumbersRequest {
        filter: Some(pb::NumberFilter {
            prefix: "+1617".into(),
            ..Default::default()
        }),
        page_size: 4,
        page_token: first.next_page_token,
    };
    let status = assert_error(
        c.number_pool.list_numbers(other_filter).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["page_token"]);
    let bad = pb::ListNumbersRequest {
        filter: Some(pb::NumberFilter {
            prefix: "1303".into(),
            statuses: vec![42],
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = assert_error(c.number_pool.list_numbers(bad).await, Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        vec!["filter.statuses", "filter.prefix"]
    );
}

#[tokio::test]
async fn list_filters_by_tag_label_status_and_holder_subtree() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let sub_team = app.child(&team, "Sub-team").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let mut tagged = add(&provider, "+13035550100");
    tagged.number.as_mut().unwrap().tags = vec!["vip".into()];
    tagged.number.as_mut().unwrap().labels = BTreeMap::from([("site".into(), "denver".into())]);
    let vip = c.number_pool.add_number(tagged).await.unwrap().into_inner();
    let a = add_ok(&mut c, &provider, "+13035550101").await;
    let b = add_ok(&mut c, &provider, "+13035550102").await;
    move_to(&app, &a, &team).await;
    move_to(&app, &b, &sub_team).await;
    let list = |f: pb::NumberFilter| pb::ListNumbersRequest {
        filter: Some(f),
        ..Default::default()
    };
    let e164s =
        |r: pb::ListNumbersResponse| r.numbers.into_iter().map(|n| n.e164).collect::<Vec<_>>();
    let tag = c
        .number_pool
        .list_numbers(list(pb::NumberFilter {
            tag: "vip".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(e164s(tag.into_inner()), vec![vip.e164.clone()]);
    let label = pb::NumberFilter {
        labels: BTreeMap::from([("site".into(), "denver".into())]),
        ..Default::default()
    };
    assert_eq!(
        e164s(
            c.number_pool
                .list_numbers(list(label))
                .await
                .unwrap()
                .into_inner()
        ),
        vec![vip.e164.clone()]
    );
    let team_only = pb::NumberFilter {
        holder_id: team.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        e164s(
            c.number_pool
                .list_numbers(list(team_only))
                .await
                .unwrap()
                .into_inner()
        ),
        vec![a.e164.clone()]
    );
    let subtree = pb::NumberFilter {
        holder_id: team.id.clone(),
        include_subtree: true,
        ..Default::default()
    };
    assert_eq!(
        e164s(
            c.number_pool
                .list_numbers(list(subtree))
                .await
                .unwrap()
                .into_inner()
        ),
        [a.e164.clone(), b.e164.clone()]
    );
    let reserved = pb::NumberFilter {
        statuses: vec![pb::NumberStatus::Reserved as i32],
        ..Default::default()
    };
    assert!(
        c.number_pool
            .list_numbers(list(reserved))
            .await
            .unwrap()
            .into_inner()
            .numbers
            .is_empty()
    );
}

#[tokio::test]
async fn a_sub_account_sees_only_its_own_subtrees_numbers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let a = app.child(&provider, "A").await;
    let b = app.child(&provider, "B").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let for_a = add_ok(&mut c, &provider, "+13035550100").await;
    let for_b = add_ok(&mut c, &provider, "+13035550101").await;
    add_ok(&mut c, &provider, "+13035550102").await;
    move_to(&app, &for_a, &a).await;
    move_to(&app, &for_b, &b).await;
    let mut a_viewer = app.clients(As::Viewer(&a.id)).await;
    let mine = a_viewer
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let e164s: Vec<_> = mine.numbers.iter().map(|n| n.e164.as_str()).collect();
    assert_eq!(e164s, ["+13035550100"]);
    let sibling = pb::ListNumbersRequest {
        filter: Some(pb::NumberFilter {
            holder_id: b.id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_error(
        a_viewer.number_pool.list_numbers(sibling).await,
        Code::PermissionDenied,
    );
    let get = |key: &str| pb::GetNumberRequest {
        key: Some(pb::get_number_request::Key::E164(key.into())),
    };
    assert_error(
        a_viewer.number_pool.get_number(get("+13035550101")).await,
        Code::PermissionDenied,
    );
    assert_error(
        a_viewer.number_pool.get_number(get("+13035550199")).await,
        Code::PermissionDenied,
    );
    let export = a_viewer
        .number_pool
        .export_numbers(pb::ExportNumbersRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let csv = collect_export(export).await;
    assert!(csv.contains("+13035550100"));
    assert!(!csv.contains("+13035550101"));
    assert!(!csv.contains("+13035550102"));
}

async fn collect_export(mut stream: tonic::Streaming<pb::ExportNumbersResponse>) -> String {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend(chunk.chunk);
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn search_finds_available_numbers_by_prefix_wildcards_vanity_and_runs() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    add_range(&mut c, &provider, 13035550100, 5).await; // 0100..0104
    add_range(&mut c, &provider, 13035550110, 2).await; // 0110..0111
    add_ok(&mut c, &provider, "+18003569377").await; // 1-800-FLOWERS
    let search = |pattern: &str, consecutive: i32| pb::SearchAvailableNumbersRequest {
        holder_id: provider.id.clone(),
        pattern: pattern.into(),
        consecutive,
        page_size: 0,
    };
    let found = |r: pb::SearchAvailableNumbersResponse| {
        r.numbers.into_iter().map(|n| n.e164).collect::<Vec<_>>()
    };
    let by_prefix = c
        .number_pool
        .search_available_numbers(search("+1303555011", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found(by_prefix), ["+13035550110", "+13035550111"]);
    let wild = c
        .number_pool
        .search_available_numbers(search("+1303555010?", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found(wild).len(), 5);
    let star = c
        .number_pool
        .search_available_numbers(search("+1*11", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found(star), ["+13035550111"]);
    let vanity = c
        .number_pool
        .search_available_numbers(search("+1800FLOWERS", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found(vanity), ["+18003569377"]);
    let runs = c
        .number_pool
        .search_available_numbers(search("+1303", 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(runs.ranges.len(), 1);
    assert_eq!(runs.ranges[0].first_e164, "+13035550100");
    assert_eq!(runs.ranges[0].last_e164, "+13035550102");
    assert_eq!(found(runs).len(), 3);
    let status = assert_error(
        c.number_pool
            .search_available_numbers(search("1303%", 0))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["pattern"]);
}

#[tokio::test]
async fn inventory_counts_an_account_alone_or_with_its_subtree() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let us = c
        .number_pool
        .create_series(pb::CreateSeriesRequest {
            provider_id: provider.id.clone(),
            series: Some(pb::Series {
                prefix: "+1303".into(),
                display_name: "Denver".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    add_range(&mut c, &provider, 13035550100, 6).await;
    add_ok(&mut c, &provider, "+442079460018").await;
    for e164 in ["+13035550100", "+13035550101"] {
        let n = c
            .number_pool
            .get_number(pb::GetNumberRequest {
                key: Some(pb::get_number_request::Key::E164(e164.into())),
            })
            .await
            .unwrap()
            .into_inner();
        move_to(&app, &n, &team).await;
    }
    let inv = |id: &str, include_subtree: bool| pb::GetInventoryRequest {
        account_id: id.into(),
        include_subtree,
    };
    let own = c
        .number_pool
        .get_inventory(inv(&provider.id, false))
        .await
        .unwrap()
        .into_inner();
    let totals = own.totals.unwrap();
    assert_eq!(
        (totals.total, totals.available, totals.allocated_to_children),
        (7, 5, 2)
    );
    let denver = own
        .series
        .iter()
        .find(|s| s.series_id == us.id)
        .unwrap()
        .counts
        .unwrap();
    assert_eq!(
        (denver.total, denver.available, denver.allocated_to_children),
        (6, 4, 2)
    );
    let whole = c
        .number_pool
        .get_inventory(inv(&provider.id, true))
        .await
        .unwrap()
        .into_inner()
        .totals
        .unwrap();
    assert_eq!((whole.total, whole.available), (7, 7));
    let mut team_viewer = app.clients(As::Viewer(&team.id)).await;
    let t = team_viewer
        .number_pool
        .get_inventory(inv(&team.id, false))
        .await
        .unwrap()
        .into_inner()
        .totals
        .unwrap();
    assert_eq!((t.total, t.available), (2, 2));
    assert_error(
        team_viewer
            .number_pool
            .get_inventory(inv(&provider.id, false))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn retries_of_an_add_return_the_first_answer() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let mut req = add(&provider, "+13035550100");
    req.request_id = "add-1".into();
    let first = c
        .number_pool
        .add_number(req.clone())
        .await
        .unwrap()
        .into_inner();
    let again = c
        .number_pool
        .add_number(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    req.number.as_mut().unwrap().e164 = "+13035550101".into();
    assert_error(c.number_pool.add_number(req).await, Code::InvalidArgument);
    assert_eq!(count_live(&app).await, 1);
    let mut dry = add(&provider, "+13035550102");
    dry.validate_only = true;
    c.number_pool.add_number(dry).await.unwrap();
    assert_eq!(count_live(&app).await, 1);
}

#[tokio::test]
async fn adding_straight_into_a_sub_account_respects_its_quota() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let child = app.child(&provider, "Sub").await;
    let mut c = app.clients(As::Platform).await;
    c.tenancy
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: child.id.clone(),
                max_numbers: Some(1),
                ..Default::default()
            }),
            update_mask: mask(&["max_numbers"]),
            ..Default::default()
        })
        .await
        .unwrap();
    let into_child = |e164: &str| {
        let mut req = add(&provider, e164);
        req.holder_id = child.id.clone();
        req
    };
    c.number_pool
        .add_number(into_child("+13035550100"))
        .await
        .unwrap();
    let status = assert_error(
        c.number_pool.add_number(into_child("+13035550101")).await,
        Code::ResourceExhausted,
    );
    assert!(tonic_types::StatusExt::get_details_quota_failure(&status).is_some());
    assert_eq!(count_live(&app).await, 1);
}

#[tokio::test]
async fn nothing_is_added_to_a_suspended_provider() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Platform).await;
    c.tenancy
        .suspend_account(pb::SuspendAccountRequest {
            id: provider.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = assert_error(
        c.number_pool
            .add_number(add(&provider, "+13035550100"))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(violated_preconditions(&status), vec!["ACCOUNT_NOT_ACTIVE"]);
    assert_eq!(count_live(&app).await, 0);
}

#[tokio::test]
async fn a_search_for_consecutive_numbers_answers_at_most_a_page_of_numbers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    // Four blocks of 60 consecutive numbers, apart from each other.
    for block in 0..4 {
        add_range(&mut c, &provider, 13035550000 + block * 100, 60).await;
    }
    let runs = c
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: provider.id.clone(),
            pattern: "+1303".into(),
            consecutive: 50,
            page_size: 100,
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
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(longer_than_a_page.ranges.len(), 1);
    assert_eq!(longer_than_a_page.numbers.len(), 10);
}
