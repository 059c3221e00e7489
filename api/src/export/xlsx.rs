//! XLSX, written by `rust_xlsxwriter`: a summary sheet first (title, year, policy and its
//! source clause, ledger position and chain hash, production time, then the totals), and one
//! sheet per section. Section sheets are "constant memory" worksheets: each row goes to a
//! temporary file as soon as the next one starts, so memory stays flat whatever the number
//! of rows; the workbook is zipped straight into the output at the end.
//!
//! Every section sheet has its header row frozen, amounts as numbers in a two-decimal yuan
//! format, dates as dates, column widths fitted to what was written, and a totals row whose
//! cells are `SUM` formulas over the rows above, stored with their computed value (so a reader
//! that does not recalculate sees the same figure). A section longer than a sheet can hold
//! continues on `<name> (2)`, ...; each sheet then ends with a subtotal, and the last one
//! with a total over the subtotals.

use std::io::Write;

use chrono::{Datelike, Timelike};
use ledger::Money;
use rust_xlsxwriter::{
    Color, DocProperties, ExcelDateTime, Format, FormatBorder, Formula, Workbook, Worksheet, XlsxError,
    column_number_to_name, quote_sheet_name,
};

use super::columns::{
    Cell, Heading, Kind, Lang, MetaRow, Section, display_width, subtotal_label, summary_title, total_label,
};
use super::{ExportError, Sink};

/// Rows of a worksheet (Excel's limit).
const SHEET_ROWS: u32 = 1_048_576;
/// Deflate level of the workbook's zip container: Excel 365's own. Against the default (6),
/// an export of the benchmark's year (86,463 rows) took about a fifth less time (1.18-1.30 s
/// instead of 1.50-1.73 s) and came out 12 % larger (10.3 MB instead of 9.2 MB).
const ZIP_LEVEL: u8 = 3;
/// Widest column we fit to, in characters (longer texts are cut off on screen, not in data).
const WIDTH_MAX: usize = 60;
/// Widest summary value column; longer texts wrap.
const SUMMARY_WIDTH_MAX: usize = 100;

struct Formats {
    title: Format,
    header: Format,
    label: Format,
    money: Format,
    date: Format,
    timestamp: Format,
    percent: Format,
    integer: Format,
    wrap: Format,
    total_label: Format,
    total_money: Format,
    total_integer: Format,
}

impl Formats {
    fn new() -> Formats {
        const MONEY: &str = "\"¥\"#,##0.00;[Red]-\"¥\"#,##0.00";
        let header =
            Format::new().set_bold().set_background_color(Color::RGB(0xDD_EB_F7)).set_border_bottom(FormatBorder::Thin);
        Formats {
            title: Format::new().set_bold().set_font_size(14),
            header,
            label: Format::new().set_bold(),
            money: Format::new().set_num_format(MONEY),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            timestamp: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            percent: Format::new().set_num_format("0.00"),
            integer: Format::new().set_num_format("0"),
            wrap: Format::new().set_text_wrap(),
            total_label: Format::new().set_bold().set_border_top(FormatBorder::Thin),
            total_money: Format::new().set_bold().set_border_top(FormatBorder::Thin).set_num_format(MONEY),
            total_integer: Format::new().set_bold().set_border_top(FormatBorder::Thin).set_num_format("0"),
        }
    }
}

/// The section being written: its current sheet and what its totals need.
struct OpenSection {
    section: &'static Section,
    /// Index of the current sheet in the workbook.
    sheet: usize,
    sheet_name: String,
    /// Next row to write on the current sheet.
    row: u32,
    /// Column widths seen on the current sheet, in characters.
    widths: Vec<usize>,
    /// Sums of the current sheet's summed columns.
    sheet_sums: Vec<i64>,
    /// Sums of the whole section's summed columns.
    section_sums: Vec<i64>,
    /// Where earlier sheets of the section left their subtotals: (sheet name, row).
    subtotals: Vec<(String, u32)>,
}

pub(crate) struct XlsxSink<W: Write + Send> {
    out: Option<W>,
    workbook: Workbook,
    lang: Lang,
    formats: Formats,
    /// Next row of the summary sheet, and its two column widths.
    summary_row: u32,
    summary_widths: [usize; 2],
    open: Option<OpenSection>,
    /// Data rows one sheet takes before a section continues on the next (tests lower it).
    rows_per_sheet: u32,
}

