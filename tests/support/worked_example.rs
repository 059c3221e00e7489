//! The README's worked example (DOMAIN.md's figures), entered through GraphQL: an accredited
//! institute sells an achievement with three completers to a Chongqing buyer through an
//! operating center; one payment before registration, one after, one in 2025 partly reversed.
//! The statements and the exports tests check their figures on it.

use ledger::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::TestApp;

pub struct WorkedExample {
    pub university: Uuid,
    pub achievement: Uuid,
    /// `ledgerHead` before the second payment: the position 2024's statement was printed at.
    pub printed: Value,
}

/// Enters the example; `id_numbers` are the three completers' ID numbers, if given.
pub async fn worked_example(app: &TestApp, id_numbers: [Option<&str>; 3]) -> WorkedExample {
    let admin = app.admin();
    let university = app
        .register_organisation(
            &admin,
            "中国科学院重庆绿色智能技术研究院",
            "RESEARCH_INSTITUTE",
            "12500000450403271P",
            "500109",
        )
        .await;
    let buyer = app
        .register_organisation(&admin, "重庆某汽车零部件有限公司", "ENTERPRISE", "915000002028133840", "500112")
        .await;
    let center = app
        .register_organisation(&admin, "重庆知识产权运营中心", "IP_OPERATING_CENTER", "91500000MA5U7AUK1B", "500108")
        .await;
    for (o, kind) in [(university, "INTRODUCED_RD_INSTITUTION"), (center, "IP_OPERATING_CENTER")] {
        app.mutate(&admin, "accreditOrganisation", json!({ "organisationId": o, "kind": kind, "effectiveFrom": "2024-01-01", "documentNumber": "渝科局发〔2024〕12号" })).await;
    }
    let staff = app.token(Role::ResearchInstitution, Some(university), None);
    let completers: Vec<Value> = [("张三", "33.33"), ("李四", "33.33"), ("王五", "33.34")]
        .into_iter()
        .zip(id_numbers)
        .map(|((name, share), id)| match id {
            Some(id) => json!({ "name": name, "share": share, "idNumber": id }),
            None => json!({ "name": name, "share": share }),
        })
        .collect();
    let achievement = app
        .mutate(&staff, "listAchievement", json!({
            "ownerId": university, "title": "车用轻量化镁合金", "field": "NEW_MATERIALS", "maturity": 7, "transferModes": ["TRANSFER"],
            "completers": completers
        }))
        .await;
    let contract = app
        .mutate(&staff, "signContract", json!({
            "contractNumber": "CQGI-2024-001", "contractType": "TRANSFER", "title": "镁合金技术转让", "sellerId": university,
            "buyerId": buyer, "achievementId": achievement, "operatingCenterId": center,
            "contractAmount": "30000000.00", "techTransactionAmount": "28000000.00", "signedOn": "2024-03-01"
        }))
        .await;
    let registrar = app.registrar();
    let pay = |amount: &str, at: &str, reference: &str| json!({ "contractId": contract, "amount": amount, "settledAt": at, "bankReference": reference });
    // Before registration: the payment waits.
    app.mutate(&registrar, "recordPayment", pay("8000000.00", "2024-04-01T10:00:00+08:00", "CQB-1")).await;
    app.mutate(&registrar, "registerContract", json!({ "contractId": contract, "registrationNumber": "2024500109000001", "registeredOn": "2024-04-15", "certifiedTechTransactionAmount": "27500000.00" })).await;
    let printed = app.gql(None, "{ ledgerHead { position hash } }", json!({})).await.data()["ledgerHead"].clone();
    app.mutate(&registrar, "recordPayment", pay("13000000.00", "2024-12-31T23:59:00+08:00", "CQB-2")).await;
    let p3 = app.mutate(&registrar, "recordPayment", pay("5000000.00", "2025-01-01T00:00:00+08:00", "CQB-3")).await;
    app.mutate(&registrar, "reversePayment", json!({ "contractId": contract, "paymentId": p3, "amount": "2000000.00", "reversedAt": "2025-02-01T10:00:00+08:00", "reason": "部分退款" })).await;
    WorkedExample { university, achievement, printed }
}
