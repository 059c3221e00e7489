//! Exports for tests: downloading them, and reading them back with readers independent of
//! the writers (the `csv` crate, `calamine` for workbooks) into one shape, so a CSV file and
//! a workbook of the same statement can be compared with each other and with GraphQL.
//!
//! Every cell is read back as the text the CSV file holds: amounts as `1234.56`, shares as
//! `33.33`, dates as `2024-04-01`, whole numbers as digits. A workbook's numbers are turned
//! into that text by their column: a header ending in `（元）` / `(CNY)` is money, one ending
//! in `（%）` / `(%)` a share, anything else a whole number.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use crate::TestApp;

/// An HTTP answer to an export request.
#[derive(Debug)]
pub struct Download {
    pub status: u16,
    pub content_type: String,
    pub content_disposition: String,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Download {
    /// The body as JSON (error answers).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.bytes)))
    }
}

impl TestApp {
    /// GET `/exports/{path}` (e.g. `completer-subsidy/2024.xlsx?lang=en`) with a token, if any.
    pub async fn download(&self, token: Option<&str>, path: &str) -> Download {
        let mut request = self.client.get(format!("{}/exports/{path}", self.address));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("the server answers");
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        let (content_type, content_disposition) =
            (header(reqwest::header::CONTENT_TYPE), header(reqwest::header::CONTENT_DISPOSITION));
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.bytes().await.expect("the whole body").to_vec();
        Download { status, content_type, content_disposition, headers, bytes }
    }
}

/// One section read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The totals row (first cell: `合计` / `Total`).
    pub totals: Vec<String>,
}

impl Table {
    #[track_caller]
    pub fn column(&self, header: &str) -> usize {
        self.headers
            .iter()
            .position(|h| h == header)
            .unwrap_or_else(|| panic!("no column `{header}` in {:?}", self.headers))
    }

    /// The cells of one column.
    #[track_caller]
    pub fn values(&self, header: &str) -> Vec<&str> {
        let c = self.column(header);
        self.rows.iter().map(|r| r[c].as_str()).collect()
    }

    /// The sum of a money column, in fen.
    #[track_caller]
    pub fn sum_fen(&self, header: &str) -> i64 {
        self.values(header).into_iter().map(fen).sum()
    }

    /// The totals row's cell of a column.
    #[track_caller]
    pub fn total(&self, header: &str) -> &str {
        &self.totals[self.column(header)]
    }
}

/// A statement file read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementFile {
    pub title: String,
    /// What the file says it is: (label, values).
    pub heading: Vec<(String, Vec<String>)>,
    pub sections: Vec<Table>,
    /// The totals block: (label, values).
    pub summary: Vec<(String, Vec<String>)>,
}

fn lookup<'a>(rows: &'a [(String, Vec<String>)], label: &str) -> Option<&'a str> {
    rows.iter().find(|(l, _)| l == label).and_then(|(_, v)| v.first()).map(String::as_str)
}

impl StatementFile {
    #[track_caller]
    pub fn heading(&self, label: &str) -> &str {
        lookup(&self.heading, label).unwrap_or_else(|| panic!("no heading `{label}` in {:?}", self.heading))
    }

    /// Every heading value of rows whose label starts with `prefix`.
    pub fn headings_starting(&self, prefix: &str) -> Vec<&str> {
        self.heading
            .iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .filter_map(|(_, v)| v.first())
            .map(String::as_str)
            .collect()
    }

    #[track_caller]
    pub fn summary(&self, label: &str) -> &str {
        lookup(&self.summary, label).unwrap_or_else(|| panic!("no summary `{label}` in {:?}", self.summary))
    }

    #[track_caller]
    pub fn section(&self, name: &str) -> &Table {
        self.sections.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!("no section `{name}` in {:?}", self.sections.iter().map(|s| &s.name).collect::<Vec<_>>())
        })
    }

    /// The same file without what differs between two productions of it (the time).
    pub fn without_production_time(mut self) -> StatementFile {
        self.heading.retain(|(l, _)| !l.starts_with("生成时间") && !l.starts_with("Produced at"));
        self
    }
}

/// `1234.56` / `-0.05` / `` as fen.
#[track_caller]
pub fn fen(text: &str) -> i64 {
    if text.is_empty() {
        return 0;
    }
    let (sign, digits) = text.strip_prefix('-').map_or((1, text), |d| (-1, d));
    let (yuan, cents) = digits.split_once('.').unwrap_or_else(|| panic!("`{text}` is not an amount with two decimals"));
    assert_eq!(cents.len(), 2, "`{text}` has two decimals");
    sign * (yuan.parse::<i64>().expect("yuan") * 100 + cents.parse::<i64>().expect("fen"))
}

/// Labels of the statement's totals row, both languages.
fn is_total(label: &str) -> bool {
    label == "合计" || label == "Total"
}

