//! Reading a year's projection lines in pages, for exports that must stay memory-flat
//! whatever the number of lines (`statements.rs` reads all of a year's lines into a `Vec`:
//! right for GraphQL, not for a million-line export).
//!
//! Lines are immutable and carry the position of the event that made them, so the lines of a
//! year with `position <= upto`, read page by page in `(position, seq)` order and keyed by
//! the last `(position, seq)` seen, are exactly the lines a statement as of `upto` is built
//! from, however much is appended meanwhile. Where each page starts can be read first
//! (`line_page_starts`), so that several pages are read at once. Aggregates whose size does not grow with the
//! number of lines (a center's year, a turnover cell) are summed by the database; the
//! per-completer summary, which grows with the number of completers, streams from one
//! grouped query.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use super::select::{BulkRow, Columns, Param, SqlxRow, bulk_rows};
use super::statements::{self, INCENTIVE_COLUMNS, SUBSIDY_COLUMNS, id};
use super::{Backend, Store, StoreError, with_pool};
use crate::event::Position;
use crate::ids::*;
use crate::money::Money;
use crate::personal::PersonalDataRow;
use crate::policy::PolicyKind;
use crate::projection::*;

/// Where a page of lines starts: after this `(position, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LineCursor {
    pub position: Position,
    pub seq: u32,
}

impl LineCursor {
    /// Before the first line.
    pub const START: LineCursor = LineCursor { position: 0, seq: 0 };
}

/// How a completer's ID number is stored: masked, and (when asked for) the sealed vault row
/// that only the personal-data key opens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredIdNumber {
    /// e.g. `500***********1234`; `None` when the completer was listed without one.
    pub masked: Option<String>,
    /// The vault row, read only when sealed rows were requested (and still there: deleting
    /// it erases the number).
    pub sealed: Option<PersonalDataRow>,
}

/// A subsidy line with what an export prints beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSubsidyLine {
    pub line: SubsidyLine,
    /// The achievement's title (as listed now).
    pub achievement_title: Option<String>,
    /// One per `line.completers`, in the same order.
    pub id_numbers: Vec<StoredIdNumber>,
}

/// One completer's subsidy from one achievement in a year: the sum of their parts of the
/// year's lines (a row of the per-completer summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleterYearSum {
    pub achievement_id: AchievementId,
    pub achievement_title: Option<String>,
    pub ordinal: u32,
    pub name: String,
    pub share_basis_points: u32,
    pub subsidy: Money,
    pub lines: u32,
    pub id_number: StoredIdNumber,
}

/// An incentive line with what an export prints beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportIncentiveLine {
    pub line: IncentiveLine,
    pub center_name: Option<String>,
}

impl ExportSubsidyLine {
    /// Where the line stands in the year's `(position, seq)` order.
    pub fn cursor(&self) -> LineCursor {
        LineCursor { position: self.line.position, seq: self.line.seq }
    }
}

impl ExportIncentiveLine {
    /// Where the line stands in the year's `(position, seq)` order.
    pub fn cursor(&self) -> LineCursor {
        LineCursor { position: self.line.position, seq: self.line.seq }
    }
}

/// A center's operating amount and incentive for a year (lines counting in that year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterYearSum {
    pub center_id: OrganisationId,
    pub center_name: Option<String>,
    pub year: i32,
    pub operating_amount: Money,
    pub incentive: Money,
    /// As the last line that changed the center's year left it.
    pub cap_reached: bool,
}

/// One cell of a year's turnover table, summed by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnoverSum {
    /// `total`, `contract_type`, `seller_kind`, `field`, `district` or `month`.
    pub dimension: &'static str,
    pub key: String,
    pub figures: TurnoverFigures,
}

/// A subsidy line's row, with what the export prints beside it.
#[derive(sqlx::FromRow)]
struct SubsidyRow {
    #[sqlx(flatten)]
    line: statements::SubsidyRow,
    achievement_title: Option<String>,
}

