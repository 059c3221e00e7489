//! The policy projections in the store: the pure fold (`crate::projection`) kept in memory
//! and in step with the log, its outputs written in the appending transaction, and replays of
//! any prefix of the log for statements "as of" a position.
//!
//! The in-memory state is a cache of the log, never a source: under the append lock it first
//! folds whatever other processes appended since it last looked, and if a batch fails after
//! folding (so the state holds events that never committed) it is dropped and rebuilt from
//! the log before the next append.

use std::collections::HashMap;

use super::read::Which;
use super::rows::{Expect, Rows, Sink, Value};
use super::{Store, StoreError, Tx, with_conn};
use crate::event::{Position, RecordedEvent};
use crate::projection::{CellKey, Output, Projections};

/// Events read per query when catching up or replaying.
const PAGE_ROWS: i64 = 5_000;

/// The in-memory fold, `None` until first needed or after a failed batch.
#[derive(Default)]
pub(crate) struct PolicyRuntime {
    pub(crate) state: Option<Projections>,
}

impl PolicyRuntime {
    pub(crate) fn invalidate(&mut self) {
        self.state = None;
    }
}

/// The name under which the policy projections record their position.
pub const PROJECTION: &str = "policy";

/// Brings the in-memory fold up to `head`, reading through the append transaction; returns it.
pub(super) async fn caught_up<'r>(
    tx: &mut Tx,
    runtime: &'r mut PolicyRuntime,
    head: Position,
) -> Result<&'r mut Projections, StoreError> {
    if runtime.state.as_ref().is_some_and(|s| s.position() > head) {
        // Ahead of the log: a batch folded and then never committed (a panic on the way).
        runtime.invalidate();
    }
    let state = runtime.state.get_or_insert_with(Projections::new);
    while state.position() < head {
        let rows: Vec<super::StoredEvent> = with_conn!(tx, |c| {
            sqlx::query_as(super::read::EVENTS_IN_RANGE)
                .bind(state.position())
                .bind(head)
                .bind(PAGE_ROWS)
                .fetch_all(&mut *c)
                .await
        })?;
        if rows.is_empty() {
            return Err(StoreError::Inconsistent(format!(
                "events after {} up to {head} are missing",
                state.position()
            )));
        }
        for row in &rows {
            state.apply(&row.decode()?);
        }
    }
    Ok(state)
}

impl Store {
    /// Folds the log up to `upto` (inclusive) from scratch: the projections as they stood at
    /// that position, and what `pick` takes of the outputs they made on the way. The others
    /// are dropped as they are made: a statement keeps its own lines, not a whole log's
    /// outputs (about ten per payment: lines, totals and cells of every projection).
    pub async fn replay_policy<T>(
        &self,
        upto: Position,
        mut pick: impl FnMut(Output) -> Option<T>,
    ) -> Result<(Projections, Vec<T>), StoreError> {
        let mut state = Projections::new();
        let mut picked = Vec::new();
        self.fold_log(&mut state, upto, |made| picked.extend(made.into_iter().filter_map(&mut pick))).await?;
        Ok((state, picked))
    }

    /// Starts folding the log into the in-memory policy projections in the background, so
    /// that the first append after a start does not do it under the append lock (5 s at the
    /// benchmark's scale, about a minute for a national year, with every writer waiting).
    /// Appends in this process wait for it (without the lock) and then fold only what came
    /// after. No lock is needed to read: positions become visible gap-free in commit order,
    /// so every event up to the head read here is final. Returns the position folded to.
    pub fn spawn_policy_warm_up(&self) -> tokio::task::JoinHandle<Result<Position, StoreError>> {
        // Taken before returning, so an append that comes right after waits for it.
        let held = self.policy_warm_up.clone().try_lock_owned();
        let store = self.clone();
        tokio::spawn(async move {
            let _held = held;
            let head = store.head().await?.map_or(0, |(position, _)| position);
            let mut state = Projections::new();
            store.fold_log(&mut state, head, drop).await?;
            let mut runtime = store.policy_runtime.lock().await;
            // Under this mutex no batch is in flight in this process: a state behind ours is
            // only older (or absent), never holding uncommitted events.
            if runtime.state.as_ref().is_none_or(|s| s.position() < state.position()) {
                runtime.state = Some(state);
            }
            Ok(head)
        })
    }

