//! Agent assist: beside the transcript of a conversation that reached a human,
//! what the models know — the intent, the knowledge hits, a drafted reply the
//! agent can edit and send, and a running structured summary. Computed from
//! the Store on demand (`GET …/assist`) and pushed as `assist` frames when the
//! conversation moves; it runs off the customer's path (callers spawn it).

use aicc_core::{Conversation, ConversationStatus, Event, KbHit, Message, NewEvent, Sender, Tenant};
use serde::Serialize;
use serde_json::{json, Value};

use crate::language::{self, Lang};
use crate::turn::TURN_EVENT;
use crate::{understand, Dialog, DialogError};

/// The summary kept when a conversation closes.
pub const SUMMARY_EVENT: &str = "conversation.summary";
const TRANSCRIPT: i64 = 100;
const QUOTE_CHARS: usize = 160;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assist {
    /// The latest customer message's intent.
    pub intent: Option<String>,
    pub kb_hits: Vec<KbHit>,
    /// The best hit's answer in the customer's language, for the agent to edit and send.
    pub suggested_reply: Option<String>,
    pub summary: Summary,
}

/// What an agent needs to pick a conversation up, from what was said and done.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The customer's language (`ko`, `en`).
    pub language: String,
    /// The customer's first real question (and its intent).
    pub problem: String,
    /// What the bot and agents did so far, oldest first, in English.
    pub tried: Vec<String>,
    /// The same as `tried`, structured, for a dashboard to say in its language.
    pub steps: Vec<Step>,
    /// Customer messages nobody has answered yet.
    pub open_questions: Vec<String>,
    /// In English; `next` is the same, structured.
    pub next_step: String,
    pub next: Step,
}

/// One thing done, or to do, in a form a dashboard translates: `kind` picks
/// the sentence, `quote` (a customer's or agent's words, already quoted) and
/// `detail` (articles cited, a handoff or queue reason) fill it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Step {
    /// Done: `bot_answered`, `bot_clarified`, `bot_failed`, `bot_handed_over`,
    /// `queued`, `assigned`, `released`, `agent_replied`. To do:
    /// `claim_and_answer`, `claim_and_ask`, `answer`, `confirm_and_close`,
    /// `bot_handling`, `closed`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Step {
    fn new(kind: &'static str, quote: Option<String>, detail: Option<String>) -> Self {
        Step { kind, quote, detail }
    }

    /// The English sentence (`tried`, `next_step`).
    pub fn english(&self) -> String {
        let q = self.quote.as_deref().unwrap_or("");
        let d = self.detail.as_deref().unwrap_or("");
        match self.kind {
            "bot_answered" => format!("Bot answered {q} from {d}"),
            "bot_clarified" => format!("Bot asked which topic {q} meant"),
            "bot_failed" => format!("Bot could not answer {q}"),
            "bot_handed_over" => format!("Bot handed over ({d})"),
            "queued" => format!("Queued for an agent: {d}"),
            "assigned" => "An agent took the conversation".into(),
            "released" => "Released back to the bot".into(),
            "agent_replied" => format!("Agent replied {q}"),
            "claim_and_answer" => format!("Claim the conversation and answer {q}"),
            "claim_and_ask" => "Claim the conversation and ask how you can help".into(),
            "answer" => format!("Answer {q}"),
            "confirm_and_close" => "Check that the customer's problem is solved, then close".into(),
            "bot_handling" => "The bot is handling the conversation".into(),
            _ => "Nothing: the conversation is closed".into(),
        }
    }
}

fn quote(text: &str) -> String {
    let t: String = text.chars().take(QUOTE_CHARS).collect();
    if text.chars().count() > QUOTE_CHARS {
        format!("“{t}…”")
    } else {
        format!("“{t}”")
    }
}

/// Greetings and one-word messages do not state a problem.
fn substantive(text: &str) -> bool {
    let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
    let words = text.split_whitespace().count();
    if language::detect(text) == Some(Lang::Ko) {
        letters >= 6
    } else {
        words >= 3 && letters >= 10
    }
}

