//! A seeded random marketplace: organisations (some accredited, some outside Chongqing),
//! achievements, demands, matches, contracts, registrations, payments, reversals,
//! amendments, terminations, withdrawals, with the right actor most of the time and a wrong
//! one sometimes. Refusals are part of the scenario: the log must stay consistent whatever
//! is refused. The seed is printed so a failure can be replayed.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use ledger::codes::{DivisionCode, RegistrationNumber};
use ledger::command::*;
use ledger::event::AchievementDetails;
use ledger::ids::*;
use ledger::service::Ledger;
use ledger::vocabulary::*;
use ledger::{Actor, Money, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fixtures::{completers, credit_code, ctx};

pub struct Scenario {
    rng: StdRng,
    pub seed: u64,
    organisations: Vec<OrganisationId>,
    centers: Vec<OrganisationId>,
    brokers: Vec<BrokerId>,
    achievements: Vec<(AchievementId, OrganisationId)>,
    demands: Vec<(DemandId, OrganisationId)>,
    matches: Vec<(MatchId, AchievementId, DemandId)>,
    contracts: Vec<(ContractId, OrganisationId)>,
    payments: Vec<(ContractId, PaymentId)>,
    pub accepted: u32,
    pub refused: u32,
    next_code: u32,
}

const DIVISIONS: [&str; 6] = ["500106", "500112", "500105", "500234", "110108", "440305"];
const SHARES: [&[&str]; 4] = [&["100"], &["60", "40"], &["33.33", "33.33", "33.34"], &["50", "25", "12.5", "12.5"]];

impl Scenario {
    pub fn new(seed: u64) -> Scenario {
        println!("scenario seed: {seed} (set SCENARIO_SEED={seed} to replay)");
        Scenario {
            rng: StdRng::seed_from_u64(seed),
            seed,
            organisations: vec![],
            centers: vec![],
            brokers: vec![],
            achievements: vec![],
            demands: vec![],
            matches: vec![],
            contracts: vec![],
            payments: vec![],
            accepted: 0,
            refused: 0,
            next_code: (seed % 10_000) as u32 * 1_000,
        }
    }

    /// The seed from `SCENARIO_SEED`, or a fresh one.
    pub fn seed_from_env() -> u64 {
        std::env::var("SCENARIO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::rng().random())
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() { None } else { Some(items[self.rng.random_range(0..items.len())]) }
    }

    fn day(&mut self) -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + Duration::days(self.rng.random_range(0..1095))
    }

    /// An instant in 2024-2025, sometimes on a New Year's Eve/Day boundary in Asia/Shanghai.
    fn instant(&mut self) -> chrono::DateTime<Utc> {
        if self.rng.random_bool(0.15) {
            // 2024-12-31 15:30Z ..= 16:29Z straddles 00:00 on 1 January in Shanghai.
            return Utc.with_ymd_and_hms(2024, 12, 31, 15, 30, 0).unwrap()
                + Duration::minutes(self.rng.random_range(0..60));
        }
        Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap()
            + Duration::seconds(self.rng.random_range(0..60 * 60 * 24 * 600))
    }

    fn amount(&mut self, max_yuan: i64) -> Money {
        Money::from_fen(self.rng.random_range(1..=max_yuan * 100))
    }

    /// Usually the actor the rule wants; sometimes someone else (who must be refused).
    fn actor(&mut self, role: Role, organisation: Option<OrganisationId>) -> Actor {
        if self.rng.random_bool(0.05) {
            let wrong = Role::ALL[self.rng.random_range(0..Role::ALL.len())];
            return Actor {
                user_id: "someone".into(),
                role: wrong,
                organisation_id: self.pick(&self.organisations.clone()),
                broker_id: None,
            };
        }
        Actor { user_id: format!("{}-user", role.as_str()), role, organisation_id: organisation, broker_id: None }
    }

    async fn run(&mut self, ledger: &Ledger, actor: Actor, command: Command) -> bool {
        let fingerprint = format!("{command:?}");
        match ledger.execute(&ctx(actor), command, &fingerprint).await {
            Ok(_) => {
                self.accepted += 1;
                true
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        "VALIDATION_FAILED" | "RULE_VIOLATED" | "NOT_FOUND" | "ALREADY_EXISTS" | "FORBIDDEN"
                    ),
                    "seed {}: unexpected failure {e}",
                    self.seed
                );
                self.refused += 1;
                false
            }
        }
    }

    /// Runs `steps` random commands.
    pub async fn play(&mut self, ledger: &Ledger, steps: usize) {
        for _ in 0..steps {
            self.step(ledger).await;
        }
    }

    async fn step(&mut self, ledger: &Ledger) {
        let roll = if self.organisations.len() < 4 { 0 } else { self.rng.random_range(0..100) };
        match roll {
            0..=7 => self.register_organisation(ledger).await,
            8..=11 => self.accredit(ledger).await,
            12..=13 => self.register_broker(ledger).await,
            14..=21 => self.list_achievement(ledger).await,
            22..=24 => self.revise_or_withdraw(ledger).await,
            25..=29 => self.post_or_close_demand(ledger).await,
            30..=35 => self.match_and_answer(ledger).await,
            36..=47 => self.sign(ledger).await,
            48..=55 => self.register_contract(ledger).await,
            56..=84 => self.pay(ledger).await,
            85..=93 => self.reverse(ledger).await,
            _ => self.amend_or_terminate(ledger).await,
        }
    }

    async fn register_organisation(&mut self, ledger: &Ledger) {
        let id = OrganisationId::new_v7();
        let kinds = OrganisationKind::ALL;
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        let division = DIVISIONS[self.rng.random_range(0..DIVISIONS.len())];
        self.next_code += 1;
        let command = Command::RegisterOrganisation(RegisterOrganisation {
            organisation_id: id,
            name: format!("机构{}", self.next_code),
            kind,
            credit_code: credit_code(self.next_code),
            division_code: DivisionCode::parse("d", division).unwrap(),
        });
        if self
            .run(
                ledger,
                Actor { user_id: "admin".into(), role: Role::Admin, organisation_id: None, broker_id: None },
                command,
            )
            .await
        {
            self.organisations.push(id);
            if kind == OrganisationKind::IpOperatingCenter {
                self.centers.push(id);
            }
        }
    }

    async fn accredit(&mut self, ledger: &Ledger) {
        let center = self.rng.random_bool(0.3);
        let Some(org) =
            (if center { self.pick(&self.centers.clone()) } else { self.pick(&self.organisations.clone()) })
        else {
            return;
        };
        let kind = if center {
            AccreditationKind::IpOperatingCenter
        } else if self.rng.random_bool(0.5) {
            AccreditationKind::IntroducedRdInstitution
        } else {
            AccreditationKind::InnovationPlatform
        };
        let from = self.day();
        let actor = self.actor(Role::Admin, None);
        let command = Command::AccreditOrganisation(AccreditOrganisation {
            organisation_id: org,
            accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
            kind,
            effective_from: from,
            effective_until: if self.rng.random_bool(0.2) { Some(from + Duration::days(400)) } else { None },
            document_number: "渝科局发〔2024〕1号".into(),
        });
        self.run(ledger, actor, command).await;
    }

    async fn register_broker(&mut self, ledger: &Ledger) {
        let id = BrokerId::new_v7();
        let command = Command::RegisterBroker(RegisterBroker {
            broker_id: id,
            name: "经纪人".into(),
            agency_id: None,
            certificate_number: None,
        });
        let actor = self.actor(Role::Admin, None);
        if self.run(ledger, actor, command).await {
            self.brokers.push(id);
        }
    }

    async fn list_achievement(&mut self, ledger: &Ledger) {
        let Some(owner) = self.pick(&self.organisations.clone()) else { return };
        let id = AchievementId::new_v7();
        let shares = SHARES[self.rng.random_range(0..SHARES.len())];
        let command = Command::ListAchievement(ListAchievement {
            achievement_id: id,
            owner_id: owner,
            details: AchievementDetails {
                title: format!("成果{}", self.rng.random::<u16>()),
                field: TechField::ALL[self.rng.random_range(0..TechField::ALL.len())],
                description: String::new(),
                patent_numbers: vec![],
                maturity: self.rng.random_range(1..=9),
                asking_price: Some(self.amount(2_000_000)),
                transfer_modes: vec![TransferMode::Transfer],
                completers: completers(shares),
            },
        });
        let actor = self.actor(Role::ResearchInstitution, Some(owner));
        if self.run(ledger, actor, command).await {
            self.achievements.push((id, owner));
        }
    }

    async fn revise_or_withdraw(&mut self, ledger: &Ledger) {
        let Some((id, owner)) = self.pick(&self.achievements.clone()) else { return };
        let actor = self.actor(Role::ResearchInstitution, Some(owner));
        let command = if self.rng.random_bool(0.3) {
            Command::WithdrawAchievement(WithdrawAchievement { achievement_id: id, reason: "撤回".into() })
        } else {
            let shares = SHARES[self.rng.random_range(0..SHARES.len())];
            Command::ReviseAchievement(ReviseAchievement {
                achievement_id: id,
                revision: AchievementRevision {
                    completers: Some(completers(shares)),
                    maturity: Some(7),
                    ..Default::default()
                },
            })
        };
        self.run(ledger, actor, command).await;
    }

    async fn post_or_close_demand(&mut self, ledger: &Ledger) {
        if !self.demands.is_empty() && self.rng.random_bool(0.2) {
            let (id, enterprise) = self.pick(&self.demands.clone()).unwrap();
            let actor = self.actor(Role::Enterprise, Some(enterprise));
            self.run(ledger, actor, Command::CloseDemand(CloseDemand { demand_id: id, reason: "关闭".into() })).await;
            return;
        }
        let Some(enterprise) = self.pick(&self.organisations.clone()) else { return };
        let id = DemandId::new_v7();
        let budget = self.amount(3_000_000);
        let command = Command::PostDemand(PostDemand {
            demand_id: id,
            enterprise_id: enterprise,
            title: "需求".into(),
            field: TechField::NewMaterials,
            description: String::new(),
            budget: Some(budget),
            deadline: None,
        });
        let actor = self.actor(Role::Enterprise, Some(enterprise));
        if self.run(ledger, actor, command).await {
            self.demands.push((id, enterprise));
        }
    }

    async fn match_and_answer(&mut self, ledger: &Ledger) {
        if !self.matches.is_empty() && self.rng.random_bool(0.6) {
            let (id, achievement, demand) = self.pick(&self.matches.clone()).unwrap();
            let owner = self.achievements.iter().find(|a| a.0 == achievement).map(|a| a.1);
            let enterprise = self.demands.iter().find(|d| d.0 == demand).map(|d| d.1);
            let (side, org, role) = if self.rng.random_bool(0.5) {
                (MatchSide::Owner, owner, Role::ResearchInstitution)
            } else {
                (MatchSide::Enterprise, enterprise, Role::Enterprise)
            };
            let actor = self.actor(role, org);
            let command = if self.rng.random_bool(0.85) {
                Command::AcceptMatch(AcceptMatch { match_id: id, side })
            } else {
                Command::DeclineMatch(DeclineMatch { match_id: id, side, reason: "不合适".into() })
            };
            self.run(ledger, actor, command).await;
            return;
        }
        let (Some(broker), Some((achievement, _)), Some((demand, _))) =
            (self.pick(&self.brokers.clone()), self.pick(&self.achievements.clone()), self.pick(&self.demands.clone()))
        else {
            return;
        };
        let id = MatchId::new_v7();
        let command = Command::ProposeMatch(ProposeMatch {
            match_id: id,
            broker_id: broker,
            achievement_id: achievement,
            demand_id: demand,
            note: String::new(),
        });
        let actor =
            Actor { user_id: "broker".into(), role: Role::Broker, organisation_id: None, broker_id: Some(broker) };
        if self.run(ledger, actor, command).await {
            self.matches.push((id, achievement, demand));
        }
    }

    async fn sign(&mut self, ledger: &Ledger) {
        let id = ContractId::new_v7();
        let through_match = !self.matches.is_empty() && self.rng.random_bool(0.25);
        let (seller, buyer, achievement, match_id) = if through_match {
            let (m, a, d) = self.pick(&self.matches.clone()).unwrap();
            let owner = self.achievements.iter().find(|x| x.0 == a).unwrap().1;
            let enterprise = self.demands.iter().find(|x| x.0 == d).unwrap().1;
            (owner, enterprise, None, Some(m))
        } else if let (Some((a, owner)), true) = (self.pick(&self.achievements.clone()), self.rng.random_bool(0.8)) {
            (owner, self.pick(&self.organisations.clone()).unwrap(), Some(a), None)
        } else {
            (
                self.pick(&self.organisations.clone()).unwrap(),
                self.pick(&self.organisations.clone()).unwrap(),
                None,
                None,
            )
        };
        let contract_amount = self.amount(30_000_000);
        let tech = Money::from_fen(self.rng.random_range(1..=contract_amount.fen()));
        let command = Command::SignContract(SignContract {
            contract_id: id,
            contract_number: format!("HT-{}", id.0.simple()),
            contract_type: ContractType::ALL[self.rng.random_range(0..ContractType::ALL.len())],
            title: "合同".into(),
            seller_id: seller,
            buyer_id: buyer,
            achievement_id: achievement,
            match_id,
            broker_id: None,
            operating_center_id: if self.rng.random_bool(0.5) { self.pick(&self.centers.clone()) } else { None },
            contract_amount,
            tech_transaction_amount: tech,
            signed_on: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        });
        let actor = self.actor(Role::ResearchInstitution, Some(seller));
        if self.run(ledger, actor, command).await {
            self.contracts.push((id, seller));
        }
    }

    async fn register_contract(&mut self, ledger: &Ledger) {
        let Some((id, _)) = self.pick(&self.contracts.clone()) else { return };
        let number = format!("{:016}", self.rng.random_range(0..10_000_000_000_000_000u64));
        let registered_on =
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap() + Duration::days(self.rng.random_range(0..500));
        let certified = self.amount(1_000_000);
        let command = Command::RegisterContract(RegisterContract {
            contract_id: id,
            registration_number: RegistrationNumber::parse("r", &number).unwrap(),
            registered_on,
            certified_tech_transaction_amount: certified,
        });
        let actor = self.actor(Role::Registrar, None);
        self.run(ledger, actor, command).await;
    }

    async fn pay(&mut self, ledger: &Ledger) {
        let Some((contract, _)) = self.pick(&self.contracts.clone()) else { return };
        let id = PaymentId(uuid::Uuid::now_v7());
        let large = self.rng.random_bool(0.2);
        let amount = self.amount(if large { 25_000_000 } else { 3_000_000 });
        let settled_at = self.instant();
        let command = Command::RecordPayment(RecordPayment {
            contract_id: contract,
            payment_id: id,
            amount,
            settled_at,
            bank_reference: format!("BANK-{}", self.rng.random::<u32>() % 5000),
        });
        let actor = self.actor(Role::Registrar, None);
        if self.run(ledger, actor, command).await {
            self.payments.push((contract, id));
        }
    }

    async fn reverse(&mut self, ledger: &Ledger) {
        let Some((contract, payment)) = self.pick(&self.payments.clone()) else { return };
        let amount = self.amount(2_000_000);
        let reversed_at = self.instant() + Duration::days(self.rng.random_range(0..200));
        let command = Command::ReversePayment(ReversePayment {
            contract_id: contract,
            payment_id: payment,
            reversal_id: ReversalId(uuid::Uuid::now_v7()),
            amount,
            reversed_at,
            reason: "退款".into(),
        });
        let actor = self.actor(Role::Registrar, None);
        self.run(ledger, actor, command).await;
    }

    async fn amend_or_terminate(&mut self, ledger: &Ledger) {
        let Some((contract, seller)) = self.pick(&self.contracts.clone()) else { return };
        let actor = self.actor(Role::ResearchInstitution, Some(seller));
        let on = NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
        let command = if self.rng.random_bool(0.3) {
            Command::TerminateContract(TerminateContract {
                contract_id: contract,
                terminated_on: on,
                reason: "解除".into(),
            })
        } else {
            let amount = self.amount(30_000_000);
            Command::AmendContract(AmendContract {
                contract_id: contract,
                contract_amount: amount,
                tech_transaction_amount: amount,
                amended_on: on,
                reason: "变更".into(),
            })
        };
        self.run(ledger, actor, command).await;
    }
}
