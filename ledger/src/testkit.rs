//! Test kit (feature `testkit`, and this crate's own tests): a seeded random marketplace
//! scenario, and an in-memory ledger that runs commands through the real decisions and
//! records the events in order, without a database.
//!
//! The scenario emits commands (usually by the actor the rules want, sometimes by someone
//! else) and is told which were accepted; refusals are part of it. The same seed gives the
//! same commands, so a failure can be replayed (`SCENARIO_SEED`).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::actor::{Actor, Role};
use crate::codes::{CreditCode, DivisionCode, RegistrationNumber, Share};
use crate::command::*;
use crate::event::*;
use crate::ids::*;
use crate::money::Money;
use crate::vocabulary::*;

/// SplitMix64: a small, well-known PRNG, so the kit needs no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "an empty range");
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() { None } else { Some(items[self.below(items.len() as u64) as usize].clone()) }
    }
}

/// A valid unified social credit code for `n` (check character by GB 32100-2015).
pub fn credit_code(n: u32) -> CreditCode {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let body = format!("91500106{n:09}");
    let sum: u32 = body.chars().zip(WEIGHTS).map(|(c, w)| ALPHABET.find(c).expect("in alphabet") as u32 * w).sum();
    let check = ALPHABET.as_bytes()[((31 - sum % 31) % 31) as usize] as char;
    CreditCode::parse("creditCode", &format!("{body}{check}")).expect("valid credit code")
}

pub fn completers(shares: &[&str]) -> Vec<Completer> {
    shares
        .iter()
        .enumerate()
        .map(|(i, s)| Completer {
            name: format!("完成人{}", i + 1),
            share: Share::parse("share", s).expect("valid share"),
            identity: None,
        })
        .collect()
}

const DIVISIONS: [&str; 6] = ["500106", "500112", "500105", "500234", "110108", "440305"];
const SHARES: [&[&str]; 4] = [&["100"], &["60", "40"], &["33.33", "33.33", "33.34"], &["50", "25", "12.5", "12.5"]];

/// A random marketplace, one command at a time.
pub struct Scenario {
    rng: Rng,
    pub seed: u64,
    organisations: Vec<OrganisationId>,
    centers: Vec<OrganisationId>,
    brokers: Vec<BrokerId>,
    achievements: Vec<(AchievementId, OrganisationId)>,
    demands: Vec<(DemandId, OrganisationId)>,
    matches: Vec<(MatchId, AchievementId, DemandId)>,
    contracts: Vec<(ContractId, OrganisationId)>,
    payments: Vec<(ContractId, PaymentId)>,
    next_code: u32,
    /// What the last command would add if accepted.
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Organisation(OrganisationId, bool),
    Broker(BrokerId),
    Achievement(AchievementId, OrganisationId),
    Demand(DemandId, OrganisationId),
    Match(MatchId, AchievementId, DemandId),
    Contract(ContractId, OrganisationId),
    Payment(ContractId, PaymentId),
}

impl Scenario {
    pub fn new(seed: u64) -> Scenario {
        Scenario {
            rng: Rng::new(seed),
            seed,
            organisations: vec![],
            centers: vec![],
            brokers: vec![],
            achievements: vec![],
            demands: vec![],
            matches: vec![],
            contracts: vec![],
            payments: vec![],
            next_code: (seed % 100_000) as u32 * 1_000,
            pending: None,
        }
    }

