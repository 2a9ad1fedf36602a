//! Bad input: every malformed request is refused before anything runs, naming each bad field.

use numbering_client::v1 as pb;
use tonic::Code;

use super::stocked;
use crate::helpers::violated_fields;
use crate::requests::{
    a_day_ago, allocate_named, allocate_quantity, assign, events_page, quantity_of, reserve,
    state_at, withdraw,
};

#[tokio::test]
async fn bad_input_is_refused_with_every_field_named() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let before = app.snapshot().await;
    let mut reservation_in_the_past = reserve(&numbers[0], "");
    if let Some(r) = reservation_in_the_past.reservation.as_mut() {
        r.tag = "t".repeat(65);
        r.expire_time = a_day_ago();
    }
    let cases: Vec<(tonic::Status, Vec<&str>)> = vec![
        (
            admin
                .allocation
                .allocate_numbers(pb::AllocateNumbersRequest {
                    from_account_id: "nope".into(),
                    to_account_id: String::new(),
                    selection: None,
                    request_id: "r".repeat(200),
                    validate_only: false,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            vec![
                "from_account_id",
                "to_account_id",
                "selection",
                "request_id",
            ],
        ),
        (
            admin
                .allocation
                .allocate_numbers(allocate_quantity(&t.provider, &t.provider, 0))
                .await
                .unwrap_err(),
            vec!["to_account_id", "selection.quantity.count"],
        ),
        (
            admin
                .allocation
                .allocate_numbers(allocate_named(
                    &t.provider,
                    &t.a,
                    &["+1303", "303 555 0100", "+1303"],
                ))
                .await
                .unwrap_err(),
            vec![
                "selection.numbers.numbers[1]",
                "selection.numbers.numbers[2]",
            ],
        ),
        (
            admin
                .allocation
                .withdraw_numbers(withdraw(
                    &t.a,
                    quantity_of(pb::QuantitySelection {
                        count: 1,
                        series_id: "x".into(),
                        prefix: "1303".into(),
                    }),
                ))
                .await
                .unwrap_err(),
            vec!["selection.quantity.series_id", "selection.quantity.prefix"],
        ),
        (
            admin
                .allocation
                .assign_number(assign(
                    "",
                    Some(pb::Assignee {
                        kind: 0,
                        id: " ".into(),
                        display_name: "x".repeat(300),
                        account_id: "bad".into(),
                    }),
                ))
                .await
                .unwrap_err(),
            vec![
                "number",
                "assignee.kind",
                "assignee.id",
                "assignee.display_name",
                "assignee.account_id",
            ],
        ),
        (
            admin
                .allocation
                .reserve_number(reservation_in_the_past)
                .await
                .unwrap_err(),
            vec![
                "reservation.reserved_for",
                "reservation.tag",
                "reservation.expire_time",
            ],
        ),
        (
            admin
                .allocation
                .batch_assign_numbers(pb::BatchAssignNumbersRequest {
                    requests: vec![pb::AssignNumberRequest {
                        request_id: "inner".into(),
                        ..assign(&numbers[0], None)
                    }],
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            vec!["requests[0].request_id", "requests[0].assignee"],
        ),
        (
            admin
                .allocation
                .batch_release_numbers(pb::BatchReleaseNumbersRequest::default())
                .await
                .unwrap_err(),
            vec!["requests"],
        ),
        (
            admin
                .allocation
                .get_number_state_at(state_at("x", None))
                .await
                .unwrap_err(),
            vec!["number", "time"],
        ),
        (
            admin
                .allocation
                .list_number_events(events_page(&numbers[0], -1, ""))
                .await
                .unwrap_err(),
            vec!["page_size"],
        ),
    ];
    for (status, fields) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let named = violated_fields(&status);
        for f in &fields {
            assert!(named.iter().any(|n| n == f), "{f} missing from {named:?}");
        }
    }
    assert_eq!(app.snapshot().await, before);
}
