//! The policy projections on real databases: statements at the head read from the tables
//! equal the same statements replayed from the log; as-of statements show the past exactly;
//! the worked example of the README, through GraphQL.

use integration::fixtures::*;
use integration::worked_example::{WorkedExample, worked_example};
use integration::{both_backends, spawn_app};
use ledger::reports::{AsOfRequest, LineSource};
use ledger::service::Ledger;
use ledger::{Money, Role};
use serde_json::json;

both_backends!(statements_at_the_head_equal_a_replay_of_the_whole_log, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let mut scenario = ledger::testkit::Scenario::new(integration::scenario::seed_from_env());
    let (accepted, _) = integration::scenario::play(&ledger, &mut scenario, 500).await;
    assert!(accepted > 250);
    let head = ledger.resolve_as_of(AsOfRequest::Head).await.unwrap();
    let mut lines_seen = 0;
    for year in 2023..=2026 {
        let tables = ledger.completer_statement(year, head.clone(), LineSource::Tables).await.unwrap();
        let replay = ledger.completer_statement(year, head.clone(), LineSource::Replay).await.unwrap();
        assert_eq!(tables, replay, "seed {}: completer statement {year}", scenario.seed);
        lines_seen += tables.lines.len();
        let tables = ledger.incentive_statement(year, head.clone(), LineSource::Tables).await.unwrap();
        let replay = ledger.incentive_statement(year, head.clone(), LineSource::Replay).await.unwrap();
        assert_eq!(tables, replay, "seed {}: incentive statement {year}", scenario.seed);
        let tables = ledger.turnover_statement(year, head.clone(), LineSource::Tables).await.unwrap();
        let replay = ledger.turnover_statement(year, head.clone(), LineSource::Replay).await.unwrap();
        assert_eq!(tables, replay, "seed {}: turnover {year}", scenario.seed);
    }
    assert!(lines_seen > 20, "seed {}: the scenario made subsidy lines ({lines_seen})", scenario.seed);
    // The totals tables hold what the replayed fold ends with.
    let (state, _) = store.replay_policy(head.position, |_| None::<()>).await.unwrap();
    for (achievement, period, eligible, subsidy) in state.subsidy_totals() {
        let live = ledger.achievement_subsidy(achievement, head.clone(), LineSource::Tables).await.unwrap();
        assert_eq!((period, live.eligible_received, live.subsidy), (0, eligible, subsidy), "seed {}", scenario.seed);
        assert!(live.subsidy <= live.cap);
        assert_eq!(live.completers.iter().map(|c| c.subsidy).sum::<ledger::Money>(), live.subsidy);
    }
    db.drop_db().await;
});

both_backends!(a_statement_as_of_an_old_position_shows_exactly_what_the_ledger_held_then, |db| async move {
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let (owner, buyer, achievement) = eligible_seller_buyer_and_achievement(&ledger).await;
    let contract = sign_contract(&ledger, owner, buyer, Some(achievement), yuan(50_000_000)).await;
    register_contract(&ledger, contract, "2024500106000009", date(2024, 3, 10), yuan(40_000_000)).await;
    run(&ledger, &registrar(), payment(contract, yuan(10_000_000), "2024-05-01T10:00:00+08:00", "P1")).await.unwrap();
    let printed = ledger.resolve_as_of(AsOfRequest::Head).await.unwrap();
    let statement_then = ledger.completer_statement(2024, printed.clone(), LineSource::Tables).await.unwrap();
    assert_eq!(statement_then.totals.subsidy, yuan(500_000));
    // Later: another 2024 payment recorded in 2025, and a reversal.
    run(&ledger, &registrar(), payment(contract, yuan(12_000_000), "2024-12-31T23:59:00+08:00", "P2")).await.unwrap();
    let now = ledger.resolve_as_of(AsOfRequest::Head).await.unwrap();
    let statement_now = ledger.completer_statement(2024, now.clone(), LineSource::Tables).await.unwrap();
    assert_eq!(statement_now.totals.subsidy, yuan(1_000_000), "22,000,000 x 5 % capped at 1,000,000");
    assert_eq!(statement_now.completers.iter().map(|c| c.subsidy).collect::<Vec<_>>(), [yuan(600_000), yuan(400_000)]);
    // As of the printed position: exactly the printed statement, with the same chain value.
    let again = ledger.resolve_as_of(AsOfRequest::Position(printed.position)).await.unwrap();
    assert_eq!(again, printed);
    let reproduced = ledger.completer_statement(2024, again, LineSource::Replay).await.unwrap();
    assert_eq!(reproduced, statement_then);
    // Beyond the head is refused.
    let beyond = ledger.resolve_as_of(AsOfRequest::Position(now.position + 1)).await;
    assert!(matches!(beyond, Err(ledger::reports::ReportError::BeyondHead { .. })));
    db.drop_db().await;
});