    fn day(&mut self) -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 1).expect("valid") + Duration::days(self.rng.below(1095) as i64)
    }

    /// An instant in 2024-2025, often close to New Year in Asia/Shanghai.
    fn instant(&mut self) -> DateTime<Utc> {
        if self.rng.chance(15) {
            // 2024-12-31 15:30Z ..= 16:29Z straddles 00:00 on 1 January in Shanghai.
            return Utc.with_ymd_and_hms(2024, 12, 31, 15, 30, 0).single().expect("valid")
                + Duration::minutes(self.rng.below(60) as i64);
        }
        Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).single().expect("valid")
            + Duration::seconds(self.rng.below(60 * 60 * 24 * 600) as i64)
    }

    fn amount(&mut self, max_yuan: i64) -> Money {
        Money::from_fen(1 + self.rng.below((max_yuan * 100) as u64) as i64)
    }

    /// Usually the actor the rule wants; sometimes someone else (who must be refused).
    fn actor(&mut self, role: Role, organisation: Option<OrganisationId>) -> Actor {
        if self.rng.chance(5) {
            let wrong = Role::ALL[self.rng.below(Role::ALL.len() as u64) as usize];
            let organisation = self.rng.pick(&self.organisations);
            return Actor { user_id: "someone".into(), role: wrong, organisation_id: organisation, broker_id: None };
        }
        Actor { user_id: format!("{}-user", role.as_str()), role, organisation_id: organisation, broker_id: None }
    }

    /// Tells the scenario whether the last command was accepted.
    pub fn observe(&mut self, accepted: bool) {
        let Some(pending) = self.pending.take() else { return };
        if !accepted {
            return;
        }
        match pending {
            Pending::Organisation(id, center) => {
                self.organisations.push(id);
                if center {
                    self.centers.push(id);
                }
            }
            Pending::Broker(id) => self.brokers.push(id),
            Pending::Achievement(id, owner) => self.achievements.push((id, owner)),
            Pending::Demand(id, enterprise) => self.demands.push((id, enterprise)),
            Pending::Match(id, a, d) => self.matches.push((id, a, d)),
            Pending::Contract(id, seller) => self.contracts.push((id, seller)),
            Pending::Payment(contract, payment) => self.payments.push((contract, payment)),
        }
    }

    /// The next command and who issues it.
    pub fn next_command(&mut self) -> (Actor, Command) {
        self.pending = None;
        loop {
            let roll = if self.organisations.len() < 4 { 0 } else { self.rng.below(100) };
            let next = match roll {
                0..=7 => Some(self.register_organisation()),
                8..=11 => self.accredit(),
                12..=13 => Some(self.register_broker()),
                14..=21 => self.list_achievement(),
                22..=24 => self.revise_or_withdraw(),
                25..=29 => self.post_or_close_demand(),
                30..=35 => self.match_and_answer(),
                36..=47 => self.sign(),
                48..=55 => self.register_contract(),
                56..=84 => self.pay(),
                85..=93 => self.reverse(),
                _ => self.amend_or_terminate(),
            };
            if let Some(next) = next {
                return next;
            }
        }
    }

    fn admin(&mut self) -> Actor {
        self.actor(Role::Admin, None)
    }

    fn register_organisation(&mut self) -> (Actor, Command) {
        let id = OrganisationId::new_v7();
        let kind = OrganisationKind::ALL[self.rng.below(OrganisationKind::ALL.len() as u64) as usize];
        let division = DIVISIONS[self.rng.below(DIVISIONS.len() as u64) as usize];
        self.next_code += 1;
        self.pending = Some(Pending::Organisation(id, kind == OrganisationKind::IpOperatingCenter));
        let actor = Actor { user_id: "admin".into(), role: Role::Admin, organisation_id: None, broker_id: None };
        (
            actor,
            Command::RegisterOrganisation(RegisterOrganisation {
                organisation_id: id,
                name: format!("机构{}", self.next_code),
                kind,
                credit_code: credit_code(self.next_code),
                division_code: DivisionCode::parse("divisionCode", division).expect("valid"),
            }),
        )
    }

    fn accredit(&mut self) -> Option<(Actor, Command)> {
        let center = self.rng.chance(30);
        let org = if center { self.rng.pick(&self.centers) } else { self.rng.pick(&self.organisations) }?;
        let kind = if center {
            AccreditationKind::IpOperatingCenter
        } else if self.rng.chance(50) {
            AccreditationKind::IntroducedRdInstitution
        } else {
            AccreditationKind::InnovationPlatform
        };
        let from = self.day();
        let until = if self.rng.chance(20) { Some(from + Duration::days(400)) } else { None };
        let actor = self.admin();
        Some((
            actor,
            Command::AccreditOrganisation(AccreditOrganisation {
                organisation_id: org,
                accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
                kind,
                effective_from: from,
                effective_until: until,
                document_number: "渝科局发〔2024〕1号".into(),
            }),
        ))
    }

    fn register_broker(&mut self) -> (Actor, Command) {
        let id = BrokerId::new_v7();
        self.pending = Some(Pending::Broker(id));
        let actor = self.admin();
        (
            actor,
            Command::RegisterBroker(RegisterBroker {
                broker_id: id,
                name: "经纪人".into(),
                agency_id: None,
                certificate_number: None,
            }),
        )
    }

    fn list_achievement(&mut self) -> Option<(Actor, Command)> {
        let owner = self.rng.pick(&self.organisations)?;
        let id = AchievementId::new_v7();
        let shares = SHARES[self.rng.below(SHARES.len() as u64) as usize];
        let field = TechField::ALL[self.rng.below(TechField::ALL.len() as u64) as usize];
        let price = self.amount(2_000_000);
        let maturity = 1 + self.rng.below(9) as u8;
        self.pending = Some(Pending::Achievement(id, owner));
        let actor = self.actor(Role::ResearchInstitution, Some(owner));
        Some((
            actor,
            Command::ListAchievement(ListAchievement {
                achievement_id: id,
                owner_id: owner,
                details: AchievementDetails {
                    title: format!("成果{}", self.rng.below(100_000)),
                    field,
                    description: String::new(),
                    patent_numbers: vec![],
                    maturity,
                    asking_price: Some(price),
                    transfer_modes: vec![TransferMode::Transfer],
                    completers: completers(shares),
                },
            }),
        ))
    }

    fn revise_or_withdraw(&mut self) -> Option<(Actor, Command)> {
        let (id, owner) = self.rng.pick(&self.achievements)?;
        let actor = self.actor(Role::ResearchInstitution, Some(owner));
        let command = if self.rng.chance(30) {
            Command::WithdrawAchievement(WithdrawAchievement { achievement_id: id, reason: "撤回".into() })
        } else {
            let shares = SHARES[self.rng.below(SHARES.len() as u64) as usize];
            Command::ReviseAchievement(ReviseAchievement {
                achievement_id: id,
                revision: AchievementRevision {
                    completers: Some(completers(shares)),
                    maturity: Some(7),
                    ..Default::default()
                },
            })
        };
        Some((actor, command))
    }

    fn post_or_close_demand(&mut self) -> Option<(Actor, Command)> {
        if !self.demands.is_empty() && self.rng.chance(20) {
            let (id, enterprise) = self.rng.pick(&self.demands)?;
            let actor = self.actor(Role::Enterprise, Some(enterprise));
            return Some((actor, Command::CloseDemand(CloseDemand { demand_id: id, reason: "关闭".into() })));
        }
        let enterprise = self.rng.pick(&self.organisations)?;
        let id = DemandId::new_v7();
        let budget = self.amount(3_000_000);
        self.pending = Some(Pending::Demand(id, enterprise));
        let actor = self.actor(Role::Enterprise, Some(enterprise));
        Some((
            actor,
            Command::PostDemand(PostDemand {
                demand_id: id,
                enterprise_id: enterprise,
                title: "需求".into(),
                field: TechField::NewMaterials,
                description: String::new(),
                budget: Some(budget),
                deadline: None,
            }),
        ))
    }

    fn match_and_answer(&mut self) -> Option<(Actor, Command)> {
        if !self.matches.is_empty() && self.rng.chance(60) {
            let (id, achievement, demand) = self.rng.pick(&self.matches)?;
            let owner = self.achievements.iter().find(|a| a.0 == achievement).map(|a| a.1);
            let enterprise = self.demands.iter().find(|d| d.0 == demand).map(|d| d.1);
            let (side, org, role) = if self.rng.chance(50) {
                (MatchSide::Owner, owner, Role::ResearchInstitution)
            } else {
                (MatchSide::Enterprise, enterprise, Role::Enterprise)
            };
            let actor = self.actor(role, org);
            let command = if self.rng.chance(85) {
                Command::AcceptMatch(AcceptMatch { match_id: id, side })
            } else {
                Command::DeclineMatch(DeclineMatch { match_id: id, side, reason: "不合适".into() })
            };
            return Some((actor, command));
        }
        let broker = self.rng.pick(&self.brokers)?;
        let (achievement, _) = self.rng.pick(&self.achievements)?;
        let (demand, _) = self.rng.pick(&self.demands)?;
        let id = MatchId::new_v7();
        self.pending = Some(Pending::Match(id, achievement, demand));
        let actor =
            Actor { user_id: "broker".into(), role: Role::Broker, organisation_id: None, broker_id: Some(broker) };
        Some((
            actor,
            Command::ProposeMatch(ProposeMatch {
                match_id: id,
                broker_id: broker,
                achievement_id: achievement,
                demand_id: demand,
                note: String::new(),
            }),
        ))
    }

    fn sign(&mut self) -> Option<(Actor, Command)> {
        let id = ContractId::new_v7();
        let (seller, buyer, achievement, match_id) = if !self.matches.is_empty() && self.rng.chance(25) {
            let (m, a, d) = self.rng.pick(&self.matches)?;
            let owner = self.achievements.iter().find(|x| x.0 == a)?.1;
            let enterprise = self.demands.iter().find(|x| x.0 == d)?.1;
            (owner, enterprise, None, Some(m))
        } else if !self.achievements.is_empty() && self.rng.chance(80) {
            let (a, owner) = self.rng.pick(&self.achievements)?;
            (owner, self.rng.pick(&self.organisations)?, Some(a), None)
        } else {
            (self.rng.pick(&self.organisations)?, self.rng.pick(&self.organisations)?, None, None)
        };
        let contract_amount = self.amount(30_000_000);
        let tech = Money::from_fen(1 + self.rng.below(contract_amount.fen() as u64) as i64);
        let center = if self.rng.chance(50) { self.rng.pick(&self.centers) } else { None };
        let contract_type = ContractType::ALL[self.rng.below(ContractType::ALL.len() as u64) as usize];
        self.pending = Some(Pending::Contract(id, seller));
        let actor = self.actor(Role::ResearchInstitution, Some(seller));
        Some((
            actor,
            Command::SignContract(SignContract {
                contract_id: id,
                contract_number: format!("HT-{}", id.0.simple()),
                contract_type,
                title: "合同".into(),
                seller_id: seller,
                buyer_id: buyer,
                achievement_id: achievement,
                match_id,
                broker_id: None,
                operating_center_id: center,
                contract_amount,
                tech_transaction_amount: tech,
                signed_on: NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid"),
            }),
        ))
    }

    fn register_contract(&mut self) -> Option<(Actor, Command)> {
        let (id, _) = self.rng.pick(&self.contracts)?;
        let number = format!("{:016}", self.rng.below(10_000_000_000_000_000));
        let registered_on =
            NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid") + Duration::days(self.rng.below(500) as i64);
        let certified = self.amount(1_000_000);
        let field = if self.rng.chance(50) {
            Some(TechField::ALL[self.rng.below(TechField::ALL.len() as u64) as usize])
        } else {
            None
        };
        let actor = self.actor(Role::Registrar, None);
        Some((
            actor,
            Command::RegisterContract(RegisterContract {
                contract_id: id,
                registration_number: RegistrationNumber::parse("registrationNumber", &number).expect("16 digits"),
                registered_on,
                certified_tech_transaction_amount: certified,
                field,
            }),
        ))
    }

    fn pay(&mut self) -> Option<(Actor, Command)> {
        let (contract, _) = self.rng.pick(&self.contracts)?;
        let id = PaymentId(uuid::Uuid::now_v7());
        let large = self.rng.chance(20);
        let amount = self.amount(if large { 25_000_000 } else { 3_000_000 });
        let settled_at = self.instant();
        let reference = format!("BANK-{}", self.rng.below(5000));
        self.pending = Some(Pending::Payment(contract, id));
        let actor = self.actor(Role::Registrar, None);
        Some((
            actor,
            Command::RecordPayment(RecordPayment {
                contract_id: contract,
                payment_id: id,
                amount,
                settled_at,
                bank_reference: reference,
            }),
        ))
    }

    fn reverse(&mut self) -> Option<(Actor, Command)> {
        let (contract, payment) = self.rng.pick(&self.payments)?;
        let amount = self.amount(2_000_000);
        let reversed_at = self.instant() + Duration::days(self.rng.below(200) as i64);
        let actor = self.actor(Role::Registrar, None);
        Some((
            actor,
            Command::ReversePayment(ReversePayment {
                contract_id: contract,
                payment_id: payment,
                reversal_id: ReversalId(uuid::Uuid::now_v7()),
                amount,
                reversed_at,
                reason: "退款".into(),
            }),
        ))
    }

    fn amend_or_terminate(&mut self) -> Option<(Actor, Command)> {
        let (contract, seller) = self.rng.pick(&self.contracts)?;
        let actor = self.actor(Role::ResearchInstitution, Some(seller));
        let on = NaiveDate::from_ymd_opt(2024, 6, 1).expect("valid");
        let command = if self.rng.chance(30) {
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
        Some((actor, command))
    }
}

/// Plays `steps` commands of `scenario` on an in-memory ledger; returns (accepted, refused).
pub fn play(ledger: &mut crate::memory::MemoryLedger, scenario: &mut Scenario, steps: usize) -> (usize, usize) {
    let at = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).single().expect("valid");
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..steps {
        let (actor, command) = scenario.next_command();
        let ok = ledger.execute(&actor, &command, at).is_ok();
        scenario.observe(ok);
        if ok { accepted += 1 } else { refused += 1 }
    }
    (accepted, refused)
}
