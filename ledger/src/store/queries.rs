//! Browse queries over the read-model tables: filters, and keyset pagination by id (UUIDv7,
//! so id order is creation order and a page never shifts when rows are added). Page sizes are
//! capped here, whatever the caller asks.

use chrono::NaiveDate;

use super::{Store, StoreError, with_pool};

/// Largest page any query returns.
pub const PAGE_ROWS_MAX: i64 = 500;
/// Page size when the caller does not say.
pub const PAGE_ROWS_DEFAULT: i64 = 50;

/// Which page: at most `first` rows with an id after `after`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub first: Option<i64>,
    pub after: Option<String>,
}

impl PageRequest {
    fn rows(&self) -> i64 {
        self.first.unwrap_or(PAGE_ROWS_DEFAULT).clamp(1, PAGE_ROWS_MAX)
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub has_next_page: bool,
}

/// A bound value of a dynamically filtered query.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Date(NaiveDate),
}

/// WHERE clauses and their arguments, numbered `$1, $2 ...` in order.
#[derive(Debug, Default)]
struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    fn push(&mut self, column_op: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses.push(format!("{column_op} ${}", self.args.len()));
    }
    fn text(&mut self, column_op: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.push(column_op, Arg::Text(v.to_owned()));
        }
    }
    /// `(expression)` with every `{}` replaced by the next placeholder, all bound to `value`.
    fn any_of(&mut self, expression: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.args.push(Arg::Text(v.to_owned()));
            let n = self.args.len();
            self.clauses.push(format!("({})", expression.replace("{}", &format!("${n}"))));
        }
    }
    fn date(&mut self, column_op: &str, value: Option<NaiveDate>) {
        if let Some(v) = value {
            self.push(column_op, Arg::Date(v));
        }
    }
    /// `SELECT ... FROM table WHERE ... ORDER BY id LIMIT n+1` with the page's cursor.
    fn page_sql(mut self, select: &str, page: &PageRequest) -> (String, Vec<Arg>, i64) {
        self.text("id >", page.after.as_deref());
        let rows = page.rows();
        let where_sql =
            if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) };
        (format!("{select}{where_sql} ORDER BY id LIMIT {}", rows + 1), self.args, rows)
    }
}

