//! TenancyService: the tree of accounts under each provider. Who creates, reads, changes,
//! suspends and deletes which account, and what each caller may see of the tree.

use std::collections::BTreeMap;

use numbering_client::v1 as pb;
use tonic::Code;

use crate::helpers::{
    As, assert_error, assert_invalid, assert_violates, ok, spawn_app, violated_fields,
};
use crate::requests::{
    create_account, delete_account, get_account, resume, set_aging_period, set_quota, suspend,
    update_account,
};

/// A page of the accounts under `parent`.
fn children(parent: &pb::Account, page_size: i32, page_token: &str) -> pb::ListAccountsRequest {
    pb::ListAccountsRequest {
        parent_id: parent.id.clone(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

/// The names of the accounts a list answers.
fn names(list: &pb::ListAccountsResponse) -> Vec<&str> {
    list.accounts
        .iter()
        .map(|a| a.display_name.as_str())
        .collect()
}

#[tokio::test]
async fn the_platform_creates_a_provider_and_an_admin_creates_children() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    assert_eq!(provider.provider_id, provider.id);
    assert!(provider.parent_id.is_empty());
    assert_eq!(provider.depth, 0);
    assert_eq!(provider.state, pb::AccountState::Active as i32);

    let mut admin = app.admin(&provider).await;
    let mut req = create_account(&provider.id, "Reseller");
    let acc = req.account.as_mut().unwrap();
    acc.kind = "reseller".into();
    acc.external_ref = "crm-42".into();
    acc.labels = BTreeMap::from([("region".into(), "emea".into())]);
    let child = ok(admin.tenancy.create_account(req).await);
    assert_eq!(child.parent_id, provider.id);
    assert_eq!(child.provider_id, provider.id);
    assert_eq!(child.depth, 1);
    assert_eq!(child.external_ref, "crm-42");
    assert_eq!(child.labels["region"], "emea");
    let got = ok(admin.tenancy.get_account(get_account(&child.id)).await);
    assert_eq!(got, child);
}

#[tokio::test]
async fn only_the_platform_creates_providers() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut admin = app.admin(&provider).await;
    assert_error(
        admin
            .tenancy
            .create_account(create_account("", "Rogue"))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(app.count_accounts().await, 1);
}

#[tokio::test]
async fn operators_and_viewers_cannot_create_accounts() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for who in [As::Operator(&provider.id), As::Viewer(&provider.id)] {
        let mut c = app.clients(who).await;
        assert_error(
            c.tenancy
                .create_account(create_account(&provider.id, "X"))
                .await,
            Code::PermissionDenied,
        );
    }
    assert_eq!(app.count_accounts().await, 1);
}

#[tokio::test]
async fn bad_account_fields_are_named_in_the_error() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.platform();
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
    for (parent, name, field) in [
        ("not-a-uuid", "X", "account.parent_id"),
        (provider.id.as_str(), "  ", "account.display_name"),
    ] {
        assert_invalid(
            c.tenancy.create_account(create_account(parent, name)).await,
            &[field],
        );
    }
    assert_error(
        c.tenancy
            .create_account(pb::CreateAccountRequest::default())
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(app.count_accounts().await, 1);
}

#[tokio::test]
async fn external_references_are_unique_among_siblings_only() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.platform();
    let with_ref = |parent: &str| {
        let mut r = create_account(parent, "X");
        r.account.as_mut().unwrap().external_ref = "ext-1".into();
        r
    };
    ok(c.tenancy.create_account(with_ref(&t.a.id)).await);
    assert_error(
        c.tenancy.create_account(with_ref(&t.a.id)).await,
        Code::AlreadyExists,
    );
    ok(c.tenancy.create_account(with_ref(&t.b.id)).await);
}

#[tokio::test]
async fn nothing_is_created_under_a_suspended_account() {
    let app = spawn_app().await;
    let t = app.tree().await;
    app.suspend(&t.a).await;
    let mut admin = app.admin(&t.provider).await;
    assert_violates(
        admin
            .tenancy
            .create_account(create_account(&t.a.id, "Late"))
            .await,
        "ACCOUNT_NOT_ACTIVE",
    );
}

