//! `verify-ledger`: recomputes the hash chain from the stored bytes and reports the first
//! position where it breaks (a changed row, a missing or reordered position, a bad hash).
//!
//! Each row is checked against the row before it: its stored hash must be SHA-256 of the
//! previous row's stored hash and its own fields. Row by row from the first, that is the same
//! as recomputing the chain (where every row checks, stored and recomputed hashes agree), and
//! it lets consecutive ranges of positions be checked side by side, each starting from the
//! stored hash just before it; the report is that of the first range that breaks, which is
//! what a single pass from position 1 would have found.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use super::bulk::{BulkReader, EventRowRef, bulk_error};
use super::select::Param;
use super::{Db, Store, StoreError, StoredEvent, pgcopy, with_pool};
use crate::chain::{ChainedFields, GENESIS, Hash, event_hash};
use crate::event::Position;

/// Rows read per query while verifying (on PostgreSQL, positions per binary `COPY`: a few
/// MB per page).
const PAGE_ROWS: i64 = 10_000;
/// Logs shorter than this are checked in one range.
const RANGE_ROWS_MIN: i64 = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub position: Position,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events_checked: i64,
    pub head_position: Position,
    /// Hex of the last verified hash (the head's when the chain is intact).
    pub head_hash: String,
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// The check of one range of consecutive rows, fed in position order.
#[derive(Debug, Clone)]
struct RangeCheck {
    /// The position the next row must have.
    expected: Position,
    /// The stored hash of the row before the next one (`GENESIS` before the first).
    previous: Hash,
    checked: i64,
    first_break: Option<ChainBreak>,
}

impl RangeCheck {
    /// A range that follows the row at `position` whose stored hash is `hash` (position 0
    /// and `GENESIS` for the start of the log).
    fn after(position: Position, hash: Hash) -> RangeCheck {
        RangeCheck { expected: position + 1, previous: hash, checked: 0, first_break: None }
    }

    /// Checks the next row; `false` once the range is broken (read no further).
    fn row<T: ?Sized + AsRef<[u8]> + std::fmt::Debug>(
        &mut self,
        fields: &ChainedFields<'_, T>,
        stored_hash: &[u8],
    ) -> bool {
        assert!(self.first_break.is_none(), "a broken range is fed no more rows");
        if fields.position != self.expected {
            return self.broken(
                fields.position,
                format!("expected position {}, found {} (a gap)", self.expected, fields.position),
            );
        }
        let computed = event_hash(&self.previous, fields);
        if stored_hash != computed.as_slice() {
            return self.broken(
                fields.position,
                format!(
                    "stored hash {} differs from the recomputed {}: the row or one before it was altered",
                    hex::encode(stored_hash),
                    hex::encode(computed)
                ),
            );
        }
        self.previous = computed;
        self.expected += 1;
        self.checked += 1;
        true
    }

    fn broken(&mut self, position: Position, problem: String) -> bool {
        self.first_break = Some(ChainBreak { position, problem });
        false
    }

    fn stored(&mut self, row: &StoredEvent) -> bool {
        self.row(&fields_of(row), &row.hash)
    }
}

fn fields_of(row: &StoredEvent) -> ChainedFields<'_> {
    ChainedFields {
        position: row.position,
        stream_id: &row.stream_id,
        stream_version: row.stream_version,
        event_type: &row.event_type,
        schema_version: row.schema_version,
        payload: &row.payload,
        metadata: &row.metadata,
        recorded_at_micros: row.recorded_at.timestamp_micros(),
    }
}

/// The report of ranges checked side by side, in position order: that of the first broken
/// range, or of the last one when all hold (each range starts where the one before ended).
fn report(ranges: &[RangeCheck]) -> VerifyReport {
    let mut checked = 0;
    let mut last = RangeCheck::after(0, GENESIS);
    for range in ranges {
        checked += range.checked;
        last = range.clone();
        if range.first_break.is_some() {
            break;
        }
    }
    VerifyReport {
        events_checked: checked,
        head_position: last.expected - 1,
        head_hash: hex::encode(last.previous),
        first_break: last.first_break,
    }
}

