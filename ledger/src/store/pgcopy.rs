//! Reading stored event rows from PostgreSQL with `COPY ... TO STDOUT (FORMAT binary)`, for
//! verification: a page of rows arrives as one buffer, and each row's fields are read where
//! they lie in it. Through sqlx's query path every row became a `StoredEvent` of five owned
//! strings, which took most of the client's CPU time (more than SHA-256 did).
//!
//! The binary format (PostgreSQL manual, "COPY", "Binary Format"): an 11-byte signature, a
//! 32-bit flags field and a header extension; then per tuple a 16-bit field count and per
//! field a 32-bit length and that many bytes, all big-endian; a field count of -1 ends the
//! data. `text` fields are their UTF-8 bytes, `bigint` 8 bytes, `integer` 4, `timestamptz`
//! the microseconds since 2000-01-01 UTC in 8 bytes, `bytea` its bytes.

use futures_util::StreamExt as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt as _;

use super::StoreError;
use crate::chain::ChainedFields;
use crate::event::Position;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// The columns `rows` reads, in `event_page`'s order.
const FIELDS: i16 = 9;

/// The rows after `after` up to `upto` (inclusive) in position order, as the bytes of a
/// binary `COPY` (read with [`rows`]), written into `bytes` (emptied first). A caller that
/// reads page after page passes the buffer of an earlier page back in: a page is megabytes,
/// and growing a fresh one each time cost copies and page faults on fresh memory.
pub(super) async fn event_page(
    pool: &PgPool,
    after: Position,
    upto: Position,
    mut bytes: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    // COPY takes no bind parameters; these are integers, formatted by us.
    let sql = format!(
        "COPY (SELECT position, stream_id, stream_version, event_type, schema_version, payload, metadata, \
         recorded_at, hash FROM events WHERE position > {after} AND position <= {upto} ORDER BY position) \
         TO STDOUT (FORMAT binary)"
    );
    let mut stream = pool.copy_out_raw(&sql).await?;
    bytes.clear();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

/// Calls `each` with every row of a page from [`event_page`] (its chained fields and stored
/// hash) until it returns `false`. Returns the number of rows read.
pub(super) fn rows(
    page: &[u8],
    mut each: impl FnMut(&ChainedFields<'_, [u8]>, &[u8]) -> bool,
) -> Result<i64, StoreError> {
    let mut r = Reader { bytes: page, at: 0 };
    if r.take(SIGNATURE.len())? != SIGNATURE {
        return Err(malformed("no binary COPY signature"));
    }
    let _flags = r.take(4)?;
    let extension = r.int(4)? as usize;
    r.take(extension)?;
    let mut n = 0;
    loop {
        let count = r.int(2)? as i16;
        if count == -1 {
            break;
        }
        if count != FIELDS {
            return Err(malformed(&format!("a row of {count} fields, expected {FIELDS}")));
        }
        let position = r.field_int(8)?;
        let stream_id = r.field()?;
        let stream_version = r.field_int(8)?;
        let event_type = r.field()?;
        let schema_version = r.field_int(4)? as i32;
        let payload = r.field()?;
        let metadata = r.field()?;
        let recorded_at_micros = r.field_int(8)?.checked_add(PG_EPOCH_UNIX_MICROS).ok_or_else(|| malformed("time"))?;
        let hash = r.field()?;
        let fields = ChainedFields {
            position,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            payload,
            metadata,
            recorded_at_micros,
        };
        n += 1;
        if !each(&fields, hash) {
            return Ok(n);
        }
    }
    if r.at != page.len() {
        return Err(malformed("bytes after the end of the data"));
    }
    Ok(n)
}

fn malformed(what: &str) -> StoreError {
    StoreError::Inconsistent(format!("binary COPY of the event log: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| malformed("cut short"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// A big-endian signed integer of `n` (2, 4 or 8) bytes.
    fn int(&mut self, n: usize) -> Result<i64, StoreError> {
        let b = self.take(n)?;
        Ok(match n {
            2 => i16::from_be_bytes([b[0], b[1]]) as i64,
            4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
            8 => i64::from_be_bytes(b.try_into().expect("8 bytes taken")),
            _ => unreachable!("integers of 2, 4 or 8 bytes"),
        })
    }

    /// A non-null field's bytes (every event column is `NOT NULL`).
    fn field(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.int(4)?;
        if len < 0 {
            return Err(malformed("a NULL in a NOT NULL column"));
        }
        self.take(len as usize)
    }

    /// A non-null integer field of `n` bytes.
    fn field_int(&mut self, n: usize) -> Result<i64, StoreError> {
        let len = self.int(4)?;
        if len != n as i64 {
            return Err(malformed(&format!("an integer of {len} bytes, expected {n}")));
        }
        self.int(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY page built by hand, as PostgreSQL lays it out.
    fn page(rows: &[(i64, &str, i64, &str, i32, &str, &str, i64, &[u8])]) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend(0i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        for (position, stream, version, kind, schema, payload, metadata, pg_micros, hash) in rows {
            b.extend(FIELDS.to_be_bytes());
            let mut field = |bytes: &[u8]| {
                b.extend((bytes.len() as i32).to_be_bytes());
                b.extend(bytes);
            };
            field(&position.to_be_bytes());
            field(stream.as_bytes());
            field(&version.to_be_bytes());
            field(kind.as_bytes());
            field(&schema.to_be_bytes());
            field(payload.as_bytes());
            field(metadata.as_bytes());
            field(&pg_micros.to_be_bytes());
            field(hash);
        }
        b.extend((-1i16).to_be_bytes());
        b
    }

    #[test]
    fn rows_are_read_field_by_field_with_times_moved_to_the_unix_epoch() {
        let bytes = page(&[
            (7, "contract-1", 2, "PaymentSettled", 1, "{\"a\":1}", "{}", 0, &[1; 32]),
            (8, "contract-2", 1, "ContractSigned", 3, "{}", "{\"m\":\"é\"}", -1, &[2; 32]),
        ]);
        let mut seen = Vec::new();
        let n = rows(&bytes, |f, hash| {
            seen.push((
                f.position,
                f.stream_id.to_vec(),
                f.stream_version,
                f.event_type.to_vec(),
                f.schema_version,
                f.payload.to_vec(),
                f.metadata.to_vec(),
                f.recorded_at_micros,
                hash.to_vec(),
            ));
            true
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[1].0, 8);
        assert_eq!(
            seen[0],
            (
                7,
                b"contract-1".to_vec(),
                2,
                b"PaymentSettled".to_vec(),
                1,
                b"{\"a\":1}".to_vec(),
                b"{}".to_vec(),
                PG_EPOCH_UNIX_MICROS,
                vec![1; 32]
            )
        );
        assert_eq!(seen[1].4, 3);
        assert_eq!(seen[1].6, "{\"m\":\"é\"}".as_bytes());
        assert_eq!(seen[1].7, PG_EPOCH_UNIX_MICROS - 1);
    }

    #[test]
    fn reading_stops_when_told() {
        let bytes = page(&[(1, "s", 1, "T", 1, "{}", "{}", 0, &[0; 32]), (2, "s", 2, "T", 1, "{}", "{}", 0, &[0; 32])]);
        let mut seen = Vec::new();
        let n = rows(&bytes, |f, _| {
            seen.push(f.position);
            false
        });
        assert_eq!((n.unwrap(), seen), (1, vec![1]));
        assert_eq!(rows(&page(&[]), |_, _| true).unwrap(), 0);
    }

    #[test]
    fn a_page_that_is_not_binary_copy_data_is_refused() {
        let whole = page(&[(1, "s", 1, "T", 1, "{}", "{}", 0, &[0; 32])]);
        for cut in [0, 5, 19, 30, whole.len() - 1] {
            assert!(rows(&whole[..cut], |_, _| true).is_err(), "cut at {cut}");
        }
        let mut trailing = whole.clone();
        trailing.push(0);
        assert!(rows(&trailing, |_, _| true).is_err());
        let mut wrong_width = whole.clone();
        // The first field's length (the position): 4 bytes instead of 8.
        wrong_width[21..25].copy_from_slice(&4i32.to_be_bytes());
        assert!(rows(&wrong_width, |_, _| true).is_err());
        let mut null = page(&[(1, "s", 1, "T", 1, "{}", "{}", 0, &[0; 32])]);
        // The second field's length (the stream id): -1, NULL.
        null[33..37].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(rows(&null, |_, _| true).is_err());
    }
}
