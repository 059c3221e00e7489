//! CSV: UTF-8 with a byte-order mark (so spreadsheet programs read the Chinese right), CRLF
//! line ends, written by the `csv` crate. One file holds the whole statement: its heading
//! (`label,value` lines), then each section as a title line, a header line, the rows and a
//! totals line, then a summary block; blank lines separate the blocks.

use std::io::Write;

use ledger::Money;

use super::columns::{Cell, Heading, Kind, Lang, MetaRow, Section, summary_title, total_label};
use super::{ExportError, Sink};

const BYTE_ORDER_MARK: &str = "\u{FEFF}";

struct OpenSection {
    section: &'static Section,
    /// Per column: the sum of the summed columns' cells (fen or count).
    sums: Vec<i64>,
}

pub(crate) struct CsvSink<W: Write> {
    /// Always `Some` between calls (taken out to write a blank line past the csv writer).
    out: Option<csv::Writer<W>>,
    lang: Lang,
    open: Option<OpenSection>,
}

/// A text a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a
/// leading apostrophe, so a title typed by a user can never run in finance's spreadsheet.
fn defused(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}").into() } else { text.into() }
}

fn field(cell: &Cell) -> String {
    match cell {
        Cell::Text(s) => defused(s).into_owned(),
        other => other.to_field(),
    }
}

impl<W: Write> CsvSink<W> {
    pub(crate) fn new(mut out: W, lang: Lang) -> Result<CsvSink<W>, ExportError> {
        out.write_all(BYTE_ORDER_MARK.as_bytes())?;
        Ok(CsvSink { out: Some(Self::writer(out)), lang, open: None })
    }

    fn writer(out: W) -> csv::Writer<W> {
        csv::WriterBuilder::new()
            .flexible(true)
            .terminator(csv::Terminator::CRLF)
            .buffer_capacity(64 * 1024)
            .from_writer(out)
    }

    fn out(&mut self) -> &mut csv::Writer<W> {
        self.out.as_mut().expect("the csv writer is in place")
    }

    /// An empty line between blocks (the csv writer would write `""` for an empty record).
    fn blank_line(&mut self) -> Result<(), ExportError> {
        let writer = self.out.take().expect("the csv writer is in place");
        let mut inner = writer.into_inner().map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?;
        inner.write_all(b"\r\n")?;
        self.out = Some(Self::writer(inner));
        Ok(())
    }

    fn meta(&mut self, row: &MetaRow) -> Result<(), ExportError> {
        let fields = std::iter::once(defused(&row.label).into_owned()).chain(row.values.iter().map(field));
        self.out().write_record(fields)?;
        Ok(())
    }

    /// Writes the open section's totals line.
    fn close_section(&mut self) -> Result<(), ExportError> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let lang = self.lang;
        let fields = open.section.columns.iter().zip(&open.sums).enumerate().map(|(i, (c, sum))| match c.kind {
            _ if i == 0 => total_label(lang).to_owned(),
            Kind::Money if c.summed => Money::from_fen(*sum).to_string(),
            Kind::Integer if c.summed => sum.to_string(),
            _ => String::new(),
        });
        self.out().write_record(fields)?;
        Ok(())
    }
}

impl<W: Write + Send> Sink for CsvSink<W> {
    fn start(&mut self, heading: &Heading) -> Result<(), ExportError> {
        self.out().write_record([heading.title.as_str()])?;
        for row in &heading.rows {
            self.meta(row)?;
        }
        Ok(())
    }

    fn section(&mut self, section: &'static Section) -> Result<(), ExportError> {
        self.close_section()?;
        self.blank_line()?;
        let lang = self.lang;
        self.out().write_record([section.title(lang)])?;
        self.out().write_record(section.columns.iter().map(|c| c.header(lang)))?;
        self.open = Some(OpenSection { section, sums: vec![0; section.columns.len()] });
        Ok(())
    }

    fn row(&mut self, cells: &[Cell]) -> Result<(), ExportError> {
        let open = self.open.as_mut().ok_or_else(|| ExportError::Inconsistent("a row outside a section".into()))?;
        open.section.check_row(cells)?;
        for ((c, cell), sum) in open.section.columns.iter().zip(cells).zip(open.sums.iter_mut()) {
            if c.summed {
                *sum += cell.summand().unwrap_or(0);
            }
        }
        self.out().write_record(cells.iter().map(field))?;
        Ok(())
    }

    fn finish(&mut self, summary: &[MetaRow]) -> Result<(), ExportError> {
        self.close_section()?;
        self.blank_line()?;
        let lang = self.lang;
        self.out().write_record([summary_title(lang)])?;
        for row in summary {
            self.meta(row)?;
        }
        self.out().flush()?;
        Ok(())
    }
}
