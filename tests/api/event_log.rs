//! The event log's guarantees on both engines: append with expected versions, gap-free
//! commit-ordered positions under concurrent writers, database-level immutability,
//! idempotency, upcasting of stored old payloads, tamper detection, and rebuilt read models
//! equal to the live ones.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use integration::both_backends;
use integration::fixtures::*;
use ledger::chain::{ChainedFields, event_hash};
use ledger::command::*;
use ledger::event::{Event, Metadata, OrganisationRegistered};
use ledger::ids::*;
use ledger::service::{CommandError, Ledger};
use ledger::store::{AppendOutcome, AppendRequest, Backend, RebuildOptions, Refusal};
use ledger::vocabulary::*;
use ledger::{Money, Role};

both_backends!(a_command_appends_hash_chained_events_and_updates_read_models, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let org = register_university(&ledger, "500106").await;
    let head = store.head().await.unwrap().expect("one event");
    assert_eq!(head.0, 1);
    let view = store.organisation(&org.to_string()).await.unwrap().expect("read model row");
    assert_eq!(view.division_code, "500106");
    assert_eq!(view.created_position, 1);
    let report = store.verify_chain(|_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events_checked, 1);
    db.drop_db().await;
});

fn registration_request(id: OrganisationId, expected_version: i64, code: u32) -> AppendRequest {
    AppendRequest {
        expected: vec![(id.stream(), expected_version)],
        events: vec![Event::OrganisationRegistered(OrganisationRegistered {
            organisation_id: id,
            name: "并发".into(),
            kind: OrganisationKind::Enterprise,
            credit_code: credit_code(code),
            division_code: ledger::codes::DivisionCode::parse("d", "500112").unwrap(),
        })],
        metadata: Metadata {
            actor: "test".into(),
            role: Role::Admin,
            organisation_id: None,
            request_id: None,
            idempotency_key: None,
            command: "RegisterOrganisation".into(),
            command_id: uuid::Uuid::now_v7(),
        },
        idempotency: None,
        subject_id: id.0,
        personal_data: Vec::new(),
    }
}

both_backends!(an_append_with_a_stale_expected_version_is_a_typed_conflict, |db| async move {
    let store = db.store().await;
    let id = OrganisationId::new_v7();
    let first = store.append(registration_request(id, 0, 901)).await.unwrap();
    assert!(matches!(first, Ok(AppendOutcome::Appended(_))));
    // A second decision made against version 0 of the same stream is refused, not appended.
    let second = store.append(registration_request(id, 0, 902)).await.unwrap();
    assert_eq!(second.unwrap_err(), Refusal::Conflict { stream: id.stream(), expected: 0, actual: 1 });
    assert_eq!(store.head().await.unwrap().unwrap().0, 1);
    db.drop_db().await;
});

both_backends!(a_refused_request_in_a_batch_does_not_fail_its_neighbours, |db| async move {
    let store = db.store().await;
    let taken = OrganisationId::new_v7();
    store.append(registration_request(taken, 0, 911)).await.unwrap().unwrap();
    let (a, b) = (OrganisationId::new_v7(), OrganisationId::new_v7());
    let results = store
        .append_batch(vec![
            registration_request(a, 0, 912),
            registration_request(taken, 0, 913), // stale: the stream is at version 1
            registration_request(b, 0, 914),
        ])
        .await
        .unwrap();
    assert!(matches!(results[0], Ok(AppendOutcome::Appended(_))));
    assert!(matches!(results[1], Err(Refusal::Conflict { .. })));
    assert!(matches!(results[2], Ok(AppendOutcome::Appended(_))));
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(head.0, 3, "positions stay gap-free around the refused request");
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact());
    assert!(store.organisation(&b.to_string()).await.unwrap().is_some());
    db.drop_db().await;
});

