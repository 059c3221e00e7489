//! The fast append path on both engines: decisions taken on streams from the command
//! handler's cache (`state_cache`) when another process has moved them on, and payments and
//! reversals written with multi-row statements at the end of a batch.

use integration::both_backends;
use integration::fixtures::*;
use ledger::command::*;
use ledger::ids::*;
use ledger::service::Ledger;
use ledger::store::queries::{PageRequest, PaymentFilter};
use ledger::{Money, Role};

fn reversal(contract: ContractId, payment: PaymentId, amount: Money, reversed_at: &str) -> Command {
    Command::ReversePayment(ReversePayment {
        contract_id: contract,
        payment_id: payment,
        reversal_id: ReversalId(uuid::Uuid::now_v7()),
        amount,
        reversed_at: at(reversed_at),
        reason: "退汇".into(),
    })
}

fn payment_id(command: &Command) -> PaymentId {
    let Command::RecordPayment(p) = command else { panic!("not a payment") };
    p.payment_id
}

/// A seller, a buyer and a signed contract for `amount`, through `ledger`.
async fn contract_for(ledger: &Ledger, amount: Money) -> ContractId {
    let seller = register_university(ledger, "500106").await;
    let buyer = register_organisation(ledger, ledger::vocabulary::OrganisationKind::Enterprise, "500112").await;
    sign_contract(ledger, seller, buyer, None, amount).await
}

both_backends!(a_decision_on_a_stream_another_process_moved_on_is_taken_again_on_the_log, |db| async move {
    // Two processes on one database, each with its own cache of the streams it decided on.
    let (store_a, store_b) = (db.store().await, db.store().await);
    let (a, b) = (Ledger::new(store_a.clone()), Ledger::new(store_b.clone()));
    let contract = contract_for(&a, yuan(100)).await;
    let first = payment(contract, yuan(60), "2024-03-02T10:00:00+08:00", "B-1");
    run(&a, &registrar(), first.clone()).await.unwrap();
    assert_eq!(a.state_cache().get(&contract.stream()).map(|l| l.version), Some(2), "A decided on v2 and cached it");

    // B reverses the payment: A's cache still says 60 yuan received.
    run(&b, &registrar(), reversal(contract, payment_id(&first), yuan(60), "2024-03-03T10:00:00+08:00")).await.unwrap();
    // On its cache A would refuse 50 more (110 > 100); on the log it must accept.
    run(&a, &registrar(), payment(contract, yuan(50), "2024-03-04T10:00:00+08:00", "B-2")).await.unwrap();
    assert_eq!(a.state_cache().get(&contract.stream()).map(|l| l.version), Some(4));

    // B's cache says 0 received, so it accepts 60 more; the append finds version 4, not 3,
    // and the decision taken again on the log refuses (50 + 60 > 100).
    let conflicts = b.stats().concurrency_conflicts.load(std::sync::atomic::Ordering::Relaxed);
    let err = run(&b, &registrar(), payment(contract, yuan(60), "2024-03-05T10:00:00+08:00", "B-3")).await.unwrap_err();
    assert_eq!(err.code(), "RULE_VIOLATED", "{err}");
    assert_eq!(b.stats().concurrency_conflicts.load(std::sync::atomic::Ordering::Relaxed), conflicts + 1);
    // A's cache is current (B appended nothing): the last 50 fits exactly.
    run(&a, &registrar(), payment(contract, yuan(50), "2024-03-06T10:00:00+08:00", "B-4")).await.unwrap();
    let err = run(&a, &registrar(), payment(contract, Money::from_fen(1), "2024-03-07T10:00:00+08:00", "B-5"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "RULE_VIOLATED", "one fen over the contract amount: {err}");

    let head = store_a.head().await.unwrap().unwrap().0;
    let view = store_a.contract(&contract.to_string()).await.unwrap().expect("projected");
    assert_eq!((view.settled_fen, view.reversed_fen), (yuan(160).fen(), yuan(60).fen()));
    assert_eq!(view.updated_position, head);
    assert_rebuild_equals_live(&store_a).await;
    db.drop_db().await;
});

both_backends!(payments_and_reversals_sharing_a_batch_add_up_to_the_fen_on_their_contract, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let contracts = [
        contract_for(&ledger, yuan(1_000_000)).await,
        contract_for(&ledger, yuan(1_000_000)).await,
        contract_for(&ledger, yuan(1_000_000)).await,
    ];
    // Payments to reverse later, recorded one at a time.
    let mut earlier = Vec::new();
    for (i, contract) in contracts.iter().enumerate() {
        let command =
            payment(*contract, Money::from_fen(500_001 + i as i64), "2024-03-02T10:00:00+08:00", &format!("E-{i}"));
        earlier.push((*contract, payment_id(&command), 500_001 + i as i64));
        run(&ledger, &registrar(), command).await.unwrap();
    }
    let before = store.group_commit_stats();
    // 90 payments of distinct odd amounts and 3 partial reversals, all at once: the group
    // commit puts several on one contract in one batch.
    let mut tasks = Vec::new();
    for i in 0..90i64 {
        let (ledger, contract) = (ledger.clone(), contracts[(i % 3) as usize]);
        let fen = 1_001 + 2 * i;
        tasks.push(tokio::spawn(async move {
            let command = payment(contract, Money::from_fen(fen), "2024-03-03T10:00:00+08:00", &format!("C-{i}"));
            run(&ledger, &registrar(), command).await.map(|_| (contract, fen, 0))
        }));
    }
    for (i, (contract, payment, _)) in earlier.iter().copied().enumerate() {
        let ledger = ledger.clone();
        let fen = 100_003 + i as i64;
        tasks.push(tokio::spawn(async move {
            let command = reversal(contract, payment, Money::from_fen(fen), "2024-03-04T10:00:00+08:00");
            run(&ledger, &registrar(), command).await.map(|_| (contract, 0, fen))
        }));
    }
    let mut expected = std::collections::HashMap::new();
    for (contract, _, fen) in &earlier {
        expected.entry(*contract).or_insert((0i64, 0i64)).0 += fen;
    }
    for task in tasks {
        let (contract, settled, reversed) = task.await.unwrap().unwrap();
        let sums = expected.get_mut(&contract).unwrap();
        sums.0 += settled;
        sums.1 += reversed;
    }
    let after = store.group_commit_stats();
    let (batches, requests) = (after.batches - before.batches, after.requests - before.requests);
    println!("{}: {requests} requests in {batches} batches", db.backend.as_str());
    assert_eq!(requests, 93);
    assert!(batches < requests, "concurrent payments shared batches ({batches} for {requests})");

    for contract in contracts {
        let view = store.contract(&contract.to_string()).await.unwrap().expect("projected");
        assert_eq!((view.settled_fen, view.reversed_fen), expected[&contract], "contract {contract}");
        let last = store.read_stream(&contract.stream()).await.unwrap().last().unwrap().position;
        assert_eq!(view.updated_position, last, "contract {contract} was last changed by its last event");
    }
    for (i, (contract, payment, _)) in earlier.iter().enumerate() {
        let filter = PaymentFilter { contract_id: Some(contract.to_string()), ..Default::default() };
        let page = store.payments(&filter, &PageRequest { first: Some(100), after: None }).await.unwrap();
        assert_eq!(page.rows.len(), 31, "contract {contract}: its payments");
        assert_eq!(page.rows.iter().map(|p| p.amount_fen).sum::<i64>(), expected[contract].0);
        let reversed = page.rows.iter().find(|p| p.id == payment.to_string()).expect("the earlier payment");
        assert_eq!(reversed.reversed_fen, 100_003 + i as i64, "payment {payment}: only its own reversal");
        let others: i64 = page.rows.iter().filter(|p| p.id != payment.to_string()).map(|p| p.reversed_fen).sum();
        assert_eq!(others, 0);
    }
    assert_rebuild_equals_live(&store).await;
    db.drop_db().await;
});

