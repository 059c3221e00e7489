//! Technology brokers (技术经纪人): registered by an administrator, optionally working for a
//! broker agency; they propose matches between achievements and demands.

use crate::actor::{Actor, Role};
use crate::command::RegisterBroker;
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::ids::{BrokerId, OrganisationId};
use crate::validation::{NAME_CHARS_MAX, REFERENCE_CHARS_MAX, required_text};
use crate::vocabulary::OrganisationKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: BrokerId,
    pub name: String,
    pub agency_id: Option<OrganisationId>,
}

pub(crate) fn evolve(state: &mut Option<Broker>, event: &Event) {
    match event {
        Event::BrokerRegistered(e) => {
            assert!(state.is_none(), "broker {} registered twice", e.broker_id);
            *state = Some(Broker { id: e.broker_id, name: e.name.clone(), agency_id: e.agency_id });
        }
        other => unreachable!("{} is not a broker event", other.event_type()),
    }
}

pub(crate) fn register(c: &RegisterBroker, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Admin, actor, "register brokers")?;
    if facts.broker(c.broker_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "broker", id: c.broker_id.to_string() });
    }
    if let Some(agency_id) = c.agency_id {
        let agency = facts.organisation(agency_id)?.ok_or_else(|| DomainError::not_found("organisation", agency_id))?;
        if agency.kind != OrganisationKind::BrokerAgency {
            return Err(DomainError::violation(
                rules::ORGANISATION_KIND,
                format!(
                    "a broker's agency must be a broker_agency organisation; {} is {}",
                    agency.name,
                    agency.kind.as_str()
                ),
            ));
        }
    }
    Ok(vec![Event::BrokerRegistered(BrokerRegistered {
        broker_id: c.broker_id,
        name: required_text("name", &c.name, NAME_CHARS_MAX)?,
        agency_id: c.agency_id,
        certificate_number: c
            .certificate_number
            .as_deref()
            .map(|n| required_text("certificateNumber", n, REFERENCE_CHARS_MAX))
            .transpose()?,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::domain::testing::*;

    #[test]
    fn a_broker_works_for_a_broker_agency_only() {
        let (agency, mut history) = organisation(OrganisationKind::BrokerAgency, "500112");
        let (university, more) = university("500106");
        history.extend(more);
        let cmd = |agency_id| {
            Command::RegisterBroker(RegisterBroker {
                broker_id: BrokerId::new_v7(),
                name: "张经纪".into(),
                agency_id: Some(agency_id),
                certificate_number: Some("JJ-2024-001".into()),
            })
        };
        assert_eq!(given(&history).when(admin(), cmd(agency)).events().len(), 1);
        given(&history).when(admin(), cmd(university)).then_rule(rules::ORGANISATION_KIND);
        given(&history).when(admin(), cmd(OrganisationId::new_v7())).then_code("NOT_FOUND");
        given(&history).when(registrar(), cmd(agency)).then_code("FORBIDDEN");
    }
}