both_backends!(concurrent_appends_share_commits_and_each_caller_gets_its_own_result, |db| async move {
    let store = db.store().await;
    let taken = OrganisationId::new_v7();
    store.append(registration_request(taken, 0, 920)).await.unwrap().unwrap();
    let before = store.group_commit_stats();
    // 200 callers at once: 196 fresh organisations, 3 stale decisions on a stream already at
    // version 1, and one whose sealed personal data reuses a stored reference (a database
    // error while its batch is written: only it may fail, not its batch neighbours).
    let reused = uuid::Uuid::now_v7();
    let mut first = registration_request(OrganisationId::new_v7(), 0, 921);
    first.personal_data = vec![sealed(reused)];
    store.append(first).await.unwrap().unwrap();
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut request = match i {
                    10 | 90 | 170 => registration_request(taken, 0, 1000 + i),
                    _ => registration_request(OrganisationId::new_v7(), 0, 1000 + i),
                };
                if i == 50 {
                    request.personal_data = vec![sealed(reused)];
                }
                (i, store.append(request).await)
            })
        })
        .collect();
    let mut positions = Vec::new();
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match (i, result) {
            (10 | 90 | 170, Ok(Err(Refusal::Conflict { expected: 0, actual: 1, .. }))) => {}
            (50, Err(e)) => assert!(!e.is_transient(), "{e}"),
            (_, Ok(Ok(AppendOutcome::Appended(a)))) => positions.push(a.receipt.first_position),
            (i, other) => panic!("caller {i}: {other:?}"),
        }
    }
    positions.sort_unstable();
    assert_eq!(positions, (3..=198).collect::<Vec<_>>(), "one position each, gap-free");
    let after = store.group_commit_stats();
    let (batches, requests) = (after.batches - before.batches, after.requests - before.requests);
    assert!(requests >= 201, "every request went through a batch ({requests})");
    assert!(batches < requests / 2, "{requests} concurrent requests shared commits: {batches} batches");
    println!("{}: {requests} requests in {batches} batches", db.backend.as_str());
    assert_eq!(store.head().await.unwrap().unwrap().0, 198);
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact());
    db.drop_db().await;
});

both_backends!(a_commit_outlives_the_runtime_of_the_caller_that_started_it, |db| async move {
    // actix-web runs each worker on a runtime of its own and, on SIGTERM, stops a worker once
    // its own connections are done. A batch that worker's caller started also holds other
    // workers' requests, so it must not stop with it.
    let store = db.store().await;
    let organisation = OrganisationId::new_v7();
    let caller = store.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            drop(tokio::spawn(async move { caller.append(registration_request(organisation, 0, 930)).await }));
            // Lets the caller queue its request and start the batch, and no more.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        });
        // The runtime (and the caller's task with it) ends here, before the commit.
    })
    .join()
    .unwrap();
    let committed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while store.organisation(&organisation.to_string()).await.unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(committed.is_ok(), "the request queued by a runtime that ended was not committed within 20 s");
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store.append(registration_request(OrganisationId::new_v7(), 0, 931)),
    )
    .await
    .expect("a later append is answered");
    assert!(matches!(next, Ok(Ok(AppendOutcome::Appended(_)))), "{next:?}");
    assert_eq!(store.head().await.unwrap().unwrap().0, 2);
    db.drop_db().await;
});

fn sealed(reference: uuid::Uuid) -> ledger::personal::PersonalDataRow {
    ledger::personal::PersonalDataRow { reference, key_id: "k1".into(), nonce: vec![0; 12], ciphertext: vec![1; 16] }
}

both_backends!(concurrent_commands_on_one_contract_retry_and_never_overdraw_it, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let seller = register_university(&ledger, "500106").await;
    let buyer = register_organisation(&ledger, OrganisationKind::Enterprise, "500112").await;
    let contract = sign_contract(&ledger, seller, buyer, None, yuan(1_000)).await;
    // 30 clients each record 50 yuan at once: exactly 20 fit in the contract amount.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                run(
                    &ledger,
                    &registrar(),
                    payment(contract, yuan(50), "2024-04-01T10:00:00+08:00", &format!("BANK-{i}")),
                )
                .await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut over = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(CommandError::Domain(e)) if e.rule() == Some("net_received_within_contract_amount") => over += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((accepted, over), (20, 10));
    let view = store.contract(&contract.to_string()).await.unwrap().unwrap();
    assert_eq!(view.settled_fen - view.reversed_fen, yuan(1_000).fen());
    db.drop_db().await;
});

both_backends!(positions_are_gap_free_in_commit_order_for_a_reader_catching_up, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.read_all_after(last, 50).await.unwrap();
                for e in &batch {
                    assert_eq!(e.position, last + 1, "a reader continuing from {last} skipped to {}", e.position);
                    last = e.position;
                    seen.push(e.position);
                }
                if finished && batch.is_empty() {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    register_organisation(&ledger, OrganisationKind::Enterprise, "500112").await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=200).collect::<Vec<i64>>());
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact());
    db.drop_db().await;
});