/// Runs a paged query built by [`Filter::page_sql`] on either engine.
macro_rules! fetch_page {
    ($store:expr, $ty:ty, $sql:expr, $args:expr, $rows:expr) => {{
        let sql: String = $sql;
        let args: Vec<Arg> = $args;
        let mut rows: Vec<$ty> = with_pool!(&$store.db, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for a in &args {
                q = match a {
                    Arg::Text(s) => q.bind(s.clone()),
                    Arg::Date(d) => q.bind(*d),
                };
            }
            q.fetch_all(p).await
        })?;
        let has_next_page = rows.len() as i64 > $rows;
        rows.truncate($rows as usize);
        Ok(Page { rows, has_next_page })
    }};
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrganisationView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub credit_code: String,
    pub division_code: String,
    pub registered_on: NaiveDate,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccreditationView {
    pub id: String,
    pub organisation_id: String,
    pub kind: String,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub document_number: String,
    pub revoked_from: Option<NaiveDate>,
    pub revocation_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BrokerView {
    pub id: String,
    pub name: String,
    pub agency_id: Option<String>,
    pub certificate_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AchievementView {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub field: String,
    pub description: String,
    pub patent_numbers: String,
    pub maturity: i32,
    pub asking_price_fen: Option<i64>,
    pub transfer_modes: String,
    pub status: String,
    pub completers_locked: bool,
    pub listed_on: NaiveDate,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CompleterView {
    pub ordinal: i32,
    pub name: String,
    pub share_basis_points: i32,
    pub id_number_masked: Option<String>,
    pub id_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DemandView {
    pub id: String,
    pub enterprise_id: String,
    pub title: String,
    pub field: String,
    pub description: String,
    pub budget_fen: Option<i64>,
    pub deadline: Option<NaiveDate>,
    pub status: String,
    pub posted_on: NaiveDate,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MatchView {
    pub id: String,
    pub broker_id: String,
    pub achievement_id: String,
    pub demand_id: String,
    pub note: String,
    pub owner_answer: Option<String>,
    pub enterprise_answer: Option<String>,
    pub status: String,
    pub proposed_on: NaiveDate,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContractView {
    pub id: String,
    pub contract_number: String,
    pub contract_type: String,
    pub title: String,
    pub seller_id: String,
    pub buyer_id: String,
    pub achievement_id: Option<String>,
    pub match_id: Option<String>,
    pub broker_id: Option<String>,
    pub operating_center_id: Option<String>,
    pub contract_amount_fen: i64,
    pub tech_transaction_amount_fen: i64,
    pub signed_on: NaiveDate,
    pub status: String,
    pub registration_number: Option<String>,
    pub registered_on: Option<NaiveDate>,
    pub certified_tech_transaction_amount_fen: Option<i64>,
    pub terminated_on: Option<NaiveDate>,
    pub settled_fen: i64,
    pub reversed_fen: i64,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentView {
    pub id: String,
    pub contract_id: String,
    pub amount_fen: i64,
    pub settled_at: chrono::DateTime<chrono::Utc>,
    pub settlement_date: NaiveDate,
    pub bank_reference: String,
    pub reversed_fen: i64,
    pub created_position: i64,
    pub updated_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReversalView {
    pub id: String,
    pub payment_id: String,
    pub contract_id: String,
    pub amount_fen: i64,
    pub reversed_at: chrono::DateTime<chrono::Utc>,
    pub reversal_date: NaiveDate,
    pub reason: String,
    pub created_position: i64,
}

#[derive(Debug, Clone, Default)]
pub struct OrganisationFilter {
    pub kind: Option<String>,
    pub division_code_prefix: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AchievementFilter {
    pub owner_id: Option<String>,
    pub field: Option<String>,
    pub status: Option<String>,
    pub listed_from: Option<NaiveDate>,
    pub listed_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default)]
pub struct DemandFilter {
    pub enterprise_id: Option<String>,
    pub field: Option<String>,
    pub status: Option<String>,
    pub posted_from: Option<NaiveDate>,
    pub posted_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default)]
pub struct MatchFilter {
    /// Only matches on this organisation's achievements or demands.
    pub party_id: Option<String>,
    pub broker_id: Option<String>,
    pub achievement_id: Option<String>,
    pub demand_id: Option<String>,
    pub status: Option<String>,
    pub proposed_from: Option<NaiveDate>,
    pub proposed_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default)]
pub struct ContractFilter {
    /// Only contracts this organisation is the seller, buyer or operating center of.
    pub party_id: Option<String>,
    pub broker_id: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_id: Option<String>,
    pub achievement_id: Option<String>,
    pub operating_center_id: Option<String>,
    pub contract_type: Option<String>,
    pub status: Option<String>,
    pub signed_from: Option<NaiveDate>,
    pub signed_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    /// Only payments on contracts this organisation is a party to.
    pub party_id: Option<String>,
    /// Only payments on contracts of this broker.
    pub broker_id: Option<String>,
    pub contract_id: Option<String>,
    pub settled_from: Option<NaiveDate>,
    pub settled_to: Option<NaiveDate>,
}

impl Store {
    pub async fn organisations(
        &self,
        f: &OrganisationFilter,
        page: &PageRequest,
    ) -> Result<Page<OrganisationView>, StoreError> {
        let mut w = Filter::default();
        w.text("kind =", f.kind.as_deref());
        // Prefix match without LIKE, so `%` in the input is never a wildcard.
        if let Some(prefix) = &f.division_code_prefix {
            w.push(
                &format!("substr(division_code, 1, {}) =", prefix.chars().count().min(6)),
                Arg::Text(prefix.clone()),
            );
        }
        let (sql, args, rows) = w.page_sql("SELECT * FROM organisations", page);
        fetch_page!(self, OrganisationView, sql, args, rows)
    }

    pub async fn organisation(&self, id: &str) -> Result<Option<OrganisationView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM organisations WHERE id = $1").bind(id).fetch_optional(p).await
        })?)
    }

    pub async fn accreditations_of(&self, organisation_id: &str) -> Result<Vec<AccreditationView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, organisation_id, kind, effective_from, effective_until, document_number, revoked_from, revocation_reason \
                 FROM accreditations WHERE organisation_id = $1 ORDER BY effective_from, id",
            )
            .bind(organisation_id)
            .fetch_all(p)
            .await
        })?)
    }

    pub async fn brokers(&self, page: &PageRequest) -> Result<Page<BrokerView>, StoreError> {
        let (sql, args, rows) =
            Filter::default().page_sql("SELECT id, name, agency_id, certificate_number FROM brokers", page);
        fetch_page!(self, BrokerView, sql, args, rows)
    }

    pub async fn broker(&self, id: &str) -> Result<Option<BrokerView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT id, name, agency_id, certificate_number FROM brokers WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
        })?)
    }

    pub async fn achievements(
        &self,
        f: &AchievementFilter,
        page: &PageRequest,
    ) -> Result<Page<AchievementView>, StoreError> {
        let mut w = Filter::default();
        w.text("owner_id =", f.owner_id.as_deref());
        w.text("field =", f.field.as_deref());
        w.text("status =", f.status.as_deref());
        w.date("listed_on >=", f.listed_from);
        w.date("listed_on <=", f.listed_to);
        let (sql, args, rows) = w.page_sql("SELECT * FROM achievements", page);
        fetch_page!(self, AchievementView, sql, args, rows)
    }

    pub async fn achievement(&self, id: &str) -> Result<Option<AchievementView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM achievements WHERE id = $1").bind(id).fetch_optional(p).await
        })?)
    }

    pub async fn completers_of(&self, achievement_id: &str) -> Result<Vec<CompleterView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as(
                "SELECT ordinal, name, share_basis_points, id_number_masked, id_reference FROM achievement_completers \
                 WHERE achievement_id = $1 ORDER BY ordinal",
            )
            .bind(achievement_id)
            .fetch_all(p)
            .await
        })?)
    }

    pub async fn demands(&self, f: &DemandFilter, page: &PageRequest) -> Result<Page<DemandView>, StoreError> {
        let mut w = Filter::default();
        w.text("enterprise_id =", f.enterprise_id.as_deref());
        w.text("field =", f.field.as_deref());
        w.text("status =", f.status.as_deref());
        w.date("posted_on >=", f.posted_from);
        w.date("posted_on <=", f.posted_to);
        let (sql, args, rows) = w.page_sql("SELECT * FROM demands", page);
        fetch_page!(self, DemandView, sql, args, rows)
    }

    pub async fn demand(&self, id: &str) -> Result<Option<DemandView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM demands WHERE id = $1").bind(id).fetch_optional(p).await
        })?)
    }

    pub async fn matches(&self, f: &MatchFilter, page: &PageRequest) -> Result<Page<MatchView>, StoreError> {
        let mut w = Filter::default();
        w.any_of(
            "achievement_id IN (SELECT id FROM achievements WHERE owner_id = {}) OR demand_id IN (SELECT id FROM demands WHERE enterprise_id = {})",
            f.party_id.as_deref(),
        );
        w.text("broker_id =", f.broker_id.as_deref());
        w.text("achievement_id =", f.achievement_id.as_deref());
        w.text("demand_id =", f.demand_id.as_deref());
        w.text("status =", f.status.as_deref());
        w.date("proposed_on >=", f.proposed_from);
        w.date("proposed_on <=", f.proposed_to);
        let (sql, args, rows) = w.page_sql("SELECT * FROM matches", page);
        fetch_page!(self, MatchView, sql, args, rows)
    }

    pub async fn match_view(&self, id: &str) -> Result<Option<MatchView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM matches WHERE id = $1").bind(id).fetch_optional(p).await
        })?)
    }

    pub async fn contracts(&self, f: &ContractFilter, page: &PageRequest) -> Result<Page<ContractView>, StoreError> {
        let mut w = Filter::default();
        w.any_of("seller_id = {} OR buyer_id = {} OR operating_center_id = {}", f.party_id.as_deref());
        w.text("broker_id =", f.broker_id.as_deref());
        w.text("seller_id =", f.seller_id.as_deref());
        w.text("buyer_id =", f.buyer_id.as_deref());
        w.text("achievement_id =", f.achievement_id.as_deref());
        w.text("operating_center_id =", f.operating_center_id.as_deref());
        w.text("contract_type =", f.contract_type.as_deref());
        w.text("status =", f.status.as_deref());
        w.date("signed_on >=", f.signed_from);
        w.date("signed_on <=", f.signed_to);
        let (sql, args, rows) = w.page_sql("SELECT * FROM contracts", page);
        fetch_page!(self, ContractView, sql, args, rows)
    }

    pub async fn contract(&self, id: &str) -> Result<Option<ContractView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM contracts WHERE id = $1").bind(id).fetch_optional(p).await
        })?)
    }

    pub async fn payments(&self, f: &PaymentFilter, page: &PageRequest) -> Result<Page<PaymentView>, StoreError> {
        let mut w = Filter::default();
        w.any_of(
            "contract_id IN (SELECT id FROM contracts WHERE seller_id = {} OR buyer_id = {} OR operating_center_id = {})",
            f.party_id.as_deref(),
        );
        w.any_of("contract_id IN (SELECT id FROM contracts WHERE broker_id = {})", f.broker_id.as_deref());
        w.text("contract_id =", f.contract_id.as_deref());
        w.date("settlement_date >=", f.settled_from);
        w.date("settlement_date <=", f.settled_to);
        let (sql, args, rows) = w.page_sql("SELECT * FROM payments", page);
        fetch_page!(self, PaymentView, sql, args, rows)
    }

    pub async fn reversals_of_payment(&self, payment_id: &str) -> Result<Vec<ReversalView>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT * FROM payment_reversals WHERE payment_id = $1 ORDER BY created_position")
                .bind(payment_id)
                .fetch_all(p)
                .await
        })?)
    }

    /// How far the marketplace read models have applied the log.
    pub async fn projection_position(&self, projection: &str) -> Result<i64, StoreError> {
        let p: Option<i64> = with_pool!(&self.db, |p| {
            sqlx::query_scalar("SELECT position FROM projection_positions WHERE projection = $1")
                .bind(projection)
                .fetch_optional(p)
                .await
        })?;
        Ok(p.unwrap_or(0))
    }
}