both_backends!(append_batches_run_on_the_stores_commit_thread_not_on_the_callers_runtime, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = threads.clone();
    store.observe_append_batches(std::sync::Arc::new(move |_, _| {
        seen.lock().unwrap().push(std::thread::current().name().map(str::to_owned));
    }));
    let contract = contract_for(&ledger, yuan(1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let command = payment(contract, yuan(1), "2024-03-03T10:00:00+08:00", &format!("T-{i}"));
            run(&ledger, &registrar(), command).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let threads = threads.lock().unwrap().clone();
    assert!(threads.len() >= 2, "the contract's set-up and the payments were committed: {threads:?}");
    // The callers' runtime (this test's) names its threads otherwise: a batch run there
    // would wait in its scheduler behind the callers (BENCHMARKS.md, sixteenth stop).
    assert!(threads.iter().all(|t| t.as_deref() == Some("techmarket-commit")), "{threads:?}");
    db.drop_db().await;
});

both_backends!(a_role_that_may_not_record_payments_is_refused_from_the_cache_too, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let contract = contract_for(&ledger, yuan(100)).await;
    run(&ledger, &registrar(), payment(contract, yuan(1), "2024-03-02T10:00:00+08:00", "R-1")).await.unwrap();
    let head = store.head().await.unwrap().unwrap().0;
    let err =
        run(&ledger, &ctx(actor(Role::Broker, None)), payment(contract, yuan(1), "2024-03-02T11:00:00+08:00", "R-2"))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN", "{err}");
    assert_eq!(store.head().await.unwrap().unwrap().0, head, "nothing appended");
    db.drop_db().await;
});

both_backends!(sqlite_checkpoints_the_wal_after_append_commits_on_a_connection_of_its_own, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let contract = contract_for(&ledger, yuan(100)).await;
    run(&ledger, &registrar(), payment(contract, yuan(60), "2024-03-02T10:00:00+08:00", "CP-1")).await.unwrap();
    match store.backend() {
        ledger::store::Backend::Sqlite => {
            // The task is woken by the commits above and runs beside the appends.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.wal_checkpoints() == 0 {
                assert!(std::time::Instant::now() < deadline, "no WAL checkpoint 10 s after the appends");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        ledger::store::Backend::Postgres => assert_eq!(store.wal_checkpoints(), 0, "PostgreSQL has no such task"),
    }
    // Appending goes on while checkpoints run, and nothing is lost to them.
    run(&ledger, &registrar(), payment(contract, yuan(40), "2024-03-03T10:00:00+08:00", "CP-2")).await.unwrap();
    let view = store.contract(&contract.to_string()).await.unwrap().expect("projected");
    assert_eq!(view.settled_fen, yuan(100).fen());
    assert_rebuild_equals_live(&store).await;
    db.drop_db().await;
});