/// The summary of a transcript and its turn events (oldest first). Pure.
pub fn summarize(conv: &Conversation, messages: &[Message], events: &[Event]) -> Summary {
    let customer: Vec<&Message> = messages.iter().filter(|m| m.sender == Sender::Customer).collect();
    let lang = customer
        .iter()
        .rev()
        .find_map(|m| language::detect(&m.text))
        .or_else(|| Lang::from_tag(&conv.locale))
        .unwrap_or(Lang::En);
    let first_turn_intent = |m: &Message| {
        events.iter().find(|e| e.kind == TURN_EVENT && e.data["reply_to"] == json!(m.id)).and_then(|e| e.data["intent"].as_str().map(str::to_string))
    };
    let problem = match customer.iter().find(|m| substantive(&m.text)).or(customer.first()) {
        Some(m) => match first_turn_intent(m) {
            Some(i) => format!("{} ({i})", quote(&m.text)),
            None => quote(&m.text),
        },
        None => "No message from the customer yet.".into(),
    };
    let mut steps: Vec<Step> = Vec::new();
    for e in events {
        let d = &e.data;
        let said = || Some(quote(d["text"].as_str().unwrap_or("")));
        let step = match (e.kind.as_str(), d["path"].as_str()) {
            (TURN_EVENT, Some("direct" | "rag")) => {
                let cited = d["citations"].as_array().map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default();
                Some(Step::new("bot_answered", said(), Some(cited)))
            }
            (TURN_EVENT, Some("clarify")) => Some(Step::new("bot_clarified", said(), None)),
            (TURN_EVENT, Some("dont_know")) => Some(Step::new("bot_failed", said(), None)),
            (TURN_EVENT, Some("handoff")) => Some(Step::new("bot_handed_over", None, Some(d["handoff"].as_str().unwrap_or("requested").into()))),
            ("conversation.queued", _) if d["reason"].as_str().is_some_and(|r| !r.is_empty()) => {
                Some(Step::new("queued", None, d["reason"].as_str().map(str::to_string)))
            }
            ("conversation.assigned", _) => Some(Step::new("assigned", None, None)),
            ("conversation.bot", _) => Some(Step::new("released", None, None)),
            _ => None,
        };
        if let Some(step) = step {
            if steps.last() != Some(&step) {
                steps.push(step);
            }
        }
    }
    for m in messages.iter().filter(|m| m.sender == Sender::Agent).rev().take(3).collect::<Vec<_>>().into_iter().rev() {
        steps.push(Step::new("agent_replied", Some(quote(&m.text)), None));
    }
    // Unanswered: customer messages after the last reply of a human (or,
    // before any, after the bot's last answer that did not fail).
    let last_human = messages.iter().rposition(|m| m.sender == Sender::Agent);
    let last_good_bot = messages.iter().rposition(|m| {
        m.sender == Sender::Bot
            && events.iter().any(|e| e.kind == TURN_EVENT && e.data["message_id"] == json!(m.id) && matches!(e.data["path"].as_str(), Some("direct" | "rag" | "small_talk")))
    });
    let from = last_human.or(last_good_bot).map(|i| i + 1).unwrap_or(0);
    let mut open_questions: Vec<String> =
        messages[from.min(messages.len())..].iter().filter(|m| m.sender == Sender::Customer && substantive(&m.text)).map(|m| quote(&m.text)).collect();
    if open_questions.len() > 3 {
        open_questions.drain(..open_questions.len() - 3);
    }
    let last = open_questions.last().cloned();
    let next = match conv.status {
        ConversationStatus::Queued if last.is_some() => Step::new("claim_and_answer", last, None),
        ConversationStatus::Queued => Step::new("claim_and_ask", None, None),
        ConversationStatus::Assigned if last.is_some() => Step::new("answer", last, None),
        ConversationStatus::Assigned => Step::new("confirm_and_close", None, None),
        ConversationStatus::Bot => Step::new("bot_handling", None, None),
        ConversationStatus::Closed => Step::new("closed", None, None),
    };
    Summary {
        language: lang.as_str().into(),
        problem,
        tried: steps.iter().map(Step::english).collect(),
        steps,
        open_questions,
        next_step: next.english(),
        next,
    }
}

