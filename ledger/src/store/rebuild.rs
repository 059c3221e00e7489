//! `rebuild-projections`: empties the read-model tables and replays the whole log through the
//! same projection code the live appends use, in one transaction that holds the append lock,
//! so readers see either the old tables or the rebuilt ones and no append interleaves.

use serde::Serialize;

use super::{Store, StoreError, Tx, execute, with_conn};
use crate::event::Position;
use crate::projection::Projections;
use crate::readmodel;

/// Rows replayed per read while rebuilding.
const PAGE_ROWS: i64 = 5_000;

/// The read-model tables, emptied and refilled by a rebuild (children before parents).
pub const READ_MODEL_TABLES: [&str; 21] = [
    "subsidy_completer_lines",
    "subsidy_lines",
    "subsidy_completer_totals",
    "subsidy_totals",
    "incentive_lines",
    "incentive_totals",
    "turnover_lines",
    "turnover_cells",
    "policy_versions",
    "projection_positions",
    "unique_claims",
    "achievement_completers",
    "payment_reversals",
    "payments",
    "contracts",
    "matches",
    "demands",
    "achievements",
    "brokers",
    "accreditations",
    "organisations",
];

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub events_replayed: i64,
    pub head_position: Position,
}

impl Store {
    /// Rebuilds every read model from the log. `progress` gets the last position replayed.
    pub async fn rebuild_projections(&self, mut progress: impl FnMut(Position)) -> Result<RebuildReport, StoreError> {
        let mut tx = self.begin_append().await?;
        let mut runtime = self.policy_runtime.lock().await;
        runtime.invalidate();
        let mut projections = Projections::new();
        let previous_cache = swap_sqlite_cache(&mut tx, -SQLITE_REBUILD_CACHE_KIB).await?;
        let replayed = self.rebuild_in(&mut tx, &mut projections, &mut progress).await;
        // The connection goes back to the pool with its own setting; a failed rebuild's own
        // error comes first.
        let restored = match previous_cache {
            Some(previous) => swap_sqlite_cache(&mut tx, previous).await.map(drop),
            None => Ok(()),
        };
        let replayed = replayed?;
        restored?;
        tx.commit().await?;
        let head_position = projections.position();
        runtime.state = Some(projections);
        Ok(RebuildReport { events_replayed: replayed, head_position })
    }

    /// Every row of every read-model table, as sorted text lines: for comparing a rebuilt
    /// state with the live one.
    pub async fn dump_read_models(&self) -> Result<Vec<String>, StoreError> {
        let mut lines = Vec::new();
        for table in READ_MODEL_TABLES {
            lines.extend(self.dump_table(table).await?);
        }
        Ok(lines)
    }
}

impl Store {
    /// One sorted text line per row of `table` (`col=value|...`, NULL as `∅`). The table name
    /// comes from [`READ_MODEL_TABLES`], the column names from the database catalog.
    async fn dump_table(&self, table: &'static str) -> Result<Vec<String>, StoreError> {
        let columns: Vec<String> = match &self.db {
            super::Db::Postgres(p) => {
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(p)
                .await?
            }
            super::Db::Sqlite(p) => {
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(p)
                    .await?
            }
        };
        assert!(!columns.is_empty(), "table {table} has no columns");
        let line = columns
            .iter()
            .map(|c| format!("'{c}=' || COALESCE(CAST({c} AS TEXT), '∅')"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let sql = format!("SELECT '{table}: ' || {line} FROM {table}");
        let mut lines: Vec<String> =
            super::with_pool!(&self.db, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)?;
        lines.sort();
        Ok(lines)
    }
}

/// SQLite's page cache while rebuilding, in KiB. The rebuild is one long transaction that
/// changes far more pages than the default cache (2 MiB) holds, and SQLite then spills dirty
/// pages to the WAL mid-transaction and reads them back. Measured on the benchmark's default
/// data (555,598 events): 23.5 s with the default cache, 19.4-21.3 s with this one, for
/// 270 MiB more peak memory. The cache is bounded by this figure, whatever the size of the log.
const SQLITE_REBUILD_CACHE_KIB: i64 = 262_144;

/// On SQLite, sets the page cache of this transaction's connection (`PRAGMA cache_size`:
/// pages, or KiB when negative) and returns the setting it replaced; on PostgreSQL, nothing.
async fn swap_sqlite_cache(tx: &mut Tx, cache_size: i64) -> Result<Option<i64>, StoreError> {
    let Tx::Sqlite(c, _) = tx else { return Ok(None) };
    let previous: i64 = sqlx::query_scalar("PRAGMA cache_size").fetch_one(&mut **c).await?;
    let sql = format!("PRAGMA cache_size = {cache_size}");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **c).await?;
    Ok(Some(previous))
}

impl Store {
    /// Empties the read models and replays the log into them: every line is written, but of
    /// the totals only the final value of each (the intermediate ones would be overwritten
    /// anyway).
    async fn rebuild_in(
        &self,
        tx: &mut Tx,
        projections: &mut Projections,
        progress: &mut impl FnMut(Position),
    ) -> Result<i64, StoreError> {
        for table in READ_MODEL_TABLES {
            let sql = format!("DELETE FROM {table}");
            execute!(tx, sqlx::query(sqlx::AssertSqlSafe(sql)))?;
        }
        let mut replayed = 0i64;
        let mut policy = super::policy::PolicyWriter::default();
        let mut read_model = super::project::Deferred::default();
        // The transaction holds the append lock, so the log does not move: the head read
        // through it is the end of the replay.
        let head: Option<i64> =
            with_conn!(tx, |c| sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(&mut *c).await)?;
        let head = head.unwrap_or(0);
        // SQLite file: the events are read and decoded ahead on threads of their own, on a
        // connection of their own (see `bulk`), while this transaction writes.
        let mut pages = self.bulk.is_some().then(|| self.decoded_pages(super::read::Which::All, 0, head));
        let mut after: Position = 0;
        loop {
            let page = match pages.as_mut() {
                Some(pages) => pages.recv().await.unwrap_or_else(|| Ok(Vec::new()))?,
                None => {
                    // Read through the transaction's own connection: a second connection from
                    // the pool might not be free.
                    let rows: Vec<super::StoredEvent> = with_conn!(tx, |c| {
                        sqlx::query_as(super::read::EVENTS_IN_RANGE)
                            .bind(after)
                            .bind(head)
                            .bind(PAGE_ROWS)
                            .fetch_all(&mut *c)
                            .await
                    })?;
                    rows.iter().map(super::StoredEvent::decode).collect::<Result<Vec<_>, _>>()?
                }
            };
            let Some(last) = page.last() else { break };
            after = last.position;
            for recorded in &page {
                for change in readmodel::changes(recorded) {
                    read_model.apply(tx, &change, recorded.position).await?;
                }
                policy.add(&projections.apply(recorded));
                replayed += 1;
            }
            // A page's payments and lines in a few multi-row statements; the totals (last
            // value per key) at the end.
            read_model.flush(tx).await?;
            policy.write_lines(tx).await?;
            progress(after);
        }
        policy.write(tx).await?;
        super::project::record_projection_positions(tx, &[readmodel::PROJECTION, super::policy::PROJECTION], after)
            .await?;
        Ok(replayed)
    }
}
