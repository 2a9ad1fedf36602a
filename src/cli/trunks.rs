//! `numbering trunks create|list|delete`: an account's SIP trunks.

use clap::Subcommand;
use numbering_client::{Clients, v1};
use serde_json::{Value, json};

use super::failure::with_id;
use super::output::{Output, table};
use super::{Failure, Mutation};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a SIP trunk of an account (its name unique in the account).
    Create {
        /// The account the trunk belongs to.
        #[arg(long)]
        account: String,
        /// The trunk's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Lists an account's SIP trunks.
    List {
        /// The account.
        #[arg(long)]
        account: String,
        /// Also the trunks of its ancestors within your view.
        #[arg(long)]
        inherited: bool,
    },
    /// Deletes a SIP trunk no number uses.
    Delete {
        /// The trunk's id.
        id: String,
        /// Only if the trunk's etag still matches.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        mutation: Mutation,
    },
}

pub async fn run(mut c: Clients, command: Command, out: Output) -> Result<(), Failure> {
    match command {
        Command::Create {
            account,
            name,
            mutation,
        } => {
            let request_id = mutation.request_id();
            let request = v1::CreateSipTrunkRequest {
                sip_trunk: Some(v1::SipTrunk {
                    account_id: account,
                    name,
                    ..Default::default()
                }),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            let t =
                with_id(&request_id, c.number_pool.create_sip_trunk(request).await)?.into_inner();
            print_trunks(out, trunk(&t), &[t]);
        }
        Command::List { account, inherited } => {
            let trunks = c
                .number_pool
                .list_sip_trunks(v1::ListSipTrunksRequest {
                    account_id: account,
                    include_inherited: inherited,
                })
                .await?
                .into_inner()
                .sip_trunks;
            // A list prints as a JSON array, even of one.
            print_trunks(
                out,
                Value::Array(trunks.iter().map(trunk).collect()),
                &trunks,
            );
        }
        Command::Delete { id, etag, mutation } => {
            let request_id = mutation.request_id();
            let request = v1::DeleteSipTrunkRequest {
                id: id.clone(),
                etag: etag.unwrap_or_default(),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            with_id(&request_id, c.number_pool.delete_sip_trunk(request).await)?;
            out.print(json!({"deleted": id}), || {
                let mut t = table(&["DELETED"]);
                t.add_row(vec![id.clone()]);
                t
            });
        }
    }
    Ok(())
}

fn trunk(t: &v1::SipTrunk) -> Value {
    json!({"id": t.id, "account_id": t.account_id, "name": t.name, "etag": t.etag})
}

fn print_trunks(out: Output, value: Value, trunks: &[v1::SipTrunk]) {
    out.print(value, || {
        let mut t = table(&["ID", "NAME", "ACCOUNT"]);
        for s in trunks {
            t.add_row(vec![s.id.clone(), s.name.clone(), s.account_id.clone()]);
        }
        t
    });
}