#[tokio::test]
async fn a_caller_cannot_see_its_parent_or_its_siblings_and_learns_nothing() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut a_admin = app.admin(&t.a).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [&t.provider.id, &t.b.id, &unknown] {
        assert_error(
            a_admin.tenancy.get_account(get_account(id)).await,
            Code::PermissionDenied,
        );
    }
    // Its own subtree it sees.
    ok(a_admin.tenancy.get_account(get_account(&t.a1.id)).await);
    // Creating under a sibling or listing it is refused the same way.
    assert_error(
        a_admin
            .tenancy
            .create_account(create_account(&t.b.id, "Sneaky"))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        a_admin
            .tenancy
            .list_accounts(children(&t.provider, 0, ""))
            .await,
        Code::PermissionDenied,
    );
    // The platform learns that an unknown account does not exist.
    assert_error(
        app.platform()
            .tenancy
            .get_account(get_account(&unknown))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn list_shows_children_or_the_whole_subtree_with_filters() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.viewer(&t.provider).await;
    let list = |recursive: bool, kind: &str| pb::ListAccountsRequest {
        recursive,
        kind: kind.into(),
        ..children(&t.provider, 0, "")
    };
    let direct = ok(c.tenancy.list_accounts(list(false, "")).await);
    assert_eq!(names(&direct), ["Team A", "Team B"]);
    let subtree = ok(c.tenancy.list_accounts(list(true, "")).await);
    assert_eq!(names(&subtree), ["Team A", "Team B", "Team A1"]);
    let none = ok(c.tenancy.list_accounts(list(true, "reseller")).await);
    assert!(none.accounts.is_empty());
    let mut by_state = list(true, "");
    by_state.state = pb::AccountState::Suspended as i32;
    let suspended = ok(c.tenancy.list_accounts(by_state).await);
    assert!(suspended.accounts.is_empty());
}

#[tokio::test]
async fn pages_walk_the_whole_list_once_and_tokens_are_bound_to_the_filter() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for i in 0..7 {
        app.child(&provider, &format!("Child {i}")).await;
    }
    let mut c = app.admin(&provider).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(c
            .tenancy
            .list_accounts(children(&provider, 3, &token))
            .await);
        assert!(page.accounts.len() <= 3);
        seen.extend(page.accounts.into_iter().map(|a| a.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..7).map(|i| format!("Child {i}")).collect();
    assert_eq!(seen, expected);

    let first = ok(c.tenancy.list_accounts(children(&provider, 2, "")).await);
    let changed = pb::ListAccountsRequest {
        recursive: true,
        ..children(&provider, 2, &first.next_page_token)
    };
    assert_invalid(c.tenancy.list_accounts(changed).await, &["page_token"]);
    let mut tampered = first.next_page_token.clone();
    tampered.insert(3, 'x');
    for bad in [
        children(&provider, 2, &tampered),
        children(&provider, -1, ""),
    ] {
        assert_error(c.tenancy.list_accounts(bad).await, Code::InvalidArgument);
    }
}

#[tokio::test]
async fn update_changes_only_the_masked_fields_and_honours_the_etag() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.admin(&t.a).await;
    let rename = |name: &str, kind: &str| {
        let account = pb::Account {
            id: t.a.id.clone(),
            display_name: name.into(),
            kind: kind.into(),
            etag: t.a.etag.clone(),
            ..Default::default()
        };
        update_account(account, &["display_name"])
    };
    let updated = ok(c
        .tenancy
        .update_account(rename("Team Alpha", "ignored, not in the mask"))
        .await);
    assert_eq!(updated.display_name, "Team Alpha");
    assert_eq!(updated.kind, t.a.kind);
    assert_ne!(updated.etag, t.a.etag);

    // The old etag is stale now: ABORTED, and nothing changes.
    assert_error(
        c.tenancy.update_account(rename("Lost update", "")).await,
        Code::Aborted,
    );
    let now = ok(c.tenancy.get_account(get_account(&t.a.id)).await);
    assert_eq!(now.display_name, "Team Alpha");
}

#[tokio::test]
async fn update_refuses_bad_masks_and_fields() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.platform();
    let req = |paths: &[&str], account: pb::Account| {
        let account = pb::Account {
            id: t.a.id.clone(),
            ..account
        };
        update_account(account, paths)
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
    let mut own = app.admin(&t.a).await;
    assert_error(
        own.tenancy
            .update_account(set_quota(&t.a.id, 1_000_000))
            .await,
        Code::PermissionDenied,
    );
    let mut parent = app.admin(&t.provider).await;
    let updated = ok(parent.tenancy.update_account(set_quota(&t.a.id, 500)).await);
    assert_eq!(updated.max_numbers, Some(500));
}

#[tokio::test]
async fn the_provider_sets_its_aging_period() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let days_45 = 45 * 86400;
    let updated = ok(c
        .tenancy
        .update_account(set_aging_period(&provider.id, days_45))
        .await);
    assert_eq!(updated.aging_period.map(|d| d.seconds), Some(days_45));
}

