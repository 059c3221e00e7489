//! Completers' resident ID numbers: validated (GB 11643), never stored in clear (a dump of the
//! database shows none), shown masked to everyone but finance.

use integration::{TestApp, both_backends, spawn_app};
use ledger::Role;
use ledger::store::Backend;
use serde_json::json;
use uuid::Uuid;

const ID_1: &str = "360426199101010071";
const ID_2: &str = "11010519491231002X";

async fn listed_with_ids(app: &TestApp) -> (Uuid, Uuid) {
    let university = app
        .mutate(&app.admin(), "registerOrganisation", json!({ "name": "重庆大学", "kind": "UNIVERSITY", "creditCode": "12500000450403271P", "divisionCode": "500106" }))
        .await;
    let staff = app.token(Role::ResearchInstitution, Some(university), None);
    let achievement = app
        .mutate(&staff, "listAchievement", json!({
            "ownerId": university, "title": "成果", "field": "NEW_MATERIALS", "maturity": 5, "transferModes": ["LICENCE"],
            "completers": [{ "name": "张三", "share": "50", "idNumber": ID_1 }, { "name": "李四", "share": "50", "idNumber": ID_2.to_lowercase() }]
        }))
        .await;
    (university, achievement)
}

async fn id_numbers(app: &TestApp, token: Option<&str>, achievement: Uuid) -> Vec<String> {
    let r = app
        .gql(token, "query($a: UUID!) { achievement(id: $a) { completers { idNumber } } }", json!({ "a": achievement }))
        .await;
    r.data()["achievement"]["completers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["idNumber"].as_str().unwrap().to_owned())
        .collect()
}

both_backends!(id_numbers_are_masked_for_everyone_but_finance, |db| async move {
    let app = spawn_app(db).await;
    let (university, achievement) = listed_with_ids(&app).await;
    let masked = vec!["360***********0071".to_owned(), "110***********002X".to_owned()];
    assert_eq!(id_numbers(&app, None, achievement).await, masked, "anonymous");
    for role in
        [Role::ResearchInstitution, Role::Enterprise, Role::Broker, Role::Registrar, Role::Admin, Role::OperatingCenter]
    {
        let token = app.token(role, Some(university), None);
        assert_eq!(id_numbers(&app, Some(&token), achievement).await, masked, "{role:?}");
    }
    let finance = app.token(Role::Finance, None, None);
    assert_eq!(id_numbers(&app, Some(&finance), achievement).await, [ID_1, ID_2], "finance sees them in full");
    app.db.drop_db().await;
});

both_backends!(a_wrong_check_character_is_refused_naming_the_completer, |db| async move {
    let app = spawn_app(db).await;
    let university = app
        .mutate(&app.admin(), "registerOrganisation", json!({ "name": "重庆大学", "kind": "UNIVERSITY", "creditCode": "12500000450403271P", "divisionCode": "500106" }))
        .await;
    let staff = app.token(Role::ResearchInstitution, Some(university), None);
    let r = app
        .try_mutate(&staff, "listAchievement", json!({
            "ownerId": university, "title": "成果", "field": "NEW_MATERIALS", "maturity": 5, "transferModes": ["LICENCE"],
            "completers": [{ "name": "张三", "share": "100", "idNumber": "360426199101010072" }]
        }), None)
        .await;
    assert_eq!(r.error_code(), "VALIDATION_FAILED");
    assert_eq!(r.error()["extensions"]["field"], "completers[0].idNumber");
    assert_eq!(r.error()["extensions"]["rule"], "resident_id_check");
    let twice = app
        .try_mutate(&staff, "listAchievement", json!({
            "ownerId": university, "title": "成果", "field": "NEW_MATERIALS", "maturity": 5, "transferModes": ["LICENCE"],
            "completers": [{ "name": "张三", "share": "50", "idNumber": ID_1 }, { "name": "张三丰", "share": "50", "idNumber": ID_1 }]
        }), None)
        .await;
    assert_eq!(twice.error()["extensions"]["rule"], "completers_distinct");
    app.db.drop_db().await;
});

both_backends!(a_database_dump_never_shows_an_id_number_in_clear, |db| async move {
    let app = spawn_app(db).await;
    listed_with_ids(&app).await;
    let url = app.db.url.clone();
    let dump: Vec<u8> = match app.db.backend {
        Backend::Sqlite => {
            // The database file and its write-ahead log, byte for byte.
            let path = url.trim_start_matches("sqlite:").to_owned();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            let mut text = String::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM {t} t")))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                text.extend(rows);
            }
            text.into_bytes()
        }
    };
    let dump = String::from_utf8_lossy(&dump);
    assert!(dump.contains("360***********0071"), "the dump holds the masked number (it was really written)");
    for id in [ID_1, ID_2, &ID_2.to_lowercase(), "19910101007", "1949123100"] {
        assert!(!dump.contains(id), "the dump reveals `{id}`");
    }
    app.db.drop_db().await;
});
