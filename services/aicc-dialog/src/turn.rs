//! The bot's turn: understand → decide → answer → record.

use std::time::{Duration, Instant};

use aicc_core::{
    Citation, Conversation, EmbedKind, GenEvent, KbHit, KbQuery, Message, ModelError, NewEvent, NewMessage, Sampling, Sender, Tenant,
    Topic,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::grounding::{self, Passage};
use crate::language::{self, Lang};
use crate::policy::{self, Decision, Facts, HandoffReason};
use crate::{prompt, texts, understand, Dialog, DialogError};

/// The Store event each turn records (analytics and debugging read it).
pub const TURN_EVENT: &str = "bot.turn";
/// Hits retrieved per turn.
const K: usize = 5;
/// Earlier messages read for context.
const HISTORY: i64 = 12;

/// What a turn did. `handoff` asks the caller to queue the conversation.
#[derive(Debug, Clone)]
pub struct TurnReport {
    pub reply: Option<Message>,
    pub path: &'static str,
    pub handoff: Option<HandoffReason>,
}

/// The bot reply's `client_msg_id`, derived from the message it answers: a
/// second run of the same turn (a retry, another replica) stores nothing new.
pub fn reply_id(message_id: Uuid) -> Uuid {
    Uuid::from_u128(message_id.as_u128() ^ 0x0b07_0000_0000_4000_8000_0000_0000_0001)
}

/// A generated answer, or why there is none.
enum Generated {
    Answer { checked: grounding::Checked, passages: Vec<Passage>, gen: Value },
    Failed { reason: String, gen: Value },
}

impl Dialog {
    /// Answers `message` (a stored, redacted customer message) in a
    /// conversation in `bot` state. Streams `token` frames while generating;
    /// the stored reply is published as the authoritative `message`.
    pub async fn turn(&self, tenant: &Tenant, conv: &Conversation, message: &Message) -> Result<TurnReport, DialogError> {
        let started = Instant::now();
        let _lock = self.lock(conv.id).await;
        let settings = &tenant.settings;
        let text = understand::normalize(&message.text);
        let lang = language::detect(&text).or_else(|| Lang::from_tag(&conv.locale)).unwrap_or(Lang::En);

        // Understand, and read what came before, all at once: the model work
        // (both calls embed the message; the embedder answers the second from
        // its recent queries) overlaps the Store's round trips.
        let mut query = text.clone();
        let (existing, events, history, (prediction, understand_ms), (mut hits, search_ms)) = tokio::join!(
            self.store.message_by_client_id(conv.id, reply_id(message.id)),
            self.store.list_events(tenant.id, Some(conv.id), 50),
            self.store.list_messages(conv.id, (message.seq - HISTORY - 1).max(0), HISTORY + 1),
            timed(self.classify(tenant.id, &text)),
            timed(self.search(tenant.id, &query)),
        );
        if let Some(existing) = existing? {
            return Ok(TurnReport { reply: Some(existing), path: "replayed", handoff: None });
        }
        let (events, history) = (events?, history?);
        // Failures since the conversation last came back to the bot, the
        // question the last answer was about, earlier replies.
        let turns: Vec<&Value> = events.iter().filter(|e| e.kind == TURN_EVENT && e.created_at >= conv.status_at).map(|e| &e.data).collect();
        let failures = turns.iter().take_while(|d| d["path"] == "dont_know").count() as u32;
        let previous_query = turns.iter().find(|d| matches!(d["path"].as_str(), Some("direct" | "rag" | "clarify"))).and_then(|d| d["query"].as_str());
        let first_reply = !history.iter().any(|m| m.seq < message.seq && matches!(m.sender, Sender::Bot | Sender::Agent));
        let t1 = Instant::now();
        let mut follow_up = false;
        let mut prediction = prediction;
        if let Some(prev) = previous_query.filter(|_| understand::looks_like_follow_up(&text, lang)) {
            let rewritten = understand::rewrite_follow_up(prev, &text);
            let alt = self.search(tenant.id, &rewritten).await;
            if top(&alt) >= top(&hits) {
                // A fragment ("what about abroad?") says little on its own:
                // the intent of the whole question is the better guess.
                let whole = self.classify(tenant.id, &rewritten).await;
                if whole.as_ref().map(|p| p.confidence) > prediction.as_ref().map(|p| p.confidence) {
                    prediction = whole;
                }
                (query, hits, follow_up) = (rewritten, alt, true);
            }
        }
        if let Some((intent, confidence)) = prediction.as_ref().and_then(|p| p.intent.as_deref().map(|i| (i, p.confidence))) {
            if confidence >= settings.dialog.intent_min {
                policy::agree(&mut hits, intent, confidence);
            }
        }
        // An article that reads as instructions to a model (a tampered
        // import) is neither shown nor given to the generator.
        let rejected: Vec<String> = hits
            .iter()
            .filter(|h| understand::looks_like_injection(&h.answer) || understand::looks_like_injection(&h.question))
            .map(|h| h.article_id.clone())
            .collect();
        if !rejected.is_empty() {
            tracing::warn!(articles = ?rejected, "knowledge articles that read as model instructions were left out");
            hits.retain(|h| !rejected.contains(&h.article_id));
        }
        let retrieve_ms = search_ms + ms(t1);
        let injection = understand::looks_like_injection(&text);
        let frustration = understand::frustration(&text);
        let generator = self.models.generator();
        let facts = Facts {
            intent: prediction.as_ref().and_then(|p| p.intent.as_deref().map(|i| (i, p.confidence))),
            out_of_scope: prediction.as_ref().is_some_and(|p| p.out_of_scope),
            lang,
            hits: &hits,
            failures,
            frustration,
            injection,
            generator: generator.is_some(),
        };
        let mut decision = policy::decide(&facts, &settings.dialog);
        if texts::is_agent_request(settings, &text) {
            decision = Decision::Handoff(HandoffReason::Requested);
        }

        // Answer.
        let t2 = Instant::now();
        let mut detail = json!({});
        let (reply_text, citations, quick_replies, handoff) = match &decision {
            Decision::Handoff(reason) => (texts::text(settings, "handoff", lang), vec![], vec![], Some(*reason)),
            Decision::SmallTalk(key) => (texts::text(settings, key, lang), vec![], vec![], None),
            Decision::Direct(i) => (hits[*i].answer.clone(), vec![cite(&hits[*i])], vec![], None),
            Decision::Clarify(idx) => {
                let options = idx.iter().map(|&i| option_text(&hits, i, lang)).collect();
                (texts::text(settings, "clarify", lang), vec![], options, None)
            }
            Decision::DontKnow => (texts::text(settings, "fallback", lang), vec![], vec![texts::text(settings, "agent", lang)], None),
            Decision::Rag(idx) => {
                let generator = generator.clone().expect("the policy chooses RAG only with a generator");
                match self.generate(generator.as_ref(), tenant, conv.id, message.id, lang, &hits, idx, &query).await {
                    Generated::Answer { checked, passages, gen } if checked.passed() => {
                        detail = json!({ "generator": gen, "dropped_markers": checked.dropped_markers });
                        let cites = checked.cited.iter().map(|&p| Citation { article_id: passages[p].article_id.clone(), title: passages[p].title.clone() }).collect();
                        (checked.text, cites, vec![], None)
                    }
                    Generated::Answer { checked, gen, .. } => {
                        detail = json!({ "generator": gen, "problems": checked.problems, "draft": checked.text });
                        self.fallback(settings, lang, &hits, "check_failed", &mut detail)
                    }
                    Generated::Failed { reason, gen } => {
                        detail = json!({ "generator": gen });
                        self.fallback(settings, lang, &hits, &reason, &mut detail)
                    }
                }
            }
        };
        let generate_ms = ms(t2);
        let path = match (&decision, detail.get("fallback").and_then(Value::as_str)) {
            // A RAG turn that fell back to don't-know is a don't-know turn.
            (Decision::Rag(_), Some(_)) if citations.is_empty() => "dont_know",
            _ => decision.path(),
        };

        // Record.
        let appended = self
            .store
            .append_message(NewMessage {
                tenant_id: tenant.id,
                conversation_id: conv.id,
                sender: Sender::Bot,
                sender_id: None,
                text: reply_text,
                client_msg_id: Some(reply_id(message.id)),
                intent: facts.intent.map(|(i, _)| i.to_string()),
                citations,
                quick_replies,
            })
            .await?;
        let reply = appended.message;
        let mut data = json!({
            "reply_to": message.id,
            "message_id": reply.id,
            "path": path,
            "decision": decision.path(),
            "lang": lang,
            "text": text,
            "query": query,
            "follow_up": follow_up,
            "intent": facts.intent.map(|(i, _)| i),
            "confidence": prediction.as_ref().map(|p| p.confidence),
            "out_of_scope": facts.out_of_scope,
            "hits": hits.iter().map(|h| json!({ "article_id": h.article_id, "score": h.score, "retrieval": h.scores.hybrid, "language": h.language })).collect::<Vec<_>>(),
            "citations": reply.citations.iter().map(|c| &c.article_id).collect::<Vec<_>>(),
            "injection": injection,
            "rejected_articles": rejected,
            "frustration": frustration,
            "failures_before": failures,
            "handoff": handoff.map(HandoffReason::as_str),
            "timings": { "understand_ms": understand_ms, "retrieve_ms": retrieve_ms, "answer_ms": generate_ms, "total_ms": ms(started) },
        });
        merge(&mut data, detail);
        if first_reply {
            let first_customer = history.iter().find(|m| m.sender == Sender::Customer).map(|m| m.created_at).unwrap_or(message.created_at);
            data["first_response_ms"] = json!((reply.created_at - first_customer).num_milliseconds().max(0));
        }
        let event = NewEvent { tenant_id: tenant.id, conversation_id: Some(conv.id), actor: None, kind: TURN_EVENT.into(), data };
        if let Err(e) = self.store.record_event(event).await {
            tracing::warn!(error = %e, "could not record the turn");
        }
        // Published after the record, so whoever sees the reply can read why.
        if appended.created {
            self.publish(conv.id, json!({ "type": "message", "conversation_id": conv.id, "message": reply })).await;
        }
        tracing::info!(conversation = %conv.id, path, intent = ?facts.intent.map(|(i, _)| i), total_ms = ms(started), "bot turn");
        Ok(TurnReport { reply: Some(reply), path, handoff })
    }

    async fn classify(&self, tenant_id: Uuid, text: &str) -> Option<aicc_core::IntentPrediction> {
        let c = self.models.intents(tenant_id)?;
        match tokio::time::timeout(self.config.model_timeout, c.classify(text)).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "intent classification failed");
                None
            }
            Err(_) => {
                tracing::warn!("intent classification timed out");
                None
            }
        }
    }

    pub(crate) async fn search(&self, tenant_id: Uuid, text: &str) -> Vec<KbHit> {
        let q = KbQuery { text: text.to_string(), k: K, version: None };
        match tokio::time::timeout(self.config.model_timeout, self.kb.search(tenant_id, &q)).await {
            Ok(Ok(hits)) => hits,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "knowledge search failed; answering without it");
                vec![]
            }
            Err(_) => {
                tracing::warn!("knowledge search timed out; answering without it");
                vec![]
            }
        }
    }

    pub(crate) async fn publish(&self, conversation_id: Uuid, frame: Value) {
        if let Err(e) = self.bus.publish(&Topic::Conversation(conversation_id), frame).await {
            tracing::warn!(error = %e, "bus publish failed");
        }
    }

    /// The best FAQ answer in the customer's language when one is relevant
    /// enough, else the honest don't-know with the offer of a person.
    fn fallback(
        &self,
        settings: &aicc_core::settings::TenantSettings,
        lang: Lang,
        hits: &[KbHit],
        reason: &str,
        detail: &mut Value,
    ) -> (String, Vec<Citation>, Vec<String>, Option<HandoffReason>) {
        detail["fallback"] = json!(reason);
        let best = hits.iter().find(|h| h.score >= settings.dialog.rag && Lang::from_tag(&h.language) == Some(lang));
        match best {
            Some(h) => {
                detail["fallback_article"] = json!(h.article_id);
                (h.answer.clone(), vec![cite(h)], vec![], None)
            }
            None => {
                let key = if reason == "check_failed" { "fallback" } else { "unavailable" };
                (texts::text(settings, key, lang), vec![], vec![texts::text(settings, "agent", lang)], None)
            }
        }
    }

    /// Runs the generator over the chosen passages, streaming `token` frames,
    /// and checks what it wrote.
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        generator: &dyn aicc_core::Generator,
        tenant: &Tenant,
        conversation_id: Uuid,
        reply_to: Uuid,
        lang: Lang,
        hits: &[KbHit],
        idx: &[usize],
        question: &str,
    ) -> Generated {
        // A passage that tries to steer the model stays out of the prompt.
        let passages: Vec<Passage> = idx
            .iter()
            .map(|&i| &hits[i])
            .filter(|h| !understand::looks_like_injection(&h.answer) && !understand::looks_like_injection(&h.question))
            .map(|h| Passage { article_id: h.article_id.clone(), title: h.question.clone(), text: h.answer.clone() })
            .collect();
        let mut gen = json!({ "model": generator.name(), "passages": passages.iter().map(|p| &p.article_id).collect::<Vec<_>>() });
        if passages.is_empty() {
            return Generated::Failed { reason: "passages_rejected".into(), gen };
        }
        let sampling = Sampling { temperature: 0.0, seed: Some(self.config.seed), max_tokens: self.config.max_answer_tokens, ..Sampling::default() };
        let request = prompt::rag_request(&tenant.name, lang, &passages, question, sampling);
        let instructions = request.messages[0].content.clone();
        let (cancel_tx, mut cancelled) = tokio::sync::watch::channel(false);
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).insert(conversation_id, cancel_tx);
        let result = self.stream(generator, request, conversation_id, reply_to, &mut cancelled).await;
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(&conversation_id);
        let answer = match result {
            Ok((answer, end)) => {
                merge(&mut gen, end);
                answer
            }
            Err((reason, partial)) => {
                gen["partial"] = json!(partial);
                return Generated::Failed { reason, gen };
            }
        };
        let similarity = self.similarity(&answer, &passages).await;
        let checked = grounding::check(&answer, &passages, question, lang, &instructions, similarity.as_deref());
        Generated::Answer { checked, passages, gen }
    }

    /// The generator's text, or why it stopped (with what it had written).
    async fn stream(
        &self,
        generator: &dyn aicc_core::Generator,
        request: aicc_core::GenRequest,
        conversation_id: Uuid,
        reply_to: Uuid,
        cancelled: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(String, Value), (String, String)> {
        let started = Instant::now();
        let mut stream = match tokio::time::timeout(self.config.first_token_timeout, generator.generate(request)).await {
            Ok(Ok(s)) => s,
            Ok(Err(ModelError::Overloaded)) => return Err(("generator_overloaded".into(), String::new())),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the generator failed");
                return Err(("generator_failed".into(), String::new()));
            }
            Err(_) => return Err(("generator_timeout".into(), String::new())),
        };
        let mut answer = String::new();
        loop {
            let limit = if answer.is_empty() { self.config.first_token_timeout } else { self.config.answer_timeout };
            let left = limit.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
            let next = tokio::select! {
                next = tokio::time::timeout(left, stream.next()) => next,
                _ = cancelled.changed() => return Err(("cancelled".into(), answer)),
            };
            match next {
                Err(_) => return Err(("generator_timeout".into(), answer)),
                Ok(None) => return Err(("generator_failed".into(), answer)),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "the generator failed mid-answer");
                    return Err(("generator_failed".into(), answer));
                }
                Ok(Some(Ok(GenEvent::Token { text }))) => {
                    answer.push_str(&text);
                    let frame = json!({ "type": "token", "conversation_id": conversation_id, "reply_to": reply_to, "text": text });
                    self.publish(conversation_id, frame).await;
                }
                Ok(Some(Ok(GenEvent::End { finish_reason, usage, timings }))) => {
                    let end = json!({ "finish_reason": finish_reason, "usage": usage, "timings": timings, "answer": answer });
                    return Ok((answer, end));
                }
            }
        }
    }

    /// Sentence × passage embedding similarity, when the embedder is there.
    async fn similarity(&self, answer: &str, passages: &[Passage]) -> Option<Vec<Vec<f32>>> {
        let embedder = self.models.embedder()?;
        let sentences: Vec<String> = grounding::sentences(answer).iter().map(|&(a, b)| answer[a..b].to_string()).collect();
        if sentences.is_empty() {
            return None;
        }
        let texts: Vec<String> = passages.iter().map(|p| format!("{}\n{}", p.title, p.text)).collect();
        let s = embedder.embed(sentences, EmbedKind::Query).await.ok()?;
        let p = embedder.embed(texts, EmbedKind::Passage).await.ok()?;
        Some(s.iter().map(|a| p.iter().map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum()).collect()).collect())
    }
}

fn top(hits: &[KbHit]) -> f32 {
    hits.first().map(|h| h.score).unwrap_or(0.0)
}

/// A candidate's question as the customer's quick reply: the same intent's
/// article in their language when the hits have it.
fn option_text(hits: &[KbHit], i: usize, lang: Lang) -> String {
    let h = &hits[i];
    let same = |x: &&KbHit| Lang::from_tag(&x.language) == Some(lang);
    if same(&h) {
        return h.question.clone();
    }
    hits.iter().filter(same).find(|x| x.intent.is_some() && x.intent == h.intent).unwrap_or(h).question.clone()
}

fn cite(h: &KbHit) -> Citation {
    Citation { article_id: h.article_id.clone(), title: h.question.clone() }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, f64) {
    let t = Instant::now();
    let out = f.await;
    (out, ms(t))
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
