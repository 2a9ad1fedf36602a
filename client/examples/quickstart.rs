//! Quick start: connect, create a provider and a customer, import numbers, allocate some to the
//! customer, and read the details of a refusal.
//!
//! Against a server on loopback with authentication off (`numbering serve`):
//!
//! ```sh
//! cargo run -p numbering-client --example quickstart
//! ```
//!
//! `NUMBERING_SERVER` names another server, `NUMBERING_TOKEN` a bearer token (a platform token:
//! `numbering token --role platform`).

use numbering_client::tonic::Code;
use numbering_client::v1;
use numbering_client::{ConnectOptions, RequestId, StatusExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        std::env::var("NUMBERING_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let mut options = ConnectOptions::new(server);
    if let Ok(token) = std::env::var("NUMBERING_TOKEN") {
        options = options.token(token);
    }
    let mut c = options.connect().await?;

    // A provider (no parent: the platform's call), then a customer under it. Every mutation
    // carries a request id, so sending it again after a lost answer changes nothing twice.
    let account = |parent: &str, name: &str| {
        v1::CreateAccountRequest {
            account: Some(v1::Account {
                parent_id: parent.into(),
                display_name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .with_request_id()
    };
    let provider = c
        .tenancy
        .create_account(account("", "Quickstart Telecom"))
        .await?
        .into_inner();
    let customer = c
        .tenancy
        .create_account(account(&provider.id, "Quickstart Customer"))
        .await?
        .into_inner();
    println!("provider {} and customer {}", provider.id, customer.id);

    // Import: the options first, then the CSV in chunks of any size below 4 MiB. The answer
    // streams progress, then the result with every rejected row.
    let base = 13035550000 + u64::from(std::process::id() % 9000);
    let csv = format!(
        "e164,carrier\n+{base},Acme\n+{},Acme\nnot a number,Acme\n",
        base + 1
    );
    let options = v1::ImportOptions {
        owner_id: provider.id.clone(),
        mode: v1::ImportMode::BestEffort.into(),
        ..Default::default()
    }
    .with_request_id();
    let parts = vec![
        v1::ImportNumbersRequest {
            part: Some(v1::import_numbers_request::Part::Options(options)),
        },
        v1::ImportNumbersRequest {
            part: Some(v1::import_numbers_request::Part::Chunk(csv.into_bytes())),
        },
    ];
    let mut answers = c
        .number_pool
        .import_numbers(tokio_stream::iter(parts))
        .await?
        .into_inner();
    while let Some(answer) = answers.message().await? {
        if let Some(v1::import_numbers_response::Part::Result(result)) = answer.part {
            println!(
                "imported {} of {} rows; rejected: {:?}",
                result.rows_imported,
                result.rows_read,
                result
                    .rejected_rows
                    .iter()
                    .map(|r| (r.line, r.reason.as_str()))
                    .collect::<Vec<_>>()
            );
        }
    }

    // Allocate one number, picked by the service, down to the customer.
    let allocate = |count: i64| {
        v1::AllocateNumbersRequest {
            from_account_id: provider.id.clone(),
            to_account_id: customer.id.clone(),
            selection: Some(v1::NumberSelection {
                selection: Some(v1::number_selection::Selection::Quantity(
                    v1::QuantitySelection {
                        count,
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        }
        .with_request_id()
    };
    let moved = c
        .allocation
        .allocate_numbers(allocate(1))
        .await?
        .into_inner();
    println!("allocated {}", moved.numbers[0].e164);

    // Asking for more than there are is refused, and nothing moves: the status carries an
    // ErrorInfo (the reason) and a PreconditionFailure (the broken rule and its subject).
    let refused = c
        .allocation
        .allocate_numbers(allocate(1000))
        .await
        .expect_err("only one number is left");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let reason = refused.get_details_error_info().map(|info| info.reason);
    println!("refused: {} (reason {reason:?})", refused.message());
    for violation in refused
        .get_details_precondition_failure()
        .map(|p| p.violations)
        .unwrap_or_default()
    {
        println!(
            "  {} {}: {}",
            violation.r#type, violation.subject, violation.description
        );
    }
    Ok(())
}
