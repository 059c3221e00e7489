//! What the policy projections produce: lines (each from one event, at that event's
//! position, never changed afterwards) and totals (the state after a line, replaced as lines
//! come). Every total can be listed down to its lines, and a statement as of a position is
//! exactly the lines up to it.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::event::Position;
use crate::ids::*;
use crate::money::Money;
use crate::vocabulary::{ContractType, SellerKind, TechField};

/// Which event made a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A settled payment (到账).
    Payment,
    /// A reversal of (part of) a payment.
    Reversal,
    /// A registration that lets earlier payments count.
    Registration,
    /// An amendment of a registered contract's amount (turnover only).
    Amendment,
}

impl LineKind {
    pub fn parse(code: &str) -> Option<LineKind> {
        [LineKind::Payment, LineKind::Reversal, LineKind::Registration, LineKind::Amendment]
            .into_iter()
            .find(|k| k.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Payment => "payment",
            LineKind::Reversal => "reversal",
            LineKind::Registration => "registration",
            LineKind::Amendment => "amendment",
        }
    }
}

/// Why a line earned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The contract is not registered (yet): the payment counts once it is.
    ContractNotRegistered,
    /// No version of the policy covers the settlement date.
    PolicyNotInForce,
    /// The achievement's owner held no introduced-R&D-institution or innovation-platform
    /// accreditation on the settlement date.
    OwnerNotAccredited,
    /// The buyer's division code does not begin with 50.
    BuyerOutsideChongqing,
    /// The operating center held no IP-operating-center accreditation on the settlement date.
    CenterNotAccredited,
    /// The cap was already reached.
    CapReached,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ContractNotRegistered => "contract_not_registered",
            Reason::PolicyNotInForce => "policy_not_in_force",
            Reason::OwnerNotAccredited => "owner_not_accredited",
            Reason::BuyerOutsideChongqing => "buyer_outside_chongqing",
            Reason::CenterNotAccredited => "center_not_accredited",
            Reason::CapReached => "cap_reached",
        }
    }

    /// The reason in the statements' language.
    pub fn label_zh(self) -> &'static str {
        match self {
            Reason::ContractNotRegistered => "合同未认定登记",
            Reason::PolicyNotInForce => "结算日无有效政策",
            Reason::OwnerNotAccredited => "成果所有人结算日未获引进研发机构或创新平台认定",
            Reason::BuyerOutsideChongqing => "买方不在重庆",
            Reason::CenterNotAccredited => "运营中心结算日未获认定",
            Reason::CapReached => "已达补贴上限",
        }
    }

    pub const ALL: [Reason; 6] = [
        Reason::ContractNotRegistered,
        Reason::PolicyNotInForce,
        Reason::OwnerNotAccredited,
        Reason::BuyerOutsideChongqing,
        Reason::CenterNotAccredited,
        Reason::CapReached,
    ];

    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// The reasons of a stored `a,b` list.
    pub fn split(joined: Option<&str>) -> Option<Vec<Reason>> {
        joined.map_or(Some(Vec::new()), |s| s.split(',').map(Reason::parse).collect())
    }

    pub fn join(reasons: &[Reason]) -> Option<String> {
        (!reasons.is_empty()).then(|| reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","))
    }
}

/// One completer's part of a subsidy line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompleterLine {
    /// Position in the achievement's completer list, from 0.
    pub ordinal: u32,
    pub name: String,
    pub share_basis_points: u32,
    pub amount: Money,
    /// The completer's subsidy from this achievement after this line.
    pub total: Money,
}

/// A line of the completer subsidy (科技成果完成人补贴).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubsidyLine {
    pub position: Position,
    pub seq: u32,
    pub kind: LineKind,
    pub achievement_id: AchievementId,
    /// The cap period the line counts in: 0 for a lifetime cap, else the year.
    pub period: i32,
    pub contract_id: ContractId,
    /// The contract's number (合同编号) as signed: fixed for the contract's life, so the line
    /// carries it and an export needs no lookup of the contract for each line.
    pub contract_number: String,
    pub payment_id: PaymentId,
    pub reversal_id: Option<ReversalId>,
    /// Settlement date (payments, also when they count at a later registration) or reversal
    /// date, Asia/Shanghai.
    pub date: NaiveDate,
    /// Money moved by the event: + payment, - reversal, 0 for a registration.
    pub received: Money,
    /// Change of the achievement's eligible received amount (R).
    pub eligible: Money,
    /// Change of the achievement's subsidy (T - S): the line's amount.
    pub subsidy: Money,
    pub policy_version: Option<u32>,
    pub reasons: Vec<Reason>,
    pub eligible_total: Money,
    pub subsidy_total: Money,
    pub cap_reached: bool,
    pub completers: Vec<CompleterLine>,
}

impl SubsidyLine {
    pub fn year(&self) -> i32 {
        self.date.year()
    }
}

/// A line of the operating-center incentive (知识产权运营中心运营绩效补贴).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncentiveLine {
    pub position: Position,
    pub seq: u32,
    pub kind: LineKind,
    pub center_id: OrganisationId,
    /// The year whose operating amount and cap the line changes (of the payment's settlement).
    pub incentive_year: i32,
    pub contract_id: ContractId,
    /// As in [`SubsidyLine::contract_number`].
    pub contract_number: String,
    pub payment_id: PaymentId,
    pub reversal_id: Option<ReversalId>,
    pub date: NaiveDate,
    pub received: Money,
    /// Change of the center's operating amount for `incentive_year`.
    pub operating: Money,
    pub incentive: Money,
    pub policy_version: Option<u32>,
    pub reasons: Vec<Reason>,
    pub operating_total: Money,
    pub incentive_total: Money,
    pub cap_reached: bool,
}

