//! What the exports print: the sections (a sheet in a workbook, a block in a CSV file), their
//! columns with Chinese and English headers, and the cells. The writers (`csv.rs`,
//! `xlsx.rs`) know nothing of statements, and the producers (`produce.rs`) nothing of formats.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};
use ledger::Money;

/// The language of headers and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// Chinese (the default: the statements' language).
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "zh" | "zh-CN" | "zh-Hans" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// `zh` or `en`.
    pub fn pick(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// How a column's cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Whole numbers (positions, counts, versions, years).
    Integer,
    /// Yuan with two decimals (kept in fen until written).
    Money,
    Date,
    /// A share in percent with two decimals (`33.33`).
    Percent,
}

/// A column: its headers, its kind, and whether its totals row sums it.
#[derive(Debug)]
pub struct Column {
    pub zh: &'static str,
    pub en: &'static str,
    pub kind: Kind,
    pub summed: bool,
}

impl Column {
    pub fn header(&self, lang: Lang) -> &'static str {
        lang.pick(self.zh, self.en)
    }
}

const fn col(zh: &'static str, en: &'static str, kind: Kind) -> Column {
    Column { zh, en, kind, summed: false }
}

const fn sum(zh: &'static str, en: &'static str, kind: Kind) -> Column {
    Column { zh, en, kind, summed: true }
}

/// A table: a worksheet of its own in a workbook (with a totals row), a titled block in a
/// CSV file.
#[derive(Debug)]
pub struct Section {
    pub zh: &'static str,
    pub en: &'static str,
    pub columns: &'static [Column],
}

impl Section {
    pub fn title(&self, lang: Lang) -> &'static str {
        lang.pick(self.zh, self.en)
    }

    /// A row has one cell per column; anything else is a bug in the export, not in the data.
    pub fn check_row(&self, cells: &[Cell]) -> Result<(), super::ExportError> {
        if cells.len() != self.columns.len() {
            return Err(super::ExportError::Inconsistent(format!(
                "a row of {} cells in section `{}` of {} columns",
                cells.len(),
                self.en,
                self.columns.len()
            )));
        }
        Ok(())
    }
}

/// A cell. Money stays in fen until a writer formats it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Integer(i64),
    Money(Money),
    Date(NaiveDate),
    /// Basis points, written as a percent with two decimals.
    Percent(u32),
    /// An instant, written in its offset's local time.
    Timestamp(DateTime<FixedOffset>),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// The cell as a CSV field (and as the text a reader compares).
    pub fn to_field(&self) -> String {
        let mut field = String::new();
        self.write_field(&mut field);
        field
    }

    /// Appends [`to_field`](Self::to_field)'s text to `out`: the CSV writer formats every
    /// cell of a million-line export into one buffer instead of a new string each.
    pub fn write_field(&self, out: &mut String) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = match self {
            Cell::Empty => Ok(()),
            Cell::Text(s) => out.write_str(s),
            Cell::Integer(n) => write!(out, "{n}"),
            Cell::Money(m) => write!(out, "{m}"),
            // The format chrono's `%Y-%m-%d` prints for these years, without parsing that
            // pattern again for every line's date.
            Cell::Date(d) if (0..=9999).contains(&d.year()) => {
                write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
            }
            Cell::Date(d) => write!(out, "{}", d.format("%Y-%m-%d")),
            Cell::Percent(bp) => write!(out, "{}.{:02}", bp / 100, bp % 100),
            Cell::Timestamp(t) => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S")),
        };
    }

    /// The value a totals row adds up: fen for money, the number for integers.
    pub fn summand(&self) -> Option<i64> {
        match self {
            Cell::Money(m) => Some(m.fen()),
            Cell::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

/// A labelled line of a statement's heading or summary: `label, value, value...`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaRow {
    pub label: String,
    pub values: Vec<Cell>,
}

impl MetaRow {
    pub fn new(label: impl Into<String>, value: Cell) -> MetaRow {
        MetaRow { label: label.into(), values: vec![value] }
    }
}

/// What a file starts with: its title and the rows that say what it is (year, policy,
/// ledger position and hash, production time...).
#[derive(Debug, Clone, PartialEq)]
pub struct Heading {
    pub title: String,
    pub rows: Vec<MetaRow>,
}

/// The name of the summary sheet / the CSV block of totals.
pub fn summary_title(lang: Lang) -> &'static str {
    lang.pick("汇总", "Summary")
}

/// The label of a totals row.
pub fn total_label(lang: Lang) -> &'static str {
    lang.pick("合计", "Total")
}

/// The label of a sheet's totals row when a section spans several sheets.
pub fn subtotal_label(lang: Lang) -> &'static str {
    lang.pick("小计", "Subtotal")
}

// The completer subsidy: one row per completer per line (a line without completer parts —
// one that earned nothing — has one row). The line's own amounts are on its first row only,
// so every money column adds up to its total.
pub static SUBSIDY_LINES: Section = Section {
    zh: "明细",
    en: "Lines",
    columns: &[
        col("账本位置", "Position", Kind::Integer),
        col("序号", "Seq", Kind::Integer),
        col("日期", "Date", Kind::Date),
        col("类型", "Kind", Kind::Text),
        col("成果编号", "Achievement ID", Kind::Text),
        col("成果名称", "Achievement", Kind::Text),
        col("合同编号", "Contract number", Kind::Text),
        col("付款编号", "Payment ID", Kind::Text),
        col("冲回编号", "Reversal ID", Kind::Text),
        sum("到账额（元）", "Received (CNY)", Kind::Money),
        sum("符合条件到账额（元）", "Eligible received (CNY)", Kind::Money),
        sum("成果补贴额（元）", "Achievement subsidy (CNY)", Kind::Money),
        col("完成人排序", "Completer no.", Kind::Integer),
        col("完成人", "Completer", Kind::Text),
        col("身份证号", "ID number", Kind::Text),
        col("份额（%）", "Share (%)", Kind::Percent),
        sum("完成人补贴额（元）", "Completer subsidy (CNY)", Kind::Money),
        col("完成人累计补贴额（元）", "Completer subsidy to date (CNY)", Kind::Money),
        col("政策版本", "Policy version", Kind::Integer),
        col("已达上限", "Cap reached", Kind::Text),
        col("未获补贴原因", "Reasons", Kind::Text),
    ],
};