    /// Folds the events after `state`'s position up to `upto` (inclusive) into it, page by page,
    /// at the end of a pipeline of three stages (`decoded_pages` reads and decodes ahead).
    /// Reading and decoding take most of the time, and on their own threads they overlap the
    /// fold, even on the server's single-threaded worker runtimes.
    async fn fold_log(
        &self,
        state: &mut Projections,
        upto: Position,
        mut made: impl FnMut(Vec<Output>),
    ) -> Result<(), StoreError> {
        let mut next = self.decoded_pages(Which::Policy, state.position(), upto, PAGE_ROWS, PgReader::Pool);
        while let Some(page) = next.recv().await {
            let events = page?;
            if events.is_empty() {
                break;
            }
            for event in &events {
                made(state.apply(event));
            }
        }
        // The events the fold does not read were passed over, not lost: up to `upto` (at
        // most the head, whose events are all final) the fold has seen the whole log.
        state.skip_to(upto);
        Ok(())
    }

    /// The events after `after` up to `upto` (inclusive), decoded, in pages of `page_rows`
    /// events at most in log order, the
    /// last one empty (or an error): on a SQLite file only those `which` selects, elsewhere
    /// every one (a fold passes over the types it does not read). Two stages, each two pages ahead of the caller: a
    /// task reads the next pages (on a SQLite file, a blocking thread on a connection of its
    /// own: see `bulk`; on PostgreSQL, a binary `COPY` per page, where `pg_reader` says: see
    /// [`copy_pages`]), and a blocking thread decodes them.
    pub(super) fn decoded_pages(
        &self,
        which: Which,
        after: Position,
        upto: Position,
        page_rows: i64,
        pg_reader: PgReader,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>> {
        let (stored, mut to_decode) = tokio::sync::mpsc::channel::<Result<ReadPage, StoreError>>(2);
        let store = self.clone();
        // Each stage ends after the last (empty) page, at the first error, or when the next
        // stage stops listening.
        let last_of = |page: &Page<super::StoredEvent>| page.as_ref().ok()?.last().map(|r| r.position);
        match (self.bulk.clone(), &self.db) {
            // SQLite file: read on a connection of its own, off sqlx (see `bulk`).
            (Some(reader), _) => drop(tokio::task::spawn_blocking(move || {
                let conn = match reader.open() {
                    Ok(conn) => conn,
                    Err(e) => return drop(stored.blocking_send(Err(e))),
                };
                let mut after = after;
                loop {
                    let page = super::bulk::stored_page(&conn, which, after, upto, page_rows);
                    let next = last_of(&page);
                    if stored.blocking_send(page.map(ReadPage::Rows)).is_err() {
                        return;
                    }
                    match next {
                        Some(position) => after = position,
                        None => return,
                    }
                }
            })),
            (None, super::Db::Postgres(pool)) => {
                let pool = pool.clone();
                drop(tokio::spawn(async move { copy_pages(&pool, pg_reader, (after, upto), page_rows, stored).await }))
            }
            // SQLite in memory (tests): through sqlx.
            (None, super::Db::Sqlite(_)) => drop(tokio::spawn(async move {
                let mut after = after;
                loop {
                    let page = store.stored_in_range(after, upto, page_rows).await;
                    let next = last_of(&page);
                    if stored.send(page.map(ReadPage::Rows)).await.is_err() {
                        return;
                    }
                    match next {
                        Some(position) => after = position,
                        None => return,
                    }
                }
            })),
        }
        // Unfiltered reads must give every position in the range, once, in order.
        let mut positions = (which == Which::All || self.bulk.is_none()).then(|| Positions::new(after, upto));
        let (decoded, next) = tokio::sync::mpsc::channel::<Page<RecordedEvent>>(2);
        tokio::task::spawn_blocking(move || {
            while let Some(page) = to_decode.blocking_recv() {
                let page = page.and_then(|read| read.decode()).and_then(|events| match &mut positions {
                    Some(positions) => positions.check(events),
                    None => Ok(events),
                });
                let done = page.as_ref().map_or(true, Vec::is_empty);
                if decoded.blocking_send(page).is_err() || done {
                    return;
                }
            }
        });
        next
    }
}

type Page<T> = Result<Vec<T>, StoreError>;

/// A page of the log as read, before it is decoded.
enum ReadPage {
    /// Rows through sqlx or rusqlite (empty: the end of the range).
    Rows(Vec<super::StoredEvent>),
    /// A binary `COPY` of `rows` rows, when the log is whole (`pgcopy`).
    Copy { bytes: Vec<u8>, rows: usize },
}

impl ReadPage {
    fn decode(self) -> Page<RecordedEvent> {
        match self {
            ReadPage::Rows(rows) => {
                let mut events = Vec::with_capacity(rows.len());
                for row in &rows {
                    events.push(row.decode()?);
                }
                Ok(events)
            }
            ReadPage::Copy { bytes, rows } => super::pgcopy::decode_page(&bytes, rows),
        }
    }
}

/// The positions an unfiltered read of `(after, upto]` must deliver: each one, in order, and
/// all of them before its last (empty) page. `upto` is at most the head, so every position up
/// to it is committed and visible; one missing is a gap in the log or a read gone wrong, and a
/// replay or rebuild past it would be wrong without a sign.
struct Positions {
    next: Position,
    after: Position,
    upto: Position,
}

impl Positions {
    fn new(after: Position, upto: Position) -> Self {
        Positions { next: after + 1, after, upto }
    }