#[tokio::test]
async fn suspend_and_resume_are_the_parents_call() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut own = app.admin(&t.a).await;
    assert_error(
        own.tenancy.suspend_account(suspend(&t.a.id)).await,
        Code::PermissionDenied,
    );
    let mut parent = app.admin(&t.provider).await;
    let s = ok(parent.tenancy.suspend_account(suspend(&t.a.id)).await);
    assert_eq!(s.state, pb::AccountState::Suspended as i32);
    // A suspended account cannot resume itself.
    assert_error(
        own.tenancy.resume_account(resume(&t.a.id)).await,
        Code::PermissionDenied,
    );
    let r = ok(parent.tenancy.resume_account(resume(&t.a.id)).await);
    assert_eq!(r.state, pb::AccountState::Active as i32);
    // Suspending twice answers the account as it is; a stale etag is refused.
    let again = ok(parent.tenancy.suspend_account(suspend(&t.a.id)).await);
    let twice = ok(parent.tenancy.suspend_account(suspend(&t.a.id)).await);
    assert_eq!(again.etag, twice.etag);
    let stale = pb::SuspendAccountRequest {
        etag: t.a.etag.clone(),
        ..suspend(&t.a.id)
    };
    assert_error(parent.tenancy.suspend_account(stale).await, Code::Aborted);
}

#[tokio::test]
async fn delete_refuses_an_account_with_children_or_numbers_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.admin(&t.provider).await;
    assert_violates(
        c.tenancy.delete_account(delete_account(&t.a.id)).await,
        "ACCOUNT_HAS_CHILDREN",
    );

    let number = app.add_number(&t.provider, "+13035550100").await;
    app.allocate_named(&t.provider, &t.b, &[&number.e164]).await;
    assert_violates(
        c.tenancy.delete_account(delete_account(&t.b.id)).await,
        "ACCOUNT_HOLDS_NUMBERS",
    );
    assert_eq!(app.count_accounts().await, 4);

    // An empty leaf goes; the account's own admin may not delete it.
    let mut own = app.admin(&t.a1).await;
    assert_error(
        own.tenancy.delete_account(delete_account(&t.a1.id)).await,
        Code::PermissionDenied,
    );
    ok(c.tenancy.delete_account(delete_account(&t.a1.id)).await);
    assert_eq!(app.count_accounts().await, 3);
    assert_error(
        app.platform()
            .tenancy
            .get_account(get_account(&t.a1.id))
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
    let ids = |path: pb::GetAccountPathResponse| -> Vec<String> {
        path.accounts.into_iter().map(|a| a.id).collect()
    };
    let whole = ok(app.platform().tenancy.get_account_path(req()).await);
    assert_eq!(
        ids(whole),
        [t.provider.id.clone(), t.a.id.clone(), t.a1.id.clone()]
    );
    let mut a = app.viewer(&t.a).await;
    let from_a = ok(a.tenancy.get_account_path(req()).await);
    assert_eq!(ids(from_a), [t.a.id.clone(), t.a1.id.clone()]);
    let mut b = app.viewer(&t.b).await;
    assert_error(
        b.tenancy.get_account_path(req()).await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_answer() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let mut req = create_account(&provider.id, "Once");
    req.request_id = "create-once-1".into();
    let first = ok(c.tenancy.create_account(req.clone()).await);
    let second = ok(c.tenancy.create_account(req.clone()).await);
    assert_eq!(first, second);
    assert_eq!(app.count_accounts().await, 2);

    req.account.as_mut().unwrap().display_name = "Something else".into();
    assert_invalid(c.tenancy.create_account(req).await, &["request_id"]);
    assert_eq!(app.count_accounts().await, 2);
}

#[tokio::test]
async fn concurrent_retries_of_one_request_create_one_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let c = app.admin(&provider).await;
    let mut req = create_account(&provider.id, "Once");
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
    assert_eq!(app.count_accounts().await, 2);
}

#[tokio::test]
async fn validate_only_answers_without_changing_anything() {
    let app = spawn_app().await;
    let t = app.tree().await;
    let mut c = app.admin(&t.provider).await;
    let mut req = create_account(&t.provider.id, "Dry run");
    req.validate_only = true;
    let answer = ok(c.tenancy.create_account(req).await);
    assert_eq!(answer.display_name, "Dry run");
    assert_eq!(app.count_accounts().await, 4);
    // A dry run still checks every rule.
    let dry_delete = |id: &str| pb::DeleteAccountRequest {
        validate_only: true,
        ..delete_account(id)
    };
    assert_error(
        c.tenancy.delete_account(dry_delete(&t.a.id)).await,
        Code::FailedPrecondition,
    );
    ok(c.tenancy.delete_account(dry_delete(&t.b.id)).await);
    assert_eq!(app.count_accounts().await, 4);
}