impl IncentiveLine {
    pub fn year(&self) -> i32 {
        self.date.year()
    }
}

/// The breakdown keys of a registered contract in the turnover statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverDims {
    pub contract_type: ContractType,
    pub seller_kind: SellerKind,
    /// As classified at registration, else the achievement's field; `None`: unclassified.
    pub field: Option<TechField>,
    /// The seller's administrative division code (it registers where it is located).
    pub district: CellKey,
}

/// A contribution to the annual technology-contract turnover (技术合同成交额).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverLine {
    pub position: Position,
    pub seq: u32,
    pub kind: LineKind,
    pub contract_id: ContractId,
    pub payment_id: Option<PaymentId>,
    /// Registration date (count, amounts) or settlement / reversal date (received).
    pub date: NaiveDate,
    pub contracts: i64,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub received: Money,
    pub dims: TurnoverDims,
}

impl TurnoverLine {
    pub fn year(&self) -> i32 {
        self.date.year()
    }

    /// `YYYY-MM` of the line's date.
    pub fn month(&self) -> CellKey {
        // By hand: chrono's strftime parser was a tenth of the whole fold's time, and
        // `format!` most of what remained of the month's cost.
        let (year, month) = (self.date.year(), self.date.month());
        assert!((1..=9999).contains(&year), "dates in the ledger have four-digit years");
        let mut key = CellKey::new();
        for digit in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10] {
            key.push(char::from(b'0' + digit as u8));
        }
        key.push('-');
        key.push(char::from(b'0' + (month / 10) as u8));
        key.push(char::from(b'0' + (month % 10) as u8));
        key
    }

    /// The turnover's dimensions, in the order of [`TurnoverLine::cells`].
    pub const DIMENSIONS: [&'static str; 6] = ["total", "contract_type", "seller_kind", "field", "district", "month"];

    /// The keys of the cells this line adds to, one per dimension of [`Self::DIMENSIONS`].
    /// The fold makes six cells for every turnover line; their keys are inline
    /// ([`CellKey`]), so none allocates.
    pub fn cell_keys(&self) -> [CellKey; 6] {
        [
            cell_key("total"),
            cell_key(self.dims.contract_type.as_str()),
            cell_key(self.dims.seller_kind.as_str()),
            cell_key(self.dims.field.map_or("unclassified", |f| f.as_str())),
            self.dims.district,
            self.month(),
        ]
    }

    /// The (dimension, key) cells this line adds to.
    pub fn cells(&self) -> [(&'static str, CellKey); 6] {
        let keys = self.cell_keys();
        std::array::from_fn(|i| (Self::DIMENSIONS[i], keys[i]))
    }
}

/// The key of a turnover cell within its dimension: a word of the vocabulary, a division
/// code or a month, all short. Kept inline (no heap allocation, `Copy`) because the fold
/// makes six of them for every turnover line.
pub type CellKey = arrayvec::ArrayString<CELL_KEY_BYTES_MAX>;

/// Longest cell key: the longest word of the vocabulary has 25 bytes.
pub const CELL_KEY_BYTES_MAX: usize = 32;

/// The cell key of `text`. Every key comes from the vocabulary, a validated division code
/// or a month, so a longer one is a bug.
pub fn cell_key(text: &str) -> CellKey {
    CellKey::from(text)
        .unwrap_or_else(|_| panic!("turnover cell key `{text}` is longer than {CELL_KEY_BYTES_MAX} bytes"))
}

/// One completer's subsidy total from an achievement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompleterTotal {
    pub ordinal: u32,
    pub name: String,
    pub share_basis_points: u32,
    pub subsidy: Money,
}

/// An achievement's subsidy for one cap period (`period` 0: lifetime, else a year).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubsidyTotal {
    pub achievement_id: AchievementId,
    pub period: i32,
    pub eligible_received: Money,
    pub subsidy: Money,
    pub cap: Money,
    pub cap_reached: bool,
    pub completers: Vec<CompleterTotal>,
    pub position: Position,
}

/// A center's incentive for one year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncentiveTotal {
    pub center_id: OrganisationId,
    pub year: i32,
    pub operating_amount: Money,
    pub incentive: Money,
    pub cap: Money,
    pub cap_reached: bool,
    pub position: Position,
}

/// One cell of a year's turnover table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TurnoverFigures {
    pub contracts: i64,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub received: Money,
}

impl TurnoverFigures {
    pub fn add(&mut self, line: &TurnoverLine) {
        self.contracts += line.contracts;
        self.contract_amount += line.contract_amount;
        self.tech_transaction_amount += line.tech_transaction_amount;
        self.received += line.received;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverCell {
    pub year: i32,
    pub dimension: &'static str,
    pub key: CellKey,
    pub figures: TurnoverFigures,
    pub position: Position,
}

/// Everything one event makes the projections write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    SubsidyLine(SubsidyLine),
    SubsidyTotal(SubsidyTotal),
    IncentiveLine(IncentiveLine),
    IncentiveTotal(IncentiveTotal),
    TurnoverLine(TurnoverLine),
    TurnoverCell(TurnoverCell),
}