fn excel_date(date: chrono::NaiveDate) -> Result<ExcelDateTime, XlsxError> {
    ExcelDateTime::from_ymd(date.year() as u16, date.month() as u8, date.day() as u8)
}

/// How many digits `n` has in decimal (without formatting it: two cells of every row ask).
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The width a cell takes on screen, in characters.
fn cell_width(cell: &Cell) -> usize {
    match cell {
        Cell::Empty => 0,
        Cell::Text(s) => display_width(s),
        // "¥" + digits with thousands separators + ".00" + a sign.
        Cell::Money(m) => {
            let digits = decimal_digits(m.fen().unsigned_abs()).max(3);
            digits + (digits - 3) / 3 + 3
        }
        Cell::Integer(n) => decimal_digits(n.unsigned_abs()) + usize::from(*n < 0),
        Cell::Date(_) => 10,
        Cell::Percent(_) => 6,
        Cell::Timestamp(_) => 19,
    }
}

impl<W: Write + Send> XlsxSink<W> {
    pub(crate) fn new(out: W, lang: Lang) -> Result<XlsxSink<W>, ExportError> {
        XlsxSink::with_rows_per_sheet(out, lang, SHEET_ROWS - 2)
    }

    /// A sink whose sections continue on a new sheet after `rows_per_sheet` data rows.
    pub(crate) fn with_rows_per_sheet(out: W, lang: Lang, rows_per_sheet: u32) -> Result<XlsxSink<W>, ExportError> {
        assert!((1..=SHEET_ROWS - 2).contains(&rows_per_sheet), "a header and a totals row fit");
        let mut workbook = Workbook::new();
        workbook.set_zip_compression_level(ZIP_LEVEL);
        // The summary is small and written first and last: a standard worksheet.
        workbook.add_worksheet().set_name(summary_title(lang))?;
        Ok(XlsxSink {
            out: Some(out),
            workbook,
            lang,
            formats: Formats::new(),
            summary_row: 0,
            summary_widths: [0, 0],
            open: None,
            rows_per_sheet,
        })
    }

    fn summary_sheet(&mut self) -> Result<&mut Worksheet, ExportError> {
        Ok(self.workbook.worksheet_from_index(0)?)
    }

    fn write_cell(ws: &mut Worksheet, f: &Formats, row: u32, col: u16, cell: &Cell) -> Result<(), XlsxError> {
        match cell {
            Cell::Empty => {}
            Cell::Text(s) => {
                ws.write_string(row, col, s)?;
            }
            Cell::Integer(n) => {
                ws.write_number_with_format(row, col, *n as f64, &f.integer)?;
            }
            Cell::Money(m) => {
                ws.write_number_with_format(row, col, m.fen() as f64 / 100.0, &f.money)?;
            }
            Cell::Date(d) => {
                ws.write_datetime_with_format(row, col, excel_date(*d)?, &f.date)?;
            }
            Cell::Percent(bp) => {
                ws.write_number_with_format(row, col, f64::from(*bp) / 100.0, &f.percent)?;
            }
            Cell::Timestamp(t) => {
                let at =
                    excel_date(t.date_naive())?.and_hms(t.hour() as u16, t.minute() as u8, f64::from(t.second()))?;
                ws.write_datetime_with_format(row, col, at, &f.timestamp)?;
            }
        }
        Ok(())
    }

    /// The format a column of `kind` carries (`None`: General).
    fn column_format(f: &Formats, kind: Kind) -> Option<&Format> {
        match kind {
            Kind::Text => None,
            Kind::Integer => Some(&f.integer),
            Kind::Money => Some(&f.money),
            Kind::Date => Some(&f.date),
            Kind::Percent => Some(&f.percent),
        }
    }

