//! Technology demands (技术需求) posted by enterprises; a closed demand takes no new matches or
//! contracts.

use chrono::NaiveDate;

use crate::actor::{Actor, Role};
use crate::command::{CloseDemand, PostDemand};
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::ids::{DemandId, OrganisationId};
use crate::validation::{DESCRIPTION_CHARS_MAX, REASON_CHARS_MAX, TITLE_CHARS_MAX, bounded_text, required_text};
use crate::vocabulary::TechField;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub id: DemandId,
    pub enterprise_id: OrganisationId,
    pub title: String,
    pub field: TechField,
    pub deadline: Option<NaiveDate>,
    pub closed: bool,
}

pub(crate) fn evolve(state: &mut Option<Demand>, event: &Event) {
    match event {
        Event::DemandPosted(e) => {
            assert!(state.is_none(), "demand {} posted twice", e.demand_id);
            *state = Some(Demand {
                id: e.demand_id,
                enterprise_id: e.enterprise_id,
                title: e.title.clone(),
                field: e.field,
                deadline: e.deadline,
                closed: false,
            });
        }
        Event::DemandClosed(_) => state.as_mut().expect("closed before posted").closed = true,
        other => unreachable!("{} is not a demand event", other.event_type()),
    }
}

fn may_manage(actor: &Actor, enterprise: OrganisationId) -> bool {
    actor.role == Role::Enterprise && actor.acts_for(enterprise)
}

pub(crate) fn post(c: &PostDemand, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(may_manage(actor, c.enterprise_id), actor, "post demands for another organisation")?;
    if facts.demand(c.demand_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "demand", id: c.demand_id.to_string() });
    }
    facts.organisation(c.enterprise_id)?.ok_or_else(|| DomainError::not_found("organisation", c.enterprise_id))?;
    if let Some(budget) = c.budget {
        crate::validation::amount("budget", budget)?;
    }
    Ok(vec![Event::DemandPosted(DemandPosted {
        demand_id: c.demand_id,
        enterprise_id: c.enterprise_id,
        title: required_text("title", &c.title, TITLE_CHARS_MAX)?,
        field: c.field,
        description: bounded_text("description", &c.description, DESCRIPTION_CHARS_MAX)?,
        budget: c.budget,
        deadline: c.deadline,
    })])
}

pub(crate) fn close(c: &CloseDemand, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let d = facts.demand(c.demand_id)?.ok_or_else(|| DomainError::not_found("demand", c.demand_id))?;
    authorize(may_manage(actor, d.enterprise_id), actor, "close another organisation's demand")?;
    if d.closed {
        return Err(DomainError::violation(rules::ALREADY_CLOSED, format!("demand {} is already closed", d.id)));
    }
    Ok(vec![Event::DemandClosed(DemandClosed {
        demand_id: d.id,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::domain::testing::*;

    fn post_cmd(enterprise: OrganisationId) -> PostDemand {
        PostDemand {
            demand_id: DemandId::new_v7(),
            enterprise_id: enterprise,
            title: "轻量化车身材料".into(),
            field: TechField::NewMaterials,
            description: "需要高强度镁合金".into(),
            budget: Some(yuan(800_000)),
            deadline: Some(date(2025, 12, 31)),
        }
    }

    #[test]
    fn an_enterprise_posts_and_closes_its_own_demand() {
        let (ent, mut history) = enterprise("500112");
        let cmd = post_cmd(ent);
        let me = user(Role::Enterprise, Some(ent));
        history.extend(given(&history).when(me.clone(), Command::PostDemand(cmd.clone())).events());
        let close = Command::CloseDemand(CloseDemand { demand_id: cmd.demand_id, reason: "已找到技术".into() });
        history.extend(given(&history).when(me.clone(), close.clone()).events());
        given(&history).when(me, close).then_rule(rules::ALREADY_CLOSED);
    }

    #[test]
    fn nobody_posts_or_closes_for_another_enterprise() {
        let (ent, mut history) = enterprise("500112");
        let (other, more) = enterprise("500112");
        history.extend(more);
        let cmd = post_cmd(ent);
        given(&history)
            .when(user(Role::Enterprise, Some(other)), Command::PostDemand(cmd.clone()))
            .then_code("FORBIDDEN");
        given(&history)
            .when(user(Role::ResearchInstitution, Some(ent)), Command::PostDemand(cmd.clone()))
            .then_code("FORBIDDEN");
        history
            .extend(given(&history).when(user(Role::Enterprise, Some(ent)), Command::PostDemand(cmd.clone())).events());
        let close = Command::CloseDemand(CloseDemand { demand_id: cmd.demand_id, reason: "x".into() });
        given(&history).when(user(Role::Enterprise, Some(other)), close).then_code("FORBIDDEN");
    }
}
