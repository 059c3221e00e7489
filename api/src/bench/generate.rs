//! The demo and benchmark data generator: a technology-transfer market of a chosen size,
//! every command decided by the REAL domain rules (`ledger::domain::decide`) in memory, in
//! the order of its simulated time.
//!
//! Shape (DOMAIN.md; Chongqing registers about 7,000-10,000 contracts a year, China about
//! 1,000,000): universities and institutes (a few hundred at Chongqing scale, some accredited
//! as introduced R&D institutions or innovation platforms from dates, a few revoked later),
//! thousands of enterprises (80 % located in Chongqing, division codes 50xxxx), broker
//! agencies and their brokers, IP operating centers (most accredited from dates).
//! Contracts are signed on working days all year with the December peak; the mix of types is
//! development, service, consulting, transfer and licence; amounts are log-normal between
//! 10,000 and 50,000,000 yuan. Transfer and licence contracts (and some development ones) are
//! on an achievement of the seller's; 15 % come through a broker's match (demand posted,
//! match proposed, both sides accept); 8 % are operated through an IP operating center. 95 %
//! are registered 3 to 60 days after signing; each gets 1 to 5 payments (most paid in full
//! over the following months), 4 % a partial reversal, 3 % an amendment, 1.5 % a
//! termination. Listings that never sell, unmatched demands (some closed) and declined
//! matches are part of the noise. Later years start with a new completer-subsidy version.
//!
//! The same options give the same commands, ids and events (a seeded SplitMix64; ids are
//! UUIDv7 from the simulated time and the generator's random bits). What the log of a year
//! holds is what was recorded in that year: payments planned after the period are not made.
//!
//! Memory stays near the log itself: the generator keeps each stream's folded state (not its
//! events) and forgets a contract's state after its last planned command.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use ledger::codes::{CreditCode, DivisionCode, PatentNumber, RegistrationNumber, Share};
use ledger::command::*;
use ledger::domain::{self, Facts, Loaded};
use ledger::event::{AchievementDetails, Completer, Event, Metadata, RecordedEvent};
use ledger::ids::*;
use ledger::money::{Money, Rate};
use ledger::policy::{CapPeriod, PolicyKind};
use ledger::readmodel::{self, Change};
use ledger::time::{shanghai_date, start_of_shanghai_day};
use ledger::vocabulary::*;
use ledger::{Actor, DomainError, Role};
use uuid::Uuid;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Contracts signed over the whole period.
    pub contracts: u64,
    /// Calendar years the period spans (contracts are spread over them).
    pub years: u32,
    /// The first calendar year (Asia/Shanghai).
    pub first_year: i32,
    pub seed: u64,
    /// Record every command at this instant instead of its simulated time: for comparing
    /// with the live command path, whose recording instant is the clock's.
    pub recorded_at: Option<DateTime<Utc>>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { contracts: 10_000, years: 1, first_year: 2024, seed: 20_240_101, recorded_at: None }
    }
}

/// One decided command.
#[derive(Debug, Clone)]
pub struct Step {
    pub actor: Actor,
    pub command: Command,
    pub recorded_at: DateTime<Utc>,
    /// The command id the generator gives the events' metadata (deterministic).
    pub command_id: Uuid,
    pub events: Vec<Event>,
}

impl Step {
    /// The metadata the ledger would store with this step's events (no request id, no
    /// idempotency key).
    pub fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor.user_id.clone(),
            role: self.actor.role,
            organisation_id: self.actor.organisation_id,
            request_id: None,
            idempotency_key: None,
            command: self.command.name().to_owned(),
            command_id: self.command_id,
        }
    }
}

/// Counts of what was generated.
#[derive(Debug, Clone, Default)]
pub struct GenerateStats {
    pub commands: u64,
    pub events: u64,
    pub organisations: u64,
    pub achievements: u64,
    pub demands: u64,
    pub matches: u64,
    pub contracts_signed: u64,
    pub contracts_registered: u64,
    pub payments: u64,
    pub reversals: u64,
    /// Commands the domain refused (a generator bug when not 0: every command is meant to
    /// be valid).
    pub refused: u64,
    pub first_refusal: Option<String>,
}

/// The log a generator run decided: each event with its metadata and recording instant,
/// ready for [`ledger::store::Store::import_events`].
pub struct GeneratedLog {
    pub events: Vec<(Event, Metadata, DateTime<Utc>)>,
    pub stats: GenerateStats,
}

/// A generated event as the pure fold reads it, at `position`: the fold reads neither
/// stream versions nor hashes, so those are placeholders.
pub fn as_recorded(position: i64, event: Event, metadata: Metadata, recorded_at: DateTime<Utc>) -> RecordedEvent {
    RecordedEvent {
        position,
        stream_id: event.stream_id(),
        stream_version: 1,
        stored_schema_version: event.schema_version(),
        event,
        metadata,
        recorded_at,
        hash: [0; 32],
    }
}

/// Runs a generator to its end and keeps the events; `progress` is called every few
/// thousand commands.
pub fn generate_log(options: &GenerateOptions, mut progress: impl FnMut(&GenerateStats)) -> GeneratedLog {
    let mut generator = Generator::new(options.clone());
    let mut events = Vec::with_capacity((options.contracts as usize).saturating_mul(6));
    let mut steps = 0u64;
    while let Some(step) = generator.next_step() {
        let metadata = step.metadata();
        for event in step.events {
            events.push((event, metadata.clone(), step.recorded_at));
        }
        steps += 1;
        if steps.is_multiple_of(4096) {
            progress(&generator.stats);
        }
    }
    progress(&generator.stats);
    GeneratedLog { events, stats: generator.stats }
}

// ---------------------------------------------------------------------------------------
// Randomness

/// SplitMix64 (as in `ledger::testkit`), with the few distributions the generator needs.
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
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
    /// A UUIDv7 for the instant `micros` with random bits from this generator.
    pub fn uuid_at(&mut self, micros: i64) -> Uuid {
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis((micros / 1000).max(0) as u64, &bytes).into_uuid()
    }
}

// ---------------------------------------------------------------------------------------
// Codes and names