/// A completer's part of a line, with the completer's stored ID number.
#[derive(sqlx::FromRow)]
struct PartRow {
    #[sqlx(flatten)]
    part: statements::CompleterRow,
    id_number_masked: Option<String>,
    id_reference: Option<String>,
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct CompleterSumRow {
    achievement_id: String,
    ordinal: i32,
    completer_name: String,
    share_basis_points: i32,
    subsidy_fen: i64,
    lines: i64,
    achievement_title: Option<String>,
    id_number_masked: Option<String>,
    id_reference: Option<String>,
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
}

/// An incentive line's row, with what the export prints beside it.
#[derive(sqlx::FromRow)]
struct IncentiveRow {
    #[sqlx(flatten)]
    line: statements::IncentiveRow,
    center_name: Option<String>,
}

impl BulkRow for SubsidyRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(SubsidyRow { line: statements::SubsidyRow::from_bulk(c)?, achievement_title: c.get("achievement_title")? })
    }
}

impl BulkRow for PartRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(PartRow {
            part: statements::CompleterRow::from_bulk(c)?,
            id_number_masked: c.get("id_number_masked")?,
            id_reference: c.get("id_reference")?,
            key_id: c.get("key_id")?,
            nonce: c.get("nonce")?,
            ciphertext: c.get("ciphertext")?,
        })
    }
}

impl BulkRow for CompleterSumRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(CompleterSumRow {
            achievement_id: c.get("achievement_id")?,
            ordinal: c.get("ordinal")?,
            completer_name: c.get("completer_name")?,
            share_basis_points: c.get("share_basis_points")?,
            subsidy_fen: c.get("subsidy_fen")?,
            lines: c.get("lines")?,
            achievement_title: c.get("achievement_title")?,
            id_number_masked: c.get("id_number_masked")?,
            id_reference: c.get("id_reference")?,
            key_id: c.get("key_id")?,
            nonce: c.get("nonce")?,
            ciphertext: c.get("ciphertext")?,
        })
    }
}

impl BulkRow for IncentiveRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(IncentiveRow { line: statements::IncentiveRow::from_bulk(c)?, center_name: c.get("center_name")? })
    }
}

/// A line's key, as the page starts read it.
struct LineKey {
    position: i64,
    seq: i32,
}

impl BulkRow for LineKey {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(LineKey { position: c.get("position")?, seq: c.get("seq")? })
    }
}

#[derive(sqlx::FromRow)]
struct CenterRow {
    center_id: String,
    center_name: Option<String>,
    operating_fen: i64,
    incentive_fen: i64,
    cap_reached: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct CellRow {
    cell_key: Option<String>,
    contracts: i64,
    contract_amount_fen: i64,
    tech_transaction_amount_fen: i64,
    received_fen: i64,
}

#[derive(sqlx::FromRow)]
struct DayRow {
    line_date: NaiveDate,
    contracts: i64,
    contract_amount_fen: i64,
    tech_transaction_amount_fen: i64,
    received_fen: i64,
}

fn stored_id_number(
    masked: Option<String>,
    reference: Option<String>,
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
) -> Result<StoredIdNumber, StoreError> {
    let sealed = match (reference, key_id, nonce, ciphertext) {
        (Some(reference), Some(key_id), Some(nonce), Some(ciphertext)) => {
            Some(PersonalDataRow { reference: id(&reference)?, key_id, nonce, ciphertext })
        }
        _ => None,
    };
    Ok(StoredIdNumber { masked, sealed })
}

/// Sums of the turnover figures of a year's lines up to a position, per key of one column.
const CELL_SUMS: &str = "CAST(COALESCE(SUM(contracts), 0) AS BIGINT) AS contracts, \
     CAST(COALESCE(SUM(contract_amount_fen), 0) AS BIGINT) AS contract_amount_fen, \
     CAST(COALESCE(SUM(tech_transaction_amount_fen), 0) AS BIGINT) AS tech_transaction_amount_fen, \
     CAST(COALESCE(SUM(received_fen), 0) AS BIGINT) AS received_fen";

/// The table of a policy's lines.
fn lines_table(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::CompleterSubsidy => "subsidy_lines",
        PolicyKind::OperatingCenterIncentive => "incentive_lines",
    }
}