both_backends!(the_event_log_rejects_update_and_delete_at_the_database_level, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    register_university(&ledger, "500106").await;
    let update = db.execute_raw("UPDATE events SET payload = '{}' WHERE position = 1").await;
    let delete = db.execute_raw("DELETE FROM events WHERE position = 1").await;
    for (what, result) in [("UPDATE", update), ("DELETE", delete)] {
        let err = result.expect_err("the trigger must reject it");
        assert!(err.to_string().contains("append-only"), "{what}: {err}");
    }
    if db.backend == Backend::Postgres {
        let err = db.execute_raw("TRUNCATE events").await.expect_err("TRUNCATE is rejected too");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(store.head().await.unwrap().unwrap().0, 1);
    db.drop_db().await;
});

/// Someone with database rights turns off one of the log's guards (on PostgreSQL one trigger
/// guards against both updates and deletes; on SQLite `sqlite_trigger` is dropped).
async fn disable_events_guard(db: &integration::TestDb, sqlite_trigger: &str) {
    let sql = match db.backend {
        Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete".to_owned(),
        Backend::Sqlite => format!("DROP TRIGGER {sqlite_trigger}"),
    };
    db.execute_raw(&sql).await.unwrap();
}

/// A contract of 1,000,000 yuan between a new university and a new enterprise, paid 100 yuan
/// on each of the first `days` days of April 2024 (references B0, B1, ...).
async fn contract_paid_100_yuan_a_day(ledger: &Ledger, days: u32) -> ContractId {
    let seller = register_university(ledger, "500106").await;
    let buyer = register_organisation(ledger, OrganisationKind::Enterprise, "500112").await;
    let contract = sign_contract(ledger, seller, buyer, None, yuan(1_000_000)).await;
    for day in 1..=days {
        let at = format!("2024-04-{day:02}T10:00:00+08:00");
        run(ledger, &registrar(), payment(contract, yuan(100), &at, &format!("B{}", day - 1))).await.unwrap();
    }
    contract
}

both_backends!(verify_ledger_finds_the_first_tampered_position, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let seller = register_university(&ledger, "500106").await;
    let buyer = register_organisation(&ledger, OrganisationKind::Enterprise, "500112").await;
    let contract = sign_contract(&ledger, seller, buyer, None, yuan(1_000_000)).await;
    run(&ledger, &registrar(), payment(contract, yuan(100), "2024-04-01T10:00:00+08:00", "B1")).await.unwrap();
    run(&ledger, &registrar(), payment(contract, yuan(200), "2024-04-02T10:00:00+08:00", "B2")).await.unwrap();
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact());
    let head = store.head().await.unwrap().unwrap().0;
    // Someone with database rights turns the triggers off and changes the first payment.
    disable_events_guard(&db, "events_no_update").await;
    let tampered = head - 1;
    let n = db
        .execute_raw(&format!(
            "UPDATE events SET payload = replace(payload, '\"100.00\"', '\"10.00\"') WHERE position = {tampered}"
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let report = store.verify_chain(|_| {}).await.unwrap();
    let broken = report.first_break.clone().expect("the change is caught");
    assert_eq!(broken.position, tampered);
    assert_eq!(report.events_checked, tampered - 1, "everything before it verified");
    // Checked in ranges side by side (each from the stored hash before it; on SQLite on
    // connections of their own), the report is the same whichever range the row falls in,
    // and whichever page of its range (pages of 1-3 rows cross page boundaries here).
    for ranges in 1..=4 {
        assert_eq!(store.verify_chain_in_ranges(ranges, |_| {}).await.unwrap(), report, "{ranges} ranges");
        for pages in 1..=3 {
            let paged = store.verify_chain_in_pages(ranges, pages, |_| {}).await.unwrap();
            assert_eq!(paged, report, "{ranges} ranges, pages of {pages}");
        }
    }
    db.drop_db().await;
});

