//! Import: a CSV of any size streams into a provider's pool; good rows are added, bad ones are
//! reported by line, in one of three modes, with the server's memory bounded.

use std::collections::BTreeMap;

use numbering_client::Clients;
use numbering_client::v1 as pb;
use pb::import_numbers_request::Part;
use tonic::Code;

use crate::helpers::{
    assert_error, assert_invalid, export_csv, ok, spawn_app, spawn_binary, violated_fields,
};
use crate::requests::{add_number, delete_number, export, get_e164, inventory};

fn options(owner: &pb::Account, mode: pb::ImportMode) -> pb::ImportNumbersRequest {
    pb::ImportNumbersRequest {
        part: Some(Part::Options(pb::ImportOptions {
            owner_id: owner.id.clone(),
            mode: mode as i32,
            region: "US".into(),
            request_id: String::new(),
        })),
    }
}

fn chunk(bytes: impl Into<Vec<u8>>) -> pb::ImportNumbersRequest {
    pb::ImportNumbersRequest {
        part: Some(Part::Chunk(bytes.into())),
    }
}

/// Sends the messages (a list, or rows made as they are sent) and answers the progress
/// messages seen and the result.
async fn import<M>(
    c: &mut Clients,
    messages: M,
) -> Result<(Vec<pb::ImportProgress>, pb::ImportResult), tonic::Status>
where
    M: IntoIterator<Item = pb::ImportNumbersRequest>,
    M::IntoIter: Send + 'static,
{
    let mut answers = c
        .number_pool
        .import_numbers(futures::stream::iter(messages))
        .await?
        .into_inner();
    let mut progress = Vec::new();
    while let Some(answer) = answers.message().await? {
        match answer.part {
            Some(pb::import_numbers_response::Part::Progress(p)) => progress.push(p),
            Some(pb::import_numbers_response::Part::Result(r)) => return Ok((progress, r)),
            None => {}
        }
    }
    panic!("the import ended without a result");
}

async fn import_csv(
    c: &mut Clients,
    owner: &pb::Account,
    mode: pb::ImportMode,
    csv: &str,
) -> pb::ImportResult {
    // Cut anywhere: the server must not care where chunks end.
    let size = if csv.len() < 10_000 { 7 } else { 64 * 1024 + 3 };
    let mut messages = vec![options(owner, mode)];
    messages.extend(csv.as_bytes().chunks(size).map(chunk));
    import(c, messages).await.unwrap().1
}

fn messy_csv(team: &pb::Account) -> String {
    format!(
        "e164,carrier,service_info,tags,labels,holder_id\n\
         +13035550100,Acme,\"Main line, lobby\",sales|vip,site=denver,\n\
         303 555 0101,,,,,{team}\n\
         \n\
         +1 303 555 01,,,,,\n\
         +13035550100,,,,,\n\
         +13035550102,,,,,,extra\n\
         +13035550103,,,,,not-a-uuid\n\
         +13035550104,,\"{long}\",,,\n\
         +13035550105,,,,,\n",
        team = team.id,
        long = "x".repeat(10 * 1024 * 1024),
    )
}

#[tokio::test]
async fn best_effort_adds_the_good_rows_and_reports_each_bad_one_by_line() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let mut c = app.admin(&provider).await;
    app.add_number(&provider, "+13035550105").await;
    let result = import_csv(
        &mut c,
        &provider,
        pb::ImportMode::BestEffort,
        &messy_csv(&team),
    )
    .await;
    let rejected: Vec<(i64, &str)> = result
        .rejected_rows
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (5, "INVALID_NUMBER"),
            (6, "DUPLICATE_IN_FILE"),
            (7, "WRONG_COLUMN_COUNT"),
            (8, "INVALID_ACCOUNT"),
            (9, "LINE_TOO_LONG"),
            (10, "ALREADY_EXISTS"),
        ]
    );
    assert_eq!(
        (result.rows_read, result.rows_imported, result.rows_rejected),
        (8, 2, 6)
    );
    assert_eq!(
        app.live_numbers().await,
        ["+13035550100", "+13035550101", "+13035550105"]
    );
    let first = ok(c.number_pool.get_number(get_e164("+13035550100")).await);
    assert_eq!(first.service_info, "Main line, lobby");
    assert_eq!(first.tags, ["sales", "vip"]);
    assert_eq!(first.labels["site"], "denver");
    assert_eq!(first.carrier, "Acme");
    let second = ok(c.number_pool.get_number(get_e164("+13035550101")).await);
    assert_eq!(second.holder_id, team.id);
    let totals = ok(c
        .number_pool
        .get_inventory(inventory(&provider.id, false))
        .await)
    .totals
    .unwrap();
    assert_eq!((totals.total, totals.allocated_to_children), (3, 1));
}

