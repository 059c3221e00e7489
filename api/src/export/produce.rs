//! The statements as rows: read from the ledger page by page, two pages at once
//! (`ledger::store::stream`), in the order and with the figures of the statement builders
//! (`ledger::statement`), and sent to the writer thread. Totals are summed here from the very rows sent, and cross-checked where
//! two of them must agree (lines and completers, each breakdown and the total).

use std::future::Future;
use std::mem;
use std::pin::{Pin, pin};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use ledger::Money;
use ledger::personal::PersonalDataKey;
use ledger::policy::{CapPeriod, PolicyBook, PolicyKind, PolicyVersion};
use ledger::projection::{LineKind, Reason};
use ledger::service::Ledger;
use ledger::statement::AsOf;
use ledger::store::StoreError;
use ledger::store::stream::{ExportIncentiveLine, ExportSubsidyLine, LineCursor, StoredIdNumber};
use ledger::vocabulary::{ContractType, SellerKind, TechField};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::columns::*;
use super::{ExportError, ExportRequest, IdNumbers, Message, Progress, Statement};

/// Lines read per query.
const PAGE_LINES: u32 = 2_000;
/// Summary rows sent per message.
const BATCH_ROWS: usize = 2_000;
/// Pages read at once, on blocking threads of their own (SQLite) or connections of the pool
/// (PostgreSQL), while this task turns the page before into rows for the writer thread. On
/// SQLite one page's read, mostly the B-tree lookups of each line's achievement and
/// contract, took about as long as the rows and the writer together.
const READS_AHEAD: usize = 2;

/// What a producer read and wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub lines: u64,
    pub rows: u64,
}

pub(crate) struct Job<'a> {
    pub ledger: &'a Ledger,
    pub key: Option<&'a PersonalDataKey>,
    pub request: &'a ExportRequest,
    pub as_of: &'a AsOf,
    pub produced_at: DateTime<Utc>,
    pub tx: mpsc::Sender<Message>,
    pub progress: &'a dyn Progress,
}

/// The pages starting at `starts` (`Store::line_page_starts`), read `READS_AHEAD` at once and
/// yielded in order. Each page but the last must end exactly where the next one starts: the
/// lines up to the statement's position never change, so anything else is an inconsistency
/// (a line missing or read twice), not a figure to write.
fn pages_in_order<'a, L: 'a, F>(
    starts: Vec<LineCursor>,
    read: impl FnMut(LineCursor) -> F + 'a,
    end: fn(&L) -> LineCursor,
) -> impl Stream<Item = Result<Vec<L>, ExportError>> + 'a
where
    F: Future<Output = Result<Vec<L>, StoreError>> + 'a,
{
    let next_starts: Vec<Option<LineCursor>> = starts.iter().skip(1).copied().map(Some).chain([None]).collect();
    stream::iter(starts).map(read).buffered(READS_AHEAD).zip(stream::iter(next_starts)).map(move |(page, next)| {
        let page = page?;
        match (page.last().map(end), next) {
            (last, Some(next)) if last != Some(next) => Err(ExportError::Inconsistent(format!(
                "a page of lines ends at {last:?}, not where the next one starts ({next:?})"
            ))),
            _ => Ok(page),
        }
    })
}

/// What a statement of lines reads before its first page, at once (each is a read of its own
/// over the year's lines): how many lines there are, the policies they rest on, and where
/// each page starts.
async fn lines_ahead(
    store: &ledger::store::Store,
    kind: PolicyKind,
    year: i32,
    upto: ledger::event::Position,
) -> Result<(u64, Vec<PolicyVersion>, Vec<LineCursor>), StoreError> {
    let (total_lines, book, used, starts) = tokio::try_join!(
        store.count_lines(kind, year, upto),
        store.policy_book(upto),
        store.policy_versions_used(kind, year, upto),
        store.line_page_starts(kind, year, upto, PAGE_LINES),
    )?;
    Ok((total_lines, policies_of(&book, kind, year, used), starts))
}

/// China Standard Time (Asia/Shanghai has kept UTC+8 without daylight saving since 1991).
fn china_time(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset"))
}