both_backends!(verify_ledger_finds_a_deleted_row_as_a_gap_in_any_number_of_ranges, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    contract_paid_100_yuan_a_day(&ledger, 4).await;
    let head = store.head().await.unwrap().unwrap().0;
    let intact = store.verify_chain(|_| {}).await.unwrap();
    assert!(intact.is_intact());
    assert_eq!((intact.events_checked, intact.head_position), (head, head));
    for ranges in 1..=4 {
        for pages in [1, 2, 3, 10_000] {
            let paged = store.verify_chain_in_pages(ranges, pages, |_| {}).await.unwrap();
            assert_eq!(paged, intact, "{ranges} ranges, pages of {pages}");
        }
    }
    disable_events_guard(&db, "events_no_delete").await;
    let deleted = head - 2;
    assert_eq!(db.execute_raw(&format!("DELETE FROM events WHERE position = {deleted}")).await.unwrap(), 1);
    for ranges in 1..=4 {
        for pages in [1, 2, 3, 10_000] {
            let report = store.verify_chain_in_pages(ranges, pages, |_| {}).await.unwrap();
            let broken = report.first_break.expect("the gap is caught");
            let case = format!("{ranges} ranges, pages of {pages}");
            assert_eq!(broken.position, deleted + 1, "{case}");
            assert_eq!(broken.problem, format!("expected position {deleted}, found {} (a gap)", deleted + 1));
            assert_eq!((report.events_checked, report.head_position), (deleted - 1, deleted - 1), "{case}");
        }
    }
    db.drop_db().await;
});

both_backends!(a_decision_refuses_a_stream_with_a_missing_version_instead_of_folding_around_it, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let contract = contract_paid_100_yuan_a_day(&ledger, 3).await;
    let stream = contract.stream();
    let whole = store.read_streams(std::slice::from_ref(&stream)).await.unwrap();
    let events = &whole[0].1;
    assert_eq!(events.len(), store.read_stream(&stream).await.unwrap().len(), "every event of the stream");
    assert!(matches!(events.last(), Some(Event::PaymentSettled(p)) if p.bank_reference == "B2"));

    disable_events_guard(&db, "events_no_delete").await;
    let head = store.head().await.unwrap().unwrap().0;
    // The middle payment: the stream's versions now skip one.
    assert_eq!(db.execute_raw(&format!("DELETE FROM events WHERE position = {}", head - 1)).await.unwrap(), 1);
    let error = store.read_streams(std::slice::from_ref(&stream)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&format!("stream {stream} has version")), "{message}");
    assert!(message.contains(&format!("(event {head})")), "{message}");
    // A new process (no cached state) refuses to decide on it.
    let fresh = Ledger::new(store.clone());
    let refused = run(&fresh, &registrar(), payment(contract, yuan(100), "2024-04-05T10:00:00+08:00", "B9")).await;
    assert!(refused.is_err(), "a payment decided on a stream with a hole: {refused:?}");
    db.drop_db().await;
});

both_backends!(an_idempotency_key_returns_the_first_receipt_and_appends_nothing, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let seller = register_university(&ledger, "500106").await;
    let buyer = register_organisation(&ledger, OrganisationKind::Enterprise, "500112").await;
    let contract = sign_contract(&ledger, seller, buyer, None, yuan(1_000)).await;
    let mut ctx = registrar();
    ctx.idempotency_key = Some("bank-transfer-42".into());
    let input = serde_json::json!({"contractId": contract.to_string(), "amount": "100.00", "bankReference": "B42"});
    let fingerprint = ledger::service::request_fingerprint("recordPayment", &input);
    // Concurrent repeats (a client retrying on a timeout) and a later repeat: one payment.
    let tries: Vec<_> = (0..6)
        .map(|_| {
            let (ledger, ctx, fingerprint) = (ledger.clone(), ctx.clone(), fingerprint.clone());
            tokio::spawn(async move {
                // Each retry carries a fresh server-generated payment id: only the key dedups.
                let cmd = payment(contract, yuan(100), "2024-04-01T10:00:00+08:00", "B42");
                ledger.execute(&ctx, cmd, &fingerprint).await
            })
        })
        .collect();
    let mut receipts = BTreeSet::new();
    for t in tries {
        let receipt = t.await.unwrap().expect("every repeat succeeds");
        receipts.insert(serde_json::to_string(&receipt).unwrap());
    }
    assert_eq!(receipts.len(), 1, "every repeat got the first receipt");
    let view = store.contract(&contract.to_string()).await.unwrap().unwrap();
    assert_eq!(view.settled_fen, yuan(100).fen(), "counted once");
    // The same key with different input is refused.
    let other = serde_json::json!({"contractId": contract.to_string(), "amount": "200.00", "bankReference": "B43"});
    let err = ledger
        .execute(
            &ctx,
            payment(contract, yuan(200), "2024-04-01T10:00:00+08:00", "B43"),
            &ledger::service::request_fingerprint("recordPayment", &other),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_KEY_REUSED");
    // Without a key, the same bank transfer is still refused by the contract's own rule.
    let err =
        run(&ledger, &registrar(), payment(contract, yuan(100), "2024-04-01T10:00:00+08:00", "B42")).await.unwrap_err();
    assert_eq!(err.code(), "RULE_VIOLATED");
    assert_eq!(store.contract(&contract.to_string()).await.unwrap().unwrap().settled_fen, yuan(100).fen());
    db.drop_db().await;
});

