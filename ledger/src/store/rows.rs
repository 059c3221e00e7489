//! Multi-row INSERTs for the append path: a batch's rows of one table are collected while
//! the batch is decided and written with a few statements at its end, instead of one round
//! trip per row.
//!
//! SQLite gets `?` placeholders (numbered `$n` ones make its binding quadratic in the number
//! of parameters); PostgreSQL gets `$n`. Statements stay under both engines' parameter limits.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

use super::{StoreError, Tx, with_conn};

/// Most parameters in one statement (SQLite allows 32,766; PostgreSQL 65,535).
const PARAMETERS_MAX: usize = 30_000;

/// A value to bind, whatever its SQL type.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Int(Option<i64>),
    Int32(Option<i32>),
    Text(Option<String>),
    Bool(bool),
    Date(Option<NaiveDate>),
    Time(DateTime<Utc>),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int32(Some(v))
    }
}
impl From<Option<i32>> for Value {
    fn from(v: Option<i32>) -> Value {
        Value::Int32(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        Value::Text(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Value {
        Value::Date(Some(v))
    }
}
impl From<Option<NaiveDate>> for Value {
    fn from(v: Option<NaiveDate>) -> Value {
        Value::Date(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Value {
        Value::Time(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

/// The rows of one statement with a VALUES list (an INSERT, or an UPDATE or DELETE that
/// joins one), collected until [`Rows::write`].
pub(super) struct Rows {
    /// `INSERT INTO t (a, b, c) VALUES`
    head: Cow<'static, str>,
    columns: usize,
    /// What follows the VALUES list (`ON CONFLICT ...`), or "".
    tail: Cow<'static, str>,
    values: Vec<Value>,
}

impl Rows {
    pub(super) fn new(head: impl Into<Cow<'static, str>>, columns: usize, tail: impl Into<Cow<'static, str>>) -> Rows {
        Rows { head: head.into(), columns, tail: tail.into(), values: Vec::new() }
    }

    /// Rows collected and not yet written.
    pub(super) fn len(&self) -> usize {
        self.values.len() / self.columns
    }

    pub(super) fn push(&mut self, row: Vec<Value>) {
        assert_eq!(row.len(), self.columns, "{}: a row of {} values", self.head, row.len());
        self.values.extend(row);
    }

    /// Writes the rows collected so far (a few statements), and forgets them. Returns the
    /// rows the statements affected.
    pub(super) async fn write(&mut self, tx: &mut Tx) -> Result<u64, StoreError> {
        let numbered = matches!(tx, Tx::Postgres(_));
        let rows_per_statement = (PARAMETERS_MAX / self.columns).max(1);
        let values = std::mem::take(&mut self.values);
        let mut values = values.into_iter();
        let mut left = values.len() / self.columns;
        let mut affected = 0;
        while left > 0 {
            let rows = left.min(rows_per_statement);
            left -= rows;
            let sql = self.sql(rows, numbered);
            let chunk: Vec<Value> = values.by_ref().take(rows * self.columns).collect();
            affected += with_conn!(tx, |c| {
                // Not kept as a prepared statement: the text changes with the row count, and
                // caching each would evict the statements the append path runs every time.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for v in chunk {
                    query = match v {
                        Value::Int(v) => query.bind(v),
                        Value::Int32(v) => query.bind(v),
                        Value::Text(v) => query.bind(v),
                        Value::Bool(v) => query.bind(v),
                        Value::Date(v) => query.bind(v),
                        Value::Time(v) => query.bind(v),
                        Value::Bytes(v) => query.bind(v),
                    };
                }
                query.execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(affected)
    }

    fn sql(&self, rows: usize, numbered: bool) -> String {
        let mut sql = format!("{} {}", self.head, values_list(rows, self.columns, numbered));
        if !self.tail.is_empty() {
            sql.push(' ');
            sql.push_str(&self.tail);
        }
        sql
    }
}

/// `($1, $2), ($3, $4)` (PostgreSQL) or `(?, ?), (?, ?)` (SQLite): `rows` tuples of
/// `columns` parameters, for a VALUES list.
pub(super) fn values_list(rows: usize, columns: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_engine() {
        let rows = Rows::new("INSERT INTO t (a, b) VALUES", 2, "ON CONFLICT (a) DO NOTHING");
        assert_eq!(rows.sql(2, true), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO NOTHING");
        assert_eq!(rows.sql(1, false), "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO NOTHING");
    }
}