/// A valid unified social credit code (GB 32100-2015) for organisation `n` registered in
/// `division`: `12` (public institution) or `91` (company) + the division + 9 digits + check.
pub fn credit_code(public_institution: bool, division: &str, n: u64) -> CreditCode {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let kind = if public_institution { "12" } else { "91" };
    let body = format!("{kind}{division}{:09}", n % 1_000_000_000);
    let sum: u32 = body.chars().zip(WEIGHTS).map(|(c, w)| ALPHABET.find(c).expect("in alphabet") as u32 * w).sum();
    let check = ALPHABET.as_bytes()[((31 - sum % 31) % 31) as usize] as char;
    CreditCode::parse("creditCode", &format!("{body}{check}")).expect("valid credit code")
}

/// A valid Chinese patent number (`ZL` + 12-digit application number + check digit).
fn patent_number(rng: &mut Rng) -> PatentNumber {
    let year = 2015 + rng.below(9);
    let kind = 1 + rng.below(2);
    let digits = format!("{year}{kind}{:07}", rng.below(10_000_000));
    let weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];
    let sum: u32 = digits.chars().zip(weights).map(|(c, w)| c.to_digit(10).expect("digit") * w).sum();
    let check = match sum % 11 {
        10 => 'X',
        r => char::from_digit(r, 10).expect("digit"),
    };
    PatentNumber::parse("patentNumbers", &format!("ZL{digits}.{check}")).expect("valid patent number")
}

const CHONGQING: [&str; 16] = [
    "500101", "500103", "500104", "500105", "500106", "500107", "500108", "500109", "500112", "500113", "500117",
    "500118", "500151", "500153", "500154", "500234",
];
const ELSEWHERE: [&str; 10] =
    ["110108", "310115", "440305", "510107", "330106", "420111", "610113", "320102", "370102", "120116"];
const SURNAMES: [&str; 20] = [
    "张", "王", "李", "赵", "刘", "陈", "杨", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马",
    "罗",
];
const GIVEN: [&str; 20] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "军", "杰", "涛", "明", "超", "霞", "平", "刚", "鹏", "华", "飞",
    "婷",
];
const SUBJECTS: [&str; 12] = [
    "高强度镁合金",
    "锂电池正极材料",
    "工业机器人视觉",
    "智能网联汽车",
    "页岩气开采",
    "生物医用材料",
    "柑橘深加工",
    "大数据风控",
    "集成电路封装",
    "轨道交通减振",
    "污水生物处理",
    "中药提取",
];
const METHODS: [&str; 8] = ["制备技术", "控制方法", "检测系统", "关键工艺", "集成平台", "优化算法", "装置", "应用技术"];

fn person(rng: &mut Rng) -> String {
    let s = SURNAMES[rng.index(SURNAMES.len())];
    let g1 = GIVEN[rng.index(GIVEN.len())];
    if rng.chance(0.6) { format!("{s}{g1}{}", GIVEN[rng.index(GIVEN.len())]) } else { format!("{s}{g1}") }
}

fn title(rng: &mut Rng) -> String {
    format!("{}{}", SUBJECTS[rng.index(SUBJECTS.len())], METHODS[rng.index(METHODS.len())])
}

fn field(rng: &mut Rng) -> TechField {
    TechField::ALL[rng.index(TechField::ALL.len())]
}

/// Log-normal yuan amount between 10,000 and 50,000,000 (median about 200,000), in whole
/// hundreds of yuan, as fen.
fn contract_amount_fen(rng: &mut Rng) -> i64 {
    let yuan = (200_000f64.ln() + 1.6 * rng.normal()).exp().clamp(10_000.0, 50_000_000.0);
    (yuan / 100.0).round() as i64 * 100 * 100
}

fn whole_yuan(fen: f64) -> i64 {
    ((fen / 100.0).floor() as i64).max(1) * 100
}

// ---------------------------------------------------------------------------------------
// The in-memory ledger: folded states, not event lists

/// Decides commands with the real domain rules against folded stream states.
#[derive(Default)]
struct Lean {
    states: HashMap<StreamId, Loaded>,
    claims: HashSet<String>,
}

impl Lean {
    fn execute(&mut self, actor: &Actor, command: &Command, at: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
        let mut facts = Facts::new();
        for _ in 0..4 {
            let needed = domain::streams_needed(command, &facts);
            if needed.is_empty() {
                break;
            }
            for stream in needed {
                let loaded = self.states.get(&stream).cloned().unwrap_or(Loaded { version: 0, state: None });
                facts.insert(stream, loaded);
            }
        }
        let events = domain::decide(command, actor, &facts)?;
        // The store's unique claims (credit codes, contract numbers per seller, registration
        // numbers), as the append path makes them.
        let mut claimed = Vec::new();
        for event in &events {
            if !matches!(
                event,
                Event::OrganisationRegistered(_) | Event::ContractSigned(_) | Event::ContractRegistered(_)
            ) {
                continue;
            }
            let recorded = RecordedEvent {
                position: 1,
                stream_id: event.stream_id(),
                stream_version: 1,
                stored_schema_version: event.schema_version(),
                event: event.clone(),
                metadata: Metadata {
                    actor: String::new(),
                    role: actor.role,
                    organisation_id: None,
                    request_id: None,
                    idempotency_key: None,
                    command: String::new(),
                    command_id: Uuid::nil(),
                },
                recorded_at: at,
                hash: [0; 32],
            };
            for change in readmodel::changes(&recorded) {
                if let Change::Claim { claim, owner } = change {
                    if self.claims.contains(&claim) || claimed.contains(&claim) {
                        return Err(DomainError::AlreadyTaken {
                            what: "value",
                            value: claim,
                            owner: owner.to_string(),
                        });
                    }
                    claimed.push(claim);
                }
            }
        }
        self.claims.extend(claimed);
        for event in &events {
            let loaded = self.states.entry(event.stream_id()).or_insert(Loaded { version: 0, state: None });
            domain::evolve(&mut loaded.state, event);
            loaded.version += 1;
        }
        Ok(events)
    }

    fn forget(&mut self, stream: &StreamId) {
        self.states.remove(stream);
    }
}

// ---------------------------------------------------------------------------------------
// The market

#[derive(Debug, Clone)]
struct Org {
    id: OrganisationId,
    kind: OrganisationKind,
    user: String,
}

impl Org {
    fn actor(&self) -> Actor {
        let role = match self.kind {
            OrganisationKind::University | OrganisationKind::ResearchInstitute => Role::ResearchInstitution,
            OrganisationKind::IpOperatingCenter => Role::OperatingCenter,
            _ => Role::Enterprise,
        };
        Actor { user_id: self.user.clone(), role, organisation_id: Some(self.id), broker_id: None }
    }
}