/// Reads a CSV export: BOM, title, heading lines, then each section (title, header, rows,
/// totals), then the summary block.
#[track_caller]
pub fn read_csv(bytes: &[u8]) -> StatementFile {
    let body = bytes.strip_prefix("\u{FEFF}".as_bytes()).expect("the CSV starts with a UTF-8 byte-order mark");
    let records: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body)
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect::<Vec<String>>())
        .filter(|r| r.iter().any(|f| !f.is_empty()))
        .collect();
    let mut it = records.into_iter().peekable();
    let title = it.next().expect("a title line")[0].clone();
    let single = |r: &Vec<String>| r.len() == 1;
    let mut heading = Vec::new();
    while let Some(r) = it.next_if(|r| !single(r)) {
        heading.push((r[0].clone(), r[1..].to_vec()));
    }
    let mut sections = Vec::new();
    let mut summary = Vec::new();
    while let Some(block) = it.next() {
        assert!(single(&block), "a block starts with its title line: {block:?}");
        let name = block[0].clone();
        if name == "汇总" || name == "Summary" {
            summary.extend(it.by_ref().map(|r| (r[0].clone(), r[1..].to_vec())));
            break;
        }
        let headers = it.next().expect("a header line");
        let mut rows = Vec::new();
        let totals = loop {
            let r = it.next().unwrap_or_else(|| panic!("section `{name}` has a totals line"));
            assert_eq!(r.len(), headers.len(), "section `{name}`: every line has every column: {r:?}");
            if is_total(&r[0]) {
                break r;
            }
            rows.push(r);
        };
        sections.push(Table { name, headers, rows, totals });
    }
    StatementFile { title, heading, sections, summary }
}

/// The text of a workbook cell, as the CSV file would hold it.
fn text(cell: &Data, header: &str) -> String {
    let money = header.ends_with("（元）") || header.ends_with("(CNY)");
    let share = header.ends_with("（%）") || header.ends_with("(%)");
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(x) if money => {
            let fen = (x * 100.0).round() as i64;
            // The writer stores fen / 100 as the nearest double; anything else is not to the fen.
            assert_eq!(fen as f64 / 100.0, *x, "{header}: {x} is an amount to the fen");
            let sign = if fen < 0 { "-" } else { "" };
            format!("{sign}{}.{:02}", fen.unsigned_abs() / 100, fen.unsigned_abs() % 100)
        }
        Data::Float(x) if share => format!("{x:.2}"),
        Data::Float(x) => {
            assert_eq!(x.fract(), 0.0, "{header}: {x} is a whole number");
            format!("{}", *x as i64)
        }
        Data::Int(n) => n.to_string(),
        Data::DateTime(d) => {
            let at = d.as_datetime().expect("a date");
            if at.time() == chrono::NaiveTime::MIN {
                at.format("%Y-%m-%d").to_string()
            } else {
                at.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        }
        other => panic!("{header}: unexpected cell {other:?}"),
    }
}

/// Reads an XLSX export: the summary sheet (title, heading, then the totals block after its
/// `合计` / `Totals` line), then one sheet per section (header, rows, totals row).
#[track_caller]
pub fn read_xlsx(bytes: &[u8]) -> StatementFile {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("a workbook");
    let names = book.sheet_names();
    let summary_sheet = book.worksheet_range(&names[0]).expect("the summary sheet");
    assert!(names[0] == "汇总" || names[0] == "Summary", "the summary comes first: {names:?}");
    let mut lines = summary_sheet.rows().map(|r| {
        let label = text(&r[0], "");
        let values: Vec<String> =
            r[1..].iter().map(|c| text(c, &label)).collect::<Vec<_>>().into_iter().filter(|v| !v.is_empty()).collect();
        (label, values)
    });
    let title = lines.next().expect("a title").0;
    let mut heading = Vec::new();
    let mut summary = Vec::new();
    let mut in_totals = false;
    for (label, values) in lines.filter(|(l, _)| !l.is_empty()) {
        if label == "合计" || label == "Totals" {
            in_totals = true;
        } else if in_totals {
            summary.push((label, values));
        } else {
            heading.push((label, values));
        }
    }
    let mut sections = Vec::new();
    for name in &names[1..] {
        let range = book.worksheet_range(name).expect("a section sheet");
        let mut rows = range.rows();
        let headers: Vec<String> = rows.next().expect("a header row").iter().map(|c| text(c, "")).collect();
        let mut all: Vec<Vec<String>> =
            rows.map(|r| r.iter().zip(&headers).map(|(c, h)| text(c, h)).collect()).collect();
        let totals = all.pop().expect("a totals row");
        assert!(is_total(&totals[0]), "sheet `{name}` ends with its totals row: {totals:?}");
        sections.push(Table { name: name.clone(), headers, rows: all, totals });
    }
    StatementFile { title, heading, sections, summary }
}

/// The formulas of a sheet's last row (its totals), by column.
pub fn totals_formulas(bytes: &[u8], sheet: &str) -> Vec<String> {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("a workbook");
    let values = book.worksheet_range(sheet).expect("the sheet");
    let last = values.end().expect("a non-empty sheet").0;
    let formulas = book.worksheet_formula(sheet).expect("formulas");
    (0..values.width() as u32).map(|c| formulas.get_value((last, c)).cloned().unwrap_or_default()).collect()
}
