//! A rebuild's plain INSERTs on PostgreSQL as `COPY ... FROM STDIN`: rows go to the server
//! as text lines, which it parses column by column, instead of multi-row statements whose
//! thousands of parameters it parses, plans and binds.
//!
//! The rows of several pages are held and sent in one `COPY` per table: sqlx 0.9.0 leaves
//! Nagle's algorithm on for TCP (sqlx issue 4335, fixed after that release), so the short
//! `CopyDone` message that ends each `COPY` waits for the server's delayed acknowledgement of
//! the data before it. Over TCP a `COPY` per table and page made the benchmark's rebuild
//! slower than the statements (47 s against 32 s), over a Unix socket faster (18-19 s
//! against 27-29 s).
//!
//! The text format (PostgreSQL manual, "COPY", "Text Format"): one line per row, columns
//! separated by a tab, `\N` for NULL; a backslash, newline, carriage return or tab inside a
//! value is written `\\`, `\n`, `\r`, `\t`. Each value is written as PostgreSQL reads back
//! what sqlx binds for it on the statement path: a rebuild must give the same rows whichever
//! way they were written (the rebuild-equals-live tests compare them).

use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Timelike as _, Utc};

use super::StoreError;
use super::rows::{Rows, Value};

/// Text held before it is sent: about a tenth of the benchmark's default year.
const HELD_BYTES_MAX: usize = 16 << 20;
/// A table whose held rows a statement needs while they are fewer than this (the matches
/// were, while their statuses were updated after every page) gets its inserts as statements
/// from then on: a `COPY` of a page's few rows would wait for the acknowledgement longer than
/// it saves.
const COPY_ROWS_MIN: u64 = 1_000;

/// Rows of plain INSERTs held as `COPY` text, per table in the order first written.
#[derive(Default)]
pub(super) struct CopyBuffer {
    tables: Vec<Held>,
}

struct Held {
    table: String,
    statement: String,
    text: Vec<u8>,
    rows: u64,
    /// See [`COPY_ROWS_MIN`].
    by_statements: bool,
}

impl CopyBuffer {
    /// Takes the rows of a plain INSERT and forgets them in `rows`; returns how many it took.
    /// `None` (the rows untouched) for any other statement, for a table that goes by
    /// statements (see [`COPY_ROWS_MIN`]), or when a value is one the text here does not
    /// cover (a date outside the years 1-9999): those go as statements, after
    /// [`drain_for`](Self::drain_for).
    pub(super) fn take(&mut self, rows: &mut Rows) -> Option<u64> {
        let (head, tail) = rows.postgres_statement();
        let statement = copy_statement(head, tail)?;
        let at = match self.tables.iter().position(|held| held.statement == statement) {
            Some(at) => at,
            None => {
                let table = table_of(head)?.to_owned();
                self.tables.push(Held { table, statement, text: Vec::new(), rows: 0, by_statements: false });
                self.tables.len() - 1
            }
        };
        let held = &mut self.tables[at];
        if held.by_statements {
            return None;
        }
        let before = held.text.len();
        if write_lines(&mut held.text, rows.values(), rows.columns()).is_none() {
            held.text.truncate(before);
            return None;
        }
        let taken = rows.len() as u64;
        held.rows += taken;
        rows.clear();
        Some(taken)
    }

    pub(super) fn is_full(&self) -> bool {
        self.held_bytes() >= HELD_BYTES_MAX
    }

    fn held_bytes(&self) -> usize {
        self.tables.iter().map(|held| held.text.len()).sum()
    }

    /// What is held for the table that `rows` write (all of it when that table is not
    /// known), taken out to be sent before them, so that they see it. Each of the rebuild's
    /// statements reads and writes only the table it names.
    pub(super) fn drain_for(&mut self, rows: &Rows) -> Vec<TableCopy> {
        match table_of(rows.postgres_statement().0) {
            Some(table) => {
                self.needed_by_a_statement(table);
                self.drain(|held| held.table == table)
            }
            None => self.drain_all(),
        }
    }

    /// A statement on `table` needs its held rows: if they are few, the table goes by
    /// statements from now on.
    fn needed_by_a_statement(&mut self, table: &str) {
        for held in self.tables.iter_mut().filter(|held| held.table == table && held.rows > 0) {
            held.by_statements |= held.rows < COPY_ROWS_MIN;
        }
    }

