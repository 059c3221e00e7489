//! Test support: a fresh database per test on either engine, and a real server on a free
//! port of 127.0.0.1 talking to it.
//!
//! PostgreSQL is found at `TEST_DATABASE_URL`, else `DATABASE_URL` (when it is a postgres
//! URL), else `postgres://postgres@127.0.0.1:5432/postgres`. Each test creates its own
//! database `techmarket_test_<uuid>` there and drops it when it passes. A PostgreSQL test
//! never skips: with no server it fails, saying how to get one.

pub mod app;
pub mod exports;
pub mod fixtures;
pub mod scenario;
pub mod worked_example;

use std::path::PathBuf;

use ledger::store::{Backend, Store, StoreOptions};
use sqlx::Connection;

pub use app::{TestApp, spawn_app, spawn_app_with};

/// The server every PostgreSQL test database is created on.
pub fn postgres_admin_url() -> String {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return url;
    }
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
    }
}

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteDir(PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("techmarket-test-{}", uuid::Uuid::now_v7()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite:{}", dir.join("ledger.db").display());
                TestDb { backend, url, cleanup: Cleanup::SqliteDir(dir) }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is needed for this test and is not reachable at {admin_url}: {e}\n\
                         Start one (Debian: `apt-get install postgresql && pg_ctlcluster 15 main start`), \
                         or point TEST_DATABASE_URL at a server where this user may CREATE DATABASE."
                    )
                });
                let name = format!("techmarket_test_{}", uuid::Uuid::now_v7().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let url = api::startup::database_url_with_name(&admin_url, &name);
                TestDb { backend, url, cleanup: Cleanup::PostgresDatabase { admin_url, name } }
            }
        }
    }

    /// Opens the store and applies the migrations.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, &StoreOptions::default()).await.expect("connect test store");
        store.migrate().await.expect("migrate test store");
        store
    }

    /// Opens the store and applies the migrations numbered up to `version` only.
    pub async fn store_migrated_to(&self, version: i64) -> Store {
        let store = Store::connect(&self.url, &StoreOptions::default()).await.expect("connect test store");
        store.migrate_to(version).await.expect("migrate test store");
        store
    }

    /// Writes a bare `contracts` row with `id` and `number` outside the ledger (for tests
    /// that plant projection rows naming it).
    pub async fn insert_bare_contract(&self, id: &str, number: &str) {
        self.execute_raw(&format!(
            "INSERT INTO contracts (id, contract_number, contract_type, title, seller_id, buyer_id, achievement_id, \
             match_id, broker_id, operating_center_id, contract_amount_fen, tech_transaction_amount_fen, signed_on, \
             status, registration_number, registered_on, certified_tech_transaction_amount_fen, terminated_on, \
             settled_fen, reversed_fen, created_position, updated_position) \
             VALUES ('{id}', '{number}', 'transfer', 't', 's', 'b', NULL, NULL, NULL, NULL, \
             100, 100, '2030-01-01', 'signed', NULL, NULL, NULL, NULL, 0, 0, 1, 1)"
        ))
        .await
        .expect("a bare contract row");
    }

    /// Runs SQL outside the ledger (to tamper with rows, or to plant an old-format event),
    /// on a connection of its own.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                Ok(sqlx::raw_sql(sql).execute(&mut c).await?.rows_affected())
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                Ok(sqlx::raw_sql(sql).execute(&mut c).await?.rows_affected())
            }
        }
    }

    /// Every index of the database, as the engine prints its definition, sorted; on
    /// PostgreSQL with every constraint's (a rebuild drops the primary keys and adds them
    /// again: an index alone in place of one would not be the same).
    pub async fn index_definitions(&self) -> Vec<String> {
        let mut definitions: Vec<String> = match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar(
                    "SELECT name || ': ' || coalesce(sql, '(automatic)') FROM sqlite_master WHERE type = 'index'",
                )
                .fetch_all(&mut c)
                .await
                .expect("list the indexes")
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                     UNION ALL \
                     SELECT format('%s %s: %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)) \
                     FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace \
                     WHERE n.nspname = current_schema()",
                )
                .fetch_all(&mut c)
                .await
                .expect("list the indexes")
            }
        };
        definitions.sort();
        definitions
    }

    /// Removes the database. Called at the end of a passing test; a failing test leaves it
    /// for inspection (the test command drops leftovers before each run).
    pub async fn drop_db(self) {
        match self.cleanup {
            Cleanup::SqliteDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut admin)
                        .await;
                }
            }
        }
    }
}

/// Declares a test that runs once per engine: `both_backends!(name, |db| async move { .. })`
/// becomes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::TestDb::new(ledger::store::Backend::Sqlite).await;
                let test: fn($crate::TestDb) -> _ = $body;
                test(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = $crate::TestDb::new(ledger::store::Backend::Postgres).await;
                let test: fn($crate::TestDb) -> _ = $body;
                test(db).await;
            }
        }
    };
}
