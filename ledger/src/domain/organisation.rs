//! Organisations and their accreditations (认定): who they are, where they are located, and
//! from which date they count as an introduced R&D institution, innovation platform or IP
//! operating center, the facts the subsidy eligibility rules read.

use chrono::NaiveDate;

use crate::actor::{Actor, Role};
use crate::codes::{CreditCode, DivisionCode};
use crate::command::{AccreditOrganisation, RegisterOrganisation, RevokeAccreditation};
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::ids::{AccreditationId, OrganisationId};
use crate::validation::{NAME_CHARS_MAX, REASON_CHARS_MAX, REFERENCE_CHARS_MAX, required_text};
use crate::vocabulary::{AccreditationKind, OrganisationKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub id: OrganisationId,
    pub name: String,
    pub kind: OrganisationKind,
    pub credit_code: CreditCode,
    pub division_code: DivisionCode,
    pub accreditations: Vec<Accreditation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accreditation {
    pub id: AccreditationId,
    pub kind: AccreditationKind,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub document_number: String,
    pub revoked_from: Option<NaiveDate>,
}

impl Accreditation {
    /// Holds on `date`: on or after its start, on or before its end, before any revocation.
    pub fn holds_on(&self, date: NaiveDate) -> bool {
        date >= self.effective_from
            && self.effective_until.is_none_or(|until| date <= until)
            && self.revoked_from.is_none_or(|revoked| date < revoked)
    }
}

impl Organisation {
    pub fn is_accredited_as(&self, kind: AccreditationKind, date: NaiveDate) -> bool {
        self.accreditations.iter().any(|a| a.kind == kind && a.holds_on(date))
    }
}

pub(crate) fn evolve(state: &mut Option<Organisation>, event: &Event) {
    match event {
        Event::OrganisationRegistered(e) => {
            assert!(state.is_none(), "organisation {} registered twice", e.organisation_id);
            *state = Some(Organisation {
                id: e.organisation_id,
                name: e.name.clone(),
                kind: e.kind,
                credit_code: e.credit_code.clone(),
                division_code: e.division_code.clone(),
                accreditations: Vec::new(),
            });
        }
        Event::OrganisationAccredited(e) => {
            let org = state.as_mut().expect("accredited before registered");
            org.accreditations.push(Accreditation {
                id: e.accreditation_id,
                kind: e.kind,
                effective_from: e.effective_from,
                effective_until: e.effective_until,
                document_number: e.document_number.clone(),
                revoked_from: None,
            });
        }
        Event::AccreditationRevoked(e) => {
            let org = state.as_mut().expect("revoked before registered");
            let accreditation = org
                .accreditations
                .iter_mut()
                .find(|a| a.id == e.accreditation_id)
                .expect("revoked an unknown accreditation");
            accreditation.revoked_from = Some(e.revoked_from);
        }
        other => unreachable!("{} is not an organisation event", other.event_type()),
    }
}

pub(crate) fn register(c: &RegisterOrganisation, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Admin, actor, "register organisations")?;
    if facts.organisation(c.organisation_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "organisation", id: c.organisation_id.to_string() });
    }
    Ok(vec![Event::OrganisationRegistered(OrganisationRegistered {
        organisation_id: c.organisation_id,
        name: required_text("name", &c.name, NAME_CHARS_MAX)?,
        kind: c.kind,
        credit_code: c.credit_code.clone(),
        division_code: c.division_code.clone(),
    })])
}

pub(crate) fn accredit(c: &AccreditOrganisation, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Admin, actor, "accredit organisations")?;
    let org = facts
        .organisation(c.organisation_id)?
        .ok_or_else(|| DomainError::not_found("organisation", c.organisation_id))?;
    if org.accreditations.iter().any(|a| a.id == c.accreditation_id) {
        return Err(DomainError::AlreadyExists { what: "accreditation", id: c.accreditation_id.to_string() });
    }
    if let Some(until) = c.effective_until
        && until < c.effective_from
    {
        return Err(DomainError::invalid("effectiveUntil", rules::DATE_ORDER, "must not be before effectiveFrom"));
    }
    if c.kind == AccreditationKind::IpOperatingCenter && org.kind != OrganisationKind::IpOperatingCenter {
        return Err(DomainError::violation(
            rules::ORGANISATION_KIND,
            format!(
                "only an organisation of kind ip_operating_center can be accredited as an IP operating center; {} is {}",
                org.name,
                org.kind.as_str()
            ),
        ));
    }
    Ok(vec![Event::OrganisationAccredited(OrganisationAccredited {
        organisation_id: c.organisation_id,
        accreditation_id: c.accreditation_id,
        kind: c.kind,
        effective_from: c.effective_from,
        effective_until: c.effective_until,
        document_number: required_text("documentNumber", &c.document_number, REFERENCE_CHARS_MAX)?,
    })])
}

