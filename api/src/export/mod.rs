//! Finance exports: the completer subsidy statement, the operating-center incentive statement
//! and the annual turnover table of a year, as of any ledger position, in CSV or XLSX.
//!
//! - [`columns`]: sections, columns (Chinese and English headers) and cells;
//! - `produce`: reads the statement from the ledger page by page and turns it into rows;
//! - `csv` / `xlsx`: the two writers, behind one [`Sink`] interface;
//! - [`http`]: `GET /exports/{statement}/{year}.{format}`;
//! - [`cli`]: `techmarket export`.
//!
//! Memory stays flat whatever the number of lines: the producer reads pages of lines
//! (`ledger::store::stream`) and hands them over a bounded channel to a writer on a blocking
//! thread, which streams CSV straight out and writes XLSX rows to constant-memory worksheets.
//! Every figure is a sum of the rows printed, and every file names its year, its policy
//! versions with their source clause, the ledger position and chain hash it was computed at,
//! and when it was produced. Lines are immutable and carry their position, so the lines with
//! `position <= asOf` read from the tables are exactly those of a replay of the log up to
//! `asOf`: an export as of a position reconciles with the GraphQL statement as of it.

pub mod cli;
pub mod columns;
mod csv;
pub mod http;
mod produce;
mod xlsx;

use std::io::Write;

use chrono::{DateTime, Utc};
use ledger::Position;
use ledger::personal::{PersonalDataError, PersonalDataKey};
use ledger::reports::ReportError;
use ledger::service::Ledger;
use ledger::statement::AsOf;
use ledger::store::StoreError;

pub use cli::{ExportArgs, export_command};
pub use columns::Lang;

/// Which statement to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Statement {
    /// 科技成果完成人补贴: one row per completer per line, and a per-completer summary.
    CompleterSubsidy,
    /// 知识产权运营中心运营绩效补贴: the lines dated in the year, and each center's year.
    OperatingCenterIncentive,
    /// 技术合同成交额: the year's turnover by contract type, seller kind, field, district, month.
    Turnover,
}

impl Statement {
    pub const ALL: [Statement; 3] =
        [Statement::CompleterSubsidy, Statement::OperatingCenterIncentive, Statement::Turnover];

    /// The name in URLs, file names and on the command line.
    pub fn slug(self) -> &'static str {
        match self {
            Statement::CompleterSubsidy => "completer-subsidy",
            Statement::OperatingCenterIncentive => "operating-center-incentive",
            Statement::Turnover => "turnover",
        }
    }

    pub fn parse(slug: &str) -> Option<Statement> {
        Statement::ALL.into_iter().find(|s| s.slug() == slug)
    }

    pub fn title(self, lang: Lang) -> &'static str {
        match self {
            Statement::CompleterSubsidy => lang.pick("科技成果完成人补贴明细表", "Completer subsidy statement"),
            Statement::OperatingCenterIncentive => {
                lang.pick("知识产权运营中心运营绩效补贴明细表", "Operating-center incentive statement")
            }
            Statement::Turnover => lang.pick("技术合同成交额年度统计表", "Annual technology-contract turnover"),
        }
    }
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// UTF-8 CSV with a byte-order mark, all sections in one file.
    Csv,
    /// An Excel workbook: a summary sheet and one sheet per section.
    Xlsx,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    pub fn parse(extension: &str) -> Option<Format> {
        match extension {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// How completers' ID numbers appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdNumbers {
    /// `500***********1234` (the default, for everyone).
    #[default]
    Masked,
    /// In full: only for finance, only when asked for.
    Full,
}

/// The years a statement can be asked for.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub statement: Statement,
    pub year: i32,
    pub format: Format,
    pub lang: Lang,
    pub id_numbers: IdNumbers,
}

impl ExportRequest {
    /// `completer-subsidy-2024.xlsx`, or `completer-subsidy-2024-asof-57.xlsx` for an
    /// explicitly requested position.
    pub fn file_name(&self, as_of: Option<Position>) -> String {
        let suffix = as_of.map(|p| format!("-asof-{p}")).unwrap_or_default();
        format!("{}-{}{suffix}.{}", self.statement.slug(), self.year, self.format.extension())
    }