/// `(lo, hi]` bounds splitting `(0, head]` into `n` ranges.
fn bounds(head: Position, n: usize) -> Vec<(Position, Position)> {
    let n = (n.max(1) as i64).min(head.max(1));
    (0..n).map(|i| (head * i / n, head * (i + 1) / n)).collect()
}

impl Store {
    /// Verifies the whole chain up to the head, in as many ranges side by side as there are
    /// cores on long logs. `progress` is called now and then with the number of events
    /// checked so far, for progress bars.
    pub async fn verify_chain(&self, progress: impl FnMut(i64)) -> Result<VerifyReport, StoreError> {
        let head = self.head().await?.map_or(0, |(p, _)| p);
        let ranges =
            if head < RANGE_ROWS_MIN { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) };
        self.verify_up_to(head, ranges, PAGE_ROWS, progress).await
    }

    /// `verify_chain` with the log up to the head split into `ranges` ranges, checked side by
    /// side (on SQLite, each on a read-only connection of its own and a blocking thread).
    pub async fn verify_chain_in_ranges(
        &self,
        ranges: usize,
        progress: impl FnMut(i64),
    ) -> Result<VerifyReport, StoreError> {
        self.verify_chain_in_pages(ranges, PAGE_ROWS, progress).await
    }

    /// `verify_chain_in_ranges` reading `page_rows` rows per query: tests use small pages to
    /// cross page boundaries on short logs.
    #[doc(hidden)]
    pub async fn verify_chain_in_pages(
        &self,
        ranges: usize,
        page_rows: i64,
        progress: impl FnMut(i64),
    ) -> Result<VerifyReport, StoreError> {
        assert!(page_rows > 0, "pages of at least one row");
        let head = self.head().await?.map_or(0, |(p, _)| p);
        self.verify_up_to(head, ranges, page_rows, progress).await
    }

    async fn verify_up_to(
        &self,
        head: Position,
        ranges: usize,
        page_rows: i64,
        mut progress: impl FnMut(i64),
    ) -> Result<VerifyReport, StoreError> {
        let done = Arc::new(AtomicI64::new(0));
        let mut tasks = Vec::new();
        for (lo, hi) in bounds(head, ranges) {
            let start = self.range_start(lo).await?;
            let (store, done) = (self.clone(), done.clone());
            tasks.push(match (self.bulk.clone(), &self.db) {
                (Some(reader), _) => {
                    tokio::task::spawn_blocking(move || check_file_range(&reader, start, (lo, hi), page_rows, &done))
                }
                (None, Db::Postgres(pool)) => {
                    let pool = pool.clone();
                    tokio::spawn(async move { check_copied_range(&pool, start, (lo, hi), page_rows, &done).await })
                }
                (None, Db::Sqlite(_)) => {
                    tokio::spawn(async move { store.check_range(start, (lo, hi), page_rows, &done).await })
                }
            });
        }
        let mut all = std::pin::pin!(futures_util::future::join_all(tasks));
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let joined = loop {
            tokio::select! {
                joined = &mut all => break joined,
                _ = tick.tick() => progress(done.load(Ordering::Relaxed)),
            }
        };
        let mut checks = Vec::with_capacity(joined.len());
        for result in joined {
            match result {
                Ok(check) => checks.push(check?),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        progress(done.load(Ordering::Relaxed));
        Ok(report(&checks))
    }

    /// Where a range `(lo, ...]` starts: after the last row at or before `lo`.
    async fn range_start(&self, lo: Position) -> Result<RangeCheck, StoreError> {
        if lo == 0 {
            return Ok(RangeCheck::after(0, GENESIS));
        }
        let row: Option<(i64, Vec<u8>)> = with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT position, hash FROM events WHERE position <= $1 ORDER BY position DESC LIMIT 1")
                .bind(lo)
                .fetch_optional(p)
                .await
        })?;
        Ok(match row {
            Some((position, hash)) => RangeCheck::after(position, super::append::to_hash(position, &hash)?),
            None => RangeCheck::after(0, GENESIS),
        })
    }

    /// Checks the rows in `(lo, hi]` from `check` through sqlx, hashing each page on a
    /// blocking thread while the next one is read.
    async fn check_range(
        &self,
        mut check: RangeCheck,
        (lo, hi): (Position, Position),
        page_rows: i64,
        done: &AtomicI64,
    ) -> Result<RangeCheck, StoreError> {
        let mut page = self.stored_in_range(lo, hi, page_rows).await?;
        while let Some(last) = page.last().map(|r| r.position) {
            let n = page.len() as i64;
            let hashing = tokio::task::spawn_blocking(move || {
                let intact = page.iter().all(|row| check.stored(row));
                (check, intact)
            });
            let (next, hashed) = tokio::join!(self.stored_in_range(last, hi, page_rows), hashing);
            let intact;
            (check, intact) = hashed.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            done.fetch_add(n, Ordering::Relaxed);
            if !intact {
                break;
            }
            page = next?;
        }
        Ok(check)
    }
}