#[tokio::test]
async fn all_or_nothing_and_validate_only_add_nothing_when_a_row_is_bad() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let mut c = app.admin(&provider).await;
    for mode in [pb::ImportMode::AllOrNothing, pb::ImportMode::ValidateOnly] {
        let result = import_csv(&mut c, &provider, mode, &messy_csv(&team)).await;
        assert_eq!(result.rows_imported, 0);
        assert_eq!(result.rows_rejected, 5);
        assert!(app.live_numbers().await.is_empty());
    }
    let clean = "e164\n+13035550100\n+13035550101\n";
    let dry = import_csv(&mut c, &provider, pb::ImportMode::ValidateOnly, clean).await;
    assert_eq!(
        (dry.rows_read, dry.rows_imported, dry.rows_rejected),
        (2, 0, 0)
    );
    assert!(app.live_numbers().await.is_empty());
    let all = import_csv(&mut c, &provider, pb::ImportMode::AllOrNothing, clean).await;
    assert_eq!(all.rows_imported, 2);
    assert_eq!(app.live_numbers().await.len(), 2);
}

#[tokio::test]
async fn a_bad_header_or_missing_options_refuses_the_whole_import() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    for csv in [
        "number,carrier\n+13035550100,x\n",
        "e164,colour\n+13035550100,red\n",
        "e164,e164\n+1,+1\n",
    ] {
        let status = assert_error(
            import(
                &mut c,
                vec![options(&provider, pb::ImportMode::BestEffort), chunk(csv)],
            )
            .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["csv"], "{csv}");
    }
    assert_invalid(
        import(&mut c, vec![chunk("e164\n+13035550100\n")]).await,
        &["options"],
    );
    let mut no_mode = options(&provider, pb::ImportMode::Unspecified);
    if let Some(Part::Options(o)) = &mut no_mode.part {
        o.region = "ZZ".into();
    }
    let status = assert_error(import(&mut c, vec![no_mode]).await, Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        vec!["options.mode", "options.region"]
    );
    assert!(app.live_numbers().await.is_empty());
}

#[tokio::test]
async fn only_the_providers_admin_imports() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let mut sub = app.admin(&team).await;
    let csv = "e164\n+13035550100\n";
    assert_error(
        import(
            &mut sub,
            vec![options(&provider, pb::ImportMode::BestEffort), chunk(csv)],
        )
        .await,
        Code::PermissionDenied,
    );
    assert!(app.live_numbers().await.is_empty());
}

#[tokio::test]
async fn a_retried_import_returns_the_first_result() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let with_id = |csv: &str| {
        let mut o = options(&provider, pb::ImportMode::BestEffort);
        if let Some(Part::Options(opts)) = &mut o.part {
            opts.request_id = "import-1".into();
        }
        vec![o, chunk(csv)]
    };
    let first = import(&mut c, with_id("e164\n+13035550100\n"))
        .await
        .unwrap()
        .1;
    let retry = import(&mut c, with_id("e164\n+13035550100\n"))
        .await
        .unwrap()
        .1;
    assert_eq!(first, retry);
    assert_eq!(retry.rows_imported, 1);
    assert_invalid(
        import(&mut c, with_id("e164\n+13035550101\n")).await,
        &["request_id"],
    );
    assert_eq!(app.live_numbers().await, ["+13035550100"]);
}

#[tokio::test]
async fn the_template_and_an_export_are_read_back_by_import() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let template = ok(c
        .number_pool
        .get_import_template(pb::GetImportTemplateRequest {})
        .await)
    .csv;
    let added = import_csv(&mut c, &provider, pb::ImportMode::AllOrNothing, &template).await;
    assert_eq!(added.rows_imported, 1);
    let before = ok(c
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await)
    .numbers;

    let exported = export_csv(&mut c, export()).await;
    assert!(exported.starts_with("e164,region,"));
    for n in &before {
        ok(c.number_pool.delete_number(delete_number(&n.id)).await);
    }
    let again = import_csv(&mut c, &provider, pb::ImportMode::AllOrNothing, &exported).await;
    assert_eq!(again.rows_imported, 1, "{again:?}");
    let after = ok(c
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await)
    .numbers;
    let attributes = |n: &pb::Number| {
        (
            n.e164.clone(),
            n.number_type,
            n.source,
            n.carrier.clone(),
            n.sip_trunk.clone(),
            n.billing_reference.clone(),
            n.service_info.clone(),
            n.tags.clone(),
            n.labels.clone(),
        )
    };
    assert_eq!(
        after.iter().map(attributes).collect::<Vec<_>>(),
        before.iter().map(attributes).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn export_then_import_keeps_tags_and_labels_with_separators_quotes_and_unicode() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.admin(&provider).await;
    let mut req = add_number(&provider, "+13035550100");
    if let Some(n) = req.number.as_mut() {
        n.carrier = "Acme, \"the\" carrier".into();
        n.service_info = "  two\nlines; a|b \\ ".into();
        n.tags = vec![
            "a|b".into(),
            "24\\7".into(),
            "q\"uote,d".into(),
            "日本 🙂".into(),
        ];
        n.labels = BTreeMap::from([
            ("team".to_string(), "x;y=z".to_string()),
            ("k=v".into(), " padded ".into()),
            ("back\\slash|".into(), "é".into()),
        ]);
    }
    let before = ok(app.platform().number_pool.add_number(req).await);
    let exported = export_csv(&mut c, export()).await;
    ok(c.number_pool.delete_number(delete_number(&before.id)).await);
    let again = import_csv(&mut c, &provider, pb::ImportMode::AllOrNothing, &exported).await;
    assert_eq!(again.rows_imported, 1, "{again:?}\n{exported}");
    let after = ok(c.number_pool.get_number(get_e164(&before.e164)).await);
    assert_ne!(after.id, before.id);
    assert_eq!(
        (
            &after.carrier,
            &after.service_info,
            &after.tags,
            &after.labels
        ),
        (
            &before.carrier,
            &before.service_info,
            &before.tags,
            &before.labels
        )
    );
}

