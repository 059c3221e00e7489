//! GraphQL enums: the domain's vocabularies (mirrored with `remote`, so the two can never
//! drift) and the statuses of the read models.

use async_graphql::Enum;
use serde::Serialize;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::OrganisationKind")]
pub enum OrganisationKind {
    University,
    ResearchInstitute,
    Enterprise,
    BrokerAgency,
    IpOperatingCenter,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::AccreditationKind")]
pub enum AccreditationKind {
    IntroducedRdInstitution,
    InnovationPlatform,
    IpOperatingCenter,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::TechField")]
pub enum TechField {
    ElectronicInformation,
    AdvancedManufacturing,
    UrbanDevelopment,
    NewEnergy,
    Environment,
    Biomedicine,
    NewMaterials,
    ModernTransport,
    Aerospace,
    Agriculture,
    NuclearApplication,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::TransferMode")]
pub enum TransferMode {
    Transfer,
    Licence,
    JointDevelopment,
    EquityInvestment,
    TechnicalService,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::ContractType")]
pub enum ContractType {
    Development,
    Transfer,
    Licence,
    Consulting,
    Service,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::vocabulary::MatchSide")]
pub enum MatchSide {
    Owner,
    Enterprise,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
#[graphql(remote = "ledger::Role")]
pub enum Role {
    ResearchInstitution,
    Enterprise,
    Broker,
    OperatingCenter,
    Registrar,
    Finance,
    Admin,
}

/// Declares a status enum stored as a lowercase code in the read models.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            pub fn from_code(code: &str) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

status_enum!(
    /// Whether an achievement takes new matches and contracts.
    AchievementStatus { Listed => "listed", Withdrawn => "withdrawn" }
);
status_enum!(
    /// Whether a demand takes new matches and contracts.
    DemandStatus { Open => "open", Closed => "closed" }
);
status_enum!(
    /// Where a match stands: both sides must accept before a contract.
    MatchStatus { Proposed => "proposed", Accepted => "accepted", Declined => "declined" }
);
status_enum!(
    /// A side's answer to a match.
    MatchAnswer { Accepted => "accepted", Declined => "declined" }
);
status_enum!(
    /// Where a contract stands.
    ContractStatus { Signed => "signed", Registered => "registered", Terminated => "terminated" }
);

/// Parses a vocabulary code read back from the read model (written by us, so always known).
pub fn from_code<T>(code: &str, parse: impl Fn(&str) -> Option<T>) -> async_graphql::Result<T> {
    parse(code).ok_or_else(|| super::internal(format!("unknown code `{code}` in the read model")))
}