pub(crate) fn revoke(c: &RevokeAccreditation, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Admin, actor, "revoke accreditations")?;
    let org = facts
        .organisation(c.organisation_id)?
        .ok_or_else(|| DomainError::not_found("organisation", c.organisation_id))?;
    let accreditation = org
        .accreditations
        .iter()
        .find(|a| a.id == c.accreditation_id)
        .ok_or_else(|| DomainError::not_found("accreditation", c.accreditation_id))?;
    if accreditation.revoked_from.is_some() {
        return Err(DomainError::violation(
            rules::ACCREDITATION_ALREADY_REVOKED,
            format!("accreditation {} is already revoked", c.accreditation_id),
        ));
    }
    Ok(vec![Event::AccreditationRevoked(AccreditationRevoked {
        organisation_id: c.organisation_id,
        accreditation_id: c.accreditation_id,
        revoked_from: c.revoked_from,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::domain::testing::*;

    #[test]
    fn an_admin_registers_an_organisation() {
        let id = OrganisationId::new_v7();
        given(&[])
            .when(admin(), Command::RegisterOrganisation(register_cmd(id, OrganisationKind::University, "500106")))
            .then_events(&[Event::OrganisationRegistered(OrganisationRegistered {
                organisation_id: id,
                name: "重庆大学".into(),
                kind: OrganisationKind::University,
                credit_code: CreditCode::parse("c", CREDIT_CODE).unwrap(),
                division_code: DivisionCode::parse("d", "500106").unwrap(),
            })]);
    }

    #[test]
    fn only_an_admin_registers_organisations() {
        let id = OrganisationId::new_v7();
        given(&[])
            .when(
                user(Role::Enterprise, None),
                Command::RegisterOrganisation(register_cmd(id, OrganisationKind::Enterprise, "500112")),
            )
            .then_code("FORBIDDEN");
    }

    #[test]
    fn an_organisation_is_registered_once() {
        let (org, events) = university("500106");
        given(&events)
            .when(admin(), Command::RegisterOrganisation(register_cmd(org, OrganisationKind::University, "500106")))
            .then_code("ALREADY_EXISTS");
    }

    #[test]
    fn an_accreditation_holds_from_its_effective_date_until_revoked() {
        let (org, mut events) = university("500106");
        let accreditation = accreditation_event(org, AccreditationKind::IntroducedRdInstitution, date(2024, 7, 1));
        events.push(accreditation.clone());
        let state = fold_org(&events);
        assert!(!state.is_accredited_as(AccreditationKind::IntroducedRdInstitution, date(2024, 6, 30)));
        assert!(state.is_accredited_as(AccreditationKind::IntroducedRdInstitution, date(2024, 7, 1)));
        assert!(!state.is_accredited_as(AccreditationKind::InnovationPlatform, date(2024, 7, 1)));

        let Event::OrganisationAccredited(a) = accreditation else { unreachable!() };
        let revoke = RevokeAccreditation {
            organisation_id: org,
            accreditation_id: a.accreditation_id,
            revoked_from: date(2025, 1, 1),
            reason: "评估不合格".into(),
        };
        let decided = given(&events).when(admin(), Command::RevokeAccreditation(revoke.clone())).events();
        events.extend(decided);
        let state = fold_org(&events);
        assert!(state.is_accredited_as(AccreditationKind::IntroducedRdInstitution, date(2024, 12, 31)));
        assert!(!state.is_accredited_as(AccreditationKind::IntroducedRdInstitution, date(2025, 1, 1)));
        given(&events)
            .when(admin(), Command::RevokeAccreditation(revoke))
            .then_rule(rules::ACCREDITATION_ALREADY_REVOKED);
    }

    #[test]
    fn an_accreditation_cannot_end_before_it_starts() {
        let (org, events) = university("500106");
        let cmd = AccreditOrganisation {
            organisation_id: org,
            accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
            kind: AccreditationKind::InnovationPlatform,
            effective_from: date(2024, 7, 1),
            effective_until: Some(date(2024, 6, 30)),
            document_number: "渝科局发〔2024〕1号".into(),
        };
        given(&events).when(admin(), Command::AccreditOrganisation(cmd)).then_rule(rules::DATE_ORDER);
    }

    #[test]
    fn only_an_operating_center_is_accredited_as_one() {
        let (org, events) = university("500106");
        let cmd = AccreditOrganisation {
            organisation_id: org,
            accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
            kind: AccreditationKind::IpOperatingCenter,
            effective_from: date(2024, 1, 1),
            effective_until: None,
            document_number: "渝知发〔2024〕22号".into(),
        };
        given(&events).when(admin(), Command::AccreditOrganisation(cmd)).then_rule(rules::ORGANISATION_KIND);
    }

    fn fold_org(events: &[Event]) -> Organisation {
        let mut state = None;
        for e in events {
            evolve(&mut state, e);
        }
        state.unwrap()
    }
}