/// The server's peak resident memory, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_large_import_streams_in_bounded_memory_and_counts_every_row() {
    // The real binary in its own process, so its memory is measured alone.
    let mut server = spawn_binary(&[]).await;
    let mut platform = server.clients.clone();
    let provider = server.provider("Big").await;

    // 100,000 rows of about 1 KiB each: 100 MiB of CSV, generated as it is sent.
    const ROWS: u64 = 100_000;
    let padding = "p".repeat(1000);
    let messages = std::iter::once(options(&provider, pb::ImportMode::BestEffort))
        .chain(std::iter::once(chunk("e164,service_info\n")))
        .chain((0..ROWS / 1000).map(move |block| {
            let mut csv = String::with_capacity(1000 * 1030);
            for i in 0..1000 {
                csv.push_str(&format!(
                    "+1303{},{padding}\n",
                    2_000_000 + block * 1000 + i
                ));
            }
            chunk(csv)
        }));
    let (progress, result) = import(&mut platform, messages).await.unwrap();
    let peak = peak_rss_kib(server.process.id());
    server.stop();
    assert_eq!(result.rows_read, ROWS as i64);
    assert_eq!(
        result.rows_imported,
        ROWS as i64,
        "{:?}",
        result.rejected_rows.first()
    );
    assert!(!progress.is_empty(), "progress messages while it runs");
    assert!(
        peak < 64 * 1024,
        "the server peaked at {peak} KiB for 100 MiB of CSV"
    );
}

#[tokio::test]
async fn rows_that_would_break_an_accounts_quota_are_rejected_together() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let sub_team = app.child(&team, "Sub-team").await;
    let mut c = app.admin(&provider).await;
    app.set_quota(&team, 2).await;
    let csv = format!(
        "e164,holder_id\n+13035550100,{s}\n+13035550101,{s}\n+13035550102,{s}\n+13035550103,\n",
        s = sub_team.id
    );
    let result = import_csv(&mut c, &provider, pb::ImportMode::BestEffort, &csv).await;
    let reasons: Vec<(i64, &str)> = result
        .rejected_rows
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (2, "QUOTA_EXCEEDED"),
            (3, "QUOTA_EXCEEDED"),
            (4, "QUOTA_EXCEEDED")
        ]
    );
    assert_eq!(app.live_numbers().await, ["+13035550103"]);
    let fits = format!(
        "e164,holder_id\n+13035550104,{s}\n+13035550105,{s}\n",
        s = sub_team.id
    );
    let result = import_csv(&mut c, &provider, pb::ImportMode::BestEffort, &fits).await;
    assert_eq!(result.rows_imported, 2);
}

#[tokio::test]
async fn imported_numbers_are_filed_in_the_longest_series_and_each_has_its_event() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    let us = app.series(&provider, "+1").await;
    let denver = app.series(&provider, "+1303").await;
    let mut c = app.admin(&provider).await;
    let csv = format!(
        "e164,holder_id\n+13035550100,\n+16175550100,{team}\n+442079460018,\n",
        team = team.id
    );
    let result = import_csv(&mut c, &provider, pb::ImportMode::BestEffort, &csv).await;
    assert_eq!((result.rows_imported, result.rows_rejected), (3, 0));
    for (e164, series, holder) in [
        ("+13035550100", denver.id.as_str(), &provider),
        ("+16175550100", us.id.as_str(), &team),
        ("+442079460018", "", &provider),
    ] {
        let n = ok(c.number_pool.get_number(get_e164(e164)).await);
        assert_eq!(
            (n.series_id.as_str(), &n.holder_id),
            (series, &holder.id),
            "{e164}"
        );
        let history = ok(c
            .allocation
            .list_number_events(crate::requests::events(e164))
            .await)
        .events;
        assert_eq!(history.len(), 1, "{e164}: one event, the import's");
        assert_eq!(history[0].after.as_ref().unwrap().holder_id, holder.id);
    }
}
