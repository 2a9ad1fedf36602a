//! `numbering series create|list`.

use clap::Subcommand;
use numbering_client::{Clients, v1};
use serde_json::Value;

use super::failure::with_id;
use super::output::{self, Output};
use super::{Failure, Mutation};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a series: a provider's numbers under a country code or an E.164 prefix.
    Create {
        /// The provider.
        #[arg(long)]
        provider: String,
        /// A country code or E.164 prefix: +1, +1303, +4420.
        #[arg(long)]
        prefix: String,
        /// The name people read.
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Lists a provider's series, in prefix order.
    List {
        /// The provider.
        #[arg(long)]
        provider: String,
    },
}

pub async fn run(mut c: Clients, command: Command, out: Output) -> Result<(), Failure> {
    match command {
        Command::Create {
            provider,
            prefix,
            name,
            description,
            mutation,
        } => {
            let request_id = mutation.request_id();
            let request = v1::CreateSeriesRequest {
                provider_id: provider,
                series: Some(v1::Series {
                    prefix,
                    display_name: name,
                    description: description.unwrap_or_default(),
                    ..Default::default()
                }),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            let s = with_id(&request_id, c.number_pool.create_series(request).await)?.into_inner();
            out.print(output::series(&s), || {
                output::series_table(std::slice::from_ref(&s))
            });
        }
        Command::List { provider } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = c
                    .number_pool
                    .list_series(v1::ListSeriesRequest {
                        provider_id: provider.clone(),
                        page_size: 1000,
                        page_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                all.extend(page.series);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.print(
                Value::Array(all.iter().map(output::series).collect()),
                || output::series_table(&all),
            );
        }
    }
    Ok(())
}