impl Dialog {
    /// The recent transcript and its summary, from the Store.
    async fn transcript_summary(&self, tenant: &Tenant, conv: &Conversation) -> Result<(Vec<Message>, Summary), DialogError> {
        let messages = self.store.list_messages(conv.id, (conv.last_seq - TRANSCRIPT).max(0), TRANSCRIPT).await?;
        let mut events = self.store.list_events(tenant.id, Some(conv.id), 200).await?;
        events.reverse(); // oldest first
        let summary = summarize(conv, &messages, &events);
        Ok((messages, summary))
    }

    /// The assist panel for `conv` as it is now.
    pub async fn assist(&self, tenant: &Tenant, conv: &Conversation) -> Result<Assist, DialogError> {
        let (messages, summary) = self.transcript_summary(tenant, conv).await?;
        let last = messages.iter().rev().find(|m| m.sender == Sender::Customer && substantive(&m.text)).or_else(|| messages.iter().rev().find(|m| m.sender == Sender::Customer));
        let Some(last) = last else {
            return Ok(Assist { intent: None, kb_hits: vec![], suggested_reply: None, summary });
        };
        let text = understand::normalize(&last.text);
        let lang = language::detect(&text).unwrap_or(Lang::En);
        let intent = match self.models.intents(tenant.id) {
            Some(c) => c.classify(&text).await.ok().and_then(|p| p.intent),
            None => None,
        };
        let mut kb_hits = self.search(tenant.id, &text).await;
        kb_hits.truncate(3);
        let rag = tenant.settings.dialog.rag;
        let suggested_reply = kb_hits.iter().find(|h| h.score >= rag && Lang::from_tag(&h.language) == Some(lang)).map(|h| h.answer.clone());
        Ok(Assist { intent, kb_hits, suggested_reply, summary })
    }

    /// Computes the assist panel and sends it to the conversation's agents
    /// (`assist` frames; customers never receive them). Failures are logged.
    pub async fn publish_assist(&self, tenant: &Tenant, conv: &Conversation) {
        match self.assist(tenant, conv).await {
            Ok(a) => {
                let frame = json!({
                    "type": "assist", "conversation_id": conv.id, "intent": a.intent, "kb_hits": a.kb_hits,
                    "suggested_reply": a.suggested_reply, "summary": a.summary,
                });
                self.publish(conv.id, frame).await;
            }
            Err(e) => tracing::warn!(error = %e, conversation = %conv.id, "assist failed"),
        }
    }