both_backends!(a_stored_v1_contract_is_upcast_on_read_and_still_takes_commands, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let seller = register_university(&ledger, "500106").await;
    let buyer = register_organisation(&ledger, OrganisationKind::Enterprise, "500112").await;
    // Plant a ContractSigned written by schema v1 (one `amount`), chained like any event.
    let contract = ContractId::new_v7();
    let (head, head_hash) = store.head().await.unwrap().unwrap();
    let payload = ledger::event::canonical_json(&serde_json::json!({
        "achievement_id": null, "amount": "250000.00", "broker_id": null, "buyer_id": buyer.to_string(),
        "contract_id": contract.to_string(), "contract_number": "HT-2019-007", "contract_type": "transfer",
        "match_id": null, "operating_center_id": null, "seller_id": seller.to_string(),
        "signed_on": "2019-06-30", "title": "专利转让"
    }));
    let metadata = ledger::event::canonical_json(&serde_json::json!({
        "actor": "migration", "command": "SignContract", "command_id": uuid::Uuid::nil(), "idempotency_key": null,
        "organisation_id": null, "request_id": null, "role": "registrar"
    }));
    let recorded_at = at("2019-06-30T02:00:00Z");
    let stream = contract.stream();
    let hash = event_hash(
        &head_hash,
        &ChainedFields {
            position: head + 1,
            stream_id: stream.as_str(),
            stream_version: 1,
            event_type: "ContractSigned",
            schema_version: 1,
            payload: &payload,
            metadata: &metadata,
            recorded_at_micros: recorded_at.timestamp_micros(),
        },
    );
    let (ts, bytes) = match db.backend {
        Backend::Postgres => {
            ("'2019-06-30T02:00:00Z'::timestamptz".to_owned(), format!("'\\x{}'::bytea", hex::encode(hash)))
        }
        Backend::Sqlite => ("'2019-06-30T02:00:00+00:00'".to_owned(), format!("X'{}'", hex::encode(hash))),
    };
    db.execute_raw(&format!(
        "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) \
         VALUES ({}, '{stream}', 1, 'ContractSigned', 1, '{payload}', '{metadata}', {ts}, {bytes})",
        head + 1
    ))
    .await
    .unwrap();
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact(), "the planted v1 row is properly chained");
    // In its day the v1 event was projected like any other: rebuild the read models from the
    // log, which reads it through the upcaster too.
    store.rebuild_projections(|_| {}).await.unwrap();
    let view = store.contract(&contract.to_string()).await.unwrap().expect("projected");
    assert_eq!(
        (view.contract_amount_fen, view.tech_transaction_amount_fen),
        (yuan(250_000).fen(), yuan(250_000).fen())
    );

    let events = store.read_stream(&stream).await.unwrap();
    assert_eq!(events[0].stored_schema_version, 1);
    let Event::ContractSigned(signed) = &events[0].event else { panic!("not a ContractSigned") };
    assert_eq!(signed.contract_amount, yuan(250_000));
    assert_eq!(signed.tech_transaction_amount, yuan(250_000), "v1 had no separate technology amount");
    // The aggregate folds the upcast event: the contract amount limits payments as usual.
    let err = run(
        &ledger,
        &registrar(),
        payment(contract, Money::from_fen(25_000_001), "2019-07-01T10:00:00+08:00", "OLD-2"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "RULE_VIOLATED");
    run(&ledger, &registrar(), payment(contract, yuan(250_000), "2019-07-01T10:00:00+08:00", "OLD-1")).await.unwrap();
    db.drop_db().await;
});

