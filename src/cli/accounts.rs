//! `numbering accounts create|list|get|update|suspend|resume|delete`.

use std::collections::HashMap;

use clap::Subcommand;
use numbering_client::{Clients, v1};
use serde_json::{Value, json};

use super::failure::with_id;
use super::output::{self, Output, table};
use super::{Failure, Mutation, key_value};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a provider (no --parent: the platform's call) or a child of an account.
    Create {
        /// The name people read.
        #[arg(long)]
        name: String,
        /// The parent account; none creates a provider.
        #[arg(long)]
        parent: Option<String>,
        /// A free label such as reseller, customer or department.
        #[arg(long)]
        kind: Option<String>,
        /// Your own id for the account, unique among its siblings.
        #[arg(long)]
        external_ref: Option<String>,
        /// The most numbers the account (with its subtree) may hold.
        #[arg(long)]
        max_numbers: Option<i64>,
        /// A label, key=value (repeat for more).
        #[arg(long = "label", value_parser = key_value)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Lists an account and its subtree as a tree.
    List {
        /// The account at the top of the tree.
        id: String,
        /// Its children only, not the whole subtree.
        #[arg(long)]
        children: bool,
    },
    /// Shows one account.
    Get { id: String },
    /// Changes an account's name, kind, external ref, labels or quota (only the fields given).
    Update {
        id: String,
        /// The new name people read.
        #[arg(long)]
        name: Option<String>,
        /// The new kind.
        #[arg(long)]
        kind: Option<String>,
        /// The new external ref.
        #[arg(long)]
        external_ref: Option<String>,
        /// The new quota: the most numbers the account (with its subtree) may hold.
        #[arg(long, conflicts_with = "no_max_numbers")]
        max_numbers: Option<i64>,
        /// Removes the quota.
        #[arg(long)]
        no_max_numbers: bool,
        /// The labels, key=value (repeat for more): they replace all the account's labels.
        #[arg(long = "label", value_parser = key_value, conflicts_with = "clear_labels")]
        labels: Vec<(String, String)>,
        /// Removes every label.
        #[arg(long)]
        clear_labels: bool,
        /// Only if the account's etag still matches.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Deletes an account that holds nothing and has no sub-accounts.
    Delete {
        id: String,
        /// Only if the account's etag still matches.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Suspends an account: it keeps its numbers, nothing new goes into it.
    Suspend {
        id: String,
        #[command(flatten)]
        mutation: Mutation,
    },
    /// Makes a suspended account active again.
    Resume {
        id: String,
        #[command(flatten)]
        mutation: Mutation,
    },
}

pub async fn run(mut c: Clients, command: Command, out: Output) -> Result<(), Failure> {
    match command {
        Command::Create {
            name,
            parent,
            kind,
            external_ref,
            max_numbers,
            labels,
            mutation,
        } => {
            let request_id = mutation.request_id();
            let request = v1::CreateAccountRequest {
                account: Some(v1::Account {
                    parent_id: parent.unwrap_or_default(),
                    display_name: name,
                    kind: kind.unwrap_or_default(),
                    external_ref: external_ref.unwrap_or_default(),
                    max_numbers,
                    labels: labels.into_iter().collect(),
                    ..Default::default()
                }),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            let a = with_id(&request_id, c.tenancy.create_account(request).await)?.into_inner();
            print_accounts(out, &[a]);
        }
        Command::Get { id } => {
            let a = c
                .tenancy
                .get_account(v1::GetAccountRequest { id })
                .await?
                .into_inner();
            print_accounts(out, &[a]);
        }
        Command::Update {
            id,
            name,
            kind,
            external_ref,
            max_numbers,
            no_max_numbers,
            labels,
            clear_labels,
            etag,
            mutation,
        } => {
            let mut paths = Vec::new();
            let mut account = v1::Account {
                id,
                etag: etag.unwrap_or_default(),
                ..Default::default()
            };
            if let Some(name) = name {
                account.display_name = name;
                paths.push("display_name");
            }
            if let Some(kind) = kind {
                account.kind = kind;
                paths.push("kind");
            }
            if let Some(external_ref) = external_ref {
                account.external_ref = external_ref;
                paths.push("external_ref");
            }
            if max_numbers.is_some() || no_max_numbers {
                account.max_numbers = max_numbers;
                paths.push("max_numbers");
            }
            if !labels.is_empty() || clear_labels {
                account.labels = labels.into_iter().collect();
                paths.push("labels");
            }
            if paths.is_empty() {
                return Err(Failure::Input(
                    "nothing to change: give --name, --kind, --external-ref, --max-numbers, \
                     --no-max-numbers, --label or --clear-labels"
                        .into(),
                ));
            }
            let request_id = mutation.request_id();
            let request = v1::UpdateAccountRequest {
                account: Some(account),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.into_iter().map(str::to_string).collect(),
                }),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            let a = with_id(&request_id, c.tenancy.update_account(request).await)?.into_inner();
            print_accounts(out, &[a]);
        }
        Command::Delete { id, etag, mutation } => {
            let request_id = mutation.request_id();
            let request = v1::DeleteAccountRequest {
                id: id.clone(),
                etag: etag.unwrap_or_default(),
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
            };
            with_id(&request_id, c.tenancy.delete_account(request).await)?;
            out.print(json!({"deleted": id}), || {
                let mut t = table(&["DELETED"]);
                t.add_row(vec![id.clone()]);
                t
            });
        }
        Command::Suspend { id, mutation } => {
            let request_id = mutation.request_id();
            let request = v1::SuspendAccountRequest {
                id,
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
                ..Default::default()
            };
            let a = with_id(&request_id, c.tenancy.suspend_account(request).await)?.into_inner();
            print_accounts(out, &[a]);
        }
        Command::Resume { id, mutation } => {
            let request_id = mutation.request_id();
            let request = v1::ResumeAccountRequest {
                id,
                request_id: request_id.clone(),
                validate_only: mutation.validate_only,
                ..Default::default()
            };
            let a = with_id(&request_id, c.tenancy.resume_account(request).await)?.into_inner();
            print_accounts(out, &[a]);
        }
        Command::List { id, children } => {
            let root = c
                .tenancy
                .get_account(v1::GetAccountRequest { id: id.clone() })
                .await?
                .into_inner();
            let mut below = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = c
                    .tenancy
                    .list_accounts(v1::ListAccountsRequest {
                        parent_id: id.clone(),
                        recursive: !children,
                        page_size: 1000,
                        page_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                below.extend(page.accounts);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let tree = tree_order(&root, &below);
            out.print(
                Value::Array(tree.iter().map(|(_, a)| output::account(a)).collect()),
                || {
                    let mut t = table(&["NAME", "ID", "KIND", "STATE", "MAX NUMBERS"]);
                    for (indent, a) in &tree {
                        t.add_row(vec![
                            format!("{indent}{}", a.display_name),
                            a.id.clone(),
                            a.kind.clone(),
                            output::account_state_short(a.state),
                            a.max_numbers.map(|m| m.to_string()).unwrap_or_default(),
                        ]);
                    }
                    t
                },
            );
        }
    }
    Ok(())
}

fn print_accounts(out: Output, accounts: &[v1::Account]) {
    let value = match accounts {
        [one] => output::account(one),
        many => Value::Array(many.iter().map(output::account).collect()),
    };
    out.print(value, || {
        let mut t = table(&["ID", "NAME", "PARENT", "KIND", "STATE", "DEPTH"]);
        for a in accounts {
            t.add_row(vec![
                a.id.clone(),
                a.display_name.clone(),
                a.parent_id.clone(),
                a.kind.clone(),
                output::account_state_short(a.state),
                a.depth.to_string(),
            ]);
        }
        t
    });
}

/// The root then its subtree depth first, each with the tree-drawing prefix of its line;
/// accounts whose parent is not in the list are left out.
fn tree_order<'a>(
    root: &'a v1::Account,
    below: &'a [v1::Account],
) -> Vec<(String, &'a v1::Account)> {
    let mut children: HashMap<&str, Vec<&v1::Account>> = HashMap::new();
    for a in below {
        children.entry(a.parent_id.as_str()).or_default().push(a);
    }
    let mut lines = vec![(String::new(), root)];
    fn walk<'a>(
        parent: &str,
        lead: &str,
        children: &HashMap<&str, Vec<&'a v1::Account>>,
        lines: &mut Vec<(String, &'a v1::Account)>,
    ) {
        let Some(kids) = children.get(parent) else {
            return;
        };
        for (i, kid) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            lines.push((format!("{lead}{}", if last { "└─ " } else { "├─ " }), kid));
            let next = format!("{lead}{}", if last { "   " } else { "│  " });
            walk(&kid.id, &next, children, lines);
        }
    }
    walk(&root.id, "", &children, &mut lines);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, parent: &str) -> v1::Account {
        v1::Account {
            id: id.into(),
            parent_id: parent.into(),
            display_name: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_subtree_listed_by_depth_prints_depth_first_under_its_parents() {
        let root = account("p", "");
        // ListAccounts answers by depth, then creation.
        let below = [
            account("a", "p"),
            account("b", "p"),
            account("a1", "a"),
            account("b1", "b"),
            account("a11", "a1"),
        ];
        let lines: Vec<String> = tree_order(&root, &below)
            .iter()
            .map(|(lead, a)| format!("{lead}{}", a.id))
            .collect();
        assert_eq!(
            lines,
            ["p", "├─ a", "│  └─ a1", "│     └─ a11", "└─ b", "   └─ b1"]
        );
    }
}