    /// Keeps the summary of a closed conversation (event `conversation.summary`).
    pub async fn store_summary(&self, tenant: &Tenant, conv: &Conversation) -> Result<Summary, DialogError> {
        let (_, summary) = self.transcript_summary(tenant, conv).await?;
        let data = serde_json::to_value(&summary).unwrap_or_default();
        self.store.record_event(NewEvent { tenant_id: tenant.id, conversation_id: Some(conv.id), actor: None, kind: SUMMARY_EVENT.into(), data }).await?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicc_core::CustomerInfo;
    use chrono::Utc;
    use uuid::Uuid;

    fn conv(status: ConversationStatus) -> Conversation {
        let now = Utc::now();
        Conversation {
            id: Uuid::new_v4(), tenant_id: Uuid::new_v4(), status, agent_id: None, team: None, locale: "ko-KR".into(),
            customer: CustomerInfo::default(), last_seq: 0, csat: None, created_at: now, updated_at: now, status_at: now,
        }
    }

    fn msg(c: &Conversation, seq: i64, sender: Sender, text: &str) -> Message {
        Message {
            id: Uuid::new_v4(), conversation_id: c.id, seq, sender, sender_id: None, text: text.into(), client_msg_id: None,
            created_at: Utc::now(), intent: None, citations: vec![], quick_replies: vec![],
        }
    }

    fn turn(c: &Conversation, reply_to: &Message, reply: &Message, path: &str, intent: &str) -> Event {
        Event {
            id: 0, tenant_id: c.tenant_id, conversation_id: Some(c.id), actor: None, kind: TURN_EVENT.into(),
            data: json!({ "reply_to": reply_to.id, "message_id": reply.id, "path": path, "intent": intent, "text": reply_to.text,
                          "citations": ["faq-card_arrival-ko"], "handoff": "requested" }),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_summary_follows_the_conversation() {
        let mut c = conv(ConversationStatus::Queued);
        let m1 = msg(&c, 1, Sender::Customer, "안녕하세요");
        let b1 = msg(&c, 2, Sender::Bot, "안녕하세요! 무엇을 도와드릴까요?");
        let m2 = msg(&c, 3, Sender::Customer, "카드를 신청했는데 2주째 안 와요");
        let b2 = msg(&c, 4, Sender::Bot, "카드는 등기우편으로…");
        let m3 = msg(&c, 5, Sender::Customer, "상담원 연결해 주세요");
        let b3 = msg(&c, 6, Sender::Bot, "상담원에게 연결해 드리겠습니다.");
        let m4 = msg(&c, 7, Sender::Customer, "배송 주소를 바꿀 수 있나요?");
        let events = vec![
            turn(&c, &m1, &b1, "small_talk", "greeting"),
            turn(&c, &m2, &b2, "direct", "card_arrival"),
            turn(&c, &m3, &b3, "handoff", "human_agent"),
        ];
        let messages = vec![m1, b1, m2, b2, m3.clone(), b3, m4];
        let s = summarize(&c, &messages, &events);
        assert_eq!(s.language, "ko");
        assert_eq!(s.problem, "“카드를 신청했는데 2주째 안 와요” (card_arrival)", "greetings are not the problem");
        assert_eq!(s.tried[0], "Bot answered “카드를 신청했는데 2주째 안 와요” from faq-card_arrival-ko");
        assert_eq!(s.tried[1], "Bot handed over (requested)");
        assert_eq!(s.steps[0], Step::new("bot_answered", Some("“카드를 신청했는데 2주째 안 와요”".into()), Some("faq-card_arrival-ko".into())));
        assert_eq!(s.steps[1], Step::new("bot_handed_over", None, Some("requested".into())));
        assert_eq!(s.next.kind, "claim_and_answer");
        assert_eq!(s.open_questions, ["“상담원 연결해 주세요”", "“배송 주소를 바꿀 수 있나요?”"]);
        assert!(s.next_step.starts_with("Claim the conversation and answer “배송 주소"), "{}", s.next_step);

        c.status = ConversationStatus::Assigned;
        let mut messages = messages;
        messages.push(msg(&c, 8, Sender::Agent, "네, 앱에서 바꾸실 수 있습니다."));
        let s = summarize(&c, &messages, &events);
        assert!(s.open_questions.is_empty(), "the agent answered");
        assert_eq!(s.tried.last().unwrap(), "Agent replied “네, 앱에서 바꾸실 수 있습니다.”");
        assert_eq!(s.next_step, "Check that the customer's problem is solved, then close");
        assert_eq!(s.next, Step::new("confirm_and_close", None, None));
        assert_eq!(s.steps.last().unwrap().quote.as_deref(), Some("“네, 앱에서 바꾸실 수 있습니다.”"));
        assert_eq!(s.steps.len(), s.tried.len());
    }

    #[test]
    fn an_empty_conversation_has_a_summary_too() {
        let c = conv(ConversationStatus::Bot);
        let s = summarize(&c, &[], &[]);
        assert_eq!(s.language, "ko", "from the locale");
        assert_eq!(s.problem, "No message from the customer yet.");
    }
}