    /// Everything held, taken out to be sent.
    pub(super) fn drain_all(&mut self) -> Vec<TableCopy> {
        self.drain(|_| true)
    }

    /// What is held for the tables `which` picks, a `COPY` per table.
    fn drain(&mut self, which: impl Fn(&Held) -> bool) -> Vec<TableCopy> {
        let mut copies = Vec::new();
        for held in self.tables.iter_mut().filter(|held| held.rows > 0 && which(held)) {
            let text = std::mem::take(&mut held.text);
            copies.push(TableCopy { statement: held.statement.clone(), text, rows: std::mem::take(&mut held.rows) });
        }
        copies
    }
}

/// One table's held rows as one `COPY`, ready to send.
#[derive(Debug)]
pub(super) struct TableCopy {
    statement: String,
    text: Vec<u8>,
    rows: u64,
}

impl TableCopy {
    pub(super) async fn send(self, conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let mut copy = conn.copy_in_raw(&self.statement).await?;
        copy.send(self.text.as_slice()).await?;
        let written = copy.finish().await?;
        assert_eq!(written, self.rows, "{}: COPY writes every line it is sent or fails", self.statement);
        Ok(())
    }
}

/// The table a statement starts by naming: `t` in `INSERT INTO t (..`, `UPDATE t SET ..`,
/// `DELETE FROM t WHERE ..`.
pub(super) fn table_of(head: &str) -> Option<&str> {
    let rest = ["INSERT INTO ", "UPDATE ", "DELETE FROM "].iter().find_map(|verb| head.strip_prefix(verb))?;
    let table = rest.split([' ', '(']).next()?;
    (!table.is_empty()).then_some(table)
}

/// `COPY t (a, b) FROM STDIN` for `INSERT INTO t (a, b) VALUES` with nothing after the list.
fn copy_statement(head: &str, tail: &str) -> Option<String> {
    if !tail.is_empty() {
        return None;
    }
    let target = head.strip_prefix("INSERT INTO ")?.strip_suffix(" VALUES")?;
    Some(format!("COPY {target} FROM STDIN"))
}

/// Appends the lines of `values`, `columns` to a line.
fn write_lines(text: &mut Vec<u8>, values: &[Value], columns: usize) -> Option<()> {
    for row in values.chunks_exact(columns) {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                text.push(b'\t');
            }
            write_value(text, value)?;
        }
        text.push(b'\n');
    }
    Some(())
}

/// The lines of `values`, or `None`.
#[cfg(test)]
fn text_of(values: &[Value], columns: usize) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    write_lines(&mut text, values, columns).map(|()| text)
}

// The writers below put digits straight into the text: in a profile of the rebuild, this
// text was a quarter of the replay's own samples, and `fmt` and `strftime` much of that.
fn write_value(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    match value {
        Value::Int(None) | Value::Int32(None) | Value::Text(None) | Value::Date(None) => out.extend_from_slice(b"\\N"),
        Value::Int(Some(v)) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
        Value::Int32(Some(v)) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
        Value::Bool(v) => out.push(if *v { b't' } else { b'f' }),
        Value::Text(Some(v)) => escape(out, v),
        Value::Date(Some(v)) => write_iso_date(out, *v)?,
        Value::Time(v) => write_postgres_instant(out, *v)?,
        // bytea's hex form `\x..`, its backslash escaped for COPY.
        Value::Bytes(v) => {
            out.extend_from_slice(b"\\\\x");
            let start = out.len();
            out.resize(start + 2 * v.len(), 0);
            hex::encode_to_slice(v, &mut out[start..]).expect("two hex digits per byte fit the room made for them");
        }
    }
    Some(())
}

/// The text with its separators and backslashes escaped, copied a run at a time.
fn escape(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut run = 0;
    for (at, byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..at]);
        out.extend_from_slice(escaped);
        run = at + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// `number` with at least `width` digits (zeros in front); `number` is not negative.
fn write_padded(out: &mut Vec<u8>, number: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(number).as_bytes();
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits.len())));
    out.extend_from_slice(digits);
}

