//! Who may do what, through the real endpoint: every mutation by every role (and by staff of
//! an unrelated organisation) is either allowed or refused with FORBIDDEN — and a refused
//! call appends nothing. Then the read side: deals are visible to their parties only,
//! statements and the raw log to the roles that need them.

use integration::{TestApp, both_backends, spawn_app};
use ledger::Role;
use serde_json::{Value, json};
use uuid::Uuid;

/// A marketplace with one of everything each mutation needs, untouched by the others.
struct World {
    university: Uuid,
    other_university: Uuid,
    enterprise: Uuid,
    center: Uuid,
    broker: Uuid,
    accreditation: Uuid,
    achievements: [Uuid; 3],
    demands: [Uuid; 2],
    matches: [Uuid; 3],
    contracts: [Uuid; 5],
    payment: Uuid,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin();
    let university = app.register_organisation(&admin, "重庆大学", "UNIVERSITY", "12500000450403271P", "500106").await;
    let other_university =
        app.register_organisation(&admin, "西南大学", "UNIVERSITY", "91110000600037341L", "500109").await;
    let enterprise = app.register_organisation(&admin, "长安", "ENTERPRISE", "915000002028133840", "500112").await;
    let center =
        app.register_organisation(&admin, "运营中心", "IP_OPERATING_CENTER", "91500000MA5U7AUK1B", "500108").await;
    let accreditation = app
        .mutate(&admin, "accreditOrganisation", json!({ "organisationId": university, "kind": "INNOVATION_PLATFORM", "effectiveFrom": "2024-01-01", "documentNumber": "D1" }))
        .await;
    let broker = app.mutate(&admin, "registerBroker", json!({ "name": "王经纪" })).await;
    let staff = app.token(Role::ResearchInstitution, Some(university), None);
    let ent = app.token(Role::Enterprise, Some(enterprise), None);
    let brk = app.token(Role::Broker, None, Some(broker));
    let mut achievements = [Uuid::nil(); 3];
    for a in &mut achievements {
        *a = app
            .mutate(&staff, "listAchievement", json!({ "ownerId": university, "title": "成果", "field": "NEW_MATERIALS", "maturity": 5, "transferModes": ["TRANSFER"], "completers": [{ "name": "张三", "share": "100" }] }))
            .await;
    }
    let mut demands = [Uuid::nil(); 2];
    for d in &mut demands {
        *d = app
            .mutate(
                &ent,
                "postDemand",
                json!({ "enterpriseId": enterprise, "title": "需求", "field": "NEW_MATERIALS" }),
            )
            .await;
    }
    let mut matches = [Uuid::nil(); 3];
    for m in &mut matches {
        *m = app
            .mutate(
                &brk,
                "proposeMatch",
                json!({ "brokerId": broker, "achievementId": achievements[0], "demandId": demands[1] }),
            )
            .await;
    }
    let registrar = app.registrar();
    let mut contracts = [Uuid::nil(); 5];
    for (i, c) in contracts.iter_mut().enumerate() {
        *c = app
            .mutate(&registrar, "signContract", json!({
                "contractNumber": format!("K-{i}"), "contractType": "SERVICE", "title": "合同", "sellerId": university, "buyerId": enterprise,
                "operatingCenterId": center, "contractAmount": "1000000.00", "techTransactionAmount": "1000000.00", "signedOn": "2024-03-01"
            }))
            .await;
    }
    let payment = app
        .mutate(&registrar, "recordPayment", json!({ "contractId": contracts[3], "amount": "100.00", "settledAt": "2024-04-01T10:00:00+08:00", "bankReference": "P-1" }))
        .await;
    World {
        university,
        other_university,
        enterprise,
        center,
        broker,
        accreditation,
        achievements,
        demands,
        matches,
        contracts,
        payment,
    }
}

/// The callers of the matrix: every role with the organisation (or broker) it acts for,
/// and staff of an unrelated university.
fn callers(app: &TestApp, w: &World) -> Vec<(&'static str, String)> {
    vec![
        ("research_institution", app.token(Role::ResearchInstitution, Some(w.university), None)),
        ("enterprise", app.token(Role::Enterprise, Some(w.enterprise), None)),
        ("broker", app.token(Role::Broker, None, Some(w.broker))),
        ("operating_center", app.token(Role::OperatingCenter, Some(w.center), None)),
        ("registrar", app.token(Role::Registrar, None, None)),
        ("finance", app.token(Role::Finance, None, None)),
        ("admin", app.token(Role::Admin, None, None)),
        ("other_university", app.token(Role::ResearchInstitution, Some(w.other_university), None)),
    ]
}