/// Checks the rows in `(lo, hi]` on PostgreSQL from `check`, with a binary `COPY` of each
/// window of `page_rows` positions (so no read holds one snapshot for a whole range),
/// each page checked on a blocking thread while the next one is read. Windows of positions,
/// not `LIMIT`s: the server then scans the primary key over a short range, whatever its
/// statistics say, and a missing row is still the gap the check reports.
async fn check_copied_range(
    pool: &PgPool,
    mut check: RangeCheck,
    (lo, hi): (Position, Position),
    page_rows: i64,
    done: &AtomicI64,
) -> Result<RangeCheck, StoreError> {
    let window = |after: Position| (after, (after + page_rows).min(hi));
    let (mut after, mut upto) = window(lo);
    let mut page = pgcopy::event_page(pgcopy::Source::Pool(pool), after, upto, Vec::new()).await?;
    // Two buffers take turns: one page is hashed while the next is read into the other.
    let mut spare = Vec::new();
    while after < hi {
        let hashing = tokio::task::spawn_blocking(move || {
            let mut intact = true;
            let read = pgcopy::rows(&page, |fields, hash| {
                intact = check.row(fields, hash);
                intact
            });
            read.map(|n| (check, intact, n, page))
        });
        (after, upto) = window(upto);
        let buffer = std::mem::take(&mut spare);
        let (next, hashed) = tokio::join!(
            async {
                if after < hi {
                    pgcopy::event_page(pgcopy::Source::Pool(pool), after, upto, buffer).await
                } else {
                    Ok(buffer)
                }
            },
            hashing
        );
        let (intact, n);
        (check, intact, n, spare) = hashed.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        done.fetch_add(n, Ordering::Relaxed);
        if !intact {
            break;
        }
        page = next?;
    }
    Ok(check)
}