both_backends!(payments_committed_together_are_capped_and_totalled_as_one_by_one, |db| async move {
    // Group commit: one transaction carries many payments, and the policy totals of the batch
    // are written once per key (the last value). Eight payments of 3,000,000.01 yuan on eight
    // contracts of one achievement: 5 % of 24,000,000.08 is 1,200,000.004, capped at exactly
    // 1,000,000.00 (60 % / 40 %), and the turnover cells count every fen.
    let store = db.store().await;
    let ledger = Ledger::new(store.clone());
    let (owner, buyer, achievement) = eligible_seller_buyer_and_achievement(&ledger).await;
    let mut contracts = Vec::new();
    for i in 0..8 {
        let contract = sign_contract(&ledger, owner, buyer, Some(achievement), yuan(5_000_000)).await;
        register_contract(&ledger, contract, &format!("202450010600010{i}"), date(2024, 3, 10), yuan(5_000_000)).await;
        contracts.push(contract);
    }
    let before = store.group_commit_stats();
    let amount = Money::parse_amount("amount", "3000000.01").unwrap();
    let tasks: Vec<_> = contracts
        .iter()
        .enumerate()
        .map(|(i, contract)| {
            let (ledger, contract) = (ledger.clone(), *contract);
            tokio::spawn(async move {
                run(&ledger, &registrar(), payment(contract, amount, "2024-05-01T10:00:00+08:00", &format!("B{i}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("payment");
    }
    let after = store.group_commit_stats();
    println!("{}: 8 payments in {} batches", db.backend.as_str(), after.batches - before.batches);
    let head = ledger.resolve_as_of(AsOfRequest::Head).await.unwrap();
    let tables = ledger.completer_statement(2024, head.clone(), LineSource::Tables).await.unwrap();
    assert_eq!(tables.totals.received, Money::parse_amount("received", "24000000.08").unwrap());
    assert_eq!(tables.totals.subsidy, yuan(1_000_000));
    assert_eq!(tables.completers.iter().map(|c| c.subsidy).collect::<Vec<_>>(), [yuan(600_000), yuan(400_000)]);
    assert_eq!(ledger.completer_statement(2024, head, LineSource::Replay).await.unwrap(), tables);
    // The stored totals (written once per key per batch) hold the last values.
    let live = assert_rebuild_equals_live(&store).await;
    let row = |table: &str, needle: &str| -> String {
        live.iter().find(|l| l.starts_with(&format!("{table}: ")) && l.contains(needle)).cloned().unwrap_or_default()
    };
    assert!(row("subsidy_totals", "cap_period=0").contains("|subsidy_fen=100000000|"), "{live:#?}");
    assert!(row("turnover_cells", "dimension=total").contains("|received_fen=2400000008|"), "{live:#?}");
    db.drop_db().await;
});

both_backends!(a_restarted_server_folds_the_log_ahead_and_counts_its_first_payment_once, |db| async move {
    // A server starting on an existing log folds it in the background (without the append
    // lock); its first payment waits for that and then folds only what came after. Cumulative
    // rule: 10,000,000 yuan before the restart earned 500,000; 12,000,000 after it earn the
    // 500,000 left under the 1,000,000 cap, not 600,000.
    let before_restart = db.store().await;
    let ledger = Ledger::new(before_restart.clone());
    let (owner, buyer, achievement) = eligible_seller_buyer_and_achievement(&ledger).await;
    let contract = sign_contract(&ledger, owner, buyer, Some(achievement), yuan(30_000_000)).await;
    register_contract(&ledger, contract, "2024500106000201", date(2024, 3, 10), yuan(30_000_000)).await;
    run(&ledger, &registrar(), payment(contract, yuan(10_000_000), "2024-04-01T10:00:00+08:00", "R1")).await.unwrap();
    let folded_before = before_restart.head().await.unwrap().unwrap().0;
    drop((ledger, before_restart));

    let store = db.store().await;
    let warm_up = store.spawn_policy_warm_up();
    let ledger = Ledger::new(store.clone());
    run(&ledger, &registrar(), payment(contract, yuan(12_000_000), "2024-05-01T10:00:00+08:00", "R2")).await.unwrap();
    assert_eq!(warm_up.await.unwrap().unwrap(), folded_before, "the warm-up folded the log as it was at the start");
    // And after it: the cap is reached, whichever of the two folds the process kept.
    run(&ledger, &registrar(), payment(contract, yuan(1_000), "2024-06-01T10:00:00+08:00", "R3")).await.unwrap();

    let head = ledger.resolve_as_of(AsOfRequest::Head).await.unwrap();
    let tables = ledger.completer_statement(2024, head.clone(), LineSource::Tables).await.unwrap();
    assert_eq!(tables.lines.iter().map(|l| l.subsidy).collect::<Vec<_>>(), [yuan(500_000), yuan(500_000), yuan(0)]);
    assert_eq!(tables.totals.subsidy, yuan(1_000_000));
    assert_eq!(tables.completers.iter().map(|c| c.subsidy).collect::<Vec<_>>(), [yuan(600_000), yuan(400_000)]);
    assert_eq!(ledger.completer_statement(2024, head, LineSource::Replay).await.unwrap(), tables);
    assert_rebuild_equals_live(&store).await;
    db.drop_db().await;
});

both_backends!(the_worked_example_through_graphql, |db| async move {
    let app = spawn_app(db).await;
    let WorkedExample { achievement, printed, .. } = worked_example(&app, [None; 3]).await;

    let finance = app.token(Role::Finance, None, None);
    let q = "query($y: Int!, $a: UUID!, $p: Position) {
        completerSubsidyStatement(year: $y, asOf: $p) { asOf { position hash } policies { version rate cap source }
            totals { received eligible subsidy lines } completers { name share subsidy }
            lines { kind date received eligible subsidy reasons completers { name amount } } }
        operatingCenterIncentiveStatement(year: $y, asOf: $p) { centers { operatingAmount incentive capReached } totals { incentive } }
        turnoverStatement(year: $y, asOf: $p) { total { contracts contractAmount techTransactionAmount received } byField { key figures { contracts } } }
        achievementSubsidy(achievementId: $a, asOf: $p) { eligibleReceived subsidy capReached completers { name subsidy } }
    }";
    let y2024 = app.gql(Some(&finance), q, json!({ "y": 2024, "a": achievement })).await;
    let d = y2024.data();
    let s = &d["completerSubsidyStatement"];
    assert_eq!(
        s["totals"],
        json!({ "received": "21000000.00", "eligible": "21000000.00", "subsidy": "1000000.00", "lines": 3 })
    );
    assert_eq!(s["policies"][0]["rate"], "0.05");
    assert!(s["policies"][0]["source"].as_str().unwrap().contains("渝府办发〔2019〕126号"));
    let kinds: Vec<&str> = s["lines"].as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["payment", "registration", "payment"]);
    assert_eq!(s["lines"][0]["reasons"], json!(["contract_not_registered"]));
    assert_eq!(s["lines"][1]["subsidy"], "400000.00", "8,000,000 x 5 % once registered, dated 2024-04-01");
    assert_eq!(s["lines"][1]["date"], "2024-04-01");
    assert_eq!(s["lines"][2]["subsidy"], "600000.00", "capped: 21,000,000 x 5 % = 1,050,000 -> 1,000,000");
    assert_eq!(
        s["completers"],
        json!([
            { "name": "张三", "share": "33.33", "subsidy": "333300.00" },
            { "name": "李四", "share": "33.33", "subsidy": "333300.00" },
            { "name": "王五", "share": "33.34", "subsidy": "333400.00" }
        ])
    );
    assert_eq!(
        d["operatingCenterIncentiveStatement"]["centers"][0],
        json!({ "operatingAmount": "21000000.00", "incentive": "420000.00", "capReached": false })
    );
    assert_eq!(
        d["turnoverStatement"]["total"],
        json!({ "contracts": 1, "contractAmount": "30000000.00", "techTransactionAmount": "27500000.00", "received": "21000000.00" })
    );
    assert_eq!(d["turnoverStatement"]["byField"], json!([{ "key": "new_materials", "figures": { "contracts": 1 } }]));
    assert_eq!(
        d["achievementSubsidy"],
        json!({ "eligibleReceived": "24000000.00", "subsidy": "1000000.00", "capReached": true,
        "completers": [{ "name": "张三", "subsidy": "333300.00" }, { "name": "李四", "subsidy": "333300.00" }, { "name": "王五", "subsidy": "333400.00" }] })
    );

    // 2025: the 2025 payment earns nothing (cap reached); its partial reversal claws back
    // nothing either (net 24,000,000 x 5 % is still above the cap); the center's 2025 starts fresh.
    let y2025 = app.gql(Some(&finance), q, json!({ "y": 2025, "a": achievement })).await;
    let d = y2025.data();
    assert_eq!(
        d["completerSubsidyStatement"]["totals"],
        json!({ "received": "3000000.00", "eligible": "3000000.00", "subsidy": "0.00", "lines": 2 })
    );
    assert_eq!(d["completerSubsidyStatement"]["lines"][0]["reasons"], json!(["cap_reached"]));
    assert_eq!(
        d["operatingCenterIncentiveStatement"]["centers"][0],
        json!({ "operatingAmount": "3000000.00", "incentive": "60000.00", "capReached": false })
    );

    // As of the printed position, 2024 shows only the first payment, with that position's hash.
    let then = app.gql(Some(&finance), q, json!({ "y": 2024, "a": achievement, "p": printed["position"] })).await;
    let s = &then.data()["completerSubsidyStatement"];
    assert_eq!(s["asOf"], printed);
    assert_eq!(s["totals"]["subsidy"], "400000.00");
    app.db.drop_db().await;
});

both_backends!(an_enacted_policy_applies_from_its_date_and_past_lines_stay, |db| async move {
    let app = spawn_app(db).await;
    let admin = app.admin();
    let enact = app
        .try_mutate(
            &admin,
            "enactPolicy",
            json!({
                "kind": "COMPLETER_SUBSIDY", "rate": "0.04", "cap": "800000.00", "capPeriod": "LIFETIME",
                "effectiveFrom": "2026-01-01", "source": "渝科局发〔2025〕99号（示例）"
            }),
            None,
        )
        .await;
    assert_eq!(enact.data()["enactPolicy"]["command"], "EnactPolicy");
    let policies = app.gql(None, "{ policies { kind version rate cap effectiveFrom } }", json!({})).await;
    let versions = policies.data()["policies"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 3);
    assert_eq!(
        versions[2],
        json!({ "kind": "COMPLETER_SUBSIDY", "version": 2, "rate": "0.04", "cap": "800000.00", "effectiveFrom": "2026-01-01" })
    );
    let forbidden = app.try_mutate(&app.registrar(), "enactPolicy", json!({
        "kind": "COMPLETER_SUBSIDY", "rate": "0.04", "cap": "800000.00", "capPeriod": "LIFETIME", "effectiveFrom": "2026-01-01", "source": "x"
    }), None).await;
    assert_eq!(forbidden.error_code(), "FORBIDDEN");
    let bad_rate = app.try_mutate(&admin, "enactPolicy", json!({
        "kind": "COMPLETER_SUBSIDY", "rate": "5", "cap": "800000.00", "capPeriod": "LIFETIME", "effectiveFrom": "2026-01-01", "source": "x"
    }), None).await;
    assert_eq!(
        (bad_rate.error_code(), bad_rate.error()["extensions"]["field"].as_str()),
        ("VALIDATION_FAILED", Some("rate"))
    );
    app.db.drop_db().await;
});

/// A university accredited as an introduced R&D institution from 2024-01-01, a Chongqing
/// enterprise to buy from it, and the university's achievement with two completers (60 % /
/// 40 %): payments on their registered contracts earn the completer subsidy.
async fn eligible_seller_buyer_and_achievement(
    ledger: &Ledger,
) -> (ledger::ids::OrganisationId, ledger::ids::OrganisationId, ledger::ids::AchievementId) {
    let owner = register_university(ledger, "500106").await;
    accredit(ledger, owner, ledger::vocabulary::AccreditationKind::IntroducedRdInstitution, date(2024, 1, 1)).await;
    let buyer = register_organisation(ledger, ledger::vocabulary::OrganisationKind::Enterprise, "500112").await;
    let achievement = list_achievement(ledger, owner, &["60", "40"]).await;
    (owner, buyer, achievement)
}

// Migration 0008: subsidy and incentive lines written before their rows carried the contract
// number take it from their contract, each its own; and a line whose contract is missing
// stops the migration (NOT NULL) instead of being left with a blank number.
both_backends!(lines_written_before_migration_0008_take_their_contracts_number, |db| async move {
    use ledger::store::statements::SubsidyScope;

    let backend = db.backend;
    let store = db.store_migrated_to(7).await;
    let contract = |n: u32| format!("00000000-0000-7000-9100-{n:012}");
    for n in 1..=2 {
        db.insert_bare_contract(&contract(n), &format!("CQ-2030-{n:03}")).await;
    }
    // Three lines of each kind, on contracts 1, 2, 1.
    let on = [1, 2, 1];
    let id = |seq: usize| format!("00000000-0000-7000-8000-{seq:012}");
    // A line's row: `owner_and_period` is its achievement and cap period, or its center and
    // incentive year (the two tables differ only there and in their columns' names).
    let row = |seq: usize, n: u32, owner_and_period: &str, amount: u32| {
        format!(
            "(1, {seq}, 'payment', {owner_and_period}, '{}', '{}', NULL, '2030-03-01', 2030, 100, 100, {amount}, 1, \
             NULL, 100, {amount}, FALSE)",
            contract(n),
            id(seq)
        )
    };
    let subsidy: Vec<String> =
        on.iter().enumerate().map(|(seq, n)| row(seq, *n, "'00000000-0000-7000-9000-000000000001', 0", 5)).collect();
    let incentive: Vec<String> =
        on.iter().enumerate().map(|(seq, n)| row(seq, *n, "'00000000-0000-7000-9200-000000000001', 2030", 2)).collect();
    let insert_lines = |lines: &[String], incentive_lines: &[String]| {
        format!(
            "INSERT INTO subsidy_lines (position, seq, line_kind, achievement_id, cap_period, contract_id, payment_id, \
             reversal_id, line_date, line_year, received_fen, eligible_fen, subsidy_fen, policy_version, reasons, \
             eligible_total_fen, subsidy_total_fen, cap_reached) VALUES {}; \
             INSERT INTO incentive_lines (position, seq, line_kind, center_id, incentive_year, contract_id, payment_id, \
             reversal_id, line_date, line_year, received_fen, operating_fen, incentive_fen, policy_version, reasons, \
             operating_total_fen, incentive_total_fen, cap_reached) VALUES {}",
            lines.join(", "),
            incentive_lines.join(", ")
        )
    };
    db.execute_raw(&insert_lines(&subsidy, &incentive)).await.expect("lines before 0008");
    store.migrate().await.expect("migration 0008");
    let expected: Vec<String> = on.iter().map(|n| format!("CQ-2030-{n:03}")).collect();
    let lines = store.subsidy_lines(&SubsidyScope::Year(2030), 1).await.expect("subsidy lines");
    assert_eq!(lines.iter().map(|l| l.contract_number.clone()).collect::<Vec<_>>(), expected);
    let lines = store.incentive_lines(2030, 1).await.expect("incentive lines");
    assert_eq!(lines.iter().map(|l| l.contract_number.clone()).collect::<Vec<_>>(), expected);
    store.close().await;
    db.drop_db().await;

    // A line on a contract that is not in `contracts`: the migration stops, and is not
    // recorded as applied.
    let db = integration::TestDb::new(backend).await;
    let store = db.store_migrated_to(7).await;
    let orphan = subsidy[0].clone();
    db.execute_raw(&insert_lines(&[orphan], &incentive[..1])).await.expect("a line without its contract");
    let refused = store.migrate().await.expect_err("a line without its contract stops the migration");
    assert!(refused.to_string().to_lowercase().contains("null"), "{refused}");
    // Nothing of it was kept or recorded: without the orphans it applies.
    db.execute_raw("DELETE FROM subsidy_lines; DELETE FROM incentive_lines").await.expect("orphans removed");
    store.migrate().await.expect("migration 0008 once every line has its contract");
    store.close().await;
    db.drop_db().await;
});
