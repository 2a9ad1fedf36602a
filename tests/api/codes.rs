//! One place decides the code: what the caller did wrong is INVALID_ARGUMENT (bounded, however
//! big the input), what the database or the weather did is UNAVAILABLE with a RetryInfo.

use std::collections::BTreeMap;
use std::time::Duration;

use numbering_client::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{assert_error, spawn_app};
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

/// Sends `body` as it is, in one gRPC frame, to `path`, acting as the platform.
async fn raw_call(endpoint: &str, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    let token = crate::helpers::token(crate::helpers::As::Platform);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.unary::<_, Vec<u8>, _>(
        request,
        http::uri::PathAndQuery::from_static(path),
        raw::Bytes,
    )
    .await
    .expect_err("the server cannot read the request")
}

pub mod raw {
    //! A codec that sends and receives bytes as they are.
    use bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    pub struct Bytes;

    impl Codec for Bytes {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Bytes;
        type Decoder = Bytes;
        fn encoder(&mut self) -> Bytes {
            Bytes
        }
        fn decoder(&mut self) -> Bytes {
            Bytes
        }
    }

    impl Encoder for Bytes {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Bytes {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
}

#[tokio::test]
async fn a_request_that_does_not_decode_is_invalid_argument_not_internal() {
    let app = spawn_app().await;
    // GetAccountRequest { id: <field 1, a string> }.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    let truncated = vec![0x0a, 0x10, b'a'];
    for body in [not_utf8, truncated] {
        let status = raw_call(
            &app.endpoint,
            "/numbering.v1.TenancyService/GetAccount",
            body.clone(),
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert_eq!(crate::helpers::violated_fields(&status), ["request"]);
    }
}

/// The RetryInfo delay of an UNAVAILABLE answer; fails when there is none.
fn retry_delay(status: &tonic::Status) -> std::time::Duration {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("UNAVAILABLE carries a RetryInfo")
}

#[tokio::test]
async fn calls_to_a_server_whose_database_is_unreachable_answer_unavailable_with_retry_info() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // A port where no PostgreSQL listens: connections are refused.
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(crate::helpers::free_port())
        .user("postgres")
        .dbname("none")
        .connect_timeout(Duration::from_millis(200));
    let db = numbering::store::Db::new(config, 1).unwrap();
    tokio::spawn(numbering::server::serve(
        listener,
        db,
        crate::helpers::settings(numbering::auth::Authenticator::disabled()),
        std::future::pending(),
    ));
    let mut c = numbering_client::connect(endpoint, None).await.unwrap();
    for _ in 0..3 {
        let answer = c
            .tenancy
            .get_account(crate::requests::get_account(
                &uuid::Uuid::new_v4().to_string(),
            ))
            .await;
        assert!(retry_delay(&answer.unwrap_err()) > Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_schema_lost_under_a_running_server_turns_health_not_serving_and_calls_unavailable() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    app.sql
        .batch_execute("DROP TABLE schema_migrations")
        .await
        .unwrap();
    let mut health = app.health().await;
    for _ in 0..100 {
        if health == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = app.health().await;
    }
    assert_eq!(health, ServingStatus::NotServing as i32);
    let answer = app
        .platform()
        .tenancy
        .get_account(crate::requests::get_account(&provider.id))
        .await;
    retry_delay(&answer.unwrap_err());
}

/// Times outside the protobuf Timestamp range: years ±300,000 and 10^15 seconds.
fn out_of_range_times() -> Vec<prost_types::Timestamp> {
    let year = 31_556_952_i64;
    [300_000 * year, -300_000 * year, 1_000_000_000_000_000]
        .into_iter()
        .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 })
        .collect()
}

#[tokio::test]
async fn a_time_outside_the_timestamp_range_is_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let number = app.add_number(&provider, "+13035550100").await;
    let mut c = app.admin(&provider).await;
    for t in out_of_range_times() {
        crate::helpers::assert_invalid(
            c.allocation
                .get_number_state_at(crate::requests::state_at(&number.e164, Some(t)))
                .await,
            &["time"],
        );
        let mut reserve = crate::requests::reserve(&number.e164, "reception");
        if let Some(r) = reserve.reservation.as_mut() {
            r.expire_time = Some(t);
        }
        crate::helpers::assert_invalid(
            c.allocation.reserve_number(reserve).await,
            &["reservation.expire_time"],
        );
    }
}

#[tokio::test]
async fn an_account_tree_stops_at_its_documented_depth() {
    let app = spawn_app().await;
    let mut parent = app.provider("Acme").await;
    for _ in 0..numbering::domain::account::MAX_DEPTH {
        parent = app.child(&parent, "level").await;
    }
    let status = crate::helpers::assert_violates(
        app.platform()
            .tenancy
            .create_account(crate::requests::create_account(&parent.id, "too deep"))
            .await,
        "ACCOUNT_TREE_TOO_DEEP",
    );
    assert!(status.message().contains("32"), "{}", status.message());
}

#[tokio::test]
async fn oversized_masks_page_tokens_and_filters_are_invalid_argument() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let paths: Vec<String> = (0..33).map(|i| format!("labels{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    crate::helpers::assert_invalid(
        c.tenancy
            .update_account(update_account(provider.clone(), &paths))
            .await,
        &["update_mask"],
    );
    let status = assert_error(
        c.number_pool
            .list_numbers(pb::ListNumbersRequest {
                page_token: "A".repeat(4096),
                ..crate::requests::list_numbers(pb::NumberFilter {
                    holder_id: provider.id.clone(),
                    ..Default::default()
                })
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("at most 512 bytes"), "{status:?}");
    crate::helpers::assert_invalid(
        c.number_pool
            .list_numbers(crate::requests::list_numbers(pb::NumberFilter {
                holder_id: provider.id.clone(),
                statuses: vec![pb::NumberStatus::Available as i32; 10_000],
                ..Default::default()
            }))
            .await,
        &["filter.statuses"],
    );
}

/// What the whole test binary logs at ERROR level, from every thread, from the first call on.
/// Global, because a server's spans and events may be made on any thread of any runtime.
fn error_log() -> &'static std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::ERROR)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        lines
    })
}

/// The lines logged so far that contain `needle`.
fn logged(needle: &str) -> Vec<String> {
    let bytes = error_log().lock().map(|l| l.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_internal_error_is_logged_with_its_whole_cause_its_method_and_request_id() {
    error_log();
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    // A rule the server does not know: tripping it is a bug of ours, INTERNAL.
    app.sql
        .batch_execute(
            "ALTER TABLE accounts ADD CONSTRAINT surprise_rule CHECK (display_name <> 'boom')",
        )
        .await
        .unwrap();
    let mut request = crate::requests::create_account(&provider.id, "boom");
    request.request_id = "req-internal-42".into();
    let status = assert_error(
        app.platform().tenancy.create_account(request).await,
        Code::Internal,
    );
    assert!(!status.message().contains("surprise_rule"), "{status:?}");
    let line = logged("req-internal-42")
        .into_iter()
        .find(|l| l.contains("internal error"))
        .expect("the INTERNAL is logged");
    for part in [
        "CreateAccount",
        "req-internal-42",
        "23514",
        "violates check constraint",
        "surprise_rule",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}
