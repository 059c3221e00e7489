//! Reading stored event rows from PostgreSQL with `COPY ... TO STDOUT (FORMAT binary)`, for
//! verification and for replays and rebuilds: a page of rows arrives as one buffer, and each
//! row's fields are read where they lie in it. Through sqlx's query path every row became a
//! `StoredEvent` of five owned strings, which took most of the client's CPU time in a
//! verification (more than SHA-256 did), and an eighth of it in a rebuild.
//!
//! The binary format (PostgreSQL manual, "COPY", "Binary Format"): an 11-byte signature, a
//! 32-bit flags field and a header extension; then per tuple a 16-bit field count and per
//! field a 32-bit length and that many bytes, all big-endian; a field count of -1 ends the
//! data. `text` fields are their UTF-8 bytes, `bigint` 8 bytes, `integer` 4, `timestamptz`
//! the microseconds since 2000-01-01 UTC in 8 bytes, `bytea` its bytes.

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use sqlx::postgres::PgPoolCopyExt as _;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use super::read::StoredEventRef;
use crate::chain::ChainedFields;
use crate::event::{Position, RecordedEvent};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// The columns `rows` reads, in `event_page`'s order.
const FIELDS: i16 = 9;

/// Where [`event_page`] reads.
pub(super) enum Source<'a> {
    /// A connection of the pool, for this page.
    Pool(&'a PgPool),
    /// The caller's own connection.
    Connection(&'a mut PgConnection),
}

/// The rows after `after` up to `upto` (inclusive) in position order, as the bytes of a
/// binary `COPY` (read with [`rows`]), written into `bytes` (emptied first). A caller that
/// reads page after page passes the buffer of an earlier page back in: a page is megabytes,
/// and growing a fresh one each time cost copies and page faults on fresh memory.
pub(super) async fn event_page(
    source: Source<'_>,
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
    let mut stream: BoxStream<'_, _> = match source {
        Source::Pool(pool) => pool.copy_out_raw(&sql).await?,
        Source::Connection(connection) => connection.copy_out_raw(&sql).await?,
    };
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

/// The events of a page from [`event_page`], decoded as `StoredEvent::decode` decodes the same
/// rows read through sqlx. `expected` rows are room made up front: a page's events are
/// hundreds of bytes each, and a vector grown from empty copied them over and over.
pub(super) fn decode_page(page: &[u8], expected: usize) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::with_capacity(expected);
    let mut failed = None;
    rows(page, |f, hash| {
        let decoded = stored_event(f, hash).and_then(|stored| stored.decode());
        match decoded {
            Ok(event) => events.push(event),
            Err(e) => failed = Some(e),
        }
        failed.is_none()
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(events),
    }
}

/// A row's fields as the text and time they store (every text column is UTF-8 on the server,
/// so a field that is not means the page is not what we asked for).
fn stored_event<'a>(f: &ChainedFields<'a, [u8]>, hash: &'a [u8]) -> Result<StoredEventRef<'a>, StoreError> {
    let text = |bytes: &'a [u8]| {
        std::str::from_utf8(bytes).map_err(|_| malformed(&format!("a text field of event {} is not UTF-8", f.position)))
    };
    let recorded_at = chrono::DateTime::from_timestamp_micros(f.recorded_at_micros)
        .ok_or_else(|| malformed(&format!("the time of event {} is out of range", f.position)))?;
    Ok(StoredEventRef {
        position: f.position,
        stream_id: text(f.stream_id)?,
        stream_version: f.stream_version,
        event_type: text(f.event_type)?,
        schema_version: f.schema_version,
        payload: text(f.payload)?,
        metadata: text(f.metadata)?,
        recorded_at,
        hash,
    })
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
pub(super) mod tests {
    use super::*;

    /// An event row as `page` lays it out: position, stream, version, type, schema version,
    /// payload, metadata, `recorded_at` in PostgreSQL's microseconds, hash.
    type Row<'a> = (i64, &'a str, i64, &'a str, i32, &'a str, &'a str, i64, &'a [u8]);

    /// A binary COPY page built by hand, as PostgreSQL lays it out.
    fn page(rows: &[Row<'_>]) -> Vec<u8> {
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

    /// A stored row of a real event, as sqlx would read it.
    pub(in crate::store) fn stored(position: i64, recorded_at_micros: i64) -> crate::store::StoredEvent {
        use crate::actor::Role;
        use crate::event::Metadata;
        let (_, events) = crate::domain::testing::university("500106");
        let event = &events[0];
        let metadata = Metadata {
            actor: "registrar-1".into(),
            role: Role::Registrar,
            organisation_id: None,
            request_id: Some("请求-1".into()),
            idempotency_key: None,
            command: "registerOrganisation".into(),
            command_id: uuid::Uuid::now_v7(),
        };
        crate::store::StoredEvent {
            position,
            stream_id: event.stream_id().0,
            stream_version: 1,
            event_type: event.event_type().into(),
            schema_version: 1,
            payload: event.payload_json(),
            metadata: serde_json::to_string(&metadata).unwrap(),
            recorded_at: chrono::DateTime::from_timestamp_micros(recorded_at_micros).unwrap(),
            hash: vec![position as u8; 32],
        }
    }

    fn page_of(rows: &[crate::store::StoredEvent]) -> Vec<u8> {
        let fields: Vec<_> = rows
            .iter()
            .map(|r| {
                let micros = r.recorded_at.timestamp_micros() - PG_EPOCH_UNIX_MICROS;
                let (stream, kind) = (r.stream_id.as_str(), r.event_type.as_str());
                let (payload, metadata) = (r.payload.as_str(), r.metadata.as_str());
                (r.position, stream, r.stream_version, kind, r.schema_version, payload, metadata, micros, &r.hash[..])
            })
            .collect();
        page(&fields)
    }

    #[test]
    fn a_copied_page_decodes_to_the_events_sqlx_rows_decode_to() {
        // Before 2000 and after it: PostgreSQL's epoch moved back to Unix's either way.
        let rows = [stored(1, 946_684_799_999_999), stored(2, 1_733_000_000_123_456)];
        let decoded = decode_page(&page_of(&rows), 0).unwrap();
        let expected: Vec<_> = rows.iter().map(|r| r.decode().unwrap()).collect();
        assert_eq!(decoded, expected);
        assert_eq!(decode_page(&page(&[]), 10).unwrap(), vec![]);
    }

    #[test]
    fn a_copied_row_that_does_not_decode_fails_its_page_with_its_position() {
        let mut unknown = stored(2, 0);
        unknown.event_type = "NoSuchEvent".into();
        let err = decode_page(&page_of(&[stored(1, 0), unknown]), 2).unwrap_err();
        assert!(matches!(err, StoreError::Decode { position: 2, .. }), "{err:?}");

        let mut bytes = page_of(&[stored(1, 0)]);
        // The first byte of the stream id, which is ASCII: now a lone continuation byte.
        let at = 19 + 2 + 4 + 8 + 4;
        assert_eq!(bytes[at], b'o', "the stream id starts here");
        bytes[at] = 0x80;
        let err = decode_page(&bytes, 1).unwrap_err().to_string();
        assert!(err.contains("event 1 is not UTF-8"), "{err}");
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