both_backends!(a_unique_value_is_claimed_once_across_streams, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let code = credit_code(4242);
    let register = |id| {
        Command::RegisterOrganisation(RegisterOrganisation {
            organisation_id: id,
            name: "同码".into(),
            kind: OrganisationKind::Enterprise,
            credit_code: code.clone(),
            division_code: ledger::codes::DivisionCode::parse("d", "500112").unwrap(),
        })
    };
    run(&ledger, &admin(), register(OrganisationId::new_v7())).await.unwrap();
    let err = run(&ledger, &admin(), register(OrganisationId::new_v7())).await.unwrap_err();
    assert_eq!(err.code(), "ALREADY_EXISTS", "{err}");
    assert_eq!(store.head().await.unwrap().unwrap().0, 1, "nothing appended");
    db.drop_db().await;
});

both_backends!(rebuilt_read_models_equal_the_live_ones_after_a_long_random_scenario, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let mut scenario = ledger::testkit::Scenario::new(integration::scenario::seed_from_env());
    let (accepted, refused) = integration::scenario::play(&ledger, &mut scenario, 600).await;
    println!("accepted {accepted} commands, refused {refused}");
    assert!(accepted > 300 && refused > 10, "the scenario exercises both paths");
    let live = store.dump_read_models().await.unwrap();
    let report = store.rebuild_projections(|_| {}).await.unwrap();
    let rebuilt = store.dump_read_models().await.unwrap();
    assert_eq!(report.head_position, store.head().await.unwrap().unwrap().0);
    assert_eq!(live.len(), rebuilt.len(), "seed {}", scenario.seed);
    for (a, b) in live.iter().zip(&rebuilt) {
        assert_eq!(a, b, "seed {}: a row differs after rebuild", scenario.seed);
    }
    assert!(store.verify_chain(|_| {}).await.unwrap().is_intact());
    // Money invariants hold in the read model too: no contract received more than its amount.
    for line in live.iter().filter(|l| l.starts_with("contracts: ")) {
        let field = |name: &str| -> i64 {
            line.split('|')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let net = field("settled_fen") - field("reversed_fen");
        assert!(net >= 0 && net <= field("contract_amount_fen"), "seed {}: {line}", scenario.seed);
    }
    db.drop_db().await;
});

both_backends!(a_rebuild_in_many_pages_with_updates_held_across_them_equals_the_live_read_models, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let mut scenario = ledger::testkit::Scenario::new(integration::scenario::seed_from_env());
    let (accepted, _) = integration::scenario::play(&ledger, &mut scenario, 600).await;
    assert!(accepted > 300, "seed {}: the scenario builds a market", scenario.seed);
    // The pages below need a log of more than ten pages of 37 events; a seed whose 600
    // commands make fewer (seed 870245859097078765 did) plays on until it has them.
    for _ in 0..10 {
        if store.head().await.unwrap().unwrap().0 > 10 * 37 {
            break;
        }
        integration::scenario::play(&ledger, &mut scenario, 100).await;
    }
    let live = store.dump_read_models().await.unwrap();
    let indexes = db.index_definitions().await;
    assert!(indexes.len() > 30, "the read models are indexed: {indexes:?}");
    let head = store.head().await.unwrap().unwrap().0;
    // Small pages, so that rows are inserted in one page and updated in later ones: updates
    // held to the last page, written whenever a few rows wait, and written after every page.
    for options in [
        RebuildOptions { page_rows: 37, updates_held_max: usize::MAX },
        RebuildOptions { page_rows: 37, updates_held_max: 25 },
        RebuildOptions { page_rows: 1, updates_held_max: 0 },
    ] {
        let report = store.rebuild_projections_with(options, |_| {}).await.unwrap();
        assert_eq!(report.head_position, head);
        assert!(head > 10 * options.page_rows, "seed {}: the log spans many pages", scenario.seed);
        let rebuilt = store.dump_read_models().await.unwrap();
        assert_eq!(live.len(), rebuilt.len(), "seed {}, {options:?}", scenario.seed);
        for (a, b) in live.iter().zip(&rebuilt) {
            assert_eq!(a, b, "seed {}, {options:?}: a row differs after the rebuild", scenario.seed);
        }
        // On PostgreSQL the rebuild drops the primary keys and the other indexes, and adds
        // them again before its commit (a key before the first statement that needs it).
        assert_eq!(db.index_definitions().await, indexes, "{options:?}: every index and key is back as it was");
    }
    db.drop_db().await;
});

