//! `GET /v1/admin/analytics`: containment, handoffs, first response, CSAT,
//! top intents and the unanswered questions, from the Store's conversations
//! and events (the turn records one `bot.turn` event per reply).
//!
//! Definitions (docs/dialog.md):
//! - containment rate: of the conversations created in the range that are
//!   closed, the share never handed to a human;
//! - handoff rate: of the conversations the bot answered at least once, the
//!   share queued for a human at least once;
//! - first response: from the customer's first message to the bot's first reply;
//! - unanswered: don't-know turns and bot replies rated thumbs-down, clustered
//!   by meaning (embedding similarity) so one gap shows once with its count.

use std::collections::{BTreeMap, HashMap, HashSet};

use aicc_core::{EmbedKind, Embedder, Event, Store, StoreError};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::turn::TURN_EVENT;

const MAX_CONVERSATIONS: i64 = 200_000;
const MAX_EVENTS: i64 = 1_000_000;
const MAX_BUCKETS: i64 = 1_000;
/// Unanswered questions this similar (E5 cosine) are one gap.
pub const CLUSTER_COSINE: f32 = 0.9;
const MAX_CLUSTERED: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    Week,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            "week" => Some(Bucket::Week),
            _ => None,
        }
    }
    fn step(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
            Bucket::Week => Duration::weeks(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{0}")]
    BadRange(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub conversations: u64,
    /// `null` when no conversation of the range is closed yet.
    pub containment_rate: Option<f64>,
    pub handoff_rate: Option<f64>,
    pub avg_first_response_ms: Option<f64>,
    pub csat_avg: Option<f64>,
    pub csat_count: u64,
    pub bot_turns: u64,
    /// Bot conversations closed for idling past the tenant's timeout.
    pub idle_closed: u64,
    /// Turns per path: direct, rag, clarify, small_talk, handoff, dont_know.
    pub paths: BTreeMap<String, u64>,
    pub handoff_reasons: Vec<Count>,
    pub top_intents: Vec<Count>,
    pub unanswered: Vec<Gap>,
    pub series: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// One knowledge gap: similar questions the bot could not answer well.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Gap {
    /// The most frequent wording.
    pub text: String,
    pub count: u64,
    pub dont_know: u64,
    pub thumbs_down: u64,
    pub language: String,
    /// Up to five distinct wordings.
    pub examples: Vec<String>,
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub conversations: u64,
    pub containment_rate: Option<f64>,
    pub handoff_rate: Option<f64>,
    pub csat_avg: Option<f64>,
}

struct Unanswered {
    text: String,
    language: String,
    at: DateTime<Utc>,
    down: bool,
}

fn rate(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| (num as f64 / den as f64 * 1e4).round() / 1e4)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| (sum / n as f64 * 100.0).round() / 100.0)
}

