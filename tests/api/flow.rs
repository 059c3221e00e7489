//! The whole marketplace flow through the real HTTP endpoint, each step by the user group
//! whose job it is: the admin registers and accredits organisations and a broker, the
//! university lists an achievement, the enterprise posts a demand, the broker matches them,
//! both sides accept, the university signs, the registrar registers the contract, records a
//! payment (retried with the same idempotency key) and reverses part of it, and finance
//! reads the result and verifies the ledger.

use integration::{both_backends, spawn_app};
use ledger::Role;
use serde_json::json;
use uuid::Uuid;

both_backends!(every_user_group_walks_the_flow_from_listing_to_reversal, |db| async move {
    let app = spawn_app(db).await;
    let admin = app.admin();

    // Admin: organisations, accreditations, a broker.
    let university = app.register_organisation(&admin, "重庆大学", "UNIVERSITY", "12500000450403271P", "500106").await;
    let enterprise = app
        .register_organisation(&admin, "重庆长安汽车股份有限公司", "ENTERPRISE", "915000002028133840", "500112")
        .await;
    let agency =
        app.register_organisation(&admin, "重庆技术转移中心", "BROKER_AGENCY", "91110000600037341L", "500105").await;
    let center = app
        .register_organisation(&admin, "重庆知识产权运营中心", "IP_OPERATING_CENTER", "91500000MA5U7AUK1B", "500108")
        .await;
    for (organisation, kind) in [(university, "INTRODUCED_RD_INSTITUTION"), (center, "IP_OPERATING_CENTER")] {
        app.mutate(
            &admin,
            "accreditOrganisation",
            json!({ "organisationId": organisation, "kind": kind, "effectiveFrom": "2024-01-01", "documentNumber": "渝科局发〔2024〕12号" }),
        )
        .await;
    }
    let broker = app
        .mutate(
            &admin,
            "registerBroker",
            json!({ "name": "王经纪", "agencyId": agency, "certificateNumber": "JJ-2024-001" }),
        )
        .await;

    // University: list an achievement with two completers.
    let uni_staff = app.token(Role::ResearchInstitution, Some(university), None);
    let achievement = app
        .mutate(
            &uni_staff,
            "listAchievement",
            json!({
                "ownerId": university, "title": "高强度镁合金制备技术", "field": "NEW_MATERIALS", "maturity": 6,
                "patentNumbers": ["ZL201710601862.3"], "askingPrice": "1500000.00", "transferModes": ["TRANSFER", "LICENCE"],
                "completers": [{ "name": "张三", "share": "60" }, { "name": "李四", "share": "40" }]
            }),
        )
        .await;

    // Enterprise: post a demand.
    let ent_staff = app.token(Role::Enterprise, Some(enterprise), None);
    let demand = app
        .mutate(
            &ent_staff,
            "postDemand",
            json!({ "enterpriseId": enterprise, "title": "轻量化车身材料", "field": "NEW_MATERIALS", "budget": "2000000.00", "deadline": "2025-06-30" }),
        )
        .await;

    // Broker: propose; both sides accept their own side.
    let broker_user = app.token(Role::Broker, None, Some(broker));
    let matched = app
        .mutate(
            &broker_user,
            "proposeMatch",
            json!({ "brokerId": broker, "achievementId": achievement, "demandId": demand, "note": "材料性能契合" }),
        )
        .await;
    app.mutate(&uni_staff, "acceptMatch", json!({ "matchId": matched, "side": "OWNER" })).await;
    app.mutate(&ent_staff, "acceptMatch", json!({ "matchId": matched, "side": "ENTERPRISE" })).await;

    // University (the seller): sign through the match, operated by the center.
    let contract = app
        .mutate(
            &uni_staff,
            "signContract",
            json!({
                "contractNumber": "CQU-2024-017", "contractType": "TRANSFER", "title": "镁合金专利转让合同",
                "sellerId": university, "buyerId": enterprise, "matchId": matched, "operatingCenterId": center,
                "contractAmount": "1200000.00", "techTransactionAmount": "1100000.00", "signedOn": "2024-03-01"
            }),
        )
        .await;

    // Registrar: register, record a payment (retried), reverse part of it.
    let registrar = app.registrar();
    app.mutate(
        &registrar,
        "registerContract",
        json!({ "contractId": contract, "registrationNumber": "2024500106000017", "registeredOn": "2024-03-15", "certifiedTechTransactionAmount": "1000000.00" }),
    )
    .await;
    let pay = json!({ "contractId": contract, "amount": "600000.00", "settledAt": "2024-04-01T10:00:00+08:00", "bankReference": "ICBC-20240401-0001" });
    let first = app.try_mutate(&registrar, "recordPayment", pay.clone(), Some("ICBC-20240401-0001")).await;
    let retry = app.try_mutate(&registrar, "recordPayment", pay, Some("ICBC-20240401-0001")).await;
    assert_eq!(first.data(), retry.data(), "a retried payment returns the first result");
    let payment = Uuid::parse_str(first.data()["recordPayment"]["id"].as_str().unwrap()).unwrap();
    app.mutate(
        &registrar,
        "reversePayment",
        json!({ "contractId": contract, "paymentId": payment, "amount": "100000.00", "reversedAt": "2024-05-10T09:00:00+08:00", "reason": "部分退款" }),
    )
    .await;

    // Finance: the contract, its payments, the match, the achievement; the ledger verifies.
    let finance = app.token(Role::Finance, None, None);
    let view = app
        .gql(
            Some(&finance),
            "query($c: UUID!, $a: UUID!, $m: UUID!) {
               contract(id: $c) { status registrationNumber contractAmount certifiedTechTransactionAmount settledAmount
                                  reversedAmount netReceived achievementId brokerId operatingCenter { name }
                                  payments { amount settlementDate reversedAmount reversals { amount reason } } }
               achievement(id: $a) { completersLocked status completers { name share } owner { name } }
               match(id: $m) { status ownerAnswer enterpriseAnswer }
               verifyLedger { intact eventsChecked }
               streamEvents(streamId: $s) { eventType }
             }"
            .replace("$s", &format!("\"contract-{contract}\""))
            .as_str(),
            json!({ "c": contract, "a": achievement, "m": matched }),
        )
        .await;
    let d = view.data();
    assert_eq!(d["contract"]["status"], "REGISTERED");
    assert_eq!(d["contract"]["registrationNumber"], "2024500106000017");
    assert_eq!(d["contract"]["settledAmount"], "600000.00");
    assert_eq!(d["contract"]["reversedAmount"], "100000.00");
    assert_eq!(d["contract"]["netReceived"], "500000.00");
    assert_eq!(d["contract"]["certifiedTechTransactionAmount"], "1000000.00");
    assert_eq!(d["contract"]["achievementId"], achievement.to_string(), "taken from the match");
    assert_eq!(d["contract"]["brokerId"], broker.to_string(), "taken from the match");
    assert_eq!(d["contract"]["operatingCenter"]["name"], "重庆知识产权运营中心");
    assert_eq!(d["contract"]["payments"][0]["settlementDate"], "2024-04-01");
    assert_eq!(d["contract"]["payments"][0]["reversals"][0]["amount"], "100000.00");
    assert_eq!(d["achievement"]["completersLocked"], true);
    assert_eq!(
        d["achievement"]["completers"],
        json!([{ "name": "张三", "share": "60.00" }, { "name": "李四", "share": "40.00" }])
    );
    assert_eq!(d["match"], json!({ "status": "ACCEPTED", "ownerAnswer": "ACCEPTED", "enterpriseAnswer": "ACCEPTED" }));
    assert_eq!(d["verifyLedger"]["intact"], true);
    let types: Vec<&str> =
        d["streamEvents"].as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["ContractSigned", "ContractRegistered", "PaymentSettled", "PaymentReversed"]);

    // Public browsing needs no token and filters by owner, field and status.
    let listed = app
        .gql(None, "query($o: UUID!) { achievements(filter: { ownerId: $o, field: NEW_MATERIALS, status: LISTED }) { nodes { title } } }", json!({ "o": university }))
        .await;
    assert_eq!(listed.data()["achievements"]["nodes"][0]["title"], "高强度镁合金制备技术");

    // Rules hold through the API: the registrar cannot overdraw the contract.
    let over = app
        .try_mutate(
            &registrar,
            "recordPayment",
            json!({ "contractId": contract, "amount": "700000.01", "settledAt": "2024-06-01T10:00:00+08:00", "bankReference": "ICBC-OVER" }),
            None,
        )
        .await;
    assert_eq!(over.error_code(), "RULE_VIOLATED");
    assert_eq!(over.error()["extensions"]["rule"], "net_received_within_contract_amount");
    app.db.drop_db().await;
});