    /// A section row's cell. A cell of its column's kind is written without a format of its
    /// own and takes the column's (set in `add_section_sheet`): Excel shows it the same, and
    /// rust_xlsxwriter then does not hash the whole `Format` for every cell, which took about
    /// a tenth of the writer's time. Any other cell keeps its own format.
    fn write_data_cell(
        ws: &mut Worksheet,
        f: &Formats,
        row: u32,
        col: u16,
        kind: Kind,
        cell: &Cell,
    ) -> Result<(), XlsxError> {
        match (cell, kind) {
            (Cell::Integer(n), Kind::Integer) => {
                ws.write_number(row, col, *n as f64)?;
            }
            (Cell::Money(m), Kind::Money) => {
                ws.write_number(row, col, m.fen() as f64 / 100.0)?;
            }
            (Cell::Date(d), Kind::Date) => {
                ws.write_datetime(row, col, excel_date(*d)?)?;
            }
            (Cell::Percent(bp), Kind::Percent) => {
                ws.write_number(row, col, f64::from(*bp) / 100.0)?;
            }
            _ => Self::write_cell(ws, f, row, col, cell)?,
        }
        Ok(())
    }

    fn summary_line(&mut self, row: &MetaRow, label_format: bool) -> Result<(), ExportError> {
        let r = self.summary_row;
        self.summary_row += 1;
        let ws = self.workbook.worksheet_from_index(0)?;
        if label_format {
            ws.write_string_with_format(r, 0, &row.label, &self.formats.label)?;
        } else {
            ws.write_string(r, 0, &row.label)?;
        }
        self.summary_widths[0] = self.summary_widths[0].max(display_width(&row.label));
        for (i, value) in row.values.iter().enumerate() {
            let col = 1 + i as u16;
            let width = cell_width(value);
            if matches!(value, Cell::Text(_)) && width > SUMMARY_WIDTH_MAX {
                if let Cell::Text(s) = value {
                    ws.write_string_with_format(r, col, s, &self.formats.wrap)?;
                }
            } else {
                Self::write_cell(ws, &self.formats, r, col, value)?;
            }
            if i == 0 {
                self.summary_widths[1] = self.summary_widths[1].max(width.min(SUMMARY_WIDTH_MAX));
            }
        }
        Ok(())
    }

    /// Adds a constant-memory sheet for (part `part` of) a section, with its frozen header row.
    fn add_section_sheet(&mut self, section: &'static Section, part: usize) -> Result<(usize, String), ExportError> {
        let title = section.title(self.lang);
        let name = if part == 1 { title.to_owned() } else { format!("{title} ({part})") };
        let ws = self.workbook.add_worksheet_with_constant_memory()?;
        ws.set_name(&name)?;
        ws.set_freeze_panes(1, 0)?;
        for (i, c) in section.columns.iter().enumerate() {
            ws.write_string_with_format(0, i as u16, c.header(self.lang), &self.formats.header)?;
            if let Some(format) = Self::column_format(&self.formats, c.kind) {
                ws.set_column_format(i as u16, format)?;
            }
        }
        let index = self.workbook.worksheets().len() - 1;
        Ok((index, name))
    }

    /// Writes a totals row (`label`, then a SUM over the sheet's rows in each summed column,
    /// stored with its value) at the open section's current row, and fits the column widths.
    fn close_sheet(&mut self, label: &str) -> Result<(), ExportError> {
        let open = self.open.as_mut().expect("a section is open");
        let ws = self.workbook.worksheet_from_index(open.sheet)?;
        let r = open.row;
        ws.write_string_with_format(r, 0, label, &self.formats.total_label)?;
        for (i, c) in open.section.columns.iter().enumerate().filter(|(_, c)| c.summed) {
            let (value, format) = match c.kind {
                Kind::Money => (Money::from_fen(open.sheet_sums[i]).to_string(), &self.formats.total_money),
                _ => (open.sheet_sums[i].to_string(), &self.formats.total_integer),
            };
            let col = i as u16;
            if r > 1 {
                let name = column_number_to_name(col);
                let formula = Formula::new(format!("=SUM({name}2:{name}{r})")).set_result(value);
                ws.write_formula_with_format(r, col, formula, format)?;
            } else {
                // No rows: a plain zero (a SUM over an empty range would take in the header).
                ws.write_number_with_format(r, col, 0.0, format)?;
            }
        }
        let header_widths = open.section.columns.iter().map(|c| display_width(c.header(self.lang)));
        for (i, (seen, header)) in open.widths.iter().zip(header_widths).enumerate() {
            let label = if i == 0 { display_width(label) } else { 0 };
            let width = (*seen).max(header).max(label).min(WIDTH_MAX) + 2;
            ws.set_column_width(i as u16, width as f64)?;
        }
        open.row += 1;
        Ok(())
    }