// A rebuild on PostgreSQL writes its plain INSERTs with `COPY ... FROM STDIN` in text form,
// where a tab ends a column, a line break a row and a backslash starts an escape.
both_backends!(a_rebuild_keeps_text_with_tabs_line_breaks_and_backslashes_as_written, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let owner = register_university(&ledger, "500106").await;
    let title = "镁合金\\制备\t技术 \\N";
    let description = "第一行\n\t缩进 \\ 反斜杠 \\N \\t 'q' \"d\"\n\n末行";
    let achievement = AchievementId::new_v7();
    run(
        &ledger,
        &ctx(actor(Role::ResearchInstitution, Some(owner))),
        Command::ListAchievement(ListAchievement {
            achievement_id: achievement,
            owner_id: owner,
            details: ledger::event::AchievementDetails {
                title: title.into(),
                field: TechField::NewMaterials,
                description: description.into(),
                patent_numbers: vec![],
                maturity: 6,
                asking_price: None,
                transfer_modes: vec![TransferMode::Transfer],
                completers: completers(&["60", "40"]),
            },
        }),
    )
    .await
    .expect("list an achievement");
    assert_rebuild_equals_live(&store).await;
    let rebuilt = store.achievement(&achievement.to_string()).await.unwrap().expect("the rebuilt row");
    assert_eq!((rebuilt.title.as_str(), rebuilt.description.as_str()), (title, description));
    db.drop_db().await;
});

/// A market of 300 scenario steps with payments; then `plant` (SQL on the test database)
/// makes every rebuild fail, in one page and in pages of a few events (on PostgreSQL the
/// writes go on behind the replay, and a failure reaches the replay at its next write or at
/// its end). Each error must pass `expected`, and leave the read models and their indexes
/// as they were. Then `unplant`; returns the store, the ledger and its scenario, to go on
/// with.
async fn failed_rebuilds_change_nothing(
    db: &integration::TestDb,
    (plant, unplant): (&str, &str),
    expected: impl Fn(&ledger::store::StoreError) -> bool,
) -> (ledger::store::Store, Ledger, ledger::testkit::Scenario) {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let mut scenario = ledger::testkit::Scenario::new(integration::scenario::seed_from_env());
    integration::scenario::play(&ledger, &mut scenario, 300).await;
    let before = store.dump_read_models().await.unwrap();
    assert!(
        before.iter().any(|l| l.starts_with("payments: ")),
        "seed {}: the scenario records payments, which add to their contracts",
        scenario.seed
    );
    assert!(
        before.iter().any(|l| l.starts_with("achievements: ")
            && (l.contains("completers_locked=true") || l.contains("completers_locked=1"))),
        "seed {}: the scenario signs contracts for achievements, which lock their completers",
        scenario.seed
    );
    assert!(
        before.iter().any(|l| l.starts_with("accreditations: ")),
        "seed {}: the scenario accredits organisations, which updates them",
        scenario.seed
    );
    let indexes = db.index_definitions().await;
    db.execute_raw(plant).await.unwrap();
    for options in [RebuildOptions::default(), RebuildOptions { page_rows: 3, updates_held_max: 0 }] {
        let err = store.rebuild_projections_with(options, |_| {}).await.unwrap_err();
        assert!(expected(&err), "seed {}, {options:?}: not the error expected: {err}", scenario.seed);
        assert_eq!(
            store.dump_read_models().await.unwrap(),
            before,
            "seed {}, {options:?}: nothing of the failed rebuild stays",
            scenario.seed
        );
        assert_eq!(
            db.index_definitions().await,
            indexes,
            "{options:?}: the indexes it dropped are back with the rollback"
        );
    }
    db.execute_raw(unplant).await.unwrap();
    (store, ledger, scenario)
}

