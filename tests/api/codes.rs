//! One place decides the code: what the caller did wrong is INVALID_ARGUMENT (bounded, however
//! big the input), what the database or the weather did is UNAVAILABLE with a RetryInfo.

use std::collections::BTreeMap;

use numbering_client::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, ok, spawn_app};
use crate::requests::{add_number, mask, update_account};

/// What a status costs on the wire: its message and its encoded details.
fn status_bytes(status: &tonic::Status) -> usize {
    status.message().len() + status.details().len()
}

/// A megabyte of one character.
fn megabyte() -> String {
    "k".repeat(1 << 20)
}

#[tokio::test]
async fn a_megabyte_label_key_region_or_mask_path_answers_a_small_invalid_argument() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;

    let mut labelled = add_number(&provider, "+13035550100");
    if let Some(n) = labelled.number.as_mut() {
        n.labels = BTreeMap::from([(megabyte(), "v".into())]);
    }
    let mut regional = add_number(&provider, "303 555 0100");
    regional.region = megabyte();
    let answers = [
        c.number_pool.add_number(labelled).await.map(|_| ()),
        c.number_pool.add_number(regional).await.map(|_| ()),
        c.tenancy
            .update_account(pb::UpdateAccountRequest {
                update_mask: mask(&[&megabyte()]),
                ..update_account(provider.clone(), &[])
            })
            .await
            .map(|_| ()),
    ];
    for answer in answers {
        let status = assert_error(answer, Code::InvalidArgument);
        assert!(
            status_bytes(&status) < 4096,
            "{} bytes: {}",
            status_bytes(&status),
            &status.message()[..200.min(status.message().len())]
        );
    }
}

#[tokio::test]
async fn many_bad_items_are_named_within_a_few_kilobytes() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let requests = (0..1000)
        .map(|_| pb::AssignNumberRequest {
            number: "x".repeat(100),
            ..Default::default()
        })
        .collect();
    let status = assert_error(
        c.allocation
            .batch_assign_numbers(pb::BatchAssignNumbersRequest {
                requests,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(
        status_bytes(&status) < 6144,
        "{} bytes",
        status_bytes(&status)
    );
    let fields = crate::helpers::violated_fields(&status);
    assert_eq!(
        fields.first().map(String::as_str),
        Some("requests[0].assignee")
    );
    assert_eq!(fields.last().map(String::as_str), Some("…"));
}