    fn check(&mut self, events: Vec<RecordedEvent>) -> Page<RecordedEvent> {
        for event in &events {
            if event.position != self.next {
                return Err(self.missing(format!("position {}", event.position)));
            }
            self.next += 1;
        }
        if events.is_empty() && self.next <= self.upto {
            return Err(self.missing("the end of the log".into()));
        }
        Ok(events)
    }

    fn missing(&self, instead: String) -> StoreError {
        let (next, after, upto) = (self.next, self.after, self.upto);
        StoreError::Inconsistent(format!(
            "reading the event log from {after} up to {upto}, position {next} was missing ({instead} came instead): \
             run verify-ledger"
        ))
    }
}

/// Reads the events in `(after, upto]` from PostgreSQL for [`Store::decoded_pages`], a binary
/// `COPY` of a window of `page_rows` positions at a time, and ends with an empty page (or
/// the first error). Every event type: the fold passes over those it does not read.
///
/// Windows of positions rather than `LIMIT`s, as in verification: the server scans the
/// primary key over a short range whatever its statistics say (with a `LIMIT` it planned a
/// freshly imported log as a scan and a sort of the rest of the range per page). Positions are
/// gap-free, and `upto` is at most the head, so every window comes back whole: the decoding
/// stage checks it ([`Positions`]).
async fn copy_pages(
    pool: &sqlx::PgPool,
    reader: PgReader,
    (mut after, upto): (Position, Position),
    page_rows: i64,
    stored: tokio::sync::mpsc::Sender<Result<ReadPage, StoreError>>,
) {
    let mut own = match reader {
        PgReader::OwnConnection => {
            use sqlx::Connection as _;
            match sqlx::PgConnection::connect_with(&pool.connect_options()).await {
                Ok(connection) => Some(connection),
                Err(e) => return drop(stored.send(Err(e.into())).await),
            }
        }
        PgReader::Pool => None,
    };
    let end = ReadPage::Rows(Vec::new());
    let mut capacity = 0;
    loop {
        if after >= upto {
            return drop(stored.send(Ok(end)).await);
        }
        let window = after.saturating_add(page_rows.max(1)).min(upto);
        let source = match &mut own {
            Some(connection) => super::pgcopy::Source::Connection(connection),
            None => super::pgcopy::Source::Pool(pool),
        };
        let page = super::pgcopy::event_page(source, after, window, Vec::with_capacity(capacity)).await;
        // The window's size is its rows' count: positions are gap-free (the decoding stage
        // checks it), so the page needs no pass of its own to be counted.
        let page = page.map(|bytes| {
            capacity = capacity.max(bytes.len());
            ReadPage::Copy { bytes, rows: (window - after) as usize }
        });
        let failed = page.is_err();
        if stored.send(page).await.is_err() || failed {
            return;
        }
        after = window;
    }
}

/// Where [`Store::decoded_pages`] reads on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub(super) enum PgReader {
    /// A pooled connection for each page.
    Pool,
    /// A connection of its own, outside the pool: for a rebuild, since appends waiting for
    /// its lock may hold every pooled connection. The log does not move meanwhile (the
    /// rebuild holds the append lock), so every event up to its head is committed and visible.
    OwnConnection,
}