pub static SUBSIDY_COMPLETERS: Section = Section {
    zh: "完成人汇总",
    en: "Completers",
    columns: &[
        col("成果编号", "Achievement ID", Kind::Text),
        col("成果名称", "Achievement", Kind::Text),
        col("完成人排序", "Completer no.", Kind::Integer),
        col("完成人", "Completer", Kind::Text),
        col("身份证号", "ID number", Kind::Text),
        col("份额（%）", "Share (%)", Kind::Percent),
        sum("补贴额（元）", "Subsidy (CNY)", Kind::Money),
        sum("明细条数", "Lines", Kind::Integer),
    ],
};

pub static INCENTIVE_LINES: Section = Section {
    zh: "明细",
    en: "Lines",
    columns: &[
        col("账本位置", "Position", Kind::Integer),
        col("序号", "Seq", Kind::Integer),
        col("日期", "Date", Kind::Date),
        col("类型", "Kind", Kind::Text),
        col("运营中心编号", "Center ID", Kind::Text),
        col("运营中心", "Center", Kind::Text),
        col("计入年度", "Incentive year", Kind::Integer),
        col("合同编号", "Contract number", Kind::Text),
        col("付款编号", "Payment ID", Kind::Text),
        col("冲回编号", "Reversal ID", Kind::Text),
        sum("到账额（元）", "Received (CNY)", Kind::Money),
        sum("运营金额变动（元）", "Operating amount change (CNY)", Kind::Money),
        sum("激励额（元）", "Incentive (CNY)", Kind::Money),
        col("年度运营金额累计（元）", "Operating amount of the year to date (CNY)", Kind::Money),
        col("年度激励额累计（元）", "Incentive of the year to date (CNY)", Kind::Money),
        col("政策版本", "Policy version", Kind::Integer),
        col("已达上限", "Cap reached", Kind::Text),
        col("未获激励原因", "Reasons", Kind::Text),
    ],
};

pub static INCENTIVE_CENTERS: Section = Section {
    zh: "运营中心汇总",
    en: "Centers",
    columns: &[
        col("运营中心编号", "Center ID", Kind::Text),
        col("运营中心", "Center", Kind::Text),
        col("年度", "Year", Kind::Integer),
        sum("年度运营金额（元）", "Operating amount (CNY)", Kind::Money),
        sum("年度激励额（元）", "Incentive (CNY)", Kind::Money),
        col("已达上限", "Cap reached", Kind::Text),
    ],
};

const TURNOVER_COLUMNS: &[Column] = &[
    col("代码", "Code", Kind::Text),
    col("类别", "Category", Kind::Text),
    sum("合同数", "Contracts", Kind::Integer),
    sum("合同成交额（元）", "Contract amount (CNY)", Kind::Money),
    sum("技术交易额（元）", "Technology transaction amount (CNY)", Kind::Money),
    sum("到账额（元）", "Received (CNY)", Kind::Money),
];

/// The turnover breakdowns, one section each, keyed by the dimension the ledger uses.
pub static TURNOVER_SECTIONS: [(&str, Section); 5] = [
    ("contract_type", Section { zh: "按合同类型", en: "By contract type", columns: TURNOVER_COLUMNS }),
    ("seller_kind", Section { zh: "按卖方类型", en: "By seller kind", columns: TURNOVER_COLUMNS }),
    ("field", Section { zh: "按技术领域", en: "By field", columns: TURNOVER_COLUMNS }),
    ("district", Section { zh: "按区县", en: "By district", columns: TURNOVER_COLUMNS }),
    ("month", Section { zh: "按月份", en: "By month", columns: TURNOVER_COLUMNS }),
];

/// Display width of a text in a spreadsheet column (CJK and full-width characters count two).
pub fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_has_distinct_headers_in_both_languages_and_valid_sheet_names() {
        let sections = [&SUBSIDY_LINES, &SUBSIDY_COMPLETERS, &INCENTIVE_LINES, &INCENTIVE_CENTERS]
            .into_iter()
            .chain(TURNOVER_SECTIONS.iter().map(|(_, s)| s));
        for s in sections {
            for lang in [Lang::Zh, Lang::En] {
                let headers: Vec<&str> = s.columns.iter().map(|c| c.header(lang)).collect();
                let mut unique = headers.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), headers.len(), "{}: {headers:?}", s.title(lang));
                let name = s.title(lang);
                assert!(name.chars().count() <= 25, "room for a part suffix: {name}");
                assert!(!name.contains(['[', ']', ':', '*', '?', '/', '\\']), "{name}");
            }
        }
    }

    #[test]
    fn cells_print_as_their_csv_fields() {
        assert_eq!(Cell::Money(Money::from_fen(-5)).to_field(), "-0.05");
        assert_eq!(Cell::Percent(3333).to_field(), "33.33");
        assert_eq!(Cell::Percent(10_000).to_field(), "100.00");
        assert_eq!(Cell::Date(NaiveDate::from_ymd_opt(2024, 4, 1).unwrap()).to_field(), "2024-04-01");
        assert_eq!(display_width("合计 A"), 6);
    }
}