pub async fn compute(
    store: &dyn Store,
    embedder: Option<&dyn Embedder>,
    tenant_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
) -> Result<Analytics, AnalyticsError> {
    if from >= to {
        return Err(AnalyticsError::BadRange("`from` must be before `to`".into()));
    }
    if (to - from).num_seconds() / bucket.step().num_seconds() > MAX_BUCKETS {
        return Err(AnalyticsError::BadRange(format!("at most {MAX_BUCKETS} buckets: widen the bucket or narrow the range")));
    }
    let convs = store.conversations_created(tenant_id, from, to, MAX_CONVERSATIONS).await?;
    // A conversation of the range may be handed over or rated after `to`.
    let later = Utc::now().max(to) + Duration::seconds(1);
    let kinds = [TURN_EVENT, "conversation.queued", "message.feedback", "conversation.idle_closed"];
    let events = store.events_between(tenant_id, &kinds, from, later, MAX_EVENTS).await?;
    let ids: HashSet<Uuid> = convs.iter().map(|c| c.id).collect();
    let of_range = |e: &&Event| e.conversation_id.is_some_and(|c| ids.contains(&c));
    let queued: HashSet<Uuid> = events.iter().filter(of_range).filter(|e| e.kind == "conversation.queued").filter_map(|e| e.conversation_id).collect();
    let answered: HashSet<Uuid> = events.iter().filter(of_range).filter(|e| e.kind == TURN_EVENT).filter_map(|e| e.conversation_id).collect();
    let in_window = |e: &&Event| e.created_at >= from && e.created_at < to;
    let turns: Vec<&Event> = events.iter().filter(|e| e.kind == TURN_EVENT).filter(in_window).collect();

    let closed: Vec<_> = convs.iter().filter(|c| c.status == aicc_core::ConversationStatus::Closed).collect();
    let contained = closed.iter().filter(|c| !queued.contains(&c.id)).count();
    let first_response = events.iter().filter(of_range).filter(|e| e.kind == TURN_EVENT).filter_map(|e| e.data["first_response_ms"].as_f64());
    let csat: Vec<f64> = convs.iter().filter_map(|c| c.csat).map(f64::from).collect();

    let mut paths: BTreeMap<String, u64> = BTreeMap::new();
    let mut intents: HashMap<String, u64> = HashMap::new();
    for t in &turns {
        *paths.entry(t.data["path"].as_str().unwrap_or("unknown").to_string()).or_default() += 1;
        if let Some(i) = t.data["intent"].as_str() {
            *intents.entry(i.to_string()).or_default() += 1;
        }
    }
    let mut reasons: HashMap<String, u64> = HashMap::new();
    for e in events.iter().filter(in_window).filter(|e| e.kind == "conversation.queued") {
        let r = e.data["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("customer_request");
        *reasons.entry(r.to_string()).or_default() += 1;
    }

    // Unanswered: don't-know turns, and the questions behind thumbs-down replies.
    let by_reply: HashMap<&str, &Event> = events.iter().filter(|e| e.kind == TURN_EVENT).filter_map(|e| e.data["message_id"].as_str().map(|m| (m, e))).collect();
    let mut unanswered: Vec<Unanswered> = turns
        .iter()
        .filter(|t| t.data["path"] == "dont_know")
        .map(|t| Unanswered { text: str_of(&t.data, "text"), language: str_of(&t.data, "lang"), at: t.created_at, down: false })
        .collect();
    for f in events.iter().filter(in_window).filter(|e| e.kind == "message.feedback" && e.data["rating"] == "down") {
        if let Some(turn) = f.data["message_id"].as_str().and_then(|m| by_reply.get(m)) {
            unanswered.push(Unanswered { text: str_of(&turn.data, "text"), language: str_of(&turn.data, "lang"), at: f.created_at, down: true });
        }
    }
    unanswered.retain(|u| !u.text.is_empty());
    let unanswered = cluster(unanswered, embedder).await;

    let mut series = Vec::new();
    let mut start = from.duration_trunc(bucket.step()).unwrap_or(from);
    while start < to {
        let end = start + bucket.step();
        let cs: Vec<_> = convs.iter().filter(|c| c.created_at >= start && c.created_at < end).collect();
        let closed: Vec<_> = cs.iter().filter(|c| c.status == aicc_core::ConversationStatus::Closed).collect();
        let engaged = cs.iter().filter(|c| answered.contains(&c.id)).count();
        series.push(Point {
            start,
            conversations: cs.len() as u64,
            containment_rate: rate(closed.iter().filter(|c| !queued.contains(&c.id)).count(), closed.len()),
            handoff_rate: rate(cs.iter().filter(|c| answered.contains(&c.id) && queued.contains(&c.id)).count(), engaged),
            csat_avg: mean(cs.iter().filter_map(|c| c.csat).map(f64::from)),
        });
        start = end;
    }

    Ok(Analytics {
        from,
        to,
        conversations: convs.len() as u64,
        containment_rate: rate(contained, closed.len()),
        handoff_rate: rate(answered.iter().filter(|c| queued.contains(c)).count(), answered.len()),
        avg_first_response_ms: mean(first_response),
        csat_count: csat.len() as u64,
        csat_avg: mean(csat.into_iter()),
        bot_turns: turns.len() as u64,
        idle_closed: events.iter().filter(in_window).filter(|e| e.kind == "conversation.idle_closed").count() as u64,
        paths,
        handoff_reasons: top(reasons, 20),
        top_intents: top(intents, 10),
        unanswered,
        series,
    })
}

fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_string()
}

