use std::collections::BTreeMap;

use numbering_client::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{
    As, TestApp, assert_error, spawn_app, violated_fields, violated_preconditions,
};

fn new_account(parent: &str, name: &str) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        account: Some(pb::Account {
            parent_id: parent.into(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn count_accounts(app: &TestApp) -> i64 {
    app.sql
        .query_one(
            "SELECT count(*) FROM accounts WHERE delete_time IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_platform_creates_a_provider_and_an_admin_creates_children() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    assert_eq!(provider.provider_id, provider.id);
    assert!(provider.parent_id.is_empty());
    assert_eq!(provider.depth, 0);
    assert_eq!(provider.state, pb::AccountState::Active as i32);

    let mut admin = app.clients(As::Admin(&provider.id)).await;
    let mut req = new_account(&provider.id, "Reseller");
    let acc = req.account.as_mut().unwrap();
    acc.kind = "reseller".into();
    acc.external_ref = "crm-42".into();
    acc.labels = BTreeMap::from([("region".into(), "emea".into())]);
    let child = admin
        .tenancy
        .create_account(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(child.parent_id, provider.id);
    assert_eq!(child.provider_id, provider.id);
    assert_eq!(child.depth, 1);
    assert_eq!(child.external_ref, "crm-42");
    assert_eq!(child.labels["region"], "emea");
    let got = admin
        .tenancy
        .get_account(pb::GetAccountRequest {
            id: child.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, child);
}

#[tokio::test]
async fn only_the_platform_creates_providers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut admin = app.clients(As::Admin(&provider.id)).await;
    assert_error(
        admin.tenancy.create_account(new_account("", "Rogue")).await,
        Code::PermissionDenied,
    );
    assert_eq!(count_accounts(&app).await, 1);
}

#[tokio::test]
async fn operators_and_viewers_cannot_create_accounts() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for who in [As::Operator(&provider.id), As::Viewer(&provider.id)] {
        let mut c = app.clients(who).await;
        assert_error(
            c.tenancy
                .create_account(new_account(&provider.id, "X"))
                .await,
            Code::PermissionDenied,
        );
    }
    assert_eq!(count_accounts(&app).await, 1);
}

#[tokio::test]
async fn bad_account_fields_are_named_in_the_error() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Platform).await;
    let labels: BTreeMap<String, String> = (0..40).map(|i| (format!("k{i}"), "v".into())).collect();
    let req = pb::CreateAccountRequest {
        account: Some(pb::Account {
            parent_id: provider.id.clone(),
            display_name: "x".repeat(300),
            kind: "k".repeat(65),
            labels,
            max_numbers: Some(-1),
            aging_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        }),
        request_id: "r".repeat(200),
        ..Default::default()
    };
    let status = assert_error(c.tenancy.create_account(req).await, Code::InvalidArgument);
    let fields = violated_fields(&status);
    for f in [
        "account.display_name",
        "account.kind",
        "account.labels",
        "account.max_numbers",
        "account.aging_period",
        "request_id",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
    let status = assert_error(
        c.tenancy
            .create_account(new_account("not-a-uuid", "X"))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["account.parent_id"]);
    let status = assert_error(
        c.tenancy
            .create_account(new_account(&provider.id, "  "))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["account.display_name"]);
    assert_error(
        c.tenancy
            .create_account(pb::CreateAccountRequest::default())
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(count_accounts(&app).await, 1);
}

#[tokio::test]
async fn external_references_are_unique_among_siblings_only() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Platform).await;
    let with_ref = |parent: &str| {
        let mut r = new_account(parent, "X");
        r.account.as_mut().unwrap().external_ref = "ext-1".into();
        r
    };
    c.tenancy.create_account(with_ref(&t.a.id)).await.unwrap();
    assert_error(
        c.tenancy.create_account(with_ref(&t.a.id)).await,
        Code::AlreadyExists,
    );
    c.tenancy.create_account(with_ref(&t.b.id)).await.unwrap();
}

#[tokio::test]
async fn nothing_is_created_under_a_suspended_account() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut admin = app.clients(As::Admin(&t.provider.id)).await;
    admin
        .tenancy
        .suspend_account(pb::SuspendAccountRequest {
            id: t.a.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = assert_error(
        admin
            .tenancy
            .create_account(new_account(&t.a.id, "Late"))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(violated_preconditions(&status), vec!["ACCOUNT_NOT_ACTIVE"]);
}

#[tokio::test]
async fn a_caller_cannot_see_its_parent_or_its_siblings_and_learns_nothing() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    for id in [&t.provider.id, &t.b.id, &uuid::Uuid::new_v4().to_string()] {
        assert_error(
            a_admin
                .tenancy
                .get_account(pb::GetAccountRequest { id: id.clone() })
                .await,
            Code::PermissionDenied,
        );
    }
    // Its own subtree it sees.
    a_admin
        .tenancy
        .get_account(pb::GetAccountRequest {
            id: t.a1.id.clone(),
        })
        .await
        .unwrap();
    // Creating under a sibling or listing it is refused the same way.
    assert_error(
        a_admin
            .tenancy
            .create_account(new_account(&t.b.id, "Sneaky"))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        a_admin
            .tenancy
            .list_accounts(pb::ListAccountsRequest {
                parent_id: t.provider.id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    // The platform learns that an unknown account does not exist.
    let mut platform = app.clients(As::Platform).await;
    assert_error(
        platform
            .tenancy
            .get_account(pb::GetAccountRequest {
                id: uuid::Uuid::new_v4().to_string(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn list_shows_children_or_the_whole_subtree_with_filters() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Viewer(&t.provider.id)).await;
    let list = |recursive: bool, kind: &str| pb::ListAccountsRequest {
        parent_id: t.provider.id.clone(),
        recursive,
        kind: kind.into(),
        ..Default::default()
    };
    let children = c
        .tenancy
        .list_accounts(list(false, ""))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = children
        .accounts
        .iter()
        .map(|a| a.display_name.as_str())
        .collect();
    assert_eq!(names, ["Team A", "Team B"]);
    let subtree = c
        .tenancy
        .list_accounts(list(true, ""))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = subtree
        .accounts
        .iter()
        .map(|a| a.display_name.as_str())
        .collect();
    assert_eq!(names, ["Team A", "Team B", "Team A1"]);
    let none = c
        .tenancy
        .list_accounts(list(true, "reseller"))
        .await
        .unwrap()
        .into_inner();
    assert!(none.accounts.is_empty());
    let mut by_state = list(true, "");
    by_state.state = pb::AccountState::Suspended as i32;
    assert!(
        c.tenancy
            .list_accounts(by_state)
            .await
            .unwrap()
            .into_inner()
            .accounts
            .is_empty()
    );
}

#[tokio::test]
async fn pages_walk_the_whole_list_once_and_tokens_are_bound_to_the_filter() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for i in 0..7 {
        app.child(&provider, &format!("Child {i}")).await;
    }
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .tenancy
            .list_accounts(pb::ListAccountsRequest {
                parent_id: provider.id.clone(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.accounts.len() <= 3);
        seen.extend(page.accounts.into_iter().map(|a| a.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..7).map(|i| format!("Child {i}")).collect();
    assert_eq!(seen, expected);

    let first = c
        .tenancy
        .list_accounts(pb::ListAccountsRequest {
            parent_id: provider.id.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let changed = pb::ListAccountsRequest {
        parent_id: provider.id.clone(),
        recursive: true,
        page_size: 2,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    };
    let status = assert_error(
        c.tenancy.list_accounts(changed).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["page_token"]);
    let mut tampered = first.next_page_token.clone();
    tampered.insert(3, 'x');
    let forged = pb::ListAccountsRequest {
        parent_id: provider.id.clone(),
        page_size: 2,
        page_token: tampered,
        ..Default::default()
    };
    assert_error(c.tenancy.list_accounts(forged).await, Code::InvalidArgument);
    let bad_size = pb::ListAccountsRequest {
        parent_id: provider.id.clone(),
        page_size: -1,
        ..Default::default()
    };
    assert_error(
        c.tenancy.list_accounts(bad_size).await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn update_changes_only_the_masked_fields_and_honours_the_etag() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Admin(&t.a.id)).await;
    let updated = c
        .tenancy
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: t.a.id.clone(),
                display_name: "Team Alpha".into(),
                kind: "ignored, not in the mask".into(),
                etag: t.a.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "Team Alpha");
    assert_eq!(updated.kind, t.a.kind);
    assert_ne!(updated.etag, t.a.etag);

    // The old etag is stale now: ABORTED, and nothing changes.
    let stale = pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: t.a.id.clone(),
            display_name: "Lost update".into(),
            etag: t.a.etag.clone(),
            ..Default::default()
        }),
        update_mask: mask(&["display_name"]),
        ..Default::default()
    };
    assert_error(c.tenancy.update_account(stale).await, Code::Aborted);
    let now = c
        .tenancy
        .get_account(pb::GetAccountRequest { id: t.a.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.display_name, "Team Alpha");
}

#[tokio::test]
async fn update_refuses_bad_masks_and_fields() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Platform).await;
    let req = |paths: &[&str], account: pb::Account| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: t.a.id.clone(),
            ..account
        }),
        update_mask: mask(paths),
        ..Default::default()
    };
    for (paths, account, field) in [
        (vec![], pb::Account::default(), "update_mask"),
        (vec!["id"], pb::Account::default(), "update_mask.id"),
        (
            vec!["display_name"],
            pb::Account::default(),
            "account.display_name",
        ),
        (
            vec!["aging_period"],
            pb::Account {
                aging_period: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "account.aging_period",
        ),
    ] {
        let status = assert_error(
            c.tenancy.update_account(req(&paths, account)).await,
            Code::InvalidArgument,
        );
        assert!(
            violated_fields(&status).contains(&field.to_string()),
            "{field}: {status:?}"
        );
    }
}

#[tokio::test]
async fn the_quota_is_set_by_the_parent_not_by_the_account_itself() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let quota = |n: i64| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: t.a.id.clone(),
            max_numbers: Some(n),
            ..Default::default()
        }),
        update_mask: mask(&["max_numbers"]),
        ..Default::default()
    };
    let mut own = app.clients(As::Admin(&t.a.id)).await;
    assert_error(
        own.tenancy.update_account(quota(1_000_000)).await,
        Code::PermissionDenied,
    );
    let mut parent = app.clients(As::Admin(&t.provider.id)).await;
    let updated = parent
        .tenancy
        .update_account(quota(500))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.max_numbers, Some(500));
}

#[tokio::test]
async fn the_provider_sets_its_aging_period() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let days_45 = prost_types::Duration {
        seconds: 45 * 86400,
        nanos: 0,
    };
    let updated = c
        .tenancy
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: provider.id.clone(),
                aging_period: Some(days_45),
                ..Default::default()
            }),
            update_mask: mask(&["aging_period"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.aging_period.map(|d| d.seconds), Some(45 * 86400));
}