both_backends!(errors_carry_a_stable_code_and_name_the_field_and_rule, |db| async move {
    let app = spawn_app(db).await;
    let admin = app.admin();
    // A bad check character is refused before anything is recorded.
    let bad = app
        .try_mutate(
            &admin,
            "registerOrganisation",
            json!({ "name": "X", "kind": "ENTERPRISE", "creditCode": "91110000600037341M", "divisionCode": "500112" }),
            None,
        )
        .await;
    assert_eq!(bad.error_code(), "VALIDATION_FAILED");
    assert_eq!(bad.error()["extensions"]["field"], "creditCode");
    assert_eq!(bad.error()["extensions"]["rule"], "credit_code_check");
    // No token: UNAUTHENTICATED; the wrong role: FORBIDDEN.
    let anonymous = app.gql(None, "mutation { registerBroker(input: { name: \"x\" }) { id } }", json!({})).await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
    let broker = app.token(Role::Broker, None, Some(Uuid::now_v7()));
    let forbidden = app.try_mutate(&broker, "registerBroker", json!({ "name": "x" }), None).await;
    assert_eq!(forbidden.error_code(), "FORBIDDEN");
    // A malformed amount names the rule in the message and never reaches the ledger.
    let amount = app
        .gql(
            Some(&app.registrar()),
            "mutation { recordPayment(input: { contractId: \"00000000-0000-7000-8000-000000000000\", amount: \"1.001\", settledAt: \"2024-01-01T00:00:00Z\", bankReference: \"B\" }) { id } }",
            json!({}),
        )
        .await;
    // Input objects are coerced while executing: the response has `data: null` and so, by the
    // GraphQL-over-HTTP spec, a 200; the error names the field's type and the rule.
    assert_eq!(amount.status, 200);
    assert_eq!(amount.error_code(), "VALIDATION_FAILED");
    assert!(amount.error()["message"].as_str().unwrap().contains("amount_two_decimals"), "{}", amount.body);
    // A query that does not validate at all is a request error: 400.
    let unknown = app.gql(None, "{ noSuchField }", json!({})).await;
    assert_eq!((unknown.status, unknown.error_code()), (400, "GRAPHQL_VALIDATION_FAILED"));
    // A forged token is refused at the door.
    let forged = app.gql(Some("not-a-token"), "{ ledgerHead { position } }", json!({})).await;
    assert_eq!((forged.status, forged.error_code()), (401, "UNAUTHENTICATED"));
    let head = app.gql(None, "{ ledgerHead { position } }", json!({})).await;
    assert_eq!(head.data()["ledgerHead"]["position"], 0, "nothing was recorded");
    app.db.drop_db().await;
});

both_backends!(the_same_idempotency_key_with_different_input_is_refused_over_http, |db| async move {
    let app = spawn_app(db).await;
    let admin = app.admin();
    let input = |name: &str| json!({ "name": name, "kind": "ENTERPRISE", "creditCode": "915000002028133840", "divisionCode": "500112" });
    let first = app.try_mutate(&admin, "registerOrganisation", input("甲"), Some("reg-1")).await;
    let again = app.try_mutate(&admin, "registerOrganisation", input("甲"), Some("reg-1")).await;
    assert_eq!(first.data(), again.data());
    let other = app.try_mutate(&admin, "registerOrganisation", input("乙"), Some("reg-1")).await;
    assert_eq!(other.error_code(), "IDEMPOTENCY_KEY_REUSED");
    let head = app.gql(None, "{ ledgerHead { position } }", json!({})).await;
    assert_eq!(head.data()["ledgerHead"]["position"], 1);
    app.db.drop_db().await;
});
