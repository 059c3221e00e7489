//! Enacting policy versions: an administrator records the next version of a subsidy policy
//! (rate, cap, cap period, effective dates, source). Version 1 of each policy is the shipped
//! default (`crate::policy::defaults`), so the first enactment is version 2.

use crate::actor::{Actor, Role};
use crate::command::EnactPolicy;
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::policy::{Basis, PolicyKind, PolicyVersion};
use crate::validation::{REASON_CHARS_MAX, amount, required_text};

/// A policy's stream: how many versions exist (the default counts as the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub latest_version: u32,
}

pub(crate) fn evolve(state: &mut Option<Policy>, event: &Event) {
    match event {
        Event::PolicyEnacted(e) => {
            let latest = state.as_ref().map_or(1, |p| p.latest_version);
            assert_eq!(e.policy.version, latest + 1, "policy versions are consecutive");
            *state = Some(Policy { kind: e.policy.kind, latest_version: e.policy.version });
        }
        other => unreachable!("{} is not a policy event", other.event_type()),
    }
}

pub(crate) fn enact(c: &EnactPolicy, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Admin, actor, "enact policies")?;
    let latest = facts.policy(c.kind.id())?.map_or(1, |p| p.latest_version);
    amount("cap", c.cap)?;
    if let Some(until) = c.effective_until
        && until < c.effective_from
    {
        return Err(DomainError::invalid("effectiveUntil", rules::DATE_ORDER, "must not be before effectiveFrom"));
    }
    Ok(vec![Event::PolicyEnacted(PolicyEnacted {
        policy: PolicyVersion {
            kind: c.kind,
            version: latest + 1,
            rate: c.rate,
            cap: c.cap,
            cap_period: c.cap_period,
            basis: Basis::of(c.kind),
            effective_from: c.effective_from,
            effective_until: c.effective_until,
            source: required_text("source", &c.source, REASON_CHARS_MAX)?,
        },
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::domain::testing::*;
    use crate::money::Rate;
    use crate::policy::CapPeriod;

    fn enact_cmd() -> EnactPolicy {
        EnactPolicy {
            kind: PolicyKind::CompleterSubsidy,
            rate: Rate::percent(4),
            cap: yuan(800_000),
            cap_period: CapPeriod::Lifetime,
            effective_from: date(2026, 1, 1),
            effective_until: None,
            source: "渝科局发〔2025〕99号".into(),
        }
    }

    #[test]
    fn an_admin_enacts_consecutive_versions() {
        let first = given(&[]).when(admin(), Command::EnactPolicy(enact_cmd())).events();
        let Event::PolicyEnacted(e) = &first[0] else { panic!("expected PolicyEnacted") };
        assert_eq!(e.policy.version, 2, "version 1 is the shipped default");
        let second = given(&first).when(admin(), Command::EnactPolicy(enact_cmd())).events();
        let Event::PolicyEnacted(e) = &second[0] else { panic!("expected PolicyEnacted") };
        assert_eq!(e.policy.version, 3);
        given(&[]).when(user(Role::Finance, None), Command::EnactPolicy(enact_cmd())).then_code("FORBIDDEN");
    }
}
