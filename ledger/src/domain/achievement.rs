//! Research achievements (科技成果) listed by their owners, with their completers (成果完成人)
//! and shares. Once an achievement has a contract its completers are locked: the subsidy lines
//! already split by them must stay explainable.

use crate::actor::{Actor, Role};
use crate::codes::Share;
use crate::command::{AchievementRevision, ListAchievement, ReviseAchievement, WithdrawAchievement};
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::ids::{AchievementId, OrganisationId};
use crate::validation::{
    DESCRIPTION_CHARS_MAX, NAME_CHARS_MAX, REASON_CHARS_MAX, TITLE_CHARS_MAX, bounded_text, required_text,
};

/// Limits on a listing's lists.
pub const COMPLETERS_MAX: usize = 50;
pub const PATENT_NUMBERS_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Achievement {
    pub id: AchievementId,
    pub owner_id: OrganisationId,
    pub details: AchievementDetails,
    pub withdrawn: bool,
    pub completers_locked: bool,
}

pub(crate) fn evolve(state: &mut Option<Achievement>, event: &Event) {
    match event {
        Event::AchievementListed(e) => {
            assert!(state.is_none(), "achievement {} listed twice", e.achievement_id);
            *state = Some(Achievement {
                id: e.achievement_id,
                owner_id: e.owner_id,
                details: e.details.clone(),
                withdrawn: false,
                completers_locked: false,
            });
        }
        Event::AchievementRevised(e) => {
            let a = state.as_mut().expect("revised before listed");
            assert!(
                !a.completers_locked || a.details.completers == e.details.completers,
                "completers of {} changed after they were locked",
                a.id
            );
            a.details = e.details.clone();
        }
        Event::CompletersLocked(_) => state.as_mut().expect("locked before listed").completers_locked = true,
        Event::AchievementWithdrawn(_) => state.as_mut().expect("withdrawn before listed").withdrawn = true,
        other => unreachable!("{} is not an achievement event", other.event_type()),
    }
}

/// Owners (staff of the owning organisation) manage their own listings.
fn may_manage(actor: &Actor, owner: OrganisationId) -> bool {
    matches!(actor.role, Role::ResearchInstitution | Role::Enterprise) && actor.acts_for(owner)
}

pub(crate) fn list(c: &ListAchievement, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(may_manage(actor, c.owner_id), actor, "list achievements for another organisation")?;
    if facts.achievement(c.achievement_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "achievement", id: c.achievement_id.to_string() });
    }
    facts.organisation(c.owner_id)?.ok_or_else(|| DomainError::not_found("organisation", c.owner_id))?;
    Ok(vec![Event::AchievementListed(AchievementListed {
        achievement_id: c.achievement_id,
        owner_id: c.owner_id,
        details: checked_details(&c.details)?,
    })])
}

pub(crate) fn revise(c: &ReviseAchievement, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let a =
        facts.achievement(c.achievement_id)?.ok_or_else(|| DomainError::not_found("achievement", c.achievement_id))?;
    authorize(may_manage(actor, a.owner_id), actor, "revise another organisation's achievement")?;
    if a.withdrawn {
        return Err(DomainError::violation(rules::ACHIEVEMENT_WITHDRAWN, format!("achievement {} is withdrawn", a.id)));
    }
    let mut details = checked_details(&revised(&a.details, &c.revision))?;
    if Completer::same_list(&details.completers, &a.details.completers) {
        // Re-stating the same people keeps their recorded identities.
        details.completers = a.details.completers.clone();
    } else if a.completers_locked {
        return Err(DomainError::violation(
            rules::COMPLETERS_LOCKED,
            format!("achievement {} has a contract: its completers and shares can no longer change", a.id),
        ));
    }
    Ok(vec![Event::AchievementRevised(AchievementRevised { achievement_id: a.id, details })])
}