/// Checks the rows in `(lo, hi]` of a SQLite file from `check`, on a connection of its own,
/// hashing the bytes in SQLite's row buffer.
fn check_file_range(
    reader: &BulkReader,
    mut check: RangeCheck,
    (lo, hi): (Position, Position),
    page_rows: i64,
    done: &AtomicI64,
) -> Result<RangeCheck, StoreError> {
    let conn = reader.open()?;
    let mut statement = conn.prepare(super::read::EVENTS_IN_RANGE).map_err(bulk_error)?;
    let mut after = lo;
    loop {
        // A page per query, so no read holds one WAL snapshot for the whole range.
        let range = [Param::BigInt(after), Param::BigInt(hi), Param::BigInt(page_rows)];
        super::select::bind_numbered(&mut statement, &range)?;
        let mut rows = statement.raw_query();
        let mut n = 0;
        while let Some(row) = rows.next().map_err(bulk_error)? {
            let r = EventRowRef::read(row)?;
            if !check.row(&r.chained()?, r.hash) {
                return Ok(check);
            }
            after = r.position;
            n += 1;
        }
        done.fetch_add(n, Ordering::Relaxed);
        if n < page_rows {
            return Ok(check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: Position, payload: &str) -> ChainedFields<'_> {
        ChainedFields {
            position,
            stream_id: "contract-x",
            stream_version: position,
            event_type: "PaymentRecorded",
            schema_version: 1,
            payload,
            metadata: "{}",
            recorded_at_micros: 1_700_000_000_000_000 + position,
        }
    }

    /// A chain of `n` rows: each row's fields and stored hash.
    fn chain(n: i64) -> Vec<(ChainedFields<'static>, Hash)> {
        let mut previous = GENESIS;
        (1..=n)
            .map(|p| {
                let fields = row(p, "{}");
                previous = event_hash(&previous, &fields);
                (fields, previous)
            })
            .collect()
    }

    /// The rows checked in `ranges` ranges, each starting after the last row at or before
    /// its lower bound, as `verify_chain_in_ranges` does.
    fn check(rows: &[(ChainedFields<'_>, Hash)], head: Position, ranges: usize) -> VerifyReport {
        let checks: Vec<RangeCheck> = bounds(head, ranges)
            .into_iter()
            .map(|(lo, hi)| {
                let mut check = match rows.iter().rev().find(|(f, _)| f.position <= lo) {
                    Some((f, h)) if lo > 0 => RangeCheck::after(f.position, *h),
                    _ => RangeCheck::after(0, GENESIS),
                };
                for (fields, hash) in rows.iter().filter(|(f, _)| f.position > lo && f.position <= hi) {
                    if !check.row(fields, hash) {
                        break;
                    }
                }
                check
            })
            .collect();
        report(&checks)
    }

    #[test]
    fn bounds_cover_the_log_without_overlap() {
        assert_eq!(bounds(10, 3), vec![(0, 3), (3, 6), (6, 10)]);
        assert_eq!(bounds(2, 4), vec![(0, 1), (1, 2)]);
        assert_eq!(bounds(0, 2), vec![(0, 0)]);
    }

    #[test]
    fn an_intact_chain_reports_its_head_in_any_number_of_ranges() {
        let rows = chain(10);
        let head_hash = hex::encode(rows[9].1);
        for ranges in 1..=5 {
            let r = check(&rows, 10, ranges);
            assert_eq!((r.events_checked, r.head_position, &r.head_hash), (10, 10, &head_hash), "{ranges} ranges");
            assert!(r.is_intact());
        }
    }

    #[test]
    fn a_changed_row_is_found_first_whichever_range_it_falls_in() {
        for tampered in 1..=10 {
            let mut rows = chain(10);
            rows[tampered as usize - 1].0.payload = r#"{"changed":true}"#;
            let single = check(&rows, 10, 1);
            for ranges in 2..=5 {
                assert_eq!(check(&rows, 10, ranges), single, "row {tampered}, {ranges} ranges");
            }
            let broken = single.first_break.expect("caught");
            assert_eq!((broken.position, single.events_checked), (tampered, tampered - 1));
            assert_eq!(single.head_position, tampered - 1);
        }
    }

    #[test]
    fn a_changed_stored_hash_breaks_at_its_row() {
        let mut rows = chain(10);
        rows[5].1[0] ^= 1;
        for ranges in 1..=5 {
            let r = check(&rows, 10, ranges);
            assert_eq!(r.first_break.map(|b| b.position), Some(6), "{ranges} ranges");
            assert_eq!(r.events_checked, 5);
            assert_eq!(r.head_hash, hex::encode(rows[4].1));
        }
    }

    #[test]
    fn a_missing_row_is_the_same_gap_in_any_number_of_ranges() {
        for missing in 1..=9 {
            let mut rows = chain(10);
            rows.remove(missing as usize - 1);
            let single = check(&rows, 10, 1);
            assert_eq!(
                single.first_break.as_ref().map(|b| (b.position, b.problem.clone())),
                Some((missing + 1, format!("expected position {missing}, found {} (a gap)", missing + 1)))
            );
            for ranges in 2..=5 {
                assert_eq!(check(&rows, 10, ranges), single, "row {missing} missing, {ranges} ranges");
            }
        }
    }
}