/// `0.05` as `5`, `0.025` as `2.5` (percent, from the rate's decimal text).
fn percent(rate: &str) -> String {
    let (whole, fraction) = rate.split_once('.').unwrap_or((rate, ""));
    let fraction = format!("{fraction:0<2}");
    let (hundredths, rest) = fraction.split_at(2);
    let whole: u64 = whole.parse::<u64>().unwrap_or(0) * 100 + hundredths.parse::<u64>().unwrap_or(0);
    if rest.trim_end_matches('0').is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{}", rest.trim_end_matches('0'))
    }
}

/// The policy versions a statement rests on: those its lines used, and the one in force at
/// the end of the year (as `ledger::statement` chooses them).
fn policies_of(book: &PolicyBook, kind: PolicyKind, year: i32, mut used: Vec<u32>) -> Vec<PolicyVersion> {
    if let Some(year_end) = NaiveDate::from_ymd_opt(year, 12, 31) {
        used.extend(book.in_force(kind, year_end).map(|p| p.version));
    }
    used.sort_unstable();
    used.dedup();
    used.into_iter()
        .filter_map(|v| book.versions().iter().find(|p| p.kind == kind && p.version == v).cloned())
        .collect()
}

fn kind_label(kind: LineKind, lang: Lang) -> &'static str {
    match kind {
        LineKind::Payment => lang.pick("到账", "payment"),
        LineKind::Reversal => lang.pick("冲回", "reversal"),
        LineKind::Registration => lang.pick("认定登记", "registration"),
        LineKind::Amendment => lang.pick("合同变更", "amendment"),
    }
}