fn reasons(r: &[crate::projection::Reason]) -> Option<String> {
    crate::projection::Reason::join(r)
}

/// The fold's outputs of a whole batch (or rebuild), written with multi-row statements at its end. Lines
/// accumulate; of the totals only the last per key is kept (each output replaces the one
/// before, and one statement may not upsert the same row twice).
pub(super) struct PolicyWriter {
    subsidy_lines: Rows,
    subsidy_completer_lines: Rows,
    incentive_lines: Rows,
    turnover_lines: Rows,
    subsidy_totals: HashMap<(String, i32), Vec<Value>>,
    subsidy_completer_totals: HashMap<(String, i32, i32), Vec<Value>>,
    incentive_totals: HashMap<(String, i32), Vec<Value>>,
    turnover_cells: HashMap<(i32, &'static str, CellKey), Vec<Value>>,
}

impl Default for PolicyWriter {
    fn default() -> Self {
        PolicyWriter {
            subsidy_lines: Rows::new(
                "INSERT INTO subsidy_lines (position, seq, line_kind, achievement_id, cap_period, contract_id, contract_number, \
                 payment_id, reversal_id, line_date, line_year, received_fen, eligible_fen, subsidy_fen, policy_version, reasons, \
                 eligible_total_fen, subsidy_total_fen, cap_reached) VALUES",
                19,
                "",
            ),
            subsidy_completer_lines: Rows::new(
                "INSERT INTO subsidy_completer_lines (position, seq, ordinal, completer_name, share_basis_points, subsidy_fen, subsidy_total_fen) VALUES",
                7,
                "",
            ),
            incentive_lines: Rows::new(
                "INSERT INTO incentive_lines (position, seq, line_kind, center_id, incentive_year, contract_id, contract_number, \
                 payment_id, reversal_id, line_date, line_year, received_fen, operating_fen, incentive_fen, policy_version, \
                 reasons, operating_total_fen, incentive_total_fen, cap_reached) VALUES",
                19,
                "",
            ),
            turnover_lines: Rows::new(
                "INSERT INTO turnover_lines (position, seq, line_kind, contract_id, payment_id, line_date, line_year, contracts, \
                 contract_amount_fen, tech_transaction_amount_fen, received_fen, contract_type, seller_kind, field, district) VALUES",
                15,
                "",
            ),
            subsidy_totals: HashMap::new(),
            subsidy_completer_totals: HashMap::new(),
            incentive_totals: HashMap::new(),
            turnover_cells: HashMap::new(),
        }
    }
}

impl PolicyWriter {
    pub(super) fn add(&mut self, outputs: &[Output]) {
        for output in outputs {
            self.add_one(output);
        }
    }

