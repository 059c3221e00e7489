//! Matches: a broker proposes an achievement for a demand; the achievement's owner and the
//! demand's enterprise each accept or decline their own side. Accepted by both, the match can
//! lead to a contract; declined by either, it is over.

use crate::actor::{Actor, Role};
use crate::command::{AcceptMatch, DeclineMatch, ProposeMatch};
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, rules};
use crate::event::*;
use crate::ids::*;
use crate::validation::{DESCRIPTION_CHARS_MAX, REASON_CHARS_MAX, bounded_text, required_text};
use crate::vocabulary::MatchSide;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Declined,
}

impl Answer {
    /// As the read models store it (`matches.owner_answer`, `matches.enterprise_answer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Declined => "declined",
        }
    }

    pub fn parse(text: &str) -> Option<Answer> {
        [Answer::Accepted, Answer::Declined].into_iter().find(|a| a.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchStatus {
    Proposed,
    Accepted,
    Declined,
}

impl MatchStatus {
    /// Declined once either side declines, accepted once both accept, else proposed.
    pub fn of(owner_answer: Option<Answer>, enterprise_answer: Option<Answer>) -> MatchStatus {
        match (owner_answer, enterprise_answer) {
            (Some(Answer::Declined), _) | (_, Some(Answer::Declined)) => MatchStatus::Declined,
            (Some(Answer::Accepted), Some(Answer::Accepted)) => MatchStatus::Accepted,
            _ => MatchStatus::Proposed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MatchStatus::Proposed => "proposed",
            MatchStatus::Accepted => "accepted",
            MatchStatus::Declined => "declined",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub id: MatchId,
    pub broker_id: BrokerId,
    pub achievement_id: AchievementId,
    pub demand_id: DemandId,
    pub owner_answer: Option<Answer>,
    pub enterprise_answer: Option<Answer>,
}

impl Match {
    pub fn status(&self) -> MatchStatus {
        MatchStatus::of(self.owner_answer, self.enterprise_answer)
    }

    fn answer(&self, side: MatchSide) -> Option<Answer> {
        match side {
            MatchSide::Owner => self.owner_answer,
            MatchSide::Enterprise => self.enterprise_answer,
        }
    }
}

pub(crate) fn evolve(state: &mut Option<Match>, event: &Event) {
    let set = |m: &mut Match, side: MatchSide, answer: Answer| {
        let slot = match side {
            MatchSide::Owner => &mut m.owner_answer,
            MatchSide::Enterprise => &mut m.enterprise_answer,
        };
        assert!(slot.is_none(), "side {side:?} of match {} answered twice", m.id);
        *slot = Some(answer);
    };
    match event {
        Event::MatchProposed(e) => {
            assert!(state.is_none(), "match {} proposed twice", e.match_id);
            *state = Some(Match {
                id: e.match_id,
                broker_id: e.broker_id,
                achievement_id: e.achievement_id,
                demand_id: e.demand_id,
                owner_answer: None,
                enterprise_answer: None,
            });
        }
        Event::MatchAccepted(e) => set(state.as_mut().expect("accepted before proposed"), e.side, Answer::Accepted),
        Event::MatchDeclined(e) => set(state.as_mut().expect("declined before proposed"), e.side, Answer::Declined),
        other => unreachable!("{} is not a match event", other.event_type()),
    }
}

/// Answering reads the match, then its achievement and demand (to know who owns each side).
pub(crate) fn streams_for_answer(match_id: MatchId, facts: &Facts) -> Vec<StreamId> {
    let mut v = vec![match_id.stream()];
    if let Ok(Some(m)) = facts.match_(match_id) {
        v.push(m.achievement_id.stream());
        v.push(m.demand_id.stream());
    }
    v
}

pub(crate) fn propose(c: &ProposeMatch, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(
        actor.role == Role::Broker && actor.broker_id == Some(c.broker_id),
        actor,
        "propose matches as this broker",
    )?;
    if facts.match_(c.match_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "match", id: c.match_id.to_string() });
    }
    facts.broker(c.broker_id)?.ok_or_else(|| DomainError::not_found("broker", c.broker_id))?;
    let achievement =
        facts.achievement(c.achievement_id)?.ok_or_else(|| DomainError::not_found("achievement", c.achievement_id))?;
    let demand = facts.demand(c.demand_id)?.ok_or_else(|| DomainError::not_found("demand", c.demand_id))?;
    open_for_deals(achievement, demand)?;
    Ok(vec![Event::MatchProposed(MatchProposed {
        match_id: c.match_id,
        broker_id: c.broker_id,
        achievement_id: c.achievement_id,
        demand_id: c.demand_id,
        note: bounded_text("note", &c.note, DESCRIPTION_CHARS_MAX)?,
    })])
}

pub(crate) fn accept(c: &AcceptMatch, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let (m, achievement, demand) = answerable(c.match_id, c.side, actor, facts)?;
    open_for_deals(achievement, demand)?;
    Ok(vec![Event::MatchAccepted(MatchAccepted { match_id: m.id, side: c.side })])
}

pub(crate) fn decline(c: &DeclineMatch, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let (m, _, _) = answerable(c.match_id, c.side, actor, facts)?;
    Ok(vec![Event::MatchDeclined(MatchDeclined {
        match_id: m.id,
        side: c.side,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

/// The match, achievement and demand, once checked that `actor` answers for `side` and that
/// the side has not answered yet.
fn answerable<'f>(
    match_id: MatchId,
    side: MatchSide,
    actor: &Actor,
    facts: &'f Facts,
) -> Result<(&'f Match, &'f crate::domain::Achievement, &'f crate::domain::Demand), DomainError> {
    let m = facts.match_(match_id)?.ok_or_else(|| DomainError::not_found("match", match_id))?;
    let achievement = facts.achievement(m.achievement_id)?.expect("a proposed match's achievement exists");
    let demand = facts.demand(m.demand_id)?.expect("a proposed match's demand exists");
    let allowed = match side {
        MatchSide::Owner => {
            matches!(actor.role, Role::ResearchInstitution | Role::Enterprise) && actor.acts_for(achievement.owner_id)
        }
        MatchSide::Enterprise => actor.role == Role::Enterprise && actor.acts_for(demand.enterprise_id),
    };
    authorize(allowed, actor, &format!("answer the {} side of this match", side.as_str()))?;
    if m.status() != MatchStatus::Proposed {
        return Err(DomainError::violation(
            rules::MATCH_NOT_OPEN,
            format!("match {} is already {}", m.id, m.status().as_str()),
        ));
    }
    if m.answer(side).is_some() {
        return Err(DomainError::violation(
            rules::MATCH_SIDE_ALREADY_ANSWERED,
            format!("the {} side of match {} has already answered", side.as_str(), m.id),
        ));
    }
    Ok((m, achievement, demand))
}

/// Withdrawn achievements and closed demands take no new matches or contracts.
pub(crate) fn open_for_deals(
    achievement: &crate::domain::Achievement,
    demand: &crate::domain::Demand,
) -> Result<(), DomainError> {
    if achievement.withdrawn {
        return Err(DomainError::violation(
            rules::ACHIEVEMENT_WITHDRAWN,
            format!("achievement {} is withdrawn and takes no new matches or contracts", achievement.id),
        ));
    }
    if demand.closed {
        return Err(DomainError::violation(
            rules::DEMAND_CLOSED,
            format!("demand {} is closed and takes no new matches or contracts", demand.id),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::{Command, RegisterBroker};
    use crate::domain::testing::*;
    use crate::vocabulary::TechField;

    #[test]
    fn an_answer_reads_back_as_stored() {
        assert_eq!(Answer::parse("accepted"), Some(Answer::Accepted));
        assert_eq!(Answer::parse("declined"), Some(Answer::Declined));
        assert_eq!(Answer::parse("proposed"), None);
    }

    pub struct Market {
        pub history: Vec<Event>,
        pub owner: OrganisationId,
        pub enterprise: OrganisationId,
        pub broker: BrokerId,
        pub achievement: AchievementId,
        pub demand: DemandId,
    }

    /// A university with a listed achievement, an enterprise with an open demand, a broker.
    pub fn market() -> Market {
        let (owner, mut history) = university("500106");
        let (enterprise, more) = crate::domain::testing::enterprise("500112");
        history.extend(more);
        let broker = BrokerId::new_v7();
        history.extend(
            given(&history)
                .when(
                    admin(),
                    Command::RegisterBroker(RegisterBroker {
                        broker_id: broker,
                        name: "李经纪".into(),
                        agency_id: None,
                        certificate_number: None,
                    }),
                )
                .events(),
        );
        let (achievement, listed) = achievement_listed(owner);
        history.push(listed);
        let demand = DemandId::new_v7();
        history.push(Event::DemandPosted(DemandPosted {
            demand_id: demand,
            enterprise_id: enterprise,
            title: "轻量化材料".into(),
            field: TechField::NewMaterials,
            description: String::new(),
            budget: None,
            deadline: None,
        }));
        Market { history, owner, enterprise, broker, achievement, demand }
    }

    fn propose_cmd(m: &Market) -> (MatchId, Command) {
        let id = MatchId::new_v7();
        (
            id,
            Command::ProposeMatch(ProposeMatch {
                match_id: id,
                broker_id: m.broker,
                achievement_id: m.achievement,
                demand_id: m.demand,
                note: String::new(),
            }),
        )
    }

    #[test]
    fn a_match_is_accepted_when_both_sides_accept() {
        let mut m = market();
        let (id, propose) = propose_cmd(&m);
        m.history.extend(given(&m.history).when(broker_user(m.broker), propose).events());
        let owner = user(Role::ResearchInstitution, Some(m.owner));
        let ent = user(Role::Enterprise, Some(m.enterprise));
        m.history.extend(
            given(&m.history)
                .when(owner.clone(), Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Owner }))
                .events(),
        );
        given(&m.history)
            .when(owner, Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Owner }))
            .then_rule(rules::MATCH_SIDE_ALREADY_ANSWERED);
        m.history.extend(
            given(&m.history)
                .when(ent.clone(), Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Enterprise }))
                .events(),
        );
        let mut state = None;
        for e in m.history.iter().filter(|e| e.stream_id() == id.stream()) {
            evolve(&mut state, e);
        }
        assert_eq!(state.unwrap().status(), MatchStatus::Accepted);
    }

    #[test]
    fn each_side_answers_only_for_itself() {
        let mut m = market();
        let (id, propose) = propose_cmd(&m);
        m.history.extend(given(&m.history).when(broker_user(m.broker), propose).events());
        let ent = user(Role::Enterprise, Some(m.enterprise));
        given(&m.history)
            .when(ent, Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Owner }))
            .then_code("FORBIDDEN");
        given(&m.history)
            .when(
                broker_user(m.broker),
                Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Enterprise }),
            )
            .then_code("FORBIDDEN");
    }

    #[test]
    fn a_declined_match_takes_no_further_answers() {
        let mut m = market();
        let (id, propose) = propose_cmd(&m);
        m.history.extend(given(&m.history).when(broker_user(m.broker), propose).events());
        let ent = user(Role::Enterprise, Some(m.enterprise));
        m.history.extend(
            given(&m.history)
                .when(
                    ent,
                    Command::DeclineMatch(DeclineMatch {
                        match_id: id,
                        side: MatchSide::Enterprise,
                        reason: "价格过高".into(),
                    }),
                )
                .events(),
        );
        given(&m.history)
            .when(
                user(Role::ResearchInstitution, Some(m.owner)),
                Command::AcceptMatch(AcceptMatch { match_id: id, side: MatchSide::Owner }),
            )
            .then_rule(rules::MATCH_NOT_OPEN);
    }

    #[test]
    fn withdrawn_achievements_and_closed_demands_take_no_new_matches() {
        let mut m = market();
        m.history.push(Event::DemandClosed(DemandClosed { demand_id: m.demand, reason: "done".into() }));
        let (_, propose) = propose_cmd(&m);
        given(&m.history).when(broker_user(m.broker), propose).then_rule(rules::DEMAND_CLOSED);

        let mut m = market();
        m.history.push(Event::AchievementWithdrawn(AchievementWithdrawn {
            achievement_id: m.achievement,
            reason: "x".into(),
        }));
        let (_, propose) = propose_cmd(&m);
        given(&m.history).when(broker_user(m.broker), propose).then_rule(rules::ACHIEVEMENT_WITHDRAWN);
    }

    #[test]
    fn only_the_named_broker_proposes() {
        let m = market();
        let (_, propose) = propose_cmd(&m);
        given(&m.history).when(broker_user(BrokerId::new_v7()), propose.clone()).then_code("FORBIDDEN");
        given(&m.history).when(admin(), propose).then_code("FORBIDDEN");
    }
}