    /// Ends the open section: its totals row (or, across several sheets, the last subtotal
    /// and a total over all of them).
    fn close_section(&mut self) -> Result<(), ExportError> {
        let Some(open) = self.open.as_ref() else { return Ok(()) };
        if open.subtotals.is_empty() {
            self.close_sheet(total_label(self.lang))?;
        } else {
            self.close_sheet(subtotal_label(self.lang))?;
            let open = self.open.as_mut().expect("open");
            open.subtotals.push((open.sheet_name.clone(), open.row - 1));
            let ws = self.workbook.worksheet_from_index(open.sheet)?;
            let r = open.row;
            ws.write_string_with_format(r, 0, total_label(self.lang), &self.formats.total_label)?;
            for (i, c) in open.section.columns.iter().enumerate().filter(|(_, c)| c.summed) {
                let name = column_number_to_name(i as u16);
                let terms: Vec<String> = open
                    .subtotals
                    .iter()
                    .map(|(sheet, row)| format!("{}!{name}{}", quote_sheet_name(sheet), row + 1))
                    .collect();
                let (value, format) = match c.kind {
                    Kind::Money => (Money::from_fen(open.section_sums[i]).to_string(), &self.formats.total_money),
                    _ => (open.section_sums[i].to_string(), &self.formats.total_integer),
                };
                let formula = Formula::new(format!("={}", terms.join("+"))).set_result(value);
                ws.write_formula_with_format(r, i as u16, formula, format)?;
            }
        }
        self.open = None;
        Ok(())
    }
}

impl<W: Write + Send> Sink for XlsxSink<W> {
    fn start(&mut self, heading: &Heading) -> Result<(), ExportError> {
        let title = heading.title.clone();
        let ws = self.workbook.worksheet_from_index(0)?;
        ws.write_string_with_format(0, 0, &title, &self.formats.title)?;
        self.summary_row = 2;
        for row in &heading.rows {
            self.summary_line(row, true)?;
        }
        self.summary_row += 1;
        self.workbook.set_properties(&DocProperties::new().set_title(&title).set_author("techmarket"));
        Ok(())
    }

    fn section(&mut self, section: &'static Section) -> Result<(), ExportError> {
        self.close_section()?;
        let (sheet, sheet_name) = self.add_section_sheet(section, 1)?;
        let n = section.columns.len();
        self.open = Some(OpenSection {
            section,
            sheet,
            sheet_name,
            row: 1,
            widths: vec![0; n],
            sheet_sums: vec![0; n],
            section_sums: vec![0; n],
            subtotals: Vec::new(),
        });
        Ok(())
    }

    fn row(&mut self, cells: &[Cell]) -> Result<(), ExportError> {
        let rows_per_sheet = self.rows_per_sheet;
        let open = self.open.as_ref().ok_or_else(|| ExportError::Inconsistent("a row outside a section".into()))?;
        open.section.check_row(cells)?;
        if open.row > rows_per_sheet {
            // The sheet is full: subtotal it and go on on the next one.
            self.close_sheet(subtotal_label(self.lang))?;
            let open = self.open.as_mut().expect("open");
            open.subtotals.push((open.sheet_name.clone(), open.row - 1));
            let (section, part) = (open.section, open.subtotals.len() + 1);
            let (sheet, sheet_name) = self.add_section_sheet(section, part)?;
            let open = self.open.as_mut().expect("open");
            open.sheet = sheet;
            open.sheet_name = sheet_name;
            open.row = 1;
            open.widths.iter_mut().for_each(|w| *w = 0);
            open.sheet_sums.iter_mut().for_each(|s| *s = 0);
        }
        let open = self.open.as_mut().expect("open");
        let ws = self.workbook.worksheet_from_index(open.sheet)?;
        for (i, (c, cell)) in open.section.columns.iter().zip(cells).enumerate() {
            Self::write_data_cell(ws, &self.formats, open.row, i as u16, c.kind, cell)?;
            open.widths[i] = open.widths[i].max(cell_width(cell));
            if c.summed {
                let v = cell.summand().unwrap_or(0);
                open.sheet_sums[i] += v;
                open.section_sums[i] += v;
            }
        }
        open.row += 1;
        Ok(())
    }