    /// `2024年度科技成果完成人补贴明细表.xlsx` (with `（截至账本位置57）` for a position).
    pub fn file_name_zh(&self, as_of: Option<Position>) -> String {
        let suffix = as_of.map(|p| format!("（截至账本位置{p}）")).unwrap_or_default();
        format!("{}年度{}{suffix}.{}", self.year, self.statement.title(Lang::Zh), self.format.extension())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("full ID numbers need the personal-data key")]
    NoPersonalDataKey,
    #[error(transparent)]
    PersonalData(#[from] PersonalDataError),
    #[error("cannot write the CSV file: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("cannot write the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// The writer stopped (its output went away); the writer's own error says why.
    #[error("the export was interrupted")]
    Interrupted,
    /// Figures that must agree do not (a bug): no file is better than a wrong one.
    #[error("the export is inconsistent: {0}")]
    Inconsistent(String),
}

/// A writer of one format. The producer calls `start` once, then `section` and its rows for
/// each section in turn, then `finish` once; each section's totals row is the sum of the rows
/// the sink wrote.
pub(crate) trait Sink: Send {
    fn start(&mut self, heading: &columns::Heading) -> Result<(), ExportError>;
    fn section(&mut self, section: &'static columns::Section) -> Result<(), ExportError>;
    fn row(&mut self, cells: &[columns::Cell]) -> Result<(), ExportError>;
    /// Ends the last section, writes the summary, flushes the output.
    fn finish(&mut self, summary: &[columns::MetaRow]) -> Result<(), ExportError>;
}

/// What the producer hands to the writer thread.
pub(crate) enum Message {
    Start(columns::Heading),
    Section(&'static columns::Section),
    Rows(Vec<Vec<columns::Cell>>),
    Finish(Vec<columns::MetaRow>),
}

/// Progress of a long export (the command line draws a bar).
pub trait Progress: Send + Sync {
    /// `done` of `total` lines read.
    fn lines(&self, _done: u64, _total: u64) {}
    /// Everything is read; the file is being finished (zipping a workbook takes a while).
    fn finishing(&self) {}
}

/// No progress reports.
pub struct Silent;

impl Progress for Silent {}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub as_of: AsOf,
    pub produced_at: DateTime<Utc>,
    /// Ledger lines read (subsidy or incentive lines; turnover cells).
    pub lines: u64,
    /// Data rows written over all sections.
    pub rows: u64,
}

/// Pages of lines in flight between the reader and the writer.
const CHANNEL_PAGES: usize = 2;

/// Writes the statement of `request` as of `as_of` to `out`. `key` opens full ID numbers
/// (needed only for [`IdNumbers::Full`]; the caller decides who may ask for them).
pub async fn export<W: Write + Send + 'static>(
    ledger: &Ledger,
    key: Option<&PersonalDataKey>,
    request: &ExportRequest,
    as_of: AsOf,
    out: W,
    progress: &dyn Progress,
) -> Result<ExportOutcome, ExportError> {
    if request.id_numbers == IdNumbers::Full && key.is_none() {
        return Err(ExportError::NoPersonalDataKey);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(CHANNEL_PAGES);
    let (format, lang) = (request.format, request.lang);
    let writer = tokio::task::spawn_blocking(move || {
        let sink: Box<dyn Sink> = match format {
            Format::Csv => Box::new(csv::CsvSink::new(out, lang)?),
            Format::Xlsx => Box::new(xlsx::XlsxSink::new(out, lang)?),
        };
        drain(sink, rx)
    });
    let produced_at = Utc::now();
    let job = produce::Job { ledger, key, request, as_of: &as_of, produced_at, tx, progress };
    let produced = job.run().await;
    let written = writer.await.map_err(|e| ExportError::Inconsistent(format!("the writer failed: {e}")))?;
    match (produced, written) {
        // The writer stopped first (say the client went away): its error is the cause.
        (Err(ExportError::Interrupted), Err(e)) => Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(counts), Ok(())) => {
            Ok(ExportOutcome { as_of: as_of.clone(), produced_at, lines: counts.lines, rows: counts.rows })
        }
    }
}

/// The writer thread: hands every message to the sink, in order, until `Finish`.
fn drain(mut sink: Box<dyn Sink>, mut rx: tokio::sync::mpsc::Receiver<Message>) -> Result<(), ExportError> {
    while let Some(message) = rx.blocking_recv() {
        match message {
            Message::Start(heading) => sink.start(&heading)?,
            Message::Section(section) => sink.section(section)?,
            Message::Rows(rows) => {
                for row in &rows {
                    sink.row(row)?;
                }
            }
            Message::Finish(summary) => return sink.finish(&summary),
        }
    }
    // The producer stopped before the end: leave the output unfinished.
    Err(ExportError::Interrupted)
}
