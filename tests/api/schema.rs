//! The rules the schema keeps whatever the code does. Each statement here goes around the API
//! on purpose, to break a rule the service never breaks, and the database must refuse it.

use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::helpers::spawn_app;

/// The SQLSTATE and constraint a refused statement names.
fn refusal(result: Result<u64, tokio_postgres::Error>) -> (SqlState, Option<String>) {
    let error = result.expect_err("the database must refuse this");
    let db = error.as_db_error().expect("a refusal by the database");
    (db.code().clone(), db.constraint().map(str::to_string))
}

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

#[tokio::test]
async fn events_name_numbers_that_exist_and_a_number_keeps_its_id_its_provider_and_its_row() {
    let app = spawn_app().await;
    let acme = app.provider("Acme").await;
    let other = app.provider("Other").await;
    let number = app.add_number(&acme, "+13035550100").await;
    let (n, acme_id) = (id(&number.id), id(&acme.id));
    let insert_events = "INSERT INTO number_events (provider_id, number_id, e164, actor, operation, holder_path, after)
         SELECT $1, unnest($2::uuid[]), '+13035550100', 'test', 'update', '/', '{}'";

    // An event of no number is refused, alone or among events of real numbers: nothing is kept.
    let events = app.events_of(&number.id).await;
    for named in [vec![Uuid::new_v4()], vec![n, Uuid::new_v4(), n]] {
        assert_eq!(
            refusal(app.sql.execute(insert_events, &[&acme_id, &named]).await),
            (
                SqlState::FOREIGN_KEY_VIOLATION,
                Some("number_events_of_numbers".into())
            )
        );
    }
    assert_eq!(app.events_of(&number.id).await, events);
    // Nor can an event be pointed at no number afterwards.
    assert_eq!(
        refusal(
            app.sql
                .execute(
                    "UPDATE number_events SET number_id = $2 WHERE number_id = $1",
                    &[&n, &Uuid::new_v4()],
                )
                .await
        )
        .0,
        SqlState::FOREIGN_KEY_VIOLATION
    );
    // Events of real numbers pass the check.
    assert_eq!(
        app.sql
            .execute(insert_events, &[&acme_id, &vec![n, n]])
            .await
            .unwrap(),
        2
    );

    // A number never changes id (its events name it), is never deleted as a row, and its
    // table is never truncated.
    assert_eq!(
        refusal(
            app.sql
                .execute(
                    "UPDATE numbers SET id = $2 WHERE id = $1",
                    &[&n, &Uuid::new_v4()]
                )
                .await
        )
        .0,
        SqlState::RESTRICT_VIOLATION
    );
    assert_eq!(
        refusal(
            app.sql
                .execute("DELETE FROM numbers WHERE id = $1", &[&n])
                .await
        )
        .0,
        SqlState::RESTRICT_VIOLATION
    );
    let truncate = app.sql.batch_execute("TRUNCATE numbers CASCADE").await;
    assert_eq!(
        truncate.unwrap_err().code(),
        Some(&SqlState::RESTRICT_VIOLATION)
    );

    // A number is held only within its provider's tree: not by another provider's account.
    assert_eq!(
        refusal(
            app.sql
                .execute(
                    "UPDATE numbers SET holder_id = $2 WHERE id = $1",
                    &[&n, &id(&other.id)],
                )
                .await
        ),
        (
            SqlState::FOREIGN_KEY_VIOLATION,
            Some("numbers_holder_of_provider".into())
        )
    );
    let row = app.row(&number.e164).await;
    assert_eq!(row.holder, acme.id);
}

#[tokio::test]
async fn the_services_sessions_compile_no_jit_unless_the_database_url_says_so() {
    // A page's plan costed above `jit_above_cost` would spend longer compiling than running.
    let app = spawn_app().await;
    let jit = |config: tokio_postgres::Config| async move {
        let db = numbering::store::Db::new(config, 1).unwrap();
        let client = db.client().await.unwrap();
        let row = client.query_one("SHOW jit", &[]).await.unwrap();
        row.get::<_, String>(0)
    };
    assert_eq!(jit(app.database.clone()).await, "off");
    let mut asked = app.database.clone();
    asked.options("-c jit=on");
    assert_eq!(jit(asked).await, "on");
}