both_backends!(a_rebuild_that_fails_halfway_leaves_the_read_models_as_they_were, |db| async move {
    // A failure planted on the payments table: by the time the rebuild writes its first
    // payment it has emptied every table and written the organisations of the first page
    // (it holds the achievements and contracts, to write each once, whole).
    let planted = match db.backend {
        Backend::Postgres => (
            "CREATE FUNCTION planted_failure() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'planted failure'; END $$; \
             CREATE TRIGGER planted_failure BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION planted_failure()",
            "DROP TRIGGER planted_failure ON payments; DROP FUNCTION planted_failure()",
        ),
        Backend::Sqlite => (
            "CREATE TRIGGER planted_failure BEFORE INSERT ON payments BEGIN SELECT RAISE(ABORT, 'planted failure'); END",
            "DROP TRIGGER planted_failure",
        ),
    };
    let (store, ledger, mut scenario) =
        failed_rebuilds_change_nothing(&db, planted, |err| err.to_string().contains("planted failure")).await;
    // The failed rebuild let go of the append lock: the ledger takes commands again, and a
    // rebuild now gives the live read models.
    let (accepted, _) = integration::scenario::play(&ledger, &mut scenario, 30).await;
    assert!(accepted > 0, "seed {}: commands are taken after the failed rebuild", scenario.seed);
    assert_rebuild_equals_live(&store).await;
    db.drop_db().await;
});

// Each of a rebuild's updates must change as many rows as it names: an update that misses
// its row means the read models and the log disagree. On PostgreSQL the check is made where
// the writes run, behind the replay.
both_backends!(a_rebuild_whose_update_misses_its_row_stops_and_leaves_the_read_models_as_they_were, |db| async move {
    // A trigger that skips every update of an organisation (an accreditation moves its
    // `updated_position`): the statement then changes no row. (A rebuild writes each
    // achievement, demand, match and contract once, whole, and updates none of them unless it
    // has to write them before their updates: see `Deferred::flush_page`.)
    let planted = match db.backend {
        Backend::Postgres => (
            "CREATE FUNCTION skipped_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; \
             CREATE TRIGGER skipped_update BEFORE UPDATE ON organisations FOR EACH ROW EXECUTE FUNCTION skipped_update()",
            "DROP TRIGGER skipped_update ON organisations; DROP FUNCTION skipped_update()",
        ),
        Backend::Sqlite => (
            "CREATE TRIGGER skipped_update BEFORE UPDATE ON organisations BEGIN SELECT RAISE(IGNORE); END",
            "DROP TRIGGER skipped_update",
        ),
    };
    let (store, ..) = failed_rebuilds_change_nothing(&db, planted, |err| {
        matches!(err, ledger::store::StoreError::Inconsistent(m) if m.contains("of organisations changed 0 rows instead of"))
    })
    .await;
    assert_rebuild_equals_live(&store).await;
    db.drop_db().await;
});

// Live appends never let the log claim a unique value twice. A log that does (here a row
// written by hand) makes a rebuild stop, say so, and change nothing.
both_backends!(a_rebuild_of_a_log_that_claims_a_value_twice_stops_and_changes_nothing, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let first = register_university(&ledger, "500106").await;
    register_university(&ledger, "500107").await;
    let before = store.dump_read_models().await.unwrap();
    // The first organisation's registration again, for another organisation: the same
    // credit code, claimed by another stream.
    let (old, new) = (first.to_string(), OrganisationId::new_v7().to_string());
    db.execute_raw(&format!(
        "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) \
         SELECT (SELECT MAX(position) FROM events) + 1, replace(stream_id, '{old}', '{new}'), 1, event_type, schema_version, \
         replace(payload, '{old}', '{new}'), metadata, recorded_at, hash FROM events \
         WHERE event_type = 'OrganisationRegistered' AND payload LIKE '%{old}%'",
    ))
    .await
    .unwrap();
    let err = store.rebuild_projections(|_| {}).await.unwrap_err();
    let told = err.to_string();
    assert!(
        matches!(&err, ledger::store::StoreError::Inconsistent(m) if m.contains("the log claims a unique value twice")),
        "{told}"
    );
    if db.backend == Backend::Postgres {
        // The key is added again at the end of the rebuild, and names the value it finds twice.
        assert!(
            told.contains("Key (claim)=(credit_code:") && told.contains("duplicated"),
            "PostgreSQL names the value: {told}"
        );
    }
    assert_eq!(store.dump_read_models().await.unwrap(), before, "nothing of the failed rebuild stays");
    db.drop_db().await;
});