    fn add_one(&mut self, output: &Output) {
        match output {
            Output::SubsidyLine(l) => {
                self.subsidy_lines.push(vec![
                    l.position.into(),
                    (l.seq as i32).into(),
                    l.kind.as_str().into(),
                    l.achievement_id.to_string().into(),
                    l.period.into(),
                    l.contract_id.to_string().into(),
                    l.contract_number.as_str().into(),
                    l.payment_id.to_string().into(),
                    l.reversal_id.map(|r| r.to_string()).into(),
                    l.date.into(),
                    l.year().into(),
                    l.received.fen().into(),
                    l.eligible.fen().into(),
                    l.subsidy.fen().into(),
                    l.policy_version.map(|v| v as i32).into(),
                    reasons(&l.reasons).into(),
                    l.eligible_total.fen().into(),
                    l.subsidy_total.fen().into(),
                    l.cap_reached.into(),
                ]);
                for c in &l.completers {
                    self.subsidy_completer_lines.push(vec![
                        l.position.into(),
                        (l.seq as i32).into(),
                        (c.ordinal as i32).into(),
                        c.name.as_str().into(),
                        (c.share_basis_points as i32).into(),
                        c.amount.fen().into(),
                        c.total.fen().into(),
                    ]);
                }
            }
            Output::SubsidyTotal(t) => {
                let achievement = t.achievement_id.to_string();
                self.subsidy_totals.insert(
                    (achievement.clone(), t.period),
                    vec![
                        achievement.as_str().into(),
                        t.period.into(),
                        t.eligible_received.fen().into(),
                        t.subsidy.fen().into(),
                        t.cap.fen().into(),
                        t.cap_reached.into(),
                        t.position.into(),
                    ],
                );
                for c in &t.completers {
                    self.subsidy_completer_totals.insert(
                        (achievement.clone(), t.period, c.ordinal as i32),
                        vec![
                            achievement.as_str().into(),
                            t.period.into(),
                            (c.ordinal as i32).into(),
                            c.name.as_str().into(),
                            (c.share_basis_points as i32).into(),
                            c.subsidy.fen().into(),
                        ],
                    );
                }
            }
            Output::IncentiveLine(l) => {
                self.incentive_lines.push(vec![
                    l.position.into(),
                    (l.seq as i32).into(),
                    l.kind.as_str().into(),
                    l.center_id.to_string().into(),
                    l.incentive_year.into(),
                    l.contract_id.to_string().into(),
                    l.contract_number.as_str().into(),
                    l.payment_id.to_string().into(),
                    l.reversal_id.map(|r| r.to_string()).into(),
                    l.date.into(),
                    l.year().into(),
                    l.received.fen().into(),
                    l.operating.fen().into(),
                    l.incentive.fen().into(),
                    l.policy_version.map(|v| v as i32).into(),
                    reasons(&l.reasons).into(),
                    l.operating_total.fen().into(),
                    l.incentive_total.fen().into(),
                    l.cap_reached.into(),
                ]);
            }
            Output::IncentiveTotal(t) => {
                let center = t.center_id.to_string();
                self.incentive_totals.insert(
                    (center.clone(), t.year),
                    vec![
                        center.into(),
                        t.year.into(),
                        t.operating_amount.fen().into(),
                        t.incentive.fen().into(),
                        t.cap.fen().into(),
                        t.cap_reached.into(),
                        t.position.into(),
                    ],
                );
            }
            Output::TurnoverLine(l) => {
                self.turnover_lines.push(vec![
                    l.position.into(),
                    (l.seq as i32).into(),
                    l.kind.as_str().into(),
                    l.contract_id.to_string().into(),
                    l.payment_id.map(|p| p.to_string()).into(),
                    l.date.into(),
                    l.year().into(),
                    (l.contracts as i32).into(),
                    l.contract_amount.fen().into(),
                    l.tech_transaction_amount.fen().into(),
                    l.received.fen().into(),
                    l.dims.contract_type.as_str().into(),
                    l.dims.seller_kind.as_str().into(),
                    l.dims.field.map(|f| f.as_str().to_owned()).into(),
                    l.dims.district.as_str().into(),
                ]);
            }
            Output::TurnoverCell(c) => {
                self.turnover_cells.insert(
                    (c.year, c.dimension, c.key),
                    vec![
                        c.year.into(),
                        c.dimension.into(),
                        c.key.as_str().into(),
                        c.figures.contracts.into(),
                        c.figures.contract_amount.fen().into(),
                        c.figures.tech_transaction_amount.fen().into(),
                        c.figures.received.fen().into(),
                        c.position.into(),
                    ],
                );
            }
        }
    }

    /// Writes everything added so far: lines are inserted, totals replace the previous ones.
    pub(super) async fn write(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        self.write_lines(tx).await?;
        self.write_totals(tx).await
    }

    /// Writes the lines added so far; the totals wait (a rebuild writes only their last values).
    pub(super) async fn write_lines(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        self.subsidy_lines.write(tx, Expect::Any).await?;
        self.subsidy_completer_lines.write(tx, Expect::Any).await?;
        self.incentive_lines.write(tx, Expect::Any).await?;
        self.turnover_lines.write(tx, Expect::Any).await
    }

