//! Commands for building a marketplace directly through the ledger (no HTTP), with the
//! actors the rules require.

use chrono::{DateTime, NaiveDate, Utc};
use ledger::codes::{DivisionCode, RegistrationNumber};
use ledger::command::*;
use ledger::event::AchievementDetails;
use ledger::ids::*;
use ledger::service::{CommandContext, CommandError, Ledger};
use ledger::store::Receipt;
use ledger::vocabulary::*;
use ledger::{Actor, Money, Role};

pub use ledger::testkit::{completers, credit_code};

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("valid timestamp").to_utc()
}

pub fn yuan(y: i64) -> Money {
    Money::from_yuan(y)
}

pub fn actor(role: Role, organisation: Option<OrganisationId>) -> Actor {
    Actor {
        user_id: format!("{}-{}", role.as_str(), organisation.map(|o| o.to_string()).unwrap_or_default()),
        role,
        organisation_id: organisation,
        broker_id: None,
    }
}

pub fn ctx(actor: Actor) -> CommandContext {
    CommandContext { actor, request_id: None, idempotency_key: None }
}

pub fn admin() -> CommandContext {
    ctx(actor(Role::Admin, None))
}

pub fn registrar() -> CommandContext {
    ctx(actor(Role::Registrar, None))
}

static NEXT_CODE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Runs a command without an idempotency key.
pub async fn run(ledger: &Ledger, ctx: &CommandContext, command: Command) -> Result<Receipt, CommandError> {
    let fingerprint = format!("{command:?}");
    ledger.execute(ctx, command, &fingerprint).await
}

pub async fn register_organisation(ledger: &Ledger, kind: OrganisationKind, division: &str) -> OrganisationId {
    let id = OrganisationId::new_v7();
    let n = NEXT_CODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + std::process::id() % 1000 * 100_000;
    run(
        ledger,
        &admin(),
        Command::RegisterOrganisation(RegisterOrganisation {
            organisation_id: id,
            name: format!("{} {}", kind.label_zh(), n),
            kind,
            credit_code: credit_code(n),
            division_code: DivisionCode::parse("divisionCode", division).expect("valid"),
        }),
    )
    .await
    .expect("register organisation");
    id
}

pub async fn register_university(ledger: &Ledger, division: &str) -> OrganisationId {
    register_organisation(ledger, OrganisationKind::University, division).await
}

pub async fn accredit(ledger: &Ledger, org: OrganisationId, kind: AccreditationKind, from: NaiveDate) {
    run(
        ledger,
        &admin(),
        Command::AccreditOrganisation(AccreditOrganisation {
            organisation_id: org,
            accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
            kind,
            effective_from: from,
            effective_until: None,
            document_number: "渝科局发〔2024〕12号".into(),
        }),
    )
    .await
    .expect("accredit");
}

pub async fn list_achievement(ledger: &Ledger, owner: OrganisationId, shares: &[&str]) -> AchievementId {
    let id = AchievementId::new_v7();
    run(
        ledger,
        &ctx(actor(Role::ResearchInstitution, Some(owner))),
        Command::ListAchievement(ListAchievement {
            achievement_id: id,
            owner_id: owner,
            details: AchievementDetails {
                title: "高强度镁合金制备技术".into(),
                field: TechField::NewMaterials,
                description: "一种高强度镁合金的制备方法".into(),
                patent_numbers: vec![],
                maturity: 6,
                asking_price: Some(yuan(500_000)),
                transfer_modes: vec![TransferMode::Transfer],
                completers: completers(shares),
            },
        }),
    )
    .await
    .expect("list achievement");
    id
}

/// Signs (as the registrar) a transfer contract for `amount` on 2024-03-01.
pub async fn sign_contract(
    ledger: &Ledger,
    seller: OrganisationId,
    buyer: OrganisationId,
    achievement: Option<AchievementId>,
    amount: Money,
) -> ContractId {
    let id = ContractId::new_v7();
    run(
        ledger,
        &registrar(),
        Command::SignContract(SignContract {
            contract_id: id,
            contract_number: format!("HT-{}", id.0.simple()),
            contract_type: ContractType::Transfer,
            title: "镁合金专利转让".into(),
            seller_id: seller,
            buyer_id: buyer,
            achievement_id: achievement,
            match_id: None,
            broker_id: None,
            operating_center_id: None,
            contract_amount: amount,
            tech_transaction_amount: amount,
            signed_on: date(2024, 3, 1),
        }),
    )
    .await
    .expect("sign contract");
    id
}

pub async fn register_contract(ledger: &Ledger, contract: ContractId, number: &str, on: NaiveDate, certified: Money) {
    run(
        ledger,
        &registrar(),
        Command::RegisterContract(RegisterContract {
            contract_id: contract,
            registration_number: RegistrationNumber::parse("registrationNumber", number).expect("valid"),
            registered_on: on,
            certified_tech_transaction_amount: certified,
            field: None,
        }),
    )
    .await
    .expect("register contract");
}

pub fn payment(contract: ContractId, amount: Money, settled_at: &str, reference: &str) -> Command {
    Command::RecordPayment(RecordPayment {
        contract_id: contract,
        payment_id: PaymentId(uuid::Uuid::now_v7()),
        amount,
        settled_at: at(settled_at),
        bank_reference: reference.into(),
    })
}

/// Rebuilds the read models from the log and asserts they equal the live ones, which it
/// returns (for further checks).
pub async fn assert_rebuild_equals_live(store: &ledger::store::Store) -> Vec<String> {
    let live = store.dump_read_models().await.expect("dump the live read models");
    store.rebuild_projections(|_| {}).await.expect("rebuild");
    assert_eq!(
        store.dump_read_models().await.expect("dump the rebuilt read models"),
        live,
        "rebuilt read models equal the live ones"
    );
    live
}
