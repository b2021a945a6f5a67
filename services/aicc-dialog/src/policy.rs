//! The bot's decision for one customer message: a small, explicit table over
//! what the understanding and retrieval steps found, with the tenant's
//! thresholds (`TenantSettings::dialog`). No I/O: the turn gathers the facts,
//! this decides, the turn carries it out.

use aicc_core::settings::DialogThresholds;
use aicc_core::KbHit;
use serde::Serialize;

use crate::language::Lang;

/// Intents that mean "a person, please"; the demo's routing data trains them.
pub const ROUTING_INTENTS: [&str; 2] = ["human_agent", "complaint"];
/// Small talk answered with the tenant's own short texts.
pub const SMALL_TALK: [&str; 3] = ["greeting", "thanks", "goodbye"];
/// Frustration score (understand::frustration) that hands over.
pub const STRONG_FRUSTRATION: u32 = 2;
/// At most this many candidates are offered when asking back.
pub const MAX_CLARIFY: usize = 3;

/// What the turn knows when it decides.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The predicted intent and its confidence; `None` without a classifier
    /// or when it is out of scope.
    pub intent: Option<(&'a str, f32)>,
    pub out_of_scope: bool,
    pub lang: Lang,
    /// Knowledge hits, best first.
    pub hits: &'a [KbHit],
    /// Unanswered bot turns in a row (since the conversation last came back to the bot).
    pub failures: u32,
    pub frustration: u32,
    /// The message tries to steer the model: it must not reach the generator.
    pub injection: bool,
    /// Whether a generator is there to write a RAG answer.
    pub generator: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The customer asked for a person (`human_agent`).
    Requested,
    Complaint,
    Frustration,
    /// `max_failures` unanswered turns in a row.
    RepeatedFailure,
}

impl HandoffReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Complaint => "complaint",
            Self::Frustration => "frustration",
            Self::RepeatedFailure => "repeated_failure",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Handoff(HandoffReason),
    /// A tenant text: `greeting`, `thanks`, `goodbye`.
    SmallTalk(&'static str),
    /// The FAQ answer itself (hit index), no model.
    Direct(usize),
    /// Ask back: hit indexes of the close candidates, best first.
    Clarify(Vec<usize>),
    /// The generator answers from these hits (best first).
    Rag(Vec<usize>),
    DontKnow,
}

impl Decision {
    /// The path's name in messages' events and in analytics.
    pub fn path(&self) -> &'static str {
        match self {
            Decision::Handoff(_) => "handoff",
            Decision::SmallTalk(_) => "small_talk",
            Decision::Direct(_) => "direct",
            Decision::Clarify(_) => "clarify",
            Decision::Rag(_) => "rag",
            Decision::DontKnow => "dont_know",
        }
    }
}

/// Passages handed to the generator.
pub const RAG_PASSAGES: usize = 3;

pub fn decide(f: &Facts, t: &DialogThresholds) -> Decision {
    let confident = |name: &str| f.intent.is_some_and(|(i, c)| i == name && c >= t.intent_min);
    if confident("human_agent") {
        return Decision::Handoff(HandoffReason::Requested);
    }
    if confident("complaint") {
        return Decision::Handoff(HandoffReason::Complaint);
    }
    if f.frustration >= STRONG_FRUSTRATION {
        return Decision::Handoff(HandoffReason::Frustration);
    }
    let top = f.hits.first().map(|h| h.score).unwrap_or(0.0);
    for key in SMALL_TALK {
        // "Hi, my card has not arrived" is a question first.
        if confident(key) && top < t.direct {
            return Decision::SmallTalk(key);
        }
    }
    if top >= t.rag {
        let close = close_candidates(f.hits, t);
        if close.len() >= 2 {
            return Decision::Clarify(close);
        }
        // The FAQ text itself only in the customer's language; a passage in
        // another language goes through the generator, which answers in theirs.
        let same_language = f.hits.first().is_some_and(|h| Lang::from_tag(&h.language) == Some(f.lang));
        if top >= t.direct && same_language {
            return Decision::Direct(0);
        }
        // Out of scope or steering the model: no generated text. What the
        // knowledge base says well enough still gets through.
        if f.generator && !f.injection && !f.out_of_scope {
            let passages: Vec<usize> = (0..f.hits.len()).filter(|&i| f.hits[i].score >= t.rag).take(RAG_PASSAGES).collect();
            return Decision::Rag(passages);
        }
        if !f.generator && !f.injection && !f.out_of_scope && same_language {
            // Without a generator the best FAQ answer is the best we have.
            return Decision::Direct(0);
        }
    }
    if f.failures + 1 >= t.max_failures.max(1) {
        return Decision::Handoff(HandoffReason::RepeatedFailure);
    }
    Decision::DontKnow
}