pub(crate) fn withdraw(c: &WithdrawAchievement, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let a =
        facts.achievement(c.achievement_id)?.ok_or_else(|| DomainError::not_found("achievement", c.achievement_id))?;
    authorize(may_manage(actor, a.owner_id), actor, "withdraw another organisation's achievement")?;
    if a.withdrawn {
        return Err(DomainError::violation(
            rules::ALREADY_WITHDRAWN,
            format!("achievement {} is already withdrawn", a.id),
        ));
    }
    Ok(vec![Event::AchievementWithdrawn(AchievementWithdrawn {
        achievement_id: a.id,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

fn revised(current: &AchievementDetails, r: &AchievementRevision) -> AchievementDetails {
    AchievementDetails {
        title: r.title.clone().unwrap_or_else(|| current.title.clone()),
        field: r.field.unwrap_or(current.field),
        description: r.description.clone().unwrap_or_else(|| current.description.clone()),
        patent_numbers: r.patent_numbers.clone().unwrap_or_else(|| current.patent_numbers.clone()),
        maturity: r.maturity.unwrap_or(current.maturity),
        asking_price: r.asking_price.unwrap_or(current.asking_price),
        transfer_modes: r.transfer_modes.clone().unwrap_or_else(|| current.transfer_modes.clone()),
        completers: r.completers.clone().unwrap_or_else(|| current.completers.clone()),
    }
}

/// Checks a listing's rules and returns it with its free text trimmed.
fn checked_details(d: &AchievementDetails) -> Result<AchievementDetails, DomainError> {
    if !(1..=9).contains(&d.maturity) {
        return Err(DomainError::invalid("maturity", "maturity_range", "technology readiness level is 1 to 9"));
    }
    if d.patent_numbers.len() > PATENT_NUMBERS_MAX {
        return Err(DomainError::invalid(
            "patentNumbers",
            "max_items",
            format!("at most {PATENT_NUMBERS_MAX} patent numbers"),
        ));
    }
    let mut patents = d.patent_numbers.clone();
    patents.sort();
    patents.dedup();
    if patents.len() != d.patent_numbers.len() {
        return Err(DomainError::invalid("patentNumbers", "unique_items", "a patent number is listed twice"));
    }
    if let Some(price) = d.asking_price {
        crate::validation::amount("askingPrice", price)?;
    }
    if d.transfer_modes.is_empty() {
        return Err(DomainError::invalid("transferModes", "required", "name at least one transfer mode"));
    }
    Ok(AchievementDetails {
        title: required_text("title", &d.title, TITLE_CHARS_MAX)?,
        field: d.field,
        description: bounded_text("description", &d.description, DESCRIPTION_CHARS_MAX)?,
        patent_numbers: d.patent_numbers.clone(),
        maturity: d.maturity,
        asking_price: d.asking_price,
        transfer_modes: d.transfer_modes.clone(),
        completers: checked_completers(&d.completers)?,
    })
}

/// Completers: at least one, each with a name and a share above 0, shares summing to exactly
/// 100 (DOMAIN.md "Several completers").
fn checked_completers(completers: &[Completer]) -> Result<Vec<Completer>, DomainError> {
    if completers.is_empty() || completers.len() > COMPLETERS_MAX {
        return Err(DomainError::invalid(
            "completers",
            "completers_count",
            format!("an achievement has 1 to {COMPLETERS_MAX} completers"),
        ));
    }
    let total: u32 = completers.iter().map(|c| c.share.basis_points()).sum();
    if total != Share::WHOLE {
        return Err(DomainError::invalid(
            "completers",
            rules::COMPLETER_SHARES_SUM,
            format!("completers' shares must sum to exactly 100.00, they sum to {}.{:02}", total / 100, total % 100),
        ));
    }
    let mut fingerprints: Vec<&str> =
        completers.iter().filter_map(|c| c.identity.as_ref()).map(|i| i.fingerprint.as_str()).collect();
    fingerprints.sort_unstable();
    if fingerprints.windows(2).any(|w| w[0] == w[1]) {
        return Err(DomainError::invalid(
            "completers",
            "completers_distinct",
            "the same ID number is listed for two completers",
        ));
    }
    completers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(Completer {
                name: required_text(&format!("completers[{i}].name"), &c.name, NAME_CHARS_MAX)?,
                share: c.share,
                identity: c.identity.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::domain::testing::*;
    use crate::ids::ContractId;

    fn owner_of(org: OrganisationId) -> Actor {
        user(Role::ResearchInstitution, Some(org))
    }

    #[test]
    fn an_owner_lists_an_achievement_with_completers_summing_to_100() {
        let (org, history) = university("500106");
        let id = AchievementId::new_v7();
        let cmd = ListAchievement { achievement_id: id, owner_id: org, details: details(&["33.33", "33.33", "33.34"]) };
        given(&history).when(owner_of(org), Command::ListAchievement(cmd.clone())).then_events(&[
            Event::AchievementListed(AchievementListed { achievement_id: id, owner_id: org, details: cmd.details }),
        ]);
    }

    #[test]
    fn shares_that_do_not_sum_to_exactly_100_are_refused() {
        let (org, history) = university("500106");
        for shares in [&["33.33", "33.33", "33.33"][..], &["50", "50.01"][..]] {
            let cmd =
                ListAchievement { achievement_id: AchievementId::new_v7(), owner_id: org, details: details(shares) };
            let err = given(&history)
                .when(owner_of(org), Command::ListAchievement(cmd))
                .then_rule(rules::COMPLETER_SHARES_SUM);
            assert_eq!(err.field(), Some("completers"));
        }
    }

    #[test]
    fn a_university_lists_only_for_itself() {
        let (org, mut history) = university("500106");
        let (other, more) = university("500106");
        history.extend(more);
        let cmd =
            ListAchievement { achievement_id: AchievementId::new_v7(), owner_id: org, details: details(&["100"]) };
        given(&history).when(owner_of(other), Command::ListAchievement(cmd.clone())).then_code("FORBIDDEN");
        given(&history).when(admin(), Command::ListAchievement(cmd)).then_code("FORBIDDEN");
    }

    #[test]
    fn completers_are_locked_once_the_achievement_has_a_contract() {
        let (org, mut history) = university("500106");
        let (id, listed) = achievement_listed(org);
        history.push(listed);
        let change = |shares: &[&str]| {
            Command::ReviseAchievement(ReviseAchievement {
                achievement_id: id,
                revision: AchievementRevision { completers: Some(completers(shares)), ..Default::default() },
            })
        };
        assert_eq!(given(&history).when(owner_of(org), change(&["50", "50"])).events().len(), 1);

        history
            .push(Event::CompletersLocked(CompletersLocked { achievement_id: id, contract_id: ContractId::new_v7() }));
        given(&history).when(owner_of(org), change(&["50", "50"])).then_rule(rules::COMPLETERS_LOCKED);
        // Other details may still change.
        let retitle = Command::ReviseAchievement(ReviseAchievement {
            achievement_id: id,
            revision: AchievementRevision { title: Some("新标题".into()), ..Default::default() },
        });
        assert_eq!(given(&history).when(owner_of(org), retitle).events().len(), 1);
    }

    #[test]
    fn a_withdrawn_achievement_is_neither_revised_nor_withdrawn_again() {
        let (org, mut history) = university("500106");
        let (id, listed) = achievement_listed(org);
        history.push(listed);
        history
            .push(Event::AchievementWithdrawn(AchievementWithdrawn { achievement_id: id, reason: "已转化".into() }));
        let withdraw = Command::WithdrawAchievement(WithdrawAchievement { achievement_id: id, reason: "again".into() });
        given(&history).when(owner_of(org), withdraw).then_rule(rules::ALREADY_WITHDRAWN);
        let revise = Command::ReviseAchievement(ReviseAchievement {
            achievement_id: id,
            revision: AchievementRevision::default(),
        });
        given(&history).when(owner_of(org), revise).then_rule(rules::ACHIEVEMENT_WITHDRAWN);
    }

    #[test]
    fn maturity_is_a_readiness_level_from_1_to_9() {
        let (org, history) = university("500106");
        let mut d = details(&["100"]);
        d.maturity = 10;
        let cmd = ListAchievement { achievement_id: AchievementId::new_v7(), owner_id: org, details: d };
        let err = given(&history).when(owner_of(org), Command::ListAchievement(cmd)).then_code("VALIDATION_FAILED");
        assert_eq!(err.field(), Some("maturity"));
    }
}