/// Every mutation, an input that the right caller can carry out, and who that is.
fn cases(w: &World) -> Vec<(&'static str, Value, &'static [&'static str])> {
    let c = &w.contracts;
    vec![
        (
            "registerOrganisation",
            json!({ "name": "新", "kind": "OTHER", "creditCode": "91500106000000042B", "divisionCode": "500106" }),
            &["admin"],
        ),
        (
            "accreditOrganisation",
            json!({ "organisationId": w.enterprise, "kind": "INNOVATION_PLATFORM", "effectiveFrom": "2024-01-01", "documentNumber": "D2" }),
            &["admin"],
        ),
        (
            "revokeAccreditation",
            json!({ "organisationId": w.university, "accreditationId": w.accreditation, "revokedFrom": "2025-01-01", "reason": "复核" }),
            &["admin"],
        ),
        ("registerBroker", json!({ "name": "李经纪" }), &["admin"]),
        (
            "listAchievement",
            json!({ "ownerId": w.university, "title": "新成果", "field": "AGRICULTURE", "maturity": 3, "transferModes": ["LICENCE"], "completers": [{ "name": "李四", "share": "100" }] }),
            &["research_institution"],
        ),
        (
            "reviseAchievement",
            json!({ "achievementId": w.achievements[1], "title": "改名" }),
            &["research_institution"],
        ),
        (
            "withdrawAchievement",
            json!({ "achievementId": w.achievements[2], "reason": "撤回" }),
            &["research_institution"],
        ),
        (
            "postDemand",
            json!({ "enterpriseId": w.enterprise, "title": "新需求", "field": "AGRICULTURE" }),
            &["enterprise"],
        ),
        ("closeDemand", json!({ "demandId": w.demands[0], "reason": "关闭" }), &["enterprise"]),
        (
            "proposeMatch",
            json!({ "brokerId": w.broker, "achievementId": w.achievements[0], "demandId": w.demands[1] }),
            &["broker"],
        ),
        ("acceptMatch", json!({ "matchId": w.matches[0], "side": "OWNER" }), &["research_institution"]),
        ("acceptMatch", json!({ "matchId": w.matches[1], "side": "ENTERPRISE" }), &["enterprise"]),
        ("declineMatch", json!({ "matchId": w.matches[2], "side": "ENTERPRISE", "reason": "不合适" }), &["enterprise"]),
        (
            "signContract",
            json!({
                "contractNumber": "NEW-1", "contractType": "TRANSFER", "title": "转让", "sellerId": w.university, "buyerId": w.enterprise,
                "achievementId": w.achievements[0], "contractAmount": "500.00", "techTransactionAmount": "500.00", "signedOn": "2024-05-01"
            }),
            &["research_institution", "registrar"],
        ),
        (
            "registerContract",
            json!({ "contractId": c[0], "registrationNumber": "2024500106000088", "registeredOn": "2024-03-20", "certifiedTechTransactionAmount": "900000.00" }),
            &["registrar"],
        ),
        (
            "amendContract",
            json!({ "contractId": c[1], "contractAmount": "2000000.00", "techTransactionAmount": "2000000.00", "amendedOn": "2024-04-01", "reason": "变更" }),
            &["research_institution", "registrar"],
        ),
        (
            "terminateContract",
            json!({ "contractId": c[2], "terminatedOn": "2024-04-01", "reason": "解除" }),
            &["research_institution", "registrar"],
        ),
        (
            "recordPayment",
            json!({ "contractId": c[4], "amount": "10.00", "settledAt": "2024-04-02T10:00:00+08:00", "bankReference": "NEW-P" }),
            &["registrar"],
        ),
        (
            "reversePayment",
            json!({ "contractId": c[3], "paymentId": w.payment, "amount": "1.00", "reversedAt": "2024-04-03T10:00:00+08:00", "reason": "退款" }),
            &["registrar"],
        ),
        (
            "enactPolicy",
            json!({ "kind": "OPERATING_CENTER_INCENTIVE", "rate": "0.03", "cap": "6000000.00", "capPeriod": "CALENDAR_YEAR", "effectiveFrom": "2027-01-01", "source": "示例" }),
            &["admin"],
        ),
    ]
}

async fn head(app: &TestApp) -> i64 {
    app.gql(None, "{ ledgerHead { position } }", json!({})).await.data()["ledgerHead"]["position"].as_i64().unwrap()
}

both_backends!(every_mutation_by_every_role_is_allowed_or_forbidden_and_forbidden_appends_nothing, |db| async move {
    let app = spawn_app(db).await;
    let w = world(&app).await;
    let callers = callers(&app, &w);
    let mut checked = 0;
    for (mutation, input, allowed) in cases(&w) {
        // Forbidden callers first: each is refused and the log does not move.
        for (role, token) in callers.iter().filter(|(r, _)| !allowed.contains(r)) {
            let before = head(&app).await;
            let r = app.try_mutate(token, mutation, input.clone(), None).await;
            assert_eq!(r.error_code(), "FORBIDDEN", "{mutation} by {role}: {}", r.body);
            assert_eq!(head(&app).await, before, "{mutation} by {role} appended an event");
            checked += 1;
        }
        // Then the allowed ones: the first succeeds; a second may meet the first's effect
        // (a rule, not a permission).
        for (i, (role, token)) in callers.iter().filter(|(r, _)| allowed.contains(r)).enumerate() {
            let r = app.try_mutate(token, mutation, input.clone(), None).await;
            if i == 0 {
                assert!(r.body.get("errors").is_none(), "{mutation} by {role} must be allowed: {}", r.body);
            } else if r.body.get("errors").is_some() {
                assert_ne!(r.error_code(), "FORBIDDEN", "{mutation} by {role} must be allowed: {}", r.body);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, cases(&w).len() * callers.len());
    // Live, each mutation was written by a batch of its own; the rebuild writes them all in
    // one page (one flush of the held-back changes): the rows must come out the same.
    let store = app.db.store().await;
    let live = integration::fixtures::assert_rebuild_equals_live(&store).await;
    let row = |table: &str, needles: &[&str]| {
        live.iter().any(|l| l.starts_with(&format!("{table}: ")) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(row("accreditations", &["revoked_from=2025-01-01", "revocation_reason=复核"]), "the revocation is shown");
    assert!(row("contracts", &["status=terminated", "terminated_on=2024-04-01"]), "the termination is shown");
    assert!(
        row("contracts", &["contract_amount_fen=200000000", "tech_transaction_amount_fen=200000000"]),
        "the amendment"
    );
    assert!(row("matches", &["owner_answer=accepted", "status=proposed"]), "one answer leaves a match proposed");
    assert!(row("matches", &["enterprise_answer=declined", "status=declined"]), "a decline declines it");
    app.db.drop_db().await;
});

fn contract_count(r: &integration::app::GqlResponse) -> usize {
    r.data()["contracts"]["nodes"].as_array().unwrap().len()
}

both_backends!(deals_are_visible_to_their_parties_and_statements_to_finance, |db| async move {
    let app = spawn_app(db).await;
    let w = world(&app).await;
    let list = "{ contracts(first: 100) { nodes { id } } payments { nodes { id } } matches { nodes { id } } }";
    let see = |role: Role, org: Option<Uuid>, broker: Option<Uuid>| {
        let token = app.token(role, org, broker);
        let app = &app;
        async move { app.gql(Some(&token), list, json!({})).await }
    };
    let all = see(Role::Registrar, None, None).await;
    assert_eq!(contract_count(&all), 5);
    assert_eq!(contract_count(&see(Role::Enterprise, Some(w.enterprise), None).await), 5, "the buyer");
    assert_eq!(contract_count(&see(Role::OperatingCenter, Some(w.center), None).await), 5, "the center");
    let outsider = see(Role::ResearchInstitution, Some(w.other_university), None).await;
    assert_eq!(contract_count(&outsider), 0, "an unrelated university sees no contracts");
    assert!(outsider.data()["payments"]["nodes"].as_array().unwrap().is_empty());
    assert!(outsider.data()["matches"]["nodes"].as_array().unwrap().is_empty());
    let broker = see(Role::Broker, None, Some(w.broker)).await;
    assert_eq!(contract_count(&broker), 0, "the broker brokered none of the contracts");
    assert_eq!(broker.data()["matches"]["nodes"].as_array().unwrap().len(), 3, "but proposed the matches");

    let one = "query($c: UUID!) { contract(id: $c) { id } }";
    let stranger = app.token(Role::Enterprise, Some(w.other_university), None);
    let r = app.gql(Some(&stranger), one, json!({ "c": w.contracts[0] })).await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    for (role, org) in [
        (Role::ResearchInstitution, Some(w.university)),
        (Role::Enterprise, Some(w.enterprise)),
        (Role::Registrar, None),
        (Role::Broker, None),
    ] {
        let token = app.token(role, org, None);
        let s = app.gql(Some(&token), "{ turnoverStatement(year: 2024) { total { contracts } } }", json!({})).await;
        assert_eq!(s.error_code(), "FORBIDDEN", "{role:?} reads statements");
    }
    let finance = app.token(Role::Finance, None, None);
    let s = app.gql(Some(&finance), "{ turnoverStatement(year: 2024) { total { contracts } } }", json!({})).await;
    assert_eq!(s.data()["turnoverStatement"]["total"]["contracts"], 0);

    // The owner reads its own achievement's subsidy; another university does not.
    let q = "query($a: UUID!) { achievementSubsidy(achievementId: $a) { subsidy } }";
    let owner = app.token(Role::ResearchInstitution, Some(w.university), None);
    assert_eq!(
        app.gql(Some(&owner), q, json!({ "a": w.achievements[0] })).await.data()["achievementSubsidy"]["subsidy"],
        "0.00"
    );
    let other = app.token(Role::ResearchInstitution, Some(w.other_university), None);
    assert_eq!(app.gql(Some(&other), q, json!({ "a": w.achievements[0] })).await.error_code(), "FORBIDDEN");

    // The raw log: registrar, finance, admin.
    let events = "{ events(first: 1) { position } }";
    assert_eq!(app.gql(Some(&owner), events, json!({})).await.error_code(), "FORBIDDEN");
    assert_eq!(app.gql(Some(&finance), events, json!({})).await.data()["events"][0]["position"], 1);
    app.db.drop_db().await;
});
