//! Reserve: a number is set aside for a person or a role, with a tag, until it is unreserved or
//! its reservation expires.

use std::time::{Duration, SystemTime};

use numbering_client::v1 as pb;

use super::{assert_refused, stocked};
use crate::helpers::ok;
use crate::requests::{reserve, unreserve};

#[tokio::test]
async fn reserve_and_unreserve_for_a_role_with_a_tag() {
    let (app, t, numbers, _) = stocked(1).await;
    let mut operator = app.operator(&t.provider).await;
    let reserved = ok(operator
        .allocation
        .reserve_number(reserve(&numbers[0], "role:reception"))
        .await);
    assert_eq!(reserved.status, pb::NumberStatus::Reserved as i32);
    let r = reserved.reservation.unwrap();
    assert_eq!(
        (r.reserved_for.as_str(), r.tag.as_str()),
        ("role:reception", "front-desk")
    );
    let before = app.snapshot().await;
    let refused = operator
        .allocation
        .reserve_number(reserve(&numbers[0], "role:sales"))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_RESERVED").await;
    let free = ok(operator
        .allocation
        .unreserve_number(unreserve(&numbers[0]))
        .await);
    assert_eq!(free.status, pb::NumberStatus::Available as i32);
    let before = app.snapshot().await;
    let refused = operator
        .allocation
        .unreserve_number(unreserve(&numbers[0]))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_NOT_RESERVED").await;
}

#[tokio::test]
async fn an_expired_reservation_returns_to_available_by_itself() {
    let (app, _, numbers, mut admin) = stocked(2).await;
    let mut expiring = reserve(&numbers[0], "user:1");
    if let Some(r) = expiring.reservation.as_mut() {
        r.expire_time = Some((SystemTime::now() + Duration::from_secs(1)).into());
    }
    ok(admin.allocation.reserve_number(expiring).await);
    app.reserve(&numbers[1], "user:2").await;
    assert_eq!(app.row(&numbers[0]).await.status, "reserved");
    app.wait_for_status(&numbers[0], "available").await;
    assert_eq!(
        app.operations(&numbers[0]).await,
        ["add", "reserve", "reservation_expire"]
    );
    assert_eq!(app.last_actor(&numbers[0]).await, "system");
    // A reservation without an expiry stays.
    assert_eq!(app.row(&numbers[1]).await.status, "reserved");
}