fn figures(contracts: i64, contract_amount: i64, tech: i64, received: i64) -> TurnoverFigures {
    TurnoverFigures {
        contracts,
        contract_amount: Money::from_fen(contract_amount),
        tech_transaction_amount: Money::from_fen(tech),
        received: Money::from_fen(received),
    }
}

impl Store {
    /// The table a page of subsidy lines looks its achievement's title (`a`) up in (the
    /// contract's number is in the line itself, migration 0008). On SQLite, through the
    /// covering index of migration 0006, named with `INDEXED BY`: without planner statistics
    /// (no `ANALYZE` has run) SQLite takes the primary key's index, and each lookup then reads
    /// the table's row too. Those lookups were most of an export's read: the lines of the
    /// benchmark's year took 0.52 s to read without the covering indexes, 0.30 s with them.
    fn achievement_lookup(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "achievements a INDEXED BY achievements_id_title",
            Backend::Postgres => "achievements a",
        }
    }

    /// The next page of a year's lines, `select` being `SELECT ... FROM <lines table> l ...`
    /// without a WHERE: lines dated in `year` with `position <= upto`, after `after`, in
    /// `(position, seq)` order. Two steps: the rest of the cursor's position, then the
    /// following positions, each on an index in exactly that order (`(line_year, position,
    /// seq)`, migration 0009), so that a page reads its own lines and no sort stands between
    /// them and the LIMIT (without it, PostgreSQL without planner statistics read and sorted
    /// the rest of the year for every page).
    async fn year_page<R>(
        &self,
        select: &str,
        year: i32,
        upto: Position,
        after: LineCursor,
        limit: u32,
    ) -> Result<Vec<R>, StoreError>
    where
        R: BulkRow + SqlxRow,
    {
        let mut rows: Vec<R> = Vec::new();
        if after.position > 0 {
            let sql = format!(
                "{select} WHERE l.position = $1 AND l.seq > $2 AND l.line_year = $3 AND l.position <= $4 \
                 ORDER BY l.seq LIMIT $5"
            );
            let params = vec![
                Param::BigInt(after.position),
                Param::Int(after.seq as i32),
                Param::Int(year),
                Param::BigInt(upto),
                Param::BigInt(i64::from(limit)),
            ];
            rows = self.select(sql, params).await?;
        }
        let rest = limit as usize - rows.len();
        if rest > 0 {
            let sql = format!(
                "{select} WHERE l.line_year = $1 AND l.position > $2 AND l.position <= $3 \
                 ORDER BY l.position, l.seq LIMIT $4"
            );
            let params =
                vec![Param::Int(year), Param::BigInt(after.position), Param::BigInt(upto), Param::BigInt(rest as i64)];
            let more: Vec<R> = self.select(sql, params).await?;
            rows.extend(more);
        }
        Ok(rows)
    }

    /// Where each page of `page_lines` lines of `kind` dated in `year` up to `upto` starts:
    /// [`LineCursor::START`], then every `page_lines`-th line in `(position, seq)` order. With
    /// them the pages are independent reads (an export reads two at once, one per core) that
    /// together hold each line once. The list grows by one cursor per page (500 for a million
    /// lines at 2,000 a page), not with the lines.
    pub async fn line_page_starts(
        &self,
        kind: PolicyKind,
        year: i32,
        upto: Position,
        page_lines: u32,
    ) -> Result<Vec<LineCursor>, StoreError> {
        assert!(page_lines > 0, "a page holds at least one line");
        let table = lines_table(kind);
        let ends: Vec<(i64, i32)> = if let Some(reader) = &self.bulk {
            // A SQLite file: the year's keys in the order of the (line_year, position, seq)
            // index, every `page_lines`-th kept as they go by. SQLite's window function took
            // four to six times as long as this scan (36-51 ms against 8-9 ms for the 67,269
            // lines of the benchmark's year), on one core before the first page.
            let sql = format!(
                "SELECT position, seq FROM {table} WHERE line_year = $1 AND position <= $2 ORDER BY position, seq"
            );
            reader
                .with_connection(move |conn| {
                    let (mut ends, mut n) = (Vec::new(), 0u32);
                    bulk_rows(conn, &sql, &[Param::Int(year), Param::BigInt(upto)], |key: LineKey| {
                        n += 1;
                        if n == page_lines {
                            n = 0;
                            ends.push((key.position, key.seq));
                        }
                        true
                    })?;
                    Ok(ends)
                })
                .await?
        } else {
            // In the order of the (line_year, position, seq) index: no sort.
            let sql = format!(
                "SELECT position, seq FROM (SELECT position, seq, ROW_NUMBER() OVER (ORDER BY position, seq) AS n \
                 FROM {table} WHERE line_year = $1 AND position <= $2) AS numbered \
                 WHERE n % $3 = 0 ORDER BY position, seq"
            );
            with_pool!(&self.db, |p| {
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(year)
                    .bind(upto)
                    .bind(i64::from(page_lines))
                    .fetch_all(p)
                    .await
            })?
        };
        let mut starts = Vec::with_capacity(ends.len() + 1);
        starts.push(LineCursor::START);
        for (position, seq) in ends {
            let seq = u32::try_from(seq).map_err(|_| {
                StoreError::Inconsistent(format!("{table} has a line ({position}, {seq}) with a negative seq"))
            })?;
            starts.push(LineCursor { position, seq });
        }
        Ok(starts)
    }

    /// How many lines of `kind` are dated in `year` up to `upto` (for progress reports).
    pub async fn count_lines(&self, kind: PolicyKind, year: i32, upto: Position) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {} WHERE position <= $1 AND line_year = $2", lines_table(kind));
        let n: i64 = with_pool!(&self.db, |p| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(upto).bind(year).fetch_one(p).await
        })?;
        Ok(n as u64)
    }

    /// The policy versions that lines of `kind` dated in `year` used, up to `upto`, ascending.
    pub async fn policy_versions_used(
        &self,
        kind: PolicyKind,
        year: i32,
        upto: Position,
    ) -> Result<Vec<u32>, StoreError> {
        let table = lines_table(kind);
        let sql = format!(
            "SELECT DISTINCT policy_version FROM {table} \
             WHERE position <= $1 AND line_year = $2 AND policy_version IS NOT NULL ORDER BY policy_version"
        );
        let versions: Vec<i32> = with_pool!(&self.db, |p| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(upto).bind(year).fetch_all(p).await
        })?;
        Ok(versions.into_iter().map(|v| v as u32).collect())
    }

    /// The next page of subsidy lines dated in `year`, up to position `upto`, after `after`,
    /// in log order, with their completer parts. `sealed_id_numbers`: also read the vault
    /// rows of the completers' ID numbers (for a finance user's full export).
    pub async fn subsidy_lines_page(
        &self,
        year: i32,
        upto: Position,
        after: LineCursor,
        limit: u32,
        sealed_id_numbers: bool,
    ) -> Result<Vec<ExportSubsidyLine>, StoreError> {
        let achievements = self.achievement_lookup();
        let select = format!(
            "SELECT {SUBSIDY_COLUMNS}, a.title AS achievement_title \
             FROM subsidy_lines l \
             LEFT JOIN {achievements} ON a.id = l.achievement_id"
        );
        let rows: Vec<SubsidyRow> = self.year_page(&select, year, upto, after, limit).await?;
        let Some(last) = rows.last() else { return Ok(Vec::new()) };
        let (last_position, last_seq) = (last.line.position, last.line.seq);
        // The parts of exactly the page's lines, found the way the lines were: on the
        // primary key within one position, else on the (line_year, position) index between
        // the page's first and last positions; each line's parts then by their primary key.
        const PARTS: &str = "SELECT c.position, c.seq, c.ordinal, c.completer_name, c.share_basis_points, c.subsidy_fen, \
             c.subsidy_total_fen, ac.id_number_masked, ac.id_reference, pd.key_id, pd.nonce, pd.ciphertext \
             FROM subsidy_lines l \
             JOIN subsidy_completer_lines c ON c.position = l.position AND c.seq = l.seq \
             LEFT JOIN achievement_completers ac ON ac.achievement_id = l.achievement_id AND ac.ordinal = c.ordinal \
             LEFT JOIN personal_data pd ON pd.reference = ac.id_reference AND $1";
        let parts: Vec<PartRow> = if after.position == last_position {
            let sql = format!(
                "{PARTS} WHERE l.position = $2 AND l.seq > $3 AND l.seq <= $4 AND l.line_year = $5 \
                 ORDER BY c.position, c.seq, c.ordinal"
            );
            let params = vec![
                Param::Bool(sealed_id_numbers),
                Param::BigInt(last_position),
                Param::Int(after.seq as i32),
                Param::Int(last_seq),
                Param::Int(year),
            ];
            self.select(sql, params).await?
        } else {
            let sql = format!(
                "{PARTS} WHERE l.line_year = $2 AND l.position >= $3 AND l.position <= $5 \
                 AND (l.position > $3 OR l.seq > $4) AND (l.position < $5 OR l.seq <= $6) \
                 ORDER BY c.position, c.seq, c.ordinal"
            );
            let params = vec![
                Param::Bool(sealed_id_numbers),
                Param::Int(year),
                Param::BigInt(after.position),
                Param::Int(after.seq as i32),
                Param::BigInt(last_position),
                Param::Int(last_seq),
            ];
            self.select(sql, params).await?
        };
        // Both queries are in (position, seq) order: merge them.
        let mut parts = parts.into_iter().peekable();
        let mut page = Vec::with_capacity(rows.len());
        for r in rows {
            let mut completers = Vec::new();
            let mut id_numbers = Vec::new();
            while let Some(c) = parts.next_if(|c| (c.part.position, c.part.seq) == (r.line.position, r.line.seq)) {
                id_numbers.push(stored_id_number(c.id_number_masked, c.id_reference, c.key_id, c.nonce, c.ciphertext)?);
                completers.push(c.part.into_part());
            }
            page.push(ExportSubsidyLine {
                line: r.line.into_line(completers)?,
                achievement_title: r.achievement_title,
                id_numbers,
            });
        }
        if let Some(orphan) = parts.next() {
            return Err(StoreError::Inconsistent(format!(
                "completer part ({}, {}) has no subsidy line in the page",
                orphan.part.position, orphan.part.seq
            )));
        }
        Ok(page)
    }

    /// Whether a stream such as [`completer_year_sums`](Self::completer_year_sums) reads on a
    /// connection of its own, outside the pool (a SQLite file, through the bulk reader), so
    /// that it can be held open beside other reads without taking one of theirs.
    pub fn streams_outside_the_pool(&self) -> bool {
        self.bulk.is_some()
    }

    /// The per-completer summary of `year` up to `upto`: each (achievement, completer) with
    /// the sum of their parts of the year's lines, ordered by achievement and completer, as a
    /// stream (the database groups; nothing here grows with the number of lines or rows).
    /// The database's work (the grouping and its sort) is done before the first row comes:
    /// asking for that row early lets it run beside other reads.
    pub fn completer_year_sums(
        &self,
        year: i32,
        upto: Position,
        sealed_id_numbers: bool,
    ) -> BoxStream<'_, Result<CompleterYearSum, StoreError>> {
        const SQL: &str = "SELECT s.achievement_id, s.ordinal, s.completer_name, s.share_basis_points, s.subsidy_fen, \
             s.lines, a.title AS achievement_title, ac.id_number_masked, ac.id_reference, pd.key_id, pd.nonce, pd.ciphertext \
             FROM (SELECT l.achievement_id, c.ordinal, MIN(c.completer_name) AS completer_name, \
                   MIN(c.share_basis_points) AS share_basis_points, CAST(SUM(c.subsidy_fen) AS BIGINT) AS subsidy_fen, \
                   CAST(COUNT(*) AS BIGINT) AS lines \
                   FROM subsidy_completer_lines c JOIN subsidy_lines l ON l.position = c.position AND l.seq = c.seq \
                   WHERE l.position <= $1 AND l.line_year = $2 GROUP BY l.achievement_id, c.ordinal) s \
             LEFT JOIN achievements a ON a.id = s.achievement_id \
             LEFT JOIN achievement_completers ac ON ac.achievement_id = s.achievement_id AND ac.ordinal = s.ordinal \
             LEFT JOIN personal_data pd ON pd.reference = ac.id_reference AND $3 \
             ORDER BY s.achievement_id, s.ordinal";
        let rows: BoxStream<'_, Result<CompleterSumRow, StoreError>> =
            self.select_stream(SQL, vec![Param::BigInt(upto), Param::Int(year), Param::Bool(sealed_id_numbers)]);
        rows.and_then(|r| async move {
            Ok(CompleterYearSum {
                achievement_id: AchievementId(id(&r.achievement_id)?),
                achievement_title: r.achievement_title,
                ordinal: r.ordinal as u32,
                name: r.completer_name,
                share_basis_points: r.share_basis_points as u32,
                subsidy: Money::from_fen(r.subsidy_fen),
                lines: r.lines as u32,
                id_number: stored_id_number(r.id_number_masked, r.id_reference, r.key_id, r.nonce, r.ciphertext)?,
            })
        })
        .boxed()
    }

    /// The next page of incentive lines dated in `year`, up to `upto`, after `after`.
    pub async fn incentive_lines_page(
        &self,
        year: i32,
        upto: Position,
        after: LineCursor,
        limit: u32,
    ) -> Result<Vec<ExportIncentiveLine>, StoreError> {
        let select = format!(
            "SELECT {INCENTIVE_COLUMNS}, o.name AS center_name \
             FROM incentive_lines l \
             LEFT JOIN organisations o ON o.id = l.center_id"
        );
        let rows: Vec<IncentiveRow> = self.year_page(&select, year, upto, after, limit).await?;
        rows.into_iter()
            .map(|r| Ok(ExportIncentiveLine { line: r.line.into_line()?, center_name: r.center_name }))
            .collect()
    }

    /// Each center's figures for `year` (lines counting in the year, whatever their date) up
    /// to `upto`, ordered by center: as `statement::incentive_statement` folds them.
    pub async fn center_year_sums(&self, year: i32, upto: Position) -> Result<Vec<CenterYearSum>, StoreError> {
        let rows: Vec<CenterRow> = with_pool!(&self.db, |p| {
            sqlx::query_as(
                "SELECT s.center_id, o.name AS center_name, s.operating_fen, s.incentive_fen, \
                 (SELECT x.cap_reached FROM incentive_lines x \
                  WHERE x.center_id = s.center_id AND x.incentive_year = $2 AND x.position <= $1 \
                  AND (x.operating_fen <> 0 OR x.incentive_fen <> 0) \
                  ORDER BY x.position DESC, x.seq DESC LIMIT 1) AS cap_reached \
                 FROM (SELECT center_id, CAST(SUM(operating_fen) AS BIGINT) AS operating_fen, \
                       CAST(SUM(incentive_fen) AS BIGINT) AS incentive_fen \
                       FROM incentive_lines WHERE position <= $1 AND incentive_year = $2 GROUP BY center_id) s \
                 LEFT JOIN organisations o ON o.id = s.center_id \
                 ORDER BY s.center_id",
            )
            .bind(upto)
            .bind(year)
            .fetch_all(p)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(CenterYearSum {
                    center_id: OrganisationId(id(&r.center_id)?),
                    center_name: r.center_name,
                    year,
                    operating_amount: Money::from_fen(r.operating_fen),
                    incentive: Money::from_fen(r.incentive_fen),
                    cap_reached: r.cap_reached.unwrap_or(false),
                })
            })
            .collect()
    }

    /// The turnover table of `year` up to `upto`: the `total` cell and every breakdown cell
    /// (contract type, seller kind, field — `unclassified` when none —, district, month),
    /// summed by the database, in the order of `statement::turnover_statement`. The total
    /// comes first, also (all zeros) for a year without lines.
    pub async fn turnover_sums(&self, year: i32, upto: Position) -> Result<Vec<TurnoverSum>, StoreError> {
        let mut out = Vec::new();
        let total_sql = format!(
            "SELECT CAST(NULL AS TEXT) AS cell_key, {CELL_SUMS} FROM turnover_lines WHERE position <= $1 AND line_year = $2"
        );
        let total: CellRow = with_pool!(&self.db, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(total_sql)).bind(upto).bind(year).fetch_one(p).await
        })?;
        let mut cells: BTreeMap<(&'static str, String), TurnoverFigures> = BTreeMap::new();
        for (dimension, column) in [
            ("contract_type", "contract_type"),
            ("seller_kind", "seller_kind"),
            ("field", "field"),
            ("district", "district"),
        ] {
            let sql = format!(
                "SELECT {column} AS cell_key, {CELL_SUMS} FROM turnover_lines \
                 WHERE position <= $1 AND line_year = $2 GROUP BY {column}"
            );
            let rows: Vec<CellRow> = with_pool!(&self.db, |p| {
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(upto).bind(year).fetch_all(p).await
            })?;
            for r in rows {
                let key = r.cell_key.unwrap_or_else(|| "unclassified".to_owned());
                let f = figures(r.contracts, r.contract_amount_fen, r.tech_transaction_amount_fen, r.received_fen);
                let cell = cells.entry((dimension, key)).or_default();
                cell.contracts += f.contracts;
                cell.contract_amount += f.contract_amount;
                cell.tech_transaction_amount += f.tech_transaction_amount;
                cell.received += f.received;
            }
        }
        // Months: the dates' text differs between engines, so group by day and fold here.
        let days_sql = format!(
            "SELECT line_date, {CELL_SUMS} FROM turnover_lines WHERE position <= $1 AND line_year = $2 GROUP BY line_date"
        );
        let days: Vec<DayRow> = with_pool!(&self.db, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(days_sql)).bind(upto).bind(year).fetch_all(p).await
        })?;
        for d in days {
            let month = format!("{:04}-{:02}", d.line_date.year(), d.line_date.month());
            let cell = cells.entry(("month", month)).or_default();
            cell.contracts += d.contracts;
            cell.contract_amount += Money::from_fen(d.contract_amount_fen);
            cell.tech_transaction_amount += Money::from_fen(d.tech_transaction_amount_fen);
            cell.received += Money::from_fen(d.received_fen);
        }
        out.push(TurnoverSum {
            dimension: "total",
            key: "total".to_owned(),
            figures: figures(
                total.contracts,
                total.contract_amount_fen,
                total.tech_transaction_amount_fen,
                total.received_fen,
            ),
        });
        out.extend(cells.into_iter().map(|((dimension, key), figures)| TurnoverSum { dimension, key, figures }));
        Ok(out)
    }
}