    fn finish(&mut self, summary: &[MetaRow]) -> Result<(), ExportError> {
        self.close_section()?;
        let (r, label) = (self.summary_row, self.lang.pick("合计", "Totals"));
        self.summary_row += 1;
        self.workbook.worksheet_from_index(0)?.write_string_with_format(r, 0, label, &self.formats.label)?;
        for row in summary {
            self.summary_line(row, false)?;
        }
        let widths = self.summary_widths;
        let ws = self.summary_sheet()?;
        ws.set_column_width(0, (widths[0] + 2) as f64)?;
        ws.set_column_width(1, (widths[1] + 2) as f64)?;
        let out = self.out.take().ok_or_else(|| ExportError::Inconsistent("the workbook was already saved".into()))?;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
        self.workbook.save_to_writer(&mut out)?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use calamine::{Data, Reader, Xlsx};

    use super::super::columns::SUBSIDY_COMPLETERS;
    use super::*;

    #[test]
    fn decimal_digits_are_the_length_of_the_number_written_out() {
        for n in [0, 1, 9, 10, 99, 100, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(decimal_digits(n), n.to_string().len(), "{n}");
        }
        for n in [0, -1, 42, -100_000, i64::MIN, i64::MAX] {
            assert_eq!(cell_width(&Cell::Integer(n)), n.to_string().len(), "{n}");
        }
    }

    fn completer_row(n: i64) -> Vec<Cell> {
        vec![
            Cell::text(format!("a{n}")),
            Cell::text("成果"),
            Cell::Integer(1),
            Cell::text("张三"),
            Cell::Empty,
            Cell::Percent(10_000),
            Cell::Money(Money::from_fen(n * 101)),
            Cell::Integer(1),
        ]
    }

    #[test]
    fn a_section_longer_than_a_sheet_continues_with_subtotals_and_a_total_over_them() {
        let mut bytes = Vec::new();
        let mut sink = XlsxSink::with_rows_per_sheet(&mut bytes, Lang::Zh, 3).unwrap();
        sink.start(&Heading { title: "标题".into(), rows: vec![MetaRow::new("年度", Cell::Integer(2024))] }).unwrap();
        sink.section(&SUBSIDY_COMPLETERS).unwrap();
        for n in 1..=7 {
            sink.row(&completer_row(n)).unwrap();
        }
        sink.finish(&[MetaRow::new("补贴额合计", Cell::Money(Money::from_fen(28 * 101)))]).unwrap();
        drop(sink);

        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), ["汇总", "完成人汇总", "完成人汇总 (2)", "完成人汇总 (3)"]);
        let first = book.worksheet_range("完成人汇总").unwrap();
        assert_eq!(first.height(), 5, "header, three rows, subtotal");
        assert_eq!(first.get((4, 0)), Some(&Data::String("小计".into())));
        assert_eq!(first.get((4, 6)), Some(&Data::Float(6.06)));
        let last = book.worksheet_range("完成人汇总 (3)").unwrap();
        assert_eq!(last.get((2, 0)), Some(&Data::String("小计".into())));
        assert_eq!(last.get((3, 0)), Some(&Data::String("合计".into())));
        assert_eq!(last.get((3, 6)), Some(&Data::Float(28.28)));
        assert_eq!(last.get((3, 7)), Some(&Data::Float(7.0)));
        let formulas = book.worksheet_formula("完成人汇总 (3)").unwrap();
        assert_eq!(formulas.get_value((2, 6)).map(String::as_str), Some("SUM(G2:G2)"));
        assert_eq!(
            formulas.get_value((3, 6)).map(String::as_str),
            Some("完成人汇总!G5+'完成人汇总 (2)'!G5+'完成人汇总 (3)'!G3")
        );
    }
}