/// What happens next, and when (the heap orders by time, then by planning order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: i64,
    seq: u64,
    slot: u32,
    step: StepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StepKind {
    ListAchievement,
    PostDemand,
    ProposeMatch,
    AcceptOwner,
    AcceptEnterprise,
    Sign,
    Register,
    Pay(u8),
    Reverse,
    Amend,
    Terminate,
    ExtraListing,
    WithdrawExtraListing,
    ExtraDemand,
    CloseExtraDemand,
    ProposeDeclined,
    Decline,
    /// `slot` indexes the planned revocations.
    Revoke,
    /// `slot` is the year offset.
    EnactPolicy,
}

/// One contract's life, planned when it is first scheduled; its commands are built when due.
#[derive(Debug, Clone)]
struct Plan {
    contract: ContractId,
    number: u64,
    seller: u32,
    buyer: u32,
    center: Option<u32>,
    achievement: Option<AchievementId>,
    matched: Option<(MatchId, DemandId, BrokerId)>,
    contract_type: ContractType,
    field: TechField,
    amount: i64,
    tech: i64,
    signed_at: i64,
    certified: i64,
    registered_field: Option<TechField>,
    payments: Vec<(PaymentId, i64)>,
    reversal: Option<(u8, ReversalId, i64)>,
    amendment: Option<(i64, i64)>,
    extra_listing: Option<(AchievementId, u32)>,
    extra_demand: Option<(DemandId, u32)>,
    declined: Option<(MatchId, BrokerId)>,
    /// Steps still in the heap.
    pending: u16,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// Contracts are planned this many days before they are signed (their listing, demand and
/// match happen in between).
const PLANNING_DAYS: i64 = 30;
/// Relative activity per month (the December peak of contract registration).
const MONTH_WEIGHT: [f64; 12] = [0.6, 0.5, 0.8, 0.9, 0.9, 1.0, 0.9, 0.9, 1.0, 1.0, 1.1, 2.3];

/// Yields the market's commands in time order, each decided by the domain.
pub struct Generator {
    options: GenerateOptions,
    rng: Rng,
    lean: Lean,
    pub stats: GenerateStats,
    setup: VecDeque<(i64, Actor, Command)>,
    research: Vec<u32>,
    enterprises_cq: Vec<u32>,
    enterprises_elsewhere: Vec<u32>,
    centers: Vec<u32>,
    orgs: Vec<Org>,
    brokers: Vec<BrokerId>,
    /// Listed achievements that may get more contracts, with their owner.
    sellable: Vec<(AchievementId, u32)>,
    revocations: Vec<(OrganisationId, AccreditationId)>,
    heap: BinaryHeap<Reverse<Due>>,
    plans: HashMap<u32, Plan>,
    next_slot: u32,
    seq: u64,
    /// Contracts to sign on each day of the period.
    per_day: Vec<u32>,
    start: i64,
    end: i64,
    /// The next day whose contracts are still to be planned, and the day being simulated.
    planned_until: i64,
    day: i64,
    contract_number: u64,
    /// The last recording instant handed out (commands are recorded in time order).
    now: i64,
    /// When the organisations, brokers and accreditations are all recorded.
    setup_end: i64,
}

impl Generator {
    pub fn new(options: GenerateOptions) -> Generator {
        assert!(options.years >= 1, "at least one year");
        let first_day = NaiveDate::from_ymd_opt(options.first_year, 1, 1).expect("valid year");
        let last_day = NaiveDate::from_ymd_opt(options.first_year + options.years as i32, 1, 1).expect("valid year");
        let start = start_of_shanghai_day(first_day).timestamp_micros();
        let end = start_of_shanghai_day(last_day).timestamp_micros();
        let days = (last_day - first_day).num_days();
        // Working days, weighted by month; weekends a little.
        let weights: Vec<f64> = (0..days)
            .map(|d| {
                let date = first_day + Duration::days(d);
                let w = MONTH_WEIGHT[date.month0() as usize];
                if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) { w * 0.1 } else { w }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut per_day = Vec::with_capacity(weights.len());
        let (mut cumulative, mut assigned) = (0.0, 0u64);
        for w in &weights {
            cumulative += w;
            let target = (options.contracts as f64 * cumulative / total).round() as u64;
            per_day.push((target - assigned) as u32);
            assigned = target;
        }
        let mut generator = Generator {
            rng: Rng::new(options.seed),
            options,
            lean: Lean::default(),
            stats: GenerateStats::default(),
            setup: VecDeque::new(),
            research: vec![],
            enterprises_cq: vec![],
            enterprises_elsewhere: vec![],
            centers: vec![],
            orgs: vec![],
            brokers: vec![],
            sellable: vec![],
            revocations: vec![],
            heap: BinaryHeap::new(),
            plans: HashMap::new(),
            next_slot: 0,
            seq: 0,
            per_day,
            start,
            end,
            planned_until: 0,
            day: 0,
            contract_number: 0,
            now: start,
            setup_end: start,
        };
        generator.plan_setup();
        generator
    }

    /// How many contracts the whole run signs (for progress bars).
    pub fn contracts_target(&self) -> u64 {
        self.options.contracts
    }

    fn admin() -> Actor {
        Actor { user_id: "admin-01".into(), role: Role::Admin, organisation_id: None, broker_id: None }
    }

    fn registrar(&mut self) -> Actor {
        let n = self.rng.below(12);
        Actor { user_id: format!("registrar-{n:02}"), role: Role::Registrar, organisation_id: None, broker_id: None }
    }

    /// Organisations, brokers and accreditations, recorded on the first morning.
    fn plan_setup(&mut self) {
        let n = self.options.contracts;
        let research = (100 + n / 400).min(5_000);
        let enterprises = (n / 3).clamp(50, 400_000);
        let agencies = (n / 1_000).clamp(3, 1_000);
        let centers = (n / 5_000).clamp(2, 200);
        let others = (n / 2_000).clamp(2, 500);
        let brokers = (n / 200).clamp(5, 5_000);
        let mut at = self.start + 8 * MICROS_PER_HOUR;
        let tick = |at: &mut i64| {
            *at += 1_000;
            *at
        };
        let kinds = [
            (OrganisationKind::University, research * 2 / 5),
            (OrganisationKind::ResearchInstitute, research - research * 2 / 5),
            (OrganisationKind::Enterprise, enterprises),
            (OrganisationKind::BrokerAgency, agencies),
            (OrganisationKind::IpOperatingCenter, centers),
            (OrganisationKind::Other, others),
        ];
        let mut agency_ids = Vec::new();
        for (kind, count) in kinds {
            for _ in 0..count {
                let index = self.orgs.len() as u32;
                let in_chongqing = self.rng.chance(if kind == OrganisationKind::Enterprise { 0.8 } else { 0.85 });
                let division = if in_chongqing {
                    CHONGQING[self.rng.index(CHONGQING.len())]
                } else {
                    ELSEWHERE[self.rng.index(ELSEWHERE.len())]
                };
                let time = tick(&mut at);
                let id = OrganisationId(self.rng.uuid_at(time));
                let public = matches!(kind, OrganisationKind::University | OrganisationKind::ResearchInstitute);
                let name = match kind {
                    OrganisationKind::University => format!("第{}理工大学", index + 1),
                    OrganisationKind::ResearchInstitute => {
                        format!("{}研究院（{}号）", SUBJECTS[index as usize % 12], index + 1)
                    }
                    OrganisationKind::Enterprise => {
                        format!("{}科技有限公司（{}号）", SUBJECTS[index as usize % 12], index + 1)
                    }
                    OrganisationKind::BrokerAgency => format!("技术转移服务中心（{}号）", index + 1),
                    OrganisationKind::IpOperatingCenter => format!("知识产权运营中心（{}号）", index + 1),
                    OrganisationKind::Other => format!("促进会（{}号）", index + 1),
                };
                self.setup.push_back((
                    time,
                    Self::admin(),
                    Command::RegisterOrganisation(RegisterOrganisation {
                        organisation_id: id,
                        name,
                        kind,
                        credit_code: credit_code(public, division, u64::from(index) + 1),
                        division_code: DivisionCode::parse("divisionCode", division).expect("valid division"),
                    }),
                ));
                let user = format!("org{}-staff", index + 1);
                self.orgs.push(Org { id, kind, user });
                match kind {
                    OrganisationKind::University | OrganisationKind::ResearchInstitute => self.research.push(index),
                    OrganisationKind::Enterprise if in_chongqing => self.enterprises_cq.push(index),
                    OrganisationKind::Enterprise => self.enterprises_elsewhere.push(index),
                    OrganisationKind::BrokerAgency => agency_ids.push(id),
                    OrganisationKind::IpOperatingCenter => self.centers.push(index),
                    OrganisationKind::Other => {}
                }
            }
        }
        let period_days = (self.end - self.start) / MICROS_PER_DAY;
        // Accreditations: some from before the period, some from a day in it.
        let accredit = |g: &mut Generator, index: u32, kind: AccreditationKind, at: &mut i64| {
            let before = g.rng.chance(0.6);
            let from_offset =
                if before { -(g.rng.below(3 * 365) as i64) - 1 } else { g.rng.below(period_days.max(1) as u64) as i64 };
            let from = shanghai_date(DateTime::from_timestamp_micros(g.start).expect("in range"))
                + Duration::days(from_offset);
            let time = tick(at);
            let accreditation = AccreditationId(g.rng.uuid_at(time));
            let organisation = g.orgs[index as usize].id;
            g.setup.push_back((
                time,
                Self::admin(),
                Command::AccreditOrganisation(AccreditOrganisation {
                    organisation_id: organisation,
                    accreditation_id: accreditation,
                    kind,
                    effective_from: from,
                    effective_until: None,
                    document_number: format!("渝科局发〔{}〕{}号", from.year(), 1 + g.rng.below(300)),
                }),
            ));
            if g.rng.chance(0.05) {
                g.revocations.push((organisation, accreditation));
            }
        };
        for i in 0..self.research.len() {
            if self.rng.chance(0.35) {
                let kind = if self.rng.chance(0.5) {
                    AccreditationKind::IntroducedRdInstitution
                } else {
                    AccreditationKind::InnovationPlatform
                };
                let index = self.research[i];
                accredit(self, index, kind, &mut at);
            }
        }
        for i in 0..self.centers.len() {
            if self.rng.chance(0.7) {
                let index = self.centers[i];
                accredit(self, index, AccreditationKind::IpOperatingCenter, &mut at);
            }
        }
        for b in 0..brokers {
            let time = tick(&mut at);
            let id = BrokerId(self.rng.uuid_at(time));
            let agency = if self.rng.chance(0.8) { Some(agency_ids[self.rng.index(agency_ids.len())]) } else { None };
            self.setup.push_back((
                time,
                Self::admin(),
                Command::RegisterBroker(RegisterBroker {
                    broker_id: id,
                    name: person(&mut self.rng),
                    agency_id: agency,
                    certificate_number: Some(format!("JJR-{}-{:05}", self.options.first_year, b + 1)),
                }),
            ));
            self.brokers.push(id);
        }
        self.setup_end = at;
        // Revocations during the period, and a new subsidy version at the start of each
        // later year.
        for slot in 0..self.revocations.len() {
            let at = self.start + (self.rng.unit() * (self.end - self.start) as f64) as i64;
            self.push(at, slot as u32, StepKind::Revoke);
        }
        for year in 1..self.options.years {
            let date = NaiveDate::from_ymd_opt(self.options.first_year + year as i32, 1, 2).expect("valid");
            let at = start_of_shanghai_day(date).timestamp_micros() + 10 * MICROS_PER_HOUR;
            self.push(at, year, StepKind::EnactPolicy);
        }
    }

    /// No step is planned before this: what is recorded already, and the setup.
    fn floor(&self) -> i64 {
        self.now.max(self.setup_end)
    }

    fn push(&mut self, at: i64, slot: u32, step: StepKind) {
        self.seq += 1;
        self.heap.push(Reverse(Due { at, seq: self.seq, slot, step }));
    }

    fn research_org(&mut self) -> u32 {
        self.research[self.rng.index(self.research.len())]
    }

    fn center(&mut self) -> u32 {
        self.centers[self.rng.index(self.centers.len())]
    }

    fn buyer(&mut self, not: u32) -> u32 {
        loop {
            let b = if self.rng.chance(0.1) { self.research_org() } else { self.any_enterprise() };
            if b != not {
                return b;
            }
        }
    }

    fn enterprise(&mut self, not: u32) -> u32 {
        loop {
            let e = if self.rng.chance(0.8) || self.enterprises_elsewhere.is_empty() {
                self.enterprises_cq[self.rng.index(self.enterprises_cq.len())]
            } else {
                self.enterprises_elsewhere[self.rng.index(self.enterprises_elsewhere.len())]
            };
            if e != not {
                return e;
            }
        }
    }

    fn any_enterprise(&mut self) -> u32 {
        self.enterprise(u32::MAX)
    }

    /// A seller of achievements: a university or institute, or now and then an enterprise.
    fn achievement_owner(&mut self) -> u32 {
        if self.rng.chance(0.75) { self.research_org() } else { self.any_enterprise() }
    }

    /// Plans the contracts signed on `day` (an offset from the start).
    fn plan_day(&mut self, day: i64) {
        let Some(&count) = self.per_day.get(day as usize) else { return };
        for _ in 0..count {
            let signed_at = (self.start
                + day * MICROS_PER_DAY
                + 9 * MICROS_PER_HOUR
                + self.rng.below(9 * MICROS_PER_HOUR as u64) as i64)
                .max(self.floor() + 60_000_000);
            self.plan_contract(signed_at);
        }
    }

    /// Sorted random instants in `(from, to)`.
    fn instants(&mut self, from: i64, to: i64, count: usize) -> Vec<i64> {
        let mut v: Vec<i64> =
            (0..count).map(|_| from + 1 + (self.rng.unit() * (to - from - 2).max(1) as f64) as i64).collect();
        v.sort_unstable();
        v
    }

    fn plan_contract(&mut self, signed_at: i64) {
        let contract_type = ContractType::ALL[self.rng.weighted(&[35, 10, 10, 15, 30])];
        let on_achievement = match contract_type {
            ContractType::Transfer | ContractType::Licence => true,
            ContractType::Development => self.rng.chance(0.3),
            _ => false,
        };
        let matched = on_achievement && self.rng.chance(0.15 / 0.44);
        let mut pre: Vec<StepKind> = Vec::new();
        let (achievement, seller) = if on_achievement {
            if !matched && !self.sellable.is_empty() && self.rng.chance(0.35) {
                let (a, owner) = self.sellable[self.rng.index(self.sellable.len())];
                (Some(a), owner)
            } else {
                pre.push(StepKind::ListAchievement);
                let owner = self.achievement_owner();
                (Some(AchievementId(self.rng.uuid_at(signed_at))), owner)
            }
        } else if self.rng.chance(0.55) {
            (None, self.research_org())
        } else {
            (None, self.any_enterprise())
        };
        let buyer = if matched { self.enterprise(seller) } else { self.buyer(seller) };
        let matched = if matched {
            pre.extend([
                StepKind::PostDemand,
                StepKind::ProposeMatch,
                StepKind::AcceptOwner,
                StepKind::AcceptEnterprise,
            ]);
            let broker = self.brokers[self.rng.index(self.brokers.len())];
            Some((MatchId(self.rng.uuid_at(signed_at)), DemandId(self.rng.uuid_at(signed_at)), broker))
        } else {
            None
        };
        let center = if self.rng.chance(0.08) && !self.centers.is_empty() { Some(self.center()) } else { None };
        let amount = contract_amount_fen(&mut self.rng);
        let tech = whole_yuan(amount as f64 * self.rng.uniform(0.7, 1.0)).min(amount);
        let certified = whole_yuan(tech as f64 * self.rng.uniform(0.85, 1.0)).min(tech);
        self.contract_number += 1;
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        let mut plan = Plan {
            contract: ContractId(self.rng.uuid_at(signed_at)),
            number: self.contract_number,
            seller,
            buyer,
            center,
            achievement,
            matched,
            contract_type,
            field: field(&mut self.rng),
            amount,
            tech,
            signed_at,
            certified,
            registered_field: if self.rng.chance(0.7) { Some(field(&mut self.rng)) } else { None },
            payments: Vec::new(),
            reversal: None,
            amendment: None,
            extra_listing: None,
            extra_demand: None,
            declined: None,
            pending: 0,
        };
        // Before signing: the listing, the demand and the match, in that order.
        let window_from = self.floor().max(signed_at - 60 * MICROS_PER_DAY);
        let times = self.instants(window_from, signed_at, pre.len());
        let mut steps: Vec<(i64, StepKind)> = times.into_iter().zip(pre).collect();
        // Sorting the instants keeps the order of `pre` (list, post, propose, accepts).
        steps.push((signed_at, StepKind::Sign));

        // After signing.
        let day = MICROS_PER_DAY as f64;
        let at_after = |g: &mut Generator, base: i64, lo: f64, hi: f64| base + (g.rng.uniform(lo, hi) * day) as i64;
        let mut terminate_at = None;
        let k = 1 + self.rng.weighted(&[30, 30, 20, 12, 8]);
        let paid_fraction = if self.rng.chance(0.75) { 1.0 } else { self.rng.uniform(0.2, 0.9) };
        let total = (amount as f64 * paid_fraction) as i64;
        let k = if total < (k as i64) * 100 { 1 } else { k };
        let weights: Vec<f64> = (0..k).map(|_| self.rng.uniform(1.0, 10.0)).collect();
        let sum: f64 = weights.iter().sum();
        let mut parts: Vec<i64> = weights.iter().map(|w| ((total as f64 * w / sum) as i64).max(1)).collect();
        let excess: i64 = parts.iter().sum::<i64>() - total;
        parts[0] -= excess.min(parts[0] - 1);
        let mut pay_at = at_after(self, signed_at, 0.5, 45.0);
        let terminate_after = if self.rng.chance(0.015) { Some(self.rng.index(k + 1)) } else { None };
        for (i, fen) in parts.into_iter().enumerate() {
            if terminate_after == Some(i) {
                terminate_at = Some(pay_at - MICROS_PER_DAY);
                break;
            }
            let time = pay_at;
            let id = PaymentId(self.rng.uuid_at(time));
            plan.payments.push((id, fen));
            steps.push((time, StepKind::Pay(i as u8)));
            pay_at = at_after(self, pay_at, 10.0, 90.0);
        }
        if terminate_after == Some(plan.payments.len()) && terminate_at.is_none() {
            terminate_at = Some(pay_at);
        }
        let registered_at = if self.rng.chance(0.95) { Some(at_after(self, signed_at, 3.0, 60.0)) } else { None };
        if let Some(r) = registered_at.filter(|r| terminate_at.is_none_or(|t| *r < t)) {
            steps.push((r, StepKind::Register));
        }
        if !plan.payments.is_empty() && self.rng.chance(0.04) {
            let i = self.rng.index(plan.payments.len());
            let part = plan.payments[i].1;
            let amount = ((part as f64 * self.rng.uniform(0.1, 1.0)) as i64).clamp(1, part);
            let pay_time = steps.iter().find(|(_, s)| *s == StepKind::Pay(i as u8)).expect("planned").0;
            let time = at_after(self, pay_time, 1.0, 20.0);
            plan.reversal = Some((i as u8, ReversalId(self.rng.uuid_at(time)), amount));
            steps.push((time, StepKind::Reverse));
        }
        if self.rng.chance(0.03) {
            let time = at_after(self, signed_at, 5.0, 60.0);
            if terminate_at.is_none_or(|t| time < t) {
                let factor = self.rng.uniform(1.0, 1.3);
                let new_amount = whole_yuan(amount as f64 * factor).max(amount);
                let new_tech = whole_yuan(tech as f64 * factor).clamp(tech, new_amount);
                plan.amendment = Some((new_amount, new_tech));
                steps.push((time, StepKind::Amend));
            }
        }
        if let Some(t) = terminate_at {
            steps.push((t.max(signed_at + MICROS_PER_HOUR), StepKind::Terminate));
        }
        // Noise: listings that never sell, demands nobody meets, matches declined.
        if self.rng.chance(0.5) {
            let owner = self.achievement_owner();
            let time = at_after(self, signed_at, -20.0, 0.0).max(self.floor() + 1);
            plan.extra_listing = Some((AchievementId(self.rng.uuid_at(time)), owner));
            steps.push((time, StepKind::ExtraListing));
            if self.rng.chance(0.1) {
                steps.push((at_after(self, time, 30.0, 200.0), StepKind::WithdrawExtraListing));
            }
        }
        if self.rng.chance(0.2) {
            let enterprise = self.any_enterprise();
            let time = at_after(self, signed_at, -20.0, 0.0).max(self.floor() + 1);
            plan.extra_demand = Some((DemandId(self.rng.uuid_at(time)), enterprise));
            steps.push((time, StepKind::ExtraDemand));
            let mut close_from = time;
            if plan.extra_listing.is_some() && self.rng.chance(0.25) {
                let broker = self.brokers[self.rng.index(self.brokers.len())];
                // After both the listing and the demand exist.
                let listed = steps.iter().find(|(_, s)| *s == StepKind::ExtraListing).expect("planned").0;
                let propose = time.max(listed) + self.rng.below(3 * MICROS_PER_DAY as u64) as i64 + 1;
                plan.declined = Some((MatchId(self.rng.uuid_at(propose)), broker));
                steps.push((propose, StepKind::ProposeDeclined));
                let decline = at_after(self, propose, 1.0, 10.0);
                steps.push((decline, StepKind::Decline));
                close_from = decline;
            }
            if self.rng.chance(0.3) {
                // After the decline: a closed demand takes no answers.
                steps.push((at_after(self, close_from, 20.0, 120.0), StepKind::CloseExtraDemand));
            }
        }
        // Withdrawing the listing before the match is declined would make the decline
        // impossible: it comes after.
        if let Some(i) = steps.iter().position(|(_, s)| *s == StepKind::WithdrawExtraListing)
            && let Some(decline) = steps.iter().find(|(_, s)| *s == StepKind::Decline).map(|(t, _)| *t)
        {
            steps[i].0 = steps[i].0.max(decline + 1);
        }
        for (at, step) in steps {
            if at < self.end {
                plan.pending += 1;
                self.push(at, slot, step);
            }
        }
        if plan.pending > 0 {
            self.plans.insert(slot, plan);
        }
    }

    /// The next decided command, or `None` at the end of the period.
    pub fn next_step(&mut self) -> Option<Step> {
        loop {
            if let Some((at, actor, command)) = self.setup.pop_front() {
                if let Some(step) = self.decide(at, actor, command) {
                    return Some(step);
                }
                continue;
            }
            // Plan far enough ahead, then take the earliest due step of the current day.
            let day_end = self.start + (self.day + 1) * MICROS_PER_DAY;
            while self.planned_until <= self.day + PLANNING_DAYS && self.planned_until < self.per_day.len() as i64 {
                let day = self.planned_until;
                self.plan_day(day);
                self.planned_until += 1;
            }
            match self.heap.peek() {
                Some(Reverse(due)) if due.at < day_end => {
                    let Reverse(due) = self.heap.pop().expect("peeked");
                    if let Some(step) = self.run(due) {
                        return Some(step);
                    }
                }
                _ => {
                    if day_end >= self.end {
                        return None;
                    }
                    self.day += 1;
                }
            }
        }
    }

    fn decide(&mut self, at: i64, actor: Actor, command: Command) -> Option<Step> {
        let at = at.max(self.now);
        self.now = at;
        let recorded_at = match self.options.recorded_at {
            Some(fixed) => fixed,
            None => DateTime::from_timestamp_micros(at).expect("in range"),
        };
        let command_id = self.rng.uuid_at(at);
        self.stats.commands += 1;
        match self.lean.execute(&actor, &command, recorded_at) {
            Ok(events) => {
                self.stats.events += events.len() as u64;
                for e in &events {
                    match e {
                        Event::OrganisationRegistered(_) => self.stats.organisations += 1,
                        Event::AchievementListed(_) => self.stats.achievements += 1,
                        Event::DemandPosted(_) => self.stats.demands += 1,
                        Event::MatchProposed(_) => self.stats.matches += 1,
                        Event::ContractSigned(_) => self.stats.contracts_signed += 1,
                        Event::ContractRegistered(_) => self.stats.contracts_registered += 1,
                        Event::PaymentSettled(_) => self.stats.payments += 1,
                        Event::PaymentReversed(_) => self.stats.reversals += 1,
                        _ => {}
                    }
                }
                Some(Step { actor, command, recorded_at, command_id, events })
            }
            Err(refused) => {
                self.stats.refused += 1;
                if self.stats.first_refusal.is_none() {
                    self.stats.first_refusal = Some(format!("{}: {refused}", command.name()));
                }
                None
            }
        }
    }

    fn date_of(at: i64) -> NaiveDate {
        shanghai_date(DateTime::from_timestamp_micros(at).expect("in range"))
    }

    fn details(&mut self, field: TechField) -> AchievementDetails {
        let completers = 1 + self.rng.weighted(&[25, 30, 25, 12, 8]);
        let weights: Vec<u32> = (0..completers).map(|_| 1 + self.rng.below(10) as u32).collect();
        let sum: u32 = weights.iter().sum();
        let mut shares: Vec<u32> = weights.iter().map(|w| Share::WHOLE * w / sum).collect();
        shares[0] += Share::WHOLE - shares.iter().sum::<u32>();
        let mut patents: Vec<PatentNumber> = (0..self.rng.below(4)).map(|_| patent_number(&mut self.rng)).collect();
        patents.sort();
        patents.dedup();
        AchievementDetails {
            title: title(&mut self.rng),
            field,
            description: String::new(),
            patent_numbers: patents,
            maturity: 4 + self.rng.below(6) as u8,
            asking_price: Some(Money::from_yuan(10_000 * (1 + self.rng.below(500) as i64))),
            transfer_modes: vec![if self.rng.chance(0.6) { TransferMode::Transfer } else { TransferMode::Licence }],
            completers: shares
                .into_iter()
                .map(|bp| Completer {
                    name: person(&mut self.rng),
                    share: Share::from_basis_points(bp),
                    identity: None,
                })
                .collect(),
        }
    }

    /// Builds and decides a due step; `None` when it was refused.
    fn run(&mut self, due: Due) -> Option<Step> {
        let at = due.at;
        match due.step {
            StepKind::Revoke => {
                let (organisation, accreditation) = self.revocations[due.slot as usize];
                let command = Command::RevokeAccreditation(RevokeAccreditation {
                    organisation_id: organisation,
                    accreditation_id: accreditation,
                    revoked_from: Self::date_of(at) + Duration::days(1),
                    reason: "年度复核未通过".into(),
                });
                return self.decide(at, Self::admin(), command);
            }
            StepKind::EnactPolicy => {
                let year = self.options.first_year + due.slot as i32;
                let command = Command::EnactPolicy(EnactPolicy {
                    kind: PolicyKind::CompleterSubsidy,
                    rate: Rate::percent(5),
                    cap: Money::from_yuan(1_000_000),
                    cap_period: CapPeriod::Lifetime,
                    effective_from: NaiveDate::from_ymd_opt(year, 1, 1).expect("valid"),
                    effective_until: None,
                    source: format!("渝科局发〔{year}〕1号 关于继续执行科技成果完成人补贴的通知"),
                });
                return self.decide(at, Self::admin(), command);
            }
            _ => {}
        }
        let mut plan = self.plans.remove(&due.slot).expect("a due step has its plan");
        let seller = self.orgs[plan.seller as usize].clone();
        let buyer = self.orgs[plan.buyer as usize].clone();
        let (actor, command) = match due.step {
            StepKind::ListAchievement => {
                let details = self.details(plan.field);
                (
                    seller.actor(),
                    Command::ListAchievement(ListAchievement {
                        achievement_id: plan.achievement.expect("planned"),
                        owner_id: seller.id,
                        details,
                    }),
                )
            }
            StepKind::PostDemand => {
                let (_, demand, _) = plan.matched.expect("planned");
                (buyer.actor(), self.demand(demand, buyer.id, plan.field, plan.amount))
            }
            StepKind::ProposeMatch => {
                let (match_id, demand, broker) = plan.matched.expect("planned");
                (
                    Actor {
                        user_id: format!("broker-{broker}"),
                        role: Role::Broker,
                        organisation_id: None,
                        broker_id: Some(broker),
                    },
                    Command::ProposeMatch(ProposeMatch {
                        match_id,
                        broker_id: broker,
                        achievement_id: plan.achievement.expect("planned"),
                        demand_id: demand,
                        note: "经技术经纪人撮合".into(),
                    }),
                )
            }
            StepKind::AcceptOwner | StepKind::AcceptEnterprise => {
                let (match_id, _, _) = plan.matched.expect("planned");
                let (actor, side) = if due.step == StepKind::AcceptOwner {
                    (seller.actor(), MatchSide::Owner)
                } else {
                    (buyer.actor(), MatchSide::Enterprise)
                };
                (actor, Command::AcceptMatch(AcceptMatch { match_id, side }))
            }
            StepKind::Sign => (
                seller.actor(),
                Command::SignContract(SignContract {
                    contract_id: plan.contract,
                    contract_number: format!("HT{}-{:07}", self.options.first_year, plan.number),
                    contract_type: plan.contract_type,
                    title: format!("{}{}合同", title(&mut self.rng), plan.contract_type.label_zh()),
                    seller_id: seller.id,
                    buyer_id: buyer.id,
                    achievement_id: plan.achievement,
                    match_id: plan.matched.map(|m| m.0),
                    broker_id: plan.matched.map(|m| m.2),
                    operating_center_id: plan.center.map(|c| self.orgs[c as usize].id),
                    contract_amount: Money::from_fen(plan.amount),
                    tech_transaction_amount: Money::from_fen(plan.tech),
                    signed_on: Self::date_of(plan.signed_at),
                }),
            ),
            StepKind::Register => {
                let year = Self::date_of(at).year();
                let number = format!("{year:04}50{:010}", plan.number);
                (
                    self.registrar(),
                    Command::RegisterContract(RegisterContract {
                        contract_id: plan.contract,
                        registration_number: RegistrationNumber::parse("registrationNumber", &number)
                            .expect("16 digits"),
                        registered_on: Self::date_of(at),
                        certified_tech_transaction_amount: Money::from_fen(plan.certified),
                        field: plan.registered_field,
                    }),
                )
            }
            StepKind::Pay(i) => {
                let (payment_id, fen) = plan.payments[i as usize];
                let settled_at = (at - self.rng.below(3 * MICROS_PER_HOUR as u64) as i64).max(plan.signed_at);
                (
                    self.registrar(),
                    Command::RecordPayment(RecordPayment {
                        contract_id: plan.contract,
                        payment_id,
                        amount: Money::from_fen(fen),
                        settled_at: DateTime::from_timestamp_micros(settled_at).expect("in range"),
                        bank_reference: format!("CQB{}{:08}{}", Self::date_of(at).format("%Y%m%d"), plan.number, i),
                    }),
                )
            }
            StepKind::Reverse => {
                let (i, reversal_id, fen) = plan.reversal.expect("planned");
                (
                    self.registrar(),
                    Command::ReversePayment(ReversePayment {
                        contract_id: plan.contract,
                        payment_id: plan.payments[i as usize].0,
                        reversal_id,
                        amount: Money::from_fen(fen),
                        reversed_at: DateTime::from_timestamp_micros(at).expect("in range"),
                        reason: "部分款项退回".into(),
                    }),
                )
            }
            StepKind::Amend => {
                let (amount, tech) = plan.amendment.expect("planned");
                (
                    seller.actor(),
                    Command::AmendContract(AmendContract {
                        contract_id: plan.contract,
                        contract_amount: Money::from_fen(amount),
                        tech_transaction_amount: Money::from_fen(tech),
                        amended_on: Self::date_of(at),
                        reason: "补充协议增加开发内容".into(),
                    }),
                )
            }
            StepKind::Terminate => (
                seller.actor(),
                Command::TerminateContract(TerminateContract {
                    contract_id: plan.contract,
                    terminated_on: Self::date_of(at),
                    reason: "双方协商解除".into(),
                }),
            ),
            StepKind::ExtraListing => {
                let (achievement, owner) = plan.extra_listing.expect("planned");
                let owner = self.orgs[owner as usize].clone();
                let f = field(&mut self.rng);
                let details = self.details(f);
                (
                    owner.actor(),
                    Command::ListAchievement(ListAchievement {
                        achievement_id: achievement,
                        owner_id: owner.id,
                        details,
                    }),
                )
            }
            StepKind::WithdrawExtraListing => {
                let (achievement, owner) = plan.extra_listing.expect("planned");
                (
                    self.orgs[owner as usize].actor(),
                    Command::WithdrawAchievement(WithdrawAchievement {
                        achievement_id: achievement,
                        reason: "成果已另行转化".into(),
                    }),
                )
            }
            StepKind::ExtraDemand => {
                let (demand, enterprise) = plan.extra_demand.expect("planned");
                let enterprise = self.orgs[enterprise as usize].clone();
                let budget = contract_amount_fen(&mut self.rng);
                let f = field(&mut self.rng);
                (enterprise.actor(), self.demand(demand, enterprise.id, f, budget))
            }
            StepKind::CloseExtraDemand => {
                let (demand, enterprise) = plan.extra_demand.expect("planned");
                (
                    self.orgs[enterprise as usize].actor(),
                    Command::CloseDemand(CloseDemand { demand_id: demand, reason: "需求已自行解决".into() }),
                )
            }
            StepKind::ProposeDeclined => {
                let (match_id, broker) = plan.declined.expect("planned");
                (
                    Actor {
                        user_id: format!("broker-{broker}"),
                        role: Role::Broker,
                        organisation_id: None,
                        broker_id: Some(broker),
                    },
                    Command::ProposeMatch(ProposeMatch {
                        match_id,
                        broker_id: broker,
                        achievement_id: plan.extra_listing.expect("planned").0,
                        demand_id: plan.extra_demand.expect("planned").0,
                        note: String::new(),
                    }),
                )
            }
            StepKind::Decline => {
                let (match_id, _) = plan.declined.expect("planned");
                let enterprise = self.orgs[plan.extra_demand.expect("planned").1 as usize].actor();
                (
                    enterprise,
                    Command::DeclineMatch(DeclineMatch {
                        match_id,
                        side: MatchSide::Enterprise,
                        reason: "技术路线不匹配".into(),
                    }),
                )
            }
            StepKind::Revoke | StepKind::EnactPolicy => unreachable!("handled above"),
        };
        let step = self.decide(at, actor, command);
        if step.is_some() && due.step == StepKind::ListAchievement {
            self.sellable.push((plan.achievement.expect("planned"), plan.seller));
        }
        plan.pending -= 1;
        if plan.pending == 0 {
            self.lean.forget(&plan.contract.stream());
            if let Some((m, _, _)) = plan.matched {
                self.lean.forget(&m.stream());
            }
            if let Some((m, _)) = plan.declined {
                self.lean.forget(&m.stream());
            }
        } else {
            self.plans.insert(due.slot, plan);
        }
        step
    }

    fn demand(&mut self, demand: DemandId, enterprise: OrganisationId, field: TechField, budget_fen: i64) -> Command {
        Command::PostDemand(PostDemand {
            demand_id: demand,
            enterprise_id: enterprise,
            title: format!("寻求{}", title(&mut self.rng)),
            field,
            description: String::new(),
            budget: Some(Money::from_fen(budget_fen)),
            deadline: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_market_is_generated_without_refusals_and_deterministically() {
        let options = GenerateOptions { contracts: 300, years: 2, ..GenerateOptions::default() };
        let a = generate_log(&options, |_| {});
        assert_eq!(a.stats.refused, 0, "first refusal: {:?}", a.stats.first_refusal);
        assert!(a.stats.contracts_signed >= 290, "{:?}", a.stats);
        assert!(a.stats.payments > a.stats.contracts_signed, "{:?}", a.stats);
        let b = generate_log(&options, |_| {});
        assert_eq!(a.events, b.events, "same options, same log");
        let times: Vec<_> = a.events.iter().map(|(_, _, t)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "recorded in time order");
    }

    /// Policy replays read only `projection::EVENT_TYPES`: over a whole generated market
    /// (demands, matches, locked completers, brokers and withdrawals included), the fold of
    /// those events alone makes the same outputs and ends with the same policy book.
    #[test]
    fn the_policy_fold_of_its_event_types_alone_equals_the_fold_of_the_whole_log() {
        use ledger::event::RecordedEvent;
        use ledger::projection::{EVENT_TYPES, Projections};
        let options = GenerateOptions { contracts: 400, years: 2, ..GenerateOptions::default() };
        let log: Vec<RecordedEvent> = generate_log(&options, |_| {})
            .events
            .into_iter()
            .zip(1..)
            .map(|((event, metadata, recorded_at), position)| as_recorded(position, event, metadata, recorded_at))
            .collect();
        let read = |e: &RecordedEvent| EVENT_TYPES.contains(&e.event.event_type());
        let skipped: HashSet<&str> = log.iter().filter(|e| !read(e)).map(|e| e.event.event_type()).collect();
        for kind in ["DemandPosted", "MatchProposed", "MatchAccepted", "CompletersLocked", "BrokerRegistered"] {
            assert!(skipped.contains(kind), "the market has {kind} events to skip: {skipped:?}");
        }
        let (mut whole, mut filtered) = (Projections::new(), Projections::new());
        let all: Vec<_> = log.iter().flat_map(|e| whole.apply(e)).collect();
        let only: Vec<_> = log.iter().filter(|e| read(e)).flat_map(|e| filtered.apply(e)).collect();
        filtered.skip_to(log.len() as i64);
        assert!(all.len() > 1_000, "{} outputs", all.len());
        assert_eq!(only, all);
        assert_eq!(filtered.policies(), whole.policies());
        assert_eq!(filtered.position(), whole.position());
    }
}