fn reasons_label(reasons: &[Reason], lang: Lang) -> Cell {
    if reasons.is_empty() {
        return Cell::Empty;
    }
    Cell::Text(match lang {
        Lang::Zh => reasons.iter().map(|r| r.label_zh()).collect::<Vec<_>>().join("；"),
        Lang::En => reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// An ID as the ledger stores it (lower-case, hyphenated), in one allocation of its exact
/// length: `to_string` went through `fmt` and grew its string (5 % of a SQLite export's time).
fn id_text(id: Uuid) -> Cell {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Cell::Text(id.hyphenated().encode_lower(&mut text).to_owned())
}

fn yes_no(value: bool, lang: Lang) -> Cell {
    Cell::text(if value { lang.pick("是", "yes") } else { lang.pick("否", "no") })
}

fn optional_text(value: Option<String>) -> Cell {
    value.map_or(Cell::Empty, Cell::Text)
}

fn optional_integer(value: Option<u32>) -> Cell {
    value.map_or(Cell::Empty, |v| Cell::Integer(i64::from(v)))
}

impl Job<'_> {
    fn lang(&self) -> Lang {
        self.request.lang
    }

    async fn send(&self, message: Message) -> Result<(), ExportError> {
        self.tx.send(message).await.map_err(|_| ExportError::Interrupted)
    }

    pub(crate) async fn run(self) -> Result<Counts, ExportError> {
        match self.request.statement {
            Statement::CompleterSubsidy => self.completer_subsidy().await,
            Statement::OperatingCenterIncentive => self.operating_center_incentive().await,
            Statement::Turnover => self.turnover().await,
        }
    }

    /// The heading every statement starts with.
    fn heading(&self, policies: &[PolicyVersion], extra: Vec<MetaRow>) -> Heading {
        let lang = self.lang();
        let mut rows = vec![
            MetaRow::new(lang.pick("报表", "Statement"), Cell::text(self.request.statement.title(lang))),
            MetaRow::new(lang.pick("年度", "Year"), Cell::Integer(i64::from(self.request.year))),
            MetaRow::new(lang.pick("截至账本位置", "As of ledger position"), Cell::Integer(self.as_of.position)),
            MetaRow::new(
                lang.pick("该位置的哈希链值", "Hash chain value at that position"),
                Cell::text(&self.as_of.hash),
            ),
            MetaRow::new(
                lang.pick("生成时间（北京时间）", "Produced at (China Standard Time)"),
                Cell::Timestamp(china_time(self.produced_at)),
            ),
        ];
        for p in policies {
            let period = match p.cap_period {
                CapPeriod::Lifetime => lang.pick("终身", "lifetime"),
                CapPeriod::CalendarYear => lang.pick("每年", "per calendar year"),
            };
            let from = p.effective_from.format("%Y-%m-%d");
            let until = p.effective_until.map(|d| d.format("%Y-%m-%d").to_string());
            let summary = match (lang, until) {
                (Lang::Zh, None) => {
                    format!("费率 {}%；上限 {} 元（{period}）；自 {from} 起施行", percent(&p.rate.to_string()), p.cap)
                }
                (Lang::Zh, Some(u)) => {
                    format!("费率 {}%；上限 {} 元（{period}）；{from} 至 {u} 施行", percent(&p.rate.to_string()), p.cap)
                }
                (Lang::En, None) => {
                    format!(
                        "rate {}%; cap {} CNY ({period}); in force from {from}",
                        percent(&p.rate.to_string()),
                        p.cap
                    )
                }
                (Lang::En, Some(u)) => format!(
                    "rate {}%; cap {} CNY ({period}); in force from {from} to {u}",
                    percent(&p.rate.to_string()),
                    p.cap
                ),
            };
            let label = match lang {
                Lang::Zh => format!("政策版本 {}", p.version),
                Lang::En => format!("Policy version {}", p.version),
            };
            rows.push(MetaRow::new(label, Cell::Text(summary)));
            rows.push(MetaRow::new(lang.pick("政策依据", "Policy source"), Cell::text(&p.source)));
        }
        rows.extend(extra);
        Heading { title: format!("{}{}", self.title_year(), self.request.statement.title(lang)), rows }
    }

    fn title_year(&self) -> String {
        match self.lang() {
            Lang::Zh => format!("{}年度", self.request.year),
            Lang::En => format!("{} ", self.request.year),
        }
    }

    fn id_number(&self, stored: &StoredIdNumber) -> Result<Cell, ExportError> {
        if self.request.id_numbers == IdNumbers::Full
            && let Some(sealed) = &stored.sealed
        {
            let key = self.key.ok_or(ExportError::NoPersonalDataKey)?;
            return Ok(Cell::text(key.open(sealed)?.expose()));
        }
        Ok(optional_text(stored.masked.clone()))
    }

    async fn completer_subsidy(self) -> Result<Counts, ExportError> {
        let store = self.ledger.store();
        let (year, upto, lang) = (self.request.year, self.as_of.position, self.lang());
        let full = self.request.id_numbers == IdNumbers::Full;
        let (total_lines, policies, starts) = lines_ahead(store, PolicyKind::CompleterSubsidy, year, upto).await?;
        let id_numbers = match self.request.id_numbers {
            IdNumbers::Masked => lang.pick("已脱敏", "masked"),
            IdNumbers::Full => lang.pick("完整（财务导出）", "in full (finance export)"),
        };
        let extra = vec![
            MetaRow::new(lang.pick("身份证号", "ID numbers"), Cell::text(id_numbers)),
            MetaRow::new(
                lang.pick("说明", "Note"),
                Cell::text(lang.pick(
                    "明细表每条补贴明细按完成人逐行列示；到账额、符合条件到账额与成果补贴额列于该条明细的第一行，其余行留空，故各金额列之和即为合计。日期按北京时间。",
                    "Lines lists each subsidy line once per completer; the line's received, eligible and achievement subsidy amounts are on its first row only, so every amount column adds up to its total. Dates are in China Standard Time.",
                )),
            ),
        ];
        self.send(Message::Start(self.heading(&policies, extra))).await?;

        self.send(Message::Section(&SUBSIDY_LINES)).await?;
        // On a SQLite file the summary's first row is asked for while the lines are read: the
        // database groups and sorts the year's parts before that row comes (a tenth of the
        // export's time, on one core, when asked for after the last line), and its rows then
        // wait in the stream's bounded buffer. Not on PostgreSQL: there the stream would hold
        // one of the pool's connections for the whole export, sqlx would report it as a slow
        // statement (it times a query until its stream is dropped), and six pairs by hand
        // showed no gain beyond the spread.
        let mut sums = store.completer_year_sums(year, upto, full).peekable();
        let first_sum = async {
            if store.streams_outside_the_pool() {
                Pin::new(&mut sums).peek().await;
            }
        };
        let lines = async {
            let (mut received, mut eligible, mut subsidy, mut parts) =
                (Money::ZERO, Money::ZERO, Money::ZERO, Money::ZERO);
            let mut counts = Counts::default();
            let read = |after| store.subsidy_lines_page(year, upto, after, PAGE_LINES, full);
            let mut pages = pin!(pages_in_order(starts, read, ExportSubsidyLine::cursor));
            while let Some(page) = pages.try_next().await? {
                let mut rows = Vec::with_capacity(page.len() * 3);
                for e in page {
                    let l = &e.line;
                    received += l.received;
                    eligible += l.eligible;
                    subsidy += l.subsidy;
                    counts.lines += 1;
                    let line_cells = [
                        Cell::Integer(l.position),
                        Cell::Integer(i64::from(l.seq)),
                        Cell::Date(l.date),
                        Cell::text(kind_label(l.kind, lang)),
                        id_text(l.achievement_id.0),
                        optional_text(e.achievement_title.clone()),
                        Cell::Text(l.contract_number.clone()),
                        id_text(l.payment_id.0),
                        l.reversal_id.map_or(Cell::Empty, |r| id_text(r.0)),
                    ];
                    let amounts = [Cell::Money(l.received), Cell::Money(l.eligible), Cell::Money(l.subsidy)];
                    let tail = [
                        optional_integer(l.policy_version),
                        yes_no(l.cap_reached, lang),
                        reasons_label(&l.reasons, lang),
                    ];
                    // Each row in a vector of its final length: extending `to_vec()` reallocated it.
                    let row_with_line = || {
                        let mut row = Vec::with_capacity(SUBSIDY_LINES.columns.len());
                        row.extend_from_slice(&line_cells);
                        row
                    };
                    if l.completers.is_empty() {
                        let mut row = row_with_line();
                        row.extend(amounts);
                        row.extend([Cell::Empty, Cell::Empty, Cell::Empty, Cell::Empty, Cell::Empty, Cell::Empty]);
                        row.extend(tail);
                        rows.push(row);
                        continue;
                    }
                    for (i, (c, id)) in l.completers.iter().zip(&e.id_numbers).enumerate() {
                        parts += c.amount;
                        let mut row = row_with_line();
                        if i == 0 {
                            row.extend(amounts.iter().cloned());
                        } else {
                            row.extend([Cell::Empty, Cell::Empty, Cell::Empty]);
                        }
                        row.extend([
                            Cell::Integer(i64::from(c.ordinal) + 1),
                            Cell::text(&c.name),
                            self.id_number(id)?,
                            Cell::Percent(c.share_basis_points),
                            Cell::Money(c.amount),
                            Cell::Money(c.total),
                        ]);
                        row.extend(tail.iter().cloned());
                        rows.push(row);
                    }
                }
                counts.rows += rows.len() as u64;
                self.progress.lines(counts.lines, total_lines.max(counts.lines));
                self.send(Message::Rows(rows)).await?;
            }
            if parts != subsidy {
                return Err(ExportError::Inconsistent(format!(
                    "completers' parts ({parts}) do not add up to the lines' subsidy ({subsidy})"
                )));
            }
            Ok::<_, ExportError>((received, eligible, subsidy, counts))
        };
        let (lines, ()) = tokio::join!(lines, first_sum);
        let (received, eligible, subsidy, mut counts) = lines?;

        self.send(Message::Section(&SUBSIDY_COMPLETERS)).await?;
        let (mut by_completer, mut completers) = (Money::ZERO, 0u64);
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(c) = sums.try_next().await? {
            by_completer += c.subsidy;
            completers += 1;
            batch.push(vec![
                id_text(c.achievement_id.0),
                optional_text(c.achievement_title),
                Cell::Integer(i64::from(c.ordinal) + 1),
                Cell::Text(c.name),
                self.id_number(&c.id_number)?,
                Cell::Percent(c.share_basis_points),
                Cell::Money(c.subsidy),
                Cell::Integer(i64::from(c.lines)),
            ]);
            if batch.len() >= BATCH_ROWS {
                self.send(Message::Rows(mem::take(&mut batch))).await?;
            }
        }
        drop(sums);
        self.send(Message::Rows(batch)).await?;
        if by_completer != subsidy {
            return Err(ExportError::Inconsistent(format!(
                "the per-completer summary ({by_completer}) does not add up to the lines' subsidy ({subsidy})"
            )));
        }
        counts.rows += completers;

        self.progress.finishing();
        let summary = vec![
            MetaRow::new(lang.pick("补贴明细条数", "Subsidy lines"), Cell::Integer(counts.lines as i64)),
            MetaRow::new(lang.pick("到账额合计（元）", "Received total (CNY)"), Cell::Money(received)),
            MetaRow::new(lang.pick("符合条件到账额合计（元）", "Eligible received total (CNY)"), Cell::Money(eligible)),
            MetaRow::new(lang.pick("补贴额合计（元）", "Subsidy total (CNY)"), Cell::Money(subsidy)),
            MetaRow::new(lang.pick("完成人汇总行数", "Completer summary rows"), Cell::Integer(completers as i64)),
        ];
        self.send(Message::Finish(summary)).await?;
        Ok(counts)
    }

    async fn operating_center_incentive(self) -> Result<Counts, ExportError> {
        let store = self.ledger.store();
        let (year, upto, lang) = (self.request.year, self.as_of.position, self.lang());
        let (total_lines, policies, starts) =
            lines_ahead(store, PolicyKind::OperatingCenterIncentive, year, upto).await?;
        let extra = vec![MetaRow::new(
            lang.pick("说明", "Note"),
            Cell::text(lang.pick(
                "明细为日期在本年度的激励明细（冲回按冲回日期列示，计入其所冲减的年度）；运营中心汇总为计入本年度的运营金额与激励额（含以后日期的冲回）。日期按北京时间。",
                "Lines are the incentive lines dated in the year (a reversal is dated by its reversal and counts in the year it reduces); Centers are each center's operating amount and incentive counting in the year (reversals dated later included). Dates are in China Standard Time.",
            )),
        )];
        self.send(Message::Start(self.heading(&policies, extra))).await?;

        self.send(Message::Section(&INCENTIVE_LINES)).await?;
        let (mut received, mut operating, mut incentive) = (Money::ZERO, Money::ZERO, Money::ZERO);
        let mut counts = Counts::default();
        let read = |after| store.incentive_lines_page(year, upto, after, PAGE_LINES);
        let mut pages = pin!(pages_in_order(starts, read, ExportIncentiveLine::cursor));
        while let Some(page) = pages.try_next().await? {
            let mut rows = Vec::with_capacity(page.len());
            for e in page {
                let l = e.line;
                received += l.received;
                operating += l.operating;
                incentive += l.incentive;
                counts.lines += 1;
                rows.push(vec![
                    Cell::Integer(l.position),
                    Cell::Integer(i64::from(l.seq)),
                    Cell::Date(l.date),
                    Cell::text(kind_label(l.kind, lang)),
                    id_text(l.center_id.0),
                    optional_text(e.center_name),
                    Cell::Integer(i64::from(l.incentive_year)),
                    Cell::Text(l.contract_number),
                    id_text(l.payment_id.0),
                    l.reversal_id.map_or(Cell::Empty, |r| id_text(r.0)),
                    Cell::Money(l.received),
                    Cell::Money(l.operating),
                    Cell::Money(l.incentive),
                    Cell::Money(l.operating_total),
                    Cell::Money(l.incentive_total),
                    optional_integer(l.policy_version),
                    yes_no(l.cap_reached, lang),
                    reasons_label(&l.reasons, lang),
                ]);
            }
            counts.rows += rows.len() as u64;
            self.progress.lines(counts.lines, total_lines.max(counts.lines));
            self.send(Message::Rows(rows)).await?;
        }

        self.send(Message::Section(&INCENTIVE_CENTERS)).await?;
        let centers = store.center_year_sums(year, upto).await?;
        let (mut year_operating, mut year_incentive) = (Money::ZERO, Money::ZERO);
        let rows: Vec<Vec<Cell>> = centers
            .iter()
            .map(|c| {
                year_operating += c.operating_amount;
                year_incentive += c.incentive;
                vec![
                    id_text(c.center_id.0),
                    optional_text(c.center_name.clone()),
                    Cell::Integer(i64::from(c.year)),
                    Cell::Money(c.operating_amount),
                    Cell::Money(c.incentive),
                    yes_no(c.cap_reached, lang),
                ]
            })
            .collect();
        counts.rows += rows.len() as u64;
        self.send(Message::Rows(rows)).await?;

        self.progress.finishing();
        let summary = vec![
            MetaRow::new(lang.pick("激励明细条数", "Incentive lines"), Cell::Integer(counts.lines as i64)),
            MetaRow::new(lang.pick("到账额合计（元）", "Received total (CNY)"), Cell::Money(received)),
            MetaRow::new(
                lang.pick("运营金额变动合计（元）", "Operating amount change total (CNY)"),
                Cell::Money(operating),
            ),
            MetaRow::new(lang.pick("激励额合计（元）", "Incentive total (CNY)"), Cell::Money(incentive)),
            MetaRow::new(lang.pick("运营中心数", "Centers"), Cell::Integer(centers.len() as i64)),
            MetaRow::new(
                lang.pick("本年度运营金额合计（元）", "Operating amount of the year (CNY)"),
                Cell::Money(year_operating),
            ),
            MetaRow::new(
                lang.pick("本年度激励额合计（元）", "Incentive of the year (CNY)"),
                Cell::Money(year_incentive),
            ),
        ];
        self.send(Message::Finish(summary)).await?;
        Ok(counts)
    }

    async fn turnover(self) -> Result<Counts, ExportError> {
        let store = self.ledger.store();
        let (year, upto, lang) = (self.request.year, self.as_of.position, self.lang());
        let sums = store.turnover_sums(year, upto).await?;
        let extra = vec![
            MetaRow::new(
                lang.pick("统计口径", "Definition"),
                Cell::text(lang.pick(
                    "合同数、合同成交额（含变更）与技术交易额（认定登记核定）按认定登记日期计入；到账额按结算日期计入、按冲回日期冲减；日期按北京时间。",
                    "Contracts, contract amount (as amended) and technology transaction amount (as certified at registration) count by registration date; received amounts by settlement date, less reversals by reversal date; dates in China Standard Time.",
                )),
            ),
            MetaRow::new(
                lang.pick("指标依据", "Indicator sources"),
                Cell::text(
                    "渝高新发〔2021〕28号《重庆高新区“十四五”科技创新发展规划》指标体系表第9项“技术合同交易额”；\
                     渝府办发〔2016〕25号《重庆市深入实施创新驱动发展战略工作方案》“年度技术交易合同额”",
                ),
            ),
        ];
        self.send(Message::Start(self.heading(&[], extra))).await?;
        let total = sums.iter().find(|s| s.dimension == "total").map(|s| s.figures.clone()).unwrap_or_default();
        let mut counts = Counts { lines: sums.len() as u64, rows: 0 };
        for (dimension, section) in &TURNOVER_SECTIONS {
            self.send(Message::Section(section)).await?;
            let mut check = ledger::projection::TurnoverFigures::default();
            let rows: Vec<Vec<Cell>> = sums
                .iter()
                .filter(|s| s.dimension == *dimension)
                .map(|s| {
                    let f = &s.figures;
                    check.contracts += f.contracts;
                    check.contract_amount += f.contract_amount;
                    check.tech_transaction_amount += f.tech_transaction_amount;
                    check.received += f.received;
                    vec![
                        Cell::text(&s.key),
                        Cell::text(category(dimension, &s.key, lang)),
                        Cell::Integer(f.contracts),
                        Cell::Money(f.contract_amount),
                        Cell::Money(f.tech_transaction_amount),
                        Cell::Money(f.received),
                    ]
                })
                .collect();
            if check != total {
                return Err(ExportError::Inconsistent(format!(
                    "the breakdown by {dimension} does not add up to the total"
                )));
            }
            counts.rows += rows.len() as u64;
            self.send(Message::Rows(rows)).await?;
        }
        self.progress.finishing();
        let summary = vec![
            MetaRow::new(lang.pick("合同数", "Contracts"), Cell::Integer(total.contracts)),
            MetaRow::new(lang.pick("合同成交额（元）", "Contract amount (CNY)"), Cell::Money(total.contract_amount)),
            MetaRow::new(
                lang.pick("技术交易额（元）", "Technology transaction amount (CNY)"),
                Cell::Money(total.tech_transaction_amount),
            ),
            MetaRow::new(lang.pick("到账额（元）", "Received (CNY)"), Cell::Money(total.received)),
        ];
        self.send(Message::Finish(summary)).await?;
        Ok(counts)
    }
}

/// The name of a turnover key: the Chinese term of a code, a month as `2024年3月`; in English
/// the code itself.
fn category(dimension: &str, key: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return key.to_owned();
    }
    let label = match dimension {
        "contract_type" => ContractType::parse(key).map(|c| c.label_zh()),
        "seller_kind" => SellerKind::parse(key).map(|s| s.label_zh()),
        "field" if key == "unclassified" => Some("未分类"),
        "field" => TechField::parse(key).map(|f| f.label_zh()),
        "month" => {
            return key
                .split_once('-')
                .and_then(|(y, m)| Some(format!("{y}年{}月", m.parse::<u32>().ok()?)))
                .unwrap_or_else(|| key.to_owned());
        }
        _ => None,
    };
    label.map_or_else(|| key.to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64, seq: u32) -> LineCursor {
        LineCursor { position, seq }
    }

    /// Reads pages from `book` (a page per start), the first one slowest, and collects them.
    async fn read_all(starts: Vec<LineCursor>, book: Vec<Vec<LineCursor>>) -> Result<Vec<LineCursor>, ExportError> {
        let first = starts[0];
        let read = |after: LineCursor| {
            let page = book[starts.iter().position(|s| *s == after).expect("a start")].clone();
            async move {
                if after == first {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Ok::<_, StoreError>(page)
            }
        };
        let pages = pages_in_order(starts.clone(), read, |c: &LineCursor| *c);
        Ok(pages.try_collect::<Vec<_>>().await?.concat())
    }

    #[tokio::test]
    async fn pages_read_at_once_come_out_in_order() {
        let starts = vec![LineCursor::START, at(2, 1), at(5, 0)];
        let book = vec![vec![at(1, 0), at(2, 1)], vec![at(3, 0), at(5, 0)], vec![at(6, 0)]];
        let lines = read_all(starts, book).await.expect("consistent pages");
        assert_eq!(lines, [at(1, 0), at(2, 1), at(3, 0), at(5, 0), at(6, 0)]);
    }

    #[tokio::test]
    async fn a_page_that_does_not_end_where_the_next_starts_stops_the_export() {
        let starts = vec![LineCursor::START, at(2, 1), at(5, 0)];
        // The first page stops short of (2, 1): a line would be missing.
        let short = vec![vec![at(1, 0)], vec![at(3, 0), at(5, 0)], vec![at(6, 0)]];
        assert!(matches!(read_all(starts.clone(), short).await, Err(ExportError::Inconsistent(_))));
        // The second page runs past (5, 0): a line would be written twice.
        let long = vec![vec![at(1, 0), at(2, 1)], vec![at(3, 0), at(5, 0), at(6, 0)], vec![at(6, 0)]];
        assert!(matches!(read_all(starts.clone(), long).await, Err(ExportError::Inconsistent(_))));
        // An empty page before the last.
        let empty = vec![vec![at(1, 0), at(2, 1)], vec![], vec![at(6, 0)]];
        assert!(matches!(read_all(starts, empty).await, Err(ExportError::Inconsistent(_))));
    }

    #[test]
    fn rates_print_as_percent() {
        assert_eq!(percent("0.05"), "5");
        assert_eq!(percent("0.02"), "2");
        assert_eq!(percent("0.025"), "2.5");
        assert_eq!(percent("0.1234"), "12.34");
        assert_eq!(percent("1"), "100");
    }

    #[test]
    fn turnover_keys_have_chinese_names() {
        assert_eq!(category("contract_type", "transfer", Lang::Zh), "技术转让");
        assert_eq!(category("month", "2024-03", Lang::Zh), "2024年3月");
        assert_eq!(category("field", "unclassified", Lang::Zh), "未分类");
        assert_eq!(category("district", "500106", Lang::Zh), "500106");
        assert_eq!(category("contract_type", "transfer", Lang::En), "transfer");
    }
}
