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
    /// Where each non-text cell of a row is formatted before it is written.
    scratch: String,
}

/// A text a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a
/// leading apostrophe, so a title typed by a user can never run in finance's spreadsheet.
fn defused(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}").into() } else { text.into() }
}

/// Writes `label` (if any) and `cells` as one record, each cell formatted into `scratch`
/// (no string per cell).
fn write_cells<W: Write>(
    out: &mut csv::Writer<W>,
    label: Option<&str>,
    cells: &[Cell],
    scratch: &mut String,
) -> csv::Result<()> {
    if let Some(label) = label {
        out.write_field(defused(label).as_bytes())?;
    }
    for cell in cells {
        match cell {
            Cell::Text(s) => out.write_field(defused(s).as_bytes())?,
            other => {
                scratch.clear();
                other.write_field(scratch);
                out.write_field(scratch.as_bytes())?;
            }
        }
    }
    out.write_record(None::<&[u8]>)
}

impl<W: Write> CsvSink<W> {
    pub(crate) fn new(mut out: W, lang: Lang) -> Result<CsvSink<W>, ExportError> {
        out.write_all(BYTE_ORDER_MARK.as_bytes())?;
        Ok(CsvSink { out: Some(Self::writer(out)), lang, open: None, scratch: String::new() })
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

    /// One record: `label` (if any), then `cells`.
    fn record(&mut self, label: Option<&str>, cells: &[Cell]) -> Result<(), ExportError> {
        let out = self.out.as_mut().expect("the csv writer is in place");
        write_cells(out, label, cells, &mut self.scratch)?;
        Ok(())
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
        self.record(Some(&row.label), &row.values)
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
        self.record(None, cells)
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

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, NaiveDate, TimeZone};

    use super::*;

    /// The field each cell was written as before `write_cells`: a string of its own.
    fn field(cell: &Cell) -> String {
        match cell {
            Cell::Text(s) => defused(s).into_owned(),
            other => other.to_field(),
        }
    }

    fn written(write: impl FnOnce(&mut csv::Writer<Vec<u8>>)) -> String {
        let mut out = CsvSink::writer(Vec::new());
        write(&mut out);
        String::from_utf8(out.into_inner().expect("flushed")).expect("UTF-8")
    }

    #[test]
    fn a_row_written_cell_by_cell_is_the_record_of_its_fields() {
        let date = |y| Cell::Date(NaiveDate::from_ymd_opt(y, 4, 1).expect("a date"));
        let at = FixedOffset::east_opt(8 * 3600).expect("UTC+8").with_ymd_and_hms(2024, 12, 31, 23, 59, 58).unwrap();
        let rows = [
            vec![
                Cell::Integer(-7),
                Cell::text("=SUM(A1)"),
                Cell::text("a,\"b\"\r\nc"),
                Cell::Empty,
                Cell::Money(Money::from_fen(-5)),
                Cell::Money(Money::from_fen(123_456_789)),
                date(2024),
                date(999),
                date(12_345),
                Cell::Percent(3333),
                Cell::Timestamp(at),
                Cell::text("重庆"),
            ],
            vec![Cell::Empty],
            vec![],
        ];
        for cells in rows {
            let mut scratch = String::from("left over");
            let by_cell = written(|out| write_cells(out, None, &cells, &mut scratch).expect("written"));
            let by_record = written(|out| out.write_record(cells.iter().map(field)).expect("written"));
            assert_eq!(by_cell, by_record, "{cells:?}");
            let labelled = written(|out| write_cells(out, Some("-label"), &cells, &mut scratch).expect("written"));
            let by_record = written(|out| {
                out.write_record(std::iter::once("'-label".to_owned()).chain(cells.iter().map(field))).expect("written")
            });
            assert_eq!(labelled, by_record, "{cells:?}");
        }
    }

    #[test]
    fn dates_print_as_chrono_prints_them() {
        for year in [1, 999, 2024, 9999, 10_000, 262_000] {
            let day = NaiveDate::from_ymd_opt(year, 12, 31).expect("a date");
            assert_eq!(Cell::Date(day).to_field(), day.format("%Y-%m-%d").to_string(), "{year}");
        }
    }
}
