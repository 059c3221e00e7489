//! Statements on demand: the ledger state to compute at (the head, a position, or the last
//! position recorded by a time), and the lines to build from — the projection tables at the
//! head, or a replay of the log prefix through the same fold for any earlier position.

use chrono::{DateTime, Utc};

use crate::chain::GENESIS;
use crate::event::Position;
use crate::ids::AchievementId;
use crate::policy::PolicyBook;
use crate::projection::{Output, SubsidyLine};
use crate::service::Ledger;
use crate::statement::*;
use crate::store::StoreError;
use crate::store::statements::SubsidyScope;

/// Which state of the ledger a statement shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOfRequest {
    Head,
    Position(Position),
    /// The last position recorded at or before this instant.
    Time(DateTime<Utc>),
}

/// How the lines are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineSource {
    /// The projection tables (lines up to the position).
    Tables,
    /// A replay of the log up to the position through the fold.
    Replay,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("asOf position {requested} is beyond the ledger head ({head})")]
    BeyondHead { requested: Position, head: Position },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A completer's lines across achievements: each line with that completer's part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompleterSubsidies {
    pub name: String,
    pub as_of: AsOf,
    pub lines: Vec<SubsidyLine>,
    pub total: crate::money::Money,
}

impl Ledger {
    /// Resolves the requested state to a position and its chain value.
    pub async fn resolve_as_of(&self, request: AsOfRequest) -> Result<AsOf, ReportError> {
        let head = self.store().head().await?.map_or(0, |(p, _)| p);
        let position = match request {
            AsOfRequest::Head => head,
            AsOfRequest::Position(p) if p > head => return Err(ReportError::BeyondHead { requested: p, head }),
            AsOfRequest::Position(p) => p,
            AsOfRequest::Time(t) => self.store().position_at(t).await?,
        };
        let hash = if position == 0 { GENESIS } else { self.store().hash_at(position).await?.unwrap_or(GENESIS) };
        Ok(AsOf { position, hash: hex::encode(hash) })
    }

    /// At the head, the tables; before it, a replay (the tables hold later lines too, but a
    /// replay is what proves the figures from the log itself).
    pub async fn default_source(&self, as_of: &AsOf) -> Result<LineSource, ReportError> {
        let head = self.store().head().await?.map_or(0, |(p, _)| p);
        Ok(if as_of.position >= head { LineSource::Tables } else { LineSource::Replay })
    }

    /// A statement's lines as of `as_of`, with the policy book of that state: read from the
    /// tables, or replayed from the log keeping only the outputs `pick` takes (the statement's
    /// own lines: memory in the size of the statement, not of the log).
    async fn lines<T>(
        &self,
        as_of: &AsOf,
        source: LineSource,
        pick: impl FnMut(Output) -> Option<T>,
        from_tables: impl Future<Output = Result<Vec<T>, StoreError>>,
    ) -> Result<(PolicyBook, Vec<T>), ReportError> {
        Ok(match source {
            LineSource::Tables => (self.store().policy_book(as_of.position).await?, from_tables.await?),
            LineSource::Replay => {
                let (state, lines) = self.store().replay_policy(as_of.position, pick).await?;
                (state.policies().clone(), lines)
            }
        })
    }

    async fn subsidy_lines(
        &self,
        as_of: &AsOf,
        source: LineSource,
        scope: SubsidyScope,
    ) -> Result<(PolicyBook, Vec<SubsidyLine>), ReportError> {
        let pick = |o| match o {
            Output::SubsidyLine(l) if scope.holds(&l) => Some(l),
            _ => None,
        };
        self.lines(as_of, source, pick, self.store().subsidy_lines(&scope, as_of.position)).await
    }

    pub async fn completer_statement(
        &self,
        year: i32,
        as_of: AsOf,
        source: LineSource,
    ) -> Result<CompleterStatement, ReportError> {
        let (book, subsidy) = self.subsidy_lines(&as_of, source, SubsidyScope::Year(year)).await?;
        Ok(completer_statement(year, as_of, &book, subsidy))
    }

    pub async fn achievement_subsidy(
        &self,
        achievement: AchievementId,
        as_of: AsOf,
        source: LineSource,
    ) -> Result<AchievementSubsidy, ReportError> {
        let (book, subsidy) = self.subsidy_lines(&as_of, source, SubsidyScope::Achievement(achievement)).await?;
        Ok(achievement_subsidy(achievement, as_of, &book, subsidy))
    }

    /// Every line in which a completer of `name` has a part, and the sum of their parts.
    pub async fn completer_subsidies(
        &self,
        name: &str,
        as_of: AsOf,
        source: LineSource,
    ) -> Result<CompleterSubsidies, ReportError> {
        let (_, subsidy) = self.subsidy_lines(&as_of, source, SubsidyScope::Completer(name.to_owned())).await?;
        let total = subsidy.iter().flat_map(|l| l.completers.iter()).filter(|c| c.name == name).map(|c| c.amount).sum();
        Ok(CompleterSubsidies { name: name.to_owned(), as_of, lines: subsidy, total })
    }

    pub async fn incentive_statement(
        &self,
        year: i32,
        as_of: AsOf,
        source: LineSource,
    ) -> Result<IncentiveStatement, ReportError> {
        // Dated in the year, or counted towards its cap (as the tables' query selects).
        let pick = |o| match o {
            Output::IncentiveLine(l) if l.year() == year || l.incentive_year == year => Some(l),
            _ => None,
        };
        let from_tables = self.store().incentive_lines(year, as_of.position);
        let (book, incentive) = self.lines(&as_of, source, pick, from_tables).await?;
        Ok(incentive_statement(year, as_of, &book, incentive))
    }

    pub async fn turnover_statement(
        &self,
        year: i32,
        as_of: AsOf,
        source: LineSource,
    ) -> Result<TurnoverStatement, ReportError> {
        let pick = |o| match o {
            Output::TurnoverLine(l) if l.year() == year => Some(l),
            _ => None,
        };
        let from_tables = self.store().turnover_lines(year, as_of.position);
        let (_, turnover) = self.lines(&as_of, source, pick, from_tables).await?;
        Ok(turnover_statement(year, as_of, &turnover))
    }

    /// The policy versions in force at a state of the ledger.
    pub async fn policies(&self, as_of: &AsOf) -> Result<PolicyBook, ReportError> {
        Ok(self.store().policy_book(as_of.position).await?)
    }
}
