//! Who issues a command: a user with one role, acting for one organisation (or as one
//! broker). Identity is established at the edge (a verified token); what each role may do is
//! decided here, in the domain's command path, so no entry point can skip it.

use serde::{Deserialize, Serialize};

use crate::ids::{BrokerId, OrganisationId};

/// The user groups of the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Staff of a university or research institute (高校、科研院所): list their achievements.
    ResearchInstitution,
    /// Staff of an enterprise (企业): post demands, buy technology.
    Enterprise,
    /// A technology broker (技术经纪人): proposes matches.
    Broker,
    /// Staff of an IP operating center (知识产权运营中心): operate deals.
    OperatingCenter,
    /// The contract registrar (技术合同登记机构): registers contracts, records payments.
    Registrar,
    /// Finance staff (财政/科技部门财务): read statements and exports.
    Finance,
    /// Administrators: register organisations, brokers and accreditations.
    Admin,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::ResearchInstitution,
        Role::Enterprise,
        Role::Broker,
        Role::OperatingCenter,
        Role::Registrar,
        Role::Finance,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ResearchInstitution => "research_institution",
            Role::Enterprise => "enterprise",
            Role::Broker => "broker",
            Role::OperatingCenter => "operating_center",
            Role::Registrar => "registrar",
            Role::Finance => "finance",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The caller of a command, as established from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Stable user id (the token's subject).
    pub user_id: String,
    pub role: Role,
    /// The organisation the user acts for, if any.
    pub organisation_id: Option<OrganisationId>,
    /// For brokers: which registered broker the user is.
    pub broker_id: Option<BrokerId>,
}

impl Actor {
    /// Acts for `organisation` (as any role other than finance, which never acts).
    pub fn acts_for(&self, organisation: OrganisationId) -> bool {
        self.organisation_id == Some(organisation) && self.role != Role::Finance
    }
}