/// Two independent signals agreeing: the tenant's fine-tuned intent model
/// names intent X with `confidence`, and retrieval found X's article with
/// score `s`. Each such hit's confidence becomes the noisy-OR
/// `1 − (1 − s)(1 − confidence)`; the hits are re-ranked. (`scores.hybrid`
/// keeps the retrieval score.) Measured on the demo: paraphrases retrieve
/// their article at 0.3–0.5 while the intent model is 0.65–0.95 sure.
pub fn agree(hits: &mut [KbHit], intent: &str, confidence: f32) {
    for h in hits.iter_mut() {
        if h.intent.as_deref() == Some(intent) {
            h.score = 1.0 - (1.0 - h.score) * (1.0 - confidence.clamp(0.0, 1.0));
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Hits within `clarify_margin` of the best, of different intents (an intent
/// answered in two languages is one candidate): more than one means the
/// customer should choose.
pub fn close_candidates(hits: &[KbHit], t: &DialogThresholds) -> Vec<usize> {
    let Some(best) = hits.first() else { return vec![] };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        if h.score < t.rag || best.score - h.score > t.clarify_margin {
            break;
        }
        let key = h.intent.as_deref().unwrap_or(&h.article_id);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(i);
        }
        if out.len() == MAX_CLARIFY {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicc_core::HitScores;

    fn hit(id: &str, intent: &str, score: f32) -> KbHit {
        KbHit {
            article_id: id.into(),
            question: format!("{id}?"),
            answer: format!("{id}."),
            intent: Some(intent.into()),
            language: "en".into(),
            score,
            scores: HitScores { bm25: None, dense: None, hybrid: score },
            retrievers: vec!["dense".into()],
        }
    }

    fn facts<'a>(hits: &'a [KbHit]) -> Facts<'a> {
        Facts { intent: None, out_of_scope: false, lang: Lang::En, hits, failures: 0, frustration: 0, injection: false, generator: true }
    }

    fn t() -> DialogThresholds {
        DialogThresholds::default() // direct 0.75, rag 0.40, intent_min 0.5, margin 0.05, max_failures 2
    }

    #[test]
    fn the_table() {
        let strong = [hit("a", "card_arrival", 0.93), hit("b", "card_arrival", 0.90), hit("c", "exchange_rate", 0.70)];
        let mid = [hit("a", "card_arrival", 0.62), hit("c", "exchange_rate", 0.30)];
        let close = [hit("a", "card_arrival", 0.70), hit("b", "card_delivery_estimate", 0.68), hit("c", "exchange_rate", 0.30)];
        let weak = [hit("a", "card_arrival", 0.20)];

        assert_eq!(decide(&facts(&strong), &t()), Decision::Direct(0), "same intent twice is not ambiguous");
        assert_eq!(decide(&facts(&mid), &t()), Decision::Rag(vec![0]));
        assert_eq!(decide(&facts(&close), &t()), Decision::Clarify(vec![0, 1]));
        assert_eq!(decide(&facts(&weak), &t()), Decision::DontKnow);
        assert_eq!(decide(&facts(&[]), &t()), Decision::DontKnow);

        let human = Facts { intent: Some(("human_agent", 0.9)), ..facts(&strong) };
        assert_eq!(decide(&human, &t()), Decision::Handoff(HandoffReason::Requested));
        let unsure_human = Facts { intent: Some(("human_agent", 0.3)), ..facts(&strong) };
        assert_eq!(decide(&unsure_human, &t()), Decision::Direct(0), "below intent_min the intent does not route");
        let complaint = Facts { intent: Some(("complaint", 0.8)), ..facts(&weak) };
        assert_eq!(decide(&complaint, &t()), Decision::Handoff(HandoffReason::Complaint));
        let angry = Facts { frustration: 2, ..facts(&strong) };
        assert_eq!(decide(&angry, &t()), Decision::Handoff(HandoffReason::Frustration));

        let hello = Facts { intent: Some(("greeting", 0.9)), ..facts(&weak) };
        assert_eq!(decide(&hello, &t()), Decision::SmallTalk("greeting"));
        let hello_and_question = Facts { intent: Some(("greeting", 0.9)), ..facts(&strong) };
        assert_eq!(decide(&hello_and_question, &t()), Decision::Direct(0));
    }

    #[test]
    fn guarded_and_degraded_paths() {
        let mid = [hit("a", "card_arrival", 0.62)];
        let injected = Facts { injection: true, ..facts(&mid) };
        assert_eq!(decide(&injected, &t()), Decision::DontKnow, "no generated text for a steering message");
        let oos = Facts { out_of_scope: true, ..facts(&mid) };
        assert_eq!(decide(&oos, &t()), Decision::DontKnow);
        let no_generator = Facts { generator: false, ..facts(&mid) };
        assert_eq!(decide(&no_generator, &t()), Decision::Direct(0));
        let strong = [hit("a", "card_arrival", 0.95)];
        assert_eq!(decide(&Facts { injection: true, ..facts(&strong) }, &t()), Decision::Direct(0), "the FAQ text is safe to show");
        let mut korean = hit("k", "card_arrival", 0.95);
        korean.language = "ko".into();
        let korean = [korean];
        assert_eq!(decide(&facts(&korean), &t()), Decision::Rag(vec![0]), "a Korean passage for an English question is translated");
        assert_eq!(decide(&Facts { generator: false, ..facts(&korean) }, &t()), Decision::DontKnow);
    }

    #[test]
    fn intent_and_retrieval_agreeing_raise_confidence() {
        let mut hits = [hit("a", "exchange_rate", 0.40), hit("b", "card_swallowed", 0.35)];
        agree(&mut hits, "card_swallowed", 0.7);
        assert_eq!(hits[0].article_id, "b", "re-ranked");
        assert!((hits[0].score - 0.805).abs() < 1e-4);
        assert_eq!(hits[0].scores.hybrid, 0.35, "the retrieval score is kept");
        assert_eq!(hits[1].score, 0.40);
    }

    #[test]
    fn repeated_failure_hands_over() {
        let weak = [hit("a", "card_arrival", 0.1)];
        assert_eq!(decide(&Facts { failures: 0, ..facts(&weak) }, &t()), Decision::DontKnow);
        assert_eq!(decide(&Facts { failures: 1, ..facts(&weak) }, &t()), Decision::Handoff(HandoffReason::RepeatedFailure));
        let patient = DialogThresholds { max_failures: 3, ..t() };
        assert_eq!(decide(&Facts { failures: 1, ..facts(&weak) }, &patient), Decision::DontKnow);
    }
}