fn top(counts: HashMap<String, u64>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = counts.into_iter().map(|(name, count)| Count { name, count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

fn key(text: &str) -> String {
    text.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Greedy clustering: each question joins the first cluster whose first
/// member is similar enough (embedding cosine; without an embedder, the same
/// letters and digits), else starts one. Biggest gaps first.
async fn cluster(items: Vec<Unanswered>, embedder: Option<&dyn Embedder>) -> Vec<Gap> {
    let items: Vec<Unanswered> = items.into_iter().rev().take(MAX_CLUSTERED).collect(); // newest first
    let vectors = match embedder {
        Some(e) if !items.is_empty() => e.embed(items.iter().map(|u| u.text.clone()).collect(), EmbedKind::Query).await.ok(),
        _ => None,
    };
    let mut clusters: Vec<(usize, Vec<usize>)> = Vec::new(); // (seed, members)
    for i in 0..items.len() {
        let same = |seed: usize| match &vectors {
            Some(v) => v[i].iter().zip(&v[seed]).map(|(a, b)| a * b).sum::<f32>() >= CLUSTER_COSINE,
            None => key(&items[i].text) == key(&items[seed].text),
        };
        match clusters.iter_mut().find(|(seed, _)| items[*seed].language == items[i].language && same(*seed)) {
            Some((_, members)) => members.push(i),
            None => clusters.push((i, vec![i])),
        }
    }
    let mut gaps: Vec<Gap> = clusters
        .into_iter()
        .map(|(_, members)| {
            let mut wordings: Vec<(String, usize)> = Vec::new();
            for &m in &members {
                match wordings.iter_mut().find(|(w, _)| key(w) == key(&items[m].text)) {
                    Some((_, n)) => *n += 1,
                    None => wordings.push((items[m].text.clone(), 1)),
                }
            }
            let text = wordings.iter().max_by_key(|(_, n)| *n).map(|(w, _)| w.clone()).unwrap_or_default();
            let down = members.iter().filter(|&&m| items[m].down).count() as u64;
            Gap {
                text,
                count: members.len() as u64,
                dont_know: members.len() as u64 - down,
                thumbs_down: down,
                language: items[members[0]].language.clone(),
                examples: wordings.into_iter().take(5).map(|(w, _)| w).collect(),
                last_at: members.iter().map(|&m| items[m].at).max().unwrap_or_else(Utc::now),
            }
        })
        .collect();
    gaps.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_at.cmp(&a.last_at)));
    gaps.truncate(20);
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(text: &str, down: bool) -> Unanswered {
        Unanswered { text: text.into(), language: "en".into(), at: Utc::now(), down }
    }

    #[tokio::test]
    async fn gaps_group_the_same_question() {
        let gaps = cluster(vec![u("Do you offer mortgages?", false), u("do you offer mortgages", true), u("What's the weather?", false)], None).await;
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps[0].count, 2);
        assert_eq!((gaps[0].dont_know, gaps[0].thumbs_down), (1, 1));
        assert_eq!(gaps[0].examples.len(), 1, "one wording, twice");
    }

    #[test]
    fn rates_round_and_handle_zero() {
        assert_eq!(rate(1, 3), Some(0.3333));
        assert_eq!(rate(0, 0), None);
        assert_eq!(mean([4.0, 5.0].into_iter()), Some(4.5));
        assert_eq!(Bucket::parse("day"), Some(Bucket::Day));
        assert_eq!(Bucket::parse("month"), None);
    }
}