/// `2024-02-29`; years outside 1-9999 are written differently (`BC`, five digits): not here.
fn write_iso_date(out: &mut Vec<u8>, date: NaiveDate) -> Option<()> {
    let year = u32::try_from(date.year()).ok().filter(|year| (1..=9999).contains(year))?;
    write_padded(out, year, 4);
    out.push(b'-');
    write_padded(out, date.month(), 2);
    out.push(b'-');
    write_padded(out, date.day(), 2);
    Some(())
}

/// The instant sqlx binds: whole microseconds since 2000-01-01, cut toward that day as
/// `TimeDelta::num_microseconds` cuts (PostgreSQL would round a longer fraction instead),
/// written `2024-02-29 08:30:00.000001+00`.
fn write_postgres_instant(out: &mut Vec<u8>, at: DateTime<Utc>) -> Option<()> {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_opt(0, 0, 0)?.and_utc();
    let micros = (at - epoch).num_microseconds()?;
    let at = epoch.checked_add_signed(TimeDelta::microseconds(micros))?;
    write_iso_date(out, at.date_naive())?;
    // A leap second's nanoseconds count past a billion: it is written as second 60, as
    // chrono's `%S` writes it.
    let nanos = at.nanosecond();
    out.push(b' ');
    write_padded(out, at.hour(), 2);
    out.push(b':');
    write_padded(out, at.minute(), 2);
    out.push(b':');
    write_padded(out, at.second() + nanos / 1_000_000_000, 2);
    out.push(b'.');
    write_padded(out, nanos % 1_000_000_000 / 1_000, 6);
    out.extend_from_slice(b"+00");
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(values: Vec<Value>) -> String {
        let columns = values.len();
        String::from_utf8(text_of(&values, columns).expect("covered values")).expect("UTF-8")
    }

    #[test]
    fn only_a_plain_insert_becomes_a_copy() {
        assert_eq!(copy_statement("INSERT INTO t (a, b) VALUES", "").as_deref(), Some("COPY t (a, b) FROM STDIN"));
        assert_eq!(copy_statement("INSERT INTO t (a) VALUES", "ON CONFLICT (a) DO NOTHING"), None);
        assert_eq!(copy_statement("DELETE FROM t WHERE a IN (VALUES", ")"), None);
        assert_eq!(copy_statement("UPDATE t SET a = v.column2 FROM (VALUES", ") AS v WHERE t.id = v.column1"), None);
    }

    #[test]
    fn a_statement_names_its_table_first() {
        assert_eq!(table_of("INSERT INTO payments (id, amount_fen) VALUES"), Some("payments"));
        assert_eq!(table_of("INSERT INTO t(a) VALUES"), Some("t"));
        assert_eq!(table_of("UPDATE contracts SET settled_fen = contracts.settled_fen + v.column2"), Some("contracts"));
        assert_eq!(
            table_of("DELETE FROM achievement_completers WHERE achievement_id = ANY(ARRAY["),
            Some("achievement_completers")
        );
        assert_eq!(table_of("WITH x AS (SELECT 1) UPDATE t SET a = 1"), None);
        assert_eq!(table_of("UPDATE "), None);
    }

    #[test]
    fn plain_inserts_are_held_per_table_in_the_order_first_written() {
        let mut buffer = CopyBuffer::default();
        let mut organisations = Rows::new("INSERT INTO organisations (id, name) VALUES", 2, "");
        organisations.push(vec![1i64.into(), "甲".into()]);
        let mut contracts = Rows::new("INSERT INTO contracts (id) VALUES", 1, "");
        contracts.push(vec![7i64.into()]);
        contracts.push(vec![8i64.into()]);
        assert_eq!(buffer.take(&mut organisations), Some(1));
        assert_eq!(buffer.take(&mut contracts), Some(2));
        organisations.push(vec![2i64.into(), Value::Text(None)]);
        assert_eq!(buffer.take(&mut organisations), Some(1));
        assert_eq!((organisations.len(), contracts.len()), (0, 0), "taken rows are forgotten");
        let held: Vec<(&str, &str, u64)> = buffer
            .tables
            .iter()
            .map(|h| (h.statement.as_str(), std::str::from_utf8(&h.text).expect("UTF-8"), h.rows))
            .collect();
        assert_eq!(
            held,
            [
                ("COPY organisations (id, name) FROM STDIN", "1\t甲\n2\t\\N\n", 2),
                ("COPY contracts (id) FROM STDIN", "7\n8\n", 2)
            ]
        );
        assert_eq!(buffer.held_bytes(), "1\t甲\n2\t\\N\n7\n8\n".len());
        assert!(!buffer.is_full());
    }

    #[test]
    fn a_statement_takes_out_what_is_held_for_its_table_and_the_end_takes_the_rest() {
        let mut buffer = CopyBuffer::default();
        let insert = |table: &str, ids: std::ops::Range<i64>| {
            let mut insert = Rows::new(format!("INSERT INTO {table} (id) VALUES"), 1, "");
            ids.for_each(|id| insert.push(vec![id.into()]));
            insert
        };
        assert_eq!(buffer.take(&mut insert("contracts", 0..1_500)), Some(1_500));
        assert_eq!(buffer.take(&mut insert("payments", 0..2)), Some(2));
        let update = Rows::new(
            "UPDATE contracts SET settled_fen = v.column2 FROM (VALUES",
            2,
            ") AS v WHERE contracts.id = v.column1",
        );
        let copies = buffer.drain_for(&update);
        assert_eq!(copies.len(), 1, "only the table the statement names: {copies:?}");
        assert_eq!((copies[0].statement.as_str(), copies[0].rows), ("COPY contracts (id) FROM STDIN", 1_500));
        let text = std::str::from_utf8(&copies[0].text).expect("UTF-8");
        assert_eq!((text.lines().count(), text.lines().next(), text.lines().last()), (1_500, Some("0"), Some("1499")));
        assert_eq!(buffer.held_bytes(), 2 * 2, "the payments' two lines stay held");
        assert!(buffer.drain_for(&update).is_empty(), "what was taken out is not taken out again");
        let rest = buffer.drain_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            (rest[0].statement.as_str(), rest[0].rows, rest[0].text.as_slice()),
            ("COPY payments (id) FROM STDIN", 2, &b"0\n1\n"[..])
        );
        assert!(buffer.drain_all().is_empty() && buffer.held_bytes() == 0, "nothing is left held");
        assert_eq!(buffer.take(&mut insert("contracts", 7..8)), Some(1), "many contracts were held: still a COPY");
    }

    #[test]
    fn a_table_whose_few_held_rows_a_statement_needs_goes_by_statements_from_then_on() {
        let mut buffer = CopyBuffer::default();
        let insert = |table: &str, rows: u64| {
            let mut insert = Rows::new(format!("INSERT INTO {table} (id) VALUES"), 1, "");
            (0..rows).for_each(|id| insert.push(vec![(id as i64).into()]));
            insert
        };
        assert_eq!(buffer.take(&mut insert("matches", COPY_ROWS_MIN - 1)), Some(COPY_ROWS_MIN - 1));
        assert_eq!(buffer.take(&mut insert("payments", COPY_ROWS_MIN)), Some(COPY_ROWS_MIN));
        buffer.needed_by_a_statement("matches");
        buffer.needed_by_a_statement("payments");
        let mut matches = insert("matches", 1);
        assert_eq!(buffer.take(&mut matches), None, "a page's few matches go as a statement");
        assert_eq!(matches.len(), 1);
        assert_eq!(buffer.take(&mut insert("payments", 1)), Some(1), "many rows were held: still a COPY");
    }

    #[test]
    fn rows_the_text_does_not_cover_are_left_whole_to_the_statements() {
        let mut buffer = CopyBuffer::default();
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1).expect("a date");
        let mut rows = Rows::new("INSERT INTO t (a, b) VALUES", 2, "");
        rows.push(vec![1i64.into(), Value::Date(None)]);
        rows.push(vec![2i64.into(), far.into()]);
        assert_eq!(buffer.take(&mut rows), None);
        assert_eq!(rows.len(), 2, "the rows stay to be written as statements");
        assert!(buffer.tables.iter().all(|h| h.text.is_empty() && h.rows == 0), "nothing of them is held");
        assert_eq!(buffer.held_bytes(), 0);
        let mut upsert = Rows::new("INSERT INTO t (a) VALUES", 1, "ON CONFLICT (a) DO NOTHING");
        upsert.push(vec![1i64.into()]);
        assert_eq!(buffer.take(&mut upsert), None);
        assert_eq!(upsert.len(), 1);
    }

    #[test]
    fn every_kind_of_value_is_written_as_postgresql_reads_it() {
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date");
        let at = |nanos| date.and_hms_nano_opt(23, 59, 58, nanos).expect("a time").and_utc();
        assert_eq!(
            line(vec![
                Value::Int(Some(-9_007_199_254_740_993)),
                Value::Int(None),
                Value::Int32(Some(-7)),
                Value::Int32(None),
                Value::Text(Some("完成人 'q' \"d\"".into())),
                Value::Text(None),
                true.into(),
                false.into(),
                date.into(),
                Value::Date(None),
            ]),
            "-9007199254740993\t\\N\t-7\t\\N\t完成人 'q' \"d\"\t\\N\tt\tf\t2024-02-29\t\\N\n"
        );
        assert_eq!(
            line(vec![at(0).into(), at(120_000_000).into(), at(123_456_789).into(), at(999_999_999).into()]),
            "2024-02-29 23:59:58.000000+00\t2024-02-29 23:59:58.120000+00\t2024-02-29 23:59:58.123456+00\t\
             2024-02-29 23:59:58.999999+00\n",
            "microseconds, cut as sqlx cuts them (not rounded to the next second)"
        );
        assert_eq!(line(vec![vec![0u8, 1, 255].into(), Vec::<u8>::new().into()]), "\\\\x0001ff\t\\\\x\n");
    }

    #[test]
    fn dates_and_instants_are_written_as_chrono_formats_them() {
        let formatted = |write: &dyn Fn(&mut Vec<u8>) -> Option<()>| {
            let mut out = Vec::new();
            write(&mut out).map(|()| String::from_utf8(out).expect("UTF-8"))
        };
        let first = NaiveDate::from_ymd_opt(1, 1, 1).expect("a date");
        for date in first.iter_days().step_by(37).take_while(|d| d.year() <= 9999).chain([NaiveDate::MAX]) {
            let expected = (date.year() <= 9999).then(|| date.format("%Y-%m-%d").to_string());
            assert_eq!(formatted(&|out| write_iso_date(out, date)), expected, "{date:?}");
        }
        // Instants on both sides of 2000-01-01, at every scale of their fraction, and a leap second.
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("a time").and_utc();
        // What the writer replaced: the cut instant through chrono's format.
        let reference = |at: DateTime<Utc>| {
            let micros = (at - epoch).num_microseconds().expect("within 20 years");
            (epoch + TimeDelta::microseconds(micros)).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let nanos = (seed >> 1) as i64 % (40 * 365 * 86_400 * 1_000_000_000) - 20 * 365 * 86_400 * 1_000_000_000;
            let at = epoch + TimeDelta::nanoseconds(nanos / 10i64.pow((seed % 10) as u32));
            assert_eq!(formatted(&|out| write_postgres_instant(out, at)), Some(reference(at)), "{at:?}");
        }
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .expect("a leap second")
            .and_utc();
        assert_eq!(formatted(&|out| write_postgres_instant(out, leap)), Some(reference(leap)));
    }

    #[test]
    fn separators_and_backslashes_inside_text_are_escaped() {
        assert_eq!(
            line(vec!["a\tb\nc\rd\\e \\N".into(), "".into()]),
            "a\\tb\\nc\\rd\\\\e \\\\N\t\n",
            "a literal `\\N` is text, an empty string is not NULL"
        );
        assert_eq!(line(vec!["\\\t甲\r\n".into()]), "\\\\\\t甲\\r\\n\n", "at the ends, one after another");
    }

    #[test]
    fn values_outside_the_covered_years_are_left_to_the_statements() {
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1).expect("a date");
        assert_eq!(text_of(&[far.into()], 1), None);
        assert_eq!(text_of(&[far.and_hms_opt(0, 0, 0).expect("a time").and_utc().into()], 1), None);
        let before_christ = NaiveDate::from_ymd_opt(0, 12, 31).expect("a date");
        assert_eq!(text_of(&[before_christ.into()], 1), None);
        // Before 2000 the microseconds are cut toward 2000, as sqlx cuts them.
        let early = NaiveDate::from_ymd_opt(1999, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 58, 999_999_500))
            .expect("a time")
            .and_utc();
        assert_eq!(line(vec![early.into()]), "1999-12-31 23:59:59.000000+00\n");
    }
}