    async fn write_totals(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        let mut totals = Rows::new(
            "INSERT INTO subsidy_totals (achievement_id, cap_period, eligible_received_fen, subsidy_fen, cap_fen, cap_reached, updated_position) VALUES",
            7,
            "ON CONFLICT (achievement_id, cap_period) DO UPDATE SET \
             eligible_received_fen = excluded.eligible_received_fen, subsidy_fen = excluded.subsidy_fen, cap_fen = excluded.cap_fen, \
             cap_reached = excluded.cap_reached, updated_position = excluded.updated_position",
        );
        self.subsidy_totals.drain().for_each(|(_, row)| totals.push(row));
        totals.write(tx, Expect::Any).await?;
        let mut totals = Rows::new(
            "INSERT INTO subsidy_completer_totals (achievement_id, cap_period, ordinal, completer_name, share_basis_points, subsidy_fen) VALUES",
            6,
            "ON CONFLICT (achievement_id, cap_period, ordinal) DO UPDATE SET \
             completer_name = excluded.completer_name, share_basis_points = excluded.share_basis_points, subsidy_fen = excluded.subsidy_fen",
        );
        self.subsidy_completer_totals.drain().for_each(|(_, row)| totals.push(row));
        totals.write(tx, Expect::Any).await?;
        let mut totals = Rows::new(
            "INSERT INTO incentive_totals (center_id, incentive_year, operating_amount_fen, incentive_fen, cap_fen, cap_reached, updated_position) VALUES",
            7,
            "ON CONFLICT (center_id, incentive_year) DO UPDATE SET \
             operating_amount_fen = excluded.operating_amount_fen, incentive_fen = excluded.incentive_fen, cap_fen = excluded.cap_fen, \
             cap_reached = excluded.cap_reached, updated_position = excluded.updated_position",
        );
        self.incentive_totals.drain().for_each(|(_, row)| totals.push(row));
        totals.write(tx, Expect::Any).await?;
        let mut cells = Rows::new(
            "INSERT INTO turnover_cells (year, dimension, cell_key, contracts, contract_amount_fen, tech_transaction_amount_fen, received_fen, updated_position) VALUES",
            8,
            "ON CONFLICT (year, dimension, cell_key) DO UPDATE SET \
             contracts = excluded.contracts, contract_amount_fen = excluded.contract_amount_fen, \
             tech_transaction_amount_fen = excluded.tech_transaction_amount_fen, received_fen = excluded.received_fen, \
             updated_position = excluded.updated_position",
        );
        self.turnover_cells.drain().for_each(|(_, row)| cells.push(row));
        cells.write(tx, Expect::Any).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(positions: &[Position]) -> Vec<RecordedEvent> {
        positions.iter().map(|&p| super::super::pgcopy::tests::stored(p, 0).decode().unwrap()).collect()
    }

    #[test]
    fn an_unfiltered_read_gives_every_position_of_its_range_once_and_in_order() {
        let mut positions = Positions::new(2, 6);
        for page in [&[3, 4][..], &[5, 6], &[]] {
            let checked = positions.check(events(page)).unwrap();
            assert_eq!(checked.iter().map(|e| e.position).collect::<Vec<_>>(), page);
        }
        // A range already passed (a fold ahead of `upto`) ends at once.
        assert!(Positions::new(7, 6).check(vec![]).unwrap().is_empty());
    }

    #[test]
    fn a_position_missing_repeated_or_cut_off_stops_the_read() {
        let error = |pages: &[&[Position]]| {
            let mut positions = Positions::new(0, 5);
            let mut checked = pages.iter().map(|page| positions.check(events(page)));
            checked.find_map(Result::err).expect("the read stops").to_string()
        };
        let skipped = error(&[&[1, 2], &[4, 5]]);
        assert!(skipped.contains("position 3 was missing (position 4 came instead)"), "{skipped}");
        assert!(error(&[&[1, 1]]).contains("position 2 was missing (position 1 came instead)"));
        let cut = error(&[&[1, 2], &[]]);
        assert!(cut.contains("from 0 up to 5, position 3 was missing (the end of the log came instead)"), "{cut}");
        assert!(cut.contains("run verify-ledger"), "{cut}");
    }
}