#[tokio::test]
async fn suspend_and_resume_are_the_parents_call() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let suspend = |id: &str| pb::SuspendAccountRequest {
        id: id.into(),
        ..Default::default()
    };
    let resume = |id: &str| pb::ResumeAccountRequest {
        id: id.into(),
        ..Default::default()
    };
    let mut own = app.clients(As::Admin(&t.a.id)).await;
    assert_error(
        own.tenancy.suspend_account(suspend(&t.a.id)).await,
        Code::PermissionDenied,
    );
    let mut parent = app.clients(As::Admin(&t.provider.id)).await;
    let s = parent
        .tenancy
        .suspend_account(suspend(&t.a.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, pb::AccountState::Suspended as i32);
    // A suspended account cannot resume itself.
    assert_error(
        own.tenancy.resume_account(resume(&t.a.id)).await,
        Code::PermissionDenied,
    );
    let r = parent
        .tenancy
        .resume_account(resume(&t.a.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::AccountState::Active as i32);
    // Suspending twice answers the account as it is; a stale etag is refused.
    let again = parent
        .tenancy
        .suspend_account(suspend(&t.a.id))
        .await
        .unwrap()
        .into_inner();
    let twice = parent
        .tenancy
        .suspend_account(suspend(&t.a.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.etag, twice.etag);
    let stale = pb::SuspendAccountRequest {
        id: t.a.id.clone(),
        etag: t.a.etag.clone(),
        ..Default::default()
    };
    assert_error(parent.tenancy.suspend_account(stale).await, Code::Aborted);
}

#[tokio::test]
async fn delete_refuses_an_account_with_children_or_numbers_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Admin(&t.provider.id)).await;
    let delete = |id: &str| pb::DeleteAccountRequest {
        id: id.into(),
        ..Default::default()
    };
    let status = assert_error(
        c.tenancy.delete_account(delete(&t.a.id)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        violated_preconditions(&status),
        vec!["ACCOUNT_HAS_CHILDREN"]
    );

    let b = uuid::Uuid::parse_str(&t.b.id).unwrap();
    let p = uuid::Uuid::parse_str(&t.provider.id).unwrap();
    app.sql
        .execute(
            "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
             SELECT gen_random_uuid(), $1, '+13035550100', id, path, 'available' FROM accounts WHERE id = $2",
            &[&p, &b],
        )
        .await
        .unwrap();
    let status = assert_error(
        c.tenancy.delete_account(delete(&t.b.id)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        violated_preconditions(&status),
        vec!["ACCOUNT_HOLDS_NUMBERS"]
    );
    assert_eq!(count_accounts(&app).await, 4);

    // An empty leaf goes; the account's own admin may not delete it.
    let mut own = app.clients(As::Admin(&t.a1.id)).await;
    assert_error(
        own.tenancy.delete_account(delete(&t.a1.id)).await,
        Code::PermissionDenied,
    );
    c.tenancy.delete_account(delete(&t.a1.id)).await.unwrap();
    assert_eq!(count_accounts(&app).await, 3);
    let mut platform = app.clients(As::Platform).await;
    assert_error(
        platform
            .tenancy
            .get_account(pb::GetAccountRequest {
                id: t.a1.id.clone(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn the_path_runs_from_the_provider_down_but_stops_at_the_callers_scope() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let req = || pb::GetAccountPathRequest {
        id: t.a1.id.clone(),
    };
    let mut platform = app.clients(As::Platform).await;
    let path = platform
        .tenancy
        .get_account_path(req())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = path.accounts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(
        ids,
        [t.provider.id.clone(), t.a.id.clone(), t.a1.id.clone()]
    );
    let mut a = app.clients(As::Viewer(&t.a.id)).await;
    let path = a
        .tenancy
        .get_account_path(req())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = path.accounts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids, [t.a.id.clone(), t.a1.id.clone()]);
    let mut b = app.clients(As::Viewer(&t.b.id)).await;
    assert_error(
        b.tenancy.get_account_path(req()).await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_answer() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Admin(&provider.id)).await;
    let mut req = new_account(&provider.id, "Once");
    req.request_id = "create-once-1".into();
    let first = c
        .tenancy
        .create_account(req.clone())
        .await
        .unwrap()
        .into_inner();
    let second = c
        .tenancy
        .create_account(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    assert_eq!(count_accounts(&app).await, 2);

    req.account.as_mut().unwrap().display_name = "Something else".into();
    let status = assert_error(c.tenancy.create_account(req).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["request_id"]);
    assert_eq!(count_accounts(&app).await, 2);
}

#[tokio::test]
async fn concurrent_retries_of_one_request_create_one_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let c = app.clients(As::Admin(&provider.id)).await;
    let mut req = new_account(&provider.id, "Once");
    req.request_id = "race-1".into();
    let calls = (0..8).map(|_| {
        let mut c = c.clone();
        let req = req.clone();
        tokio::spawn(async move {
            c.tenancy
                .create_account(req)
                .await
                .map(|r| r.into_inner().id)
        })
    });
    let ids: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(count_accounts(&app).await, 2);
}

#[tokio::test]
async fn validate_only_answers_without_changing_anything() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.clients(As::Admin(&t.provider.id)).await;
    let mut req = new_account(&t.provider.id, "Dry run");
    req.validate_only = true;
    let answer = c.tenancy.create_account(req).await.unwrap().into_inner();
    assert_eq!(answer.display_name, "Dry run");
    assert_eq!(count_accounts(&app).await, 4);
    // A dry run still checks every rule.
    let delete = pb::DeleteAccountRequest {
        id: t.a.id.clone(),
        validate_only: true,
        ..Default::default()
    };
    assert_error(
        c.tenancy.delete_account(delete).await,
        Code::FailedPrecondition,
    );
    let delete = pb::DeleteAccountRequest {
        id: t.b.id.clone(),
        validate_only: true,
        ..Default::default()
    };
    c.tenancy.delete_account(delete).await.unwrap();
    assert_eq!(count_accounts(&app).await, 4);
}
