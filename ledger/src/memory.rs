//! The ledger in memory: commands decided by the real domain rules, events numbered in log
//! order, unique values claimed across streams, no database. For the data generator, the fold
//! benchmarks and the property tests.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::actor::{Actor, Role};
use crate::command::Command;
use crate::domain::{self, Facts};
use crate::error::DomainError;
use crate::event::*;
use crate::ids::StreamId;

/// The ledger in memory: real decisions, events numbered in order, no database.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    streams: HashMap<StreamId, Vec<Event>>,
    pub log: Vec<RecordedEvent>,
    /// Values claimed across streams (the store's unique claims).
    claims: HashMap<String, StreamId>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Decides and records `command`; returns the events or why it was refused.
    pub fn execute(
        &mut self,
        actor: &Actor,
        command: &Command,
        recorded_at: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let mut facts = Facts::new();
        loop {
            let needed = domain::streams_needed(command, &facts);
            if needed.is_empty() {
                break;
            }
            for stream in needed {
                let events = self.streams.get(&stream).cloned().unwrap_or_default();
                facts.insert_events(stream, &events);
            }
        }
        let events = domain::decide(command, actor, &facts)?;
        let claims: Vec<(String, StreamId)> = events
            .iter()
            .flat_map(|e| {
                let recorded = self.recorded(e.clone(), recorded_at);
                crate::readmodel::changes(&recorded).into_iter().filter_map(|c| match c {
                    crate::readmodel::Change::Claim { claim, owner } => Some((claim, owner)),
                    _ => None,
                })
            })
            .collect();
        if let Some((claim, _)) = claims.iter().find(|(claim, _)| self.claims.contains_key(claim)) {
            return Err(DomainError::AlreadyTaken {
                what: "value",
                value: claim.clone(),
                owner: self.claims[claim].to_string(),
            });
        }
        self.claims.extend(claims);
        for event in &events {
            let recorded = self.recorded(event.clone(), recorded_at);
            self.streams.entry(event.stream_id()).or_default().push(event.clone());
            self.log.push(recorded);
        }
        Ok(events)
    }

    fn recorded(&self, event: Event, recorded_at: DateTime<Utc>) -> RecordedEvent {
        let stream_id = event.stream_id();
        let stream_version = self.streams.get(&stream_id).map_or(0, |s| s.len() as i64) + 1;
        RecordedEvent {
            position: self.log.len() as i64 + 1,
            stream_id,
            stream_version,
            stored_schema_version: event.schema_version(),
            event,
            metadata: Metadata {
                actor: "testkit".into(),
                role: Role::Admin,
                organisation_id: None,
                request_id: None,
                idempotency_key: None,
                command: "Testkit".into(),
                command_id: uuid::Uuid::nil(),
            },
            recorded_at,
            hash: [0; 32],
        }
    }
}
