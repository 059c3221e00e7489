//! Policies as data: what rate, cap, cap period and basis a subsidy uses, from which date,
//! and which clause of which document says so.
//!
//! The defaults below are version 1 of each policy, as the documents in `shared/seeds/` state
//! them; they are never edited. A change is enacted as a new version (`PolicyEnacted`, an
//! event in the log) with its own effective dates: a line uses the newest version enacted
//! before it (in ledger order) whose dates cover the line's date, so enacting a version never
//! rewrites a line already computed, and any past statement replays exactly.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::{Money, Rate};

/// Which subsidy a policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// 科技成果完成人补贴: 5 % of the achievement's eligible received amount.
    CompleterSubsidy,
    /// 知识产权运营中心运营绩效补贴: 2 % of a center's operating amount.
    OperatingCenterIncentive,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 2] = [PolicyKind::CompleterSubsidy, PolicyKind::OperatingCenterIncentive];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::CompleterSubsidy => "completer_subsidy",
            PolicyKind::OperatingCenterIncentive => "operating_center_incentive",
        }
    }

    pub fn parse(code: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.as_str() == code)
    }

    /// The stream that records this policy's enactments (a fixed id per kind).
    pub fn id(self) -> crate::ids::PolicyId {
        crate::ids::PolicyId(uuid::Uuid::from_u128(match self {
            PolicyKind::CompleterSubsidy => 0x0190_0000_0000_7000_8000_0000_0000_0001,
            PolicyKind::OperatingCenterIncentive => 0x0190_0000_0000_7000_8000_0000_0000_0002,
        }))
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Over what the cap runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    /// One cap for the subject's whole life (per achievement, across contracts and years).
    Lifetime,
    /// A fresh cap each calendar year (Asia/Shanghai) of the payment's settlement date.
    CalendarYear,
}

impl CapPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            CapPeriod::Lifetime => "lifetime",
            CapPeriod::CalendarYear => "calendar_year",
        }
    }
}

/// What money the rate applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// 实际到账额 of registered contracts on the achievement, net of reversals, counted when
    /// the owner is accredited and the buyer is in Chongqing.
    AchievementEligibleNetReceived,
    /// 运营金额: net received of registered contracts operated through the center, counted
    /// when the center is accredited.
    OperatingCenterNetReceived,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::AchievementEligibleNetReceived => "achievement_eligible_net_received",
            Basis::OperatingCenterNetReceived => "operating_center_net_received",
        }
    }

    pub fn of(kind: PolicyKind) -> Basis {
        match kind {
            PolicyKind::CompleterSubsidy => Basis::AchievementEligibleNetReceived,
            PolicyKind::OperatingCenterIncentive => Basis::OperatingCenterNetReceived,
        }
    }
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub kind: PolicyKind,
    /// 1 for the shipped default; each enactment adds one.
    pub version: u32,
    pub rate: Rate,
    pub cap: Money,
    pub cap_period: CapPeriod,
    pub basis: Basis,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    /// The document and clause that set these figures.
    pub source: String,
}

impl PolicyVersion {
    pub fn covers(&self, date: NaiveDate) -> bool {
        date >= self.effective_from && self.effective_until.is_none_or(|until| date <= until)
    }
}

/// The shipped defaults, straight from the policy documents.
pub fn defaults() -> Vec<PolicyVersion> {
    vec![
        PolicyVersion {
            kind: PolicyKind::CompleterSubsidy,
            version: 1,
            rate: Rate::percent(5),
            cap: Money::from_yuan(1_000_000),
            cap_period: CapPeriod::Lifetime,
            basis: Basis::AchievementEligibleNetReceived,
            // Issued 2019-12-27. The action plan is titled 2019-2022 but sets no end date for
            // the subsidy; an end date, if one is decided, is enacted as a new version.
            effective_from: NaiveDate::from_ymd_opt(2019, 12, 27).expect("valid date"),
            effective_until: None,
            source: "渝府办发〔2019〕126号《重庆市引进科技创新资源行动计划（2019—2022年）》三（七）：按其技术合同成交\
                     实际到账额，由市级给予科技成果完成人5%的财政性普惠补贴，单项成果补贴最高不超过100万元"
                .to_owned(),
        },
        PolicyVersion {
            kind: PolicyKind::OperatingCenterIncentive,
            version: 1,
            rate: Rate::percent(2),
            cap: Money::from_yuan(5_000_000),
            cap_period: CapPeriod::CalendarYear,
            basis: Basis::OperatingCenterNetReceived,
            effective_from: NaiveDate::from_ymd_opt(2021, 5, 14).expect("valid date"),
            effective_until: None,
            source:
                "渝府办发〔2021〕47号《支持科技创新若干财政金融政策》六（二十）：根据运营绩效按运营金额的2%给予补贴，\
                     市级每年最高奖补500万元"
                    .to_owned(),
        },
    ]
}

/// Every version known at a point of the ledger, in enactment order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBook {
    versions: Vec<PolicyVersion>,
}

impl Default for PolicyBook {
    fn default() -> Self {
        PolicyBook { versions: defaults() }
    }
}

impl PolicyBook {
    /// Records an enacted version; versions of a kind are consecutive.
    pub fn enact(&mut self, version: PolicyVersion) {
        assert_eq!(version.version, self.latest(version.kind).version + 1, "policy versions are consecutive");
        self.versions.push(version);
    }

    pub fn latest(&self, kind: PolicyKind) -> &PolicyVersion {
        self.versions.iter().rev().find(|v| v.kind == kind).expect("every kind has a default")
    }

    /// The version that applies to a line dated `date`: the newest whose dates cover it.
    pub fn in_force(&self, kind: PolicyKind, date: NaiveDate) -> Option<&PolicyVersion> {
        self.versions.iter().rev().find(|v| v.kind == kind && v.covers(date))
    }

    pub fn get(&self, kind: PolicyKind, version: u32) -> &PolicyVersion {
        self.versions.iter().find(|v| v.kind == kind && v.version == version).expect("a version that was used exists")
    }

    pub fn versions(&self) -> &[PolicyVersion] {
        &self.versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_defaults_are_the_documents_figures() {
        let book = PolicyBook::default();
        let subsidy = book.latest(PolicyKind::CompleterSubsidy);
        assert_eq!(
            (subsidy.rate, subsidy.cap, subsidy.cap_period),
            (Rate::percent(5), Money::from_yuan(1_000_000), CapPeriod::Lifetime)
        );
        assert!(subsidy.source.contains("渝府办发〔2019〕126号"));
        let incentive = book.latest(PolicyKind::OperatingCenterIncentive);
        assert_eq!(
            (incentive.rate, incentive.cap, incentive.cap_period),
            (Rate::percent(2), Money::from_yuan(5_000_000), CapPeriod::CalendarYear)
        );
        assert!(incentive.source.contains("六（二十）"));
    }

    #[test]
    fn a_new_version_applies_from_its_effective_date_only() {
        let mut book = PolicyBook::default();
        let mut v2 = book.latest(PolicyKind::CompleterSubsidy).clone();
        v2.version = 2;
        v2.rate = Rate::percent(4);
        v2.effective_from = date(2026, 1, 1);
        book.enact(v2);
        assert_eq!(book.in_force(PolicyKind::CompleterSubsidy, date(2025, 12, 31)).unwrap().version, 1);
        assert_eq!(book.in_force(PolicyKind::CompleterSubsidy, date(2026, 1, 1)).unwrap().version, 2);
        assert!(book.in_force(PolicyKind::CompleterSubsidy, date(2019, 12, 26)).is_none(), "before the document");
    }
}
