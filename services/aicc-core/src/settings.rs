//! Configuration. `Settings` is the process configuration (built-in defaults →
//! optional `aicc.toml` → environment); `TenantSettings` is what each tenant's
//! admin edits through the API. Both are plain data: reading files and the
//! environment is the binary's job, so this stays testable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::redact::PiiPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Listen address; port 0 picks a free port.
    pub bind: String,
    pub data_dir: PathBuf,
    pub model_dir: PathBuf,
    /// `postgres://…` for production; unset means SQLite at `<data_dir>/aicc.db`.
    pub database_url: Option<String>,
    /// `redis://…`; unset means the in-process bus.
    pub redis_url: Option<String>,
    /// Create the `demo` tenant on first start.
    pub demo: bool,
    /// The embedder the intent classifiers (and retrieval) run on, by its
    /// manifest name; `none` serves without models (the dialog then has no
    /// intents and no dense retrieval).
    pub embedder: String,
    pub generator: GeneratorSettings,
    pub dialog: DialogSettings,
    /// Serve the web pages (widget, dashboards) from this folder instead of
    /// the copy built into the binary: edits show on reload (development).
    pub web_dir: Option<PathBuf>,
    /// A `tracing` filter, e.g. `info,aicc_api=debug`.
    pub log: String,
    pub auth: AuthSettings,
    pub limits: Limits,
}

/// Where the generative model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorBackend {
    /// A GGUF model of the manifest, on this machine's CPU (candle).
    Local,
    /// An OpenAI-compatible server (vLLM, TGI, llama.cpp's llama-server).
    Remote,
    /// No generator: the dialog answers from the knowledge base alone.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSettings {
    pub backend: GeneratorBackend,
    /// Local backend: the model's manifest name.
    pub model: String,
    /// Local backend: compute threads (0 = every core).
    pub threads: usize,
    /// Local backend: the context window used, in tokens (prompt + answer).
    pub context_tokens: usize,
    /// Requests that may wait for the model; one more is `overloaded` (429).
    pub queue: usize,
    /// A request that waited this long for the model is answered `overloaded`.
    pub max_queue_wait_ms: u64,
    /// Local backend: conversations whose keys and values are kept for the next turn.
    pub cache_slots: usize,
    /// Remote backend: base URL, e.g. `http://10.0.0.5:8000` (`/v1/chat/completions` is appended).
    pub remote_url: Option<String>,
    /// Remote backend: the `model` field sent to the server.
    pub remote_model: String,
    /// Remote backend: bearer token, if the server wants one.
    pub remote_api_key: Option<String>,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            backend: GeneratorBackend::Local,
            model: "qwen2.5-coder-1.5b-instruct".into(),
            threads: 0,
            context_tokens: 4096,
            queue: 8,
            max_queue_wait_ms: 30_000,
            cache_slots: 4,
            remote_url: None,
            remote_model: "default".into(),
            remote_api_key: None,
        }
    }
}

/// The bot's turn (aicc-dialog), for every tenant of this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialogSettings {
    /// Off: customer messages are stored and fanned out, and nothing answers
    /// them until an agent does (for running the transport alone).
    pub bot: bool,
    /// A generated answer whose first token takes longer falls back to the FAQ answer or an apology.
    pub first_token_timeout_ms: u64,
    /// The whole generated answer, likewise.
    pub answer_timeout_ms: u64,
    /// Longest generated answer, in tokens.
    pub max_answer_tokens: u32,
}

impl Default for DialogSettings {
    fn default() -> Self {
        Self { bot: true, first_token_timeout_ms: 15_000, answer_timeout_ms: 40_000, max_answer_tokens: 160 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key for JWTs. Unset: generated once and kept in the Store.
    pub jwt_secret: Option<String>,
    /// Login attempts allowed per tenant+email in one minute (per IP: five times this).
    pub login_attempts_per_minute: u32,
    /// Widget conversations one IP may start in one minute.
    pub widget_conversations_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub body_bytes: usize,
    /// Largest knowledge-import body, in bytes.
    pub import_bytes: usize,
    /// Longest message text, in characters.
    pub message_chars: usize,
    /// Deepest JSON nesting accepted in a request body.
    pub json_depth: usize,
    /// WebSocket frames one connection may send per 10 seconds.
    pub ws_frames_per_10s: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            model_dir: default_model_dir(),
            database_url: None,
            redis_url: None,
            demo: true,
            embedder: "multilingual-e5-small".into(),
            generator: GeneratorSettings::default(),
            dialog: DialogSettings::default(),
            web_dir: None,
            log: "info".into(),
            auth: AuthSettings::default(),
            limits: Limits::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { jwt_secret: None, login_attempts_per_minute: 10, widget_conversations_per_minute: 30 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { body_bytes: 64 * 1024, import_bytes: 20 * 1024 * 1024, message_chars: 4000, json_depth: 32, ws_frames_per_10s: 60 }
    }
}

fn default_model_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/aicc/models"),
        None => PathBuf::from("./models"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid config file: {0}")]
    File(String),
    #[error("invalid value for {var}: {message}")]
    Env { var: String, message: String },
}

impl Settings {
    /// Defaults, then the TOML text of `aicc.toml` (if any), then the environment.
    pub fn load<'a>(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SettingsError> {
        let mut s: Settings = match toml_text {
            Some(text) => toml::from_str(text).map_err(|e| SettingsError::File(e.to_string()))?,
            None => Settings::default(),
        };
        for (var, value) in env {
            s.apply_env(var, value)?;
        }
        Ok(s)
    }

    /// The environment variables this reads; documented in docs/configuration.md.
    pub const ENV_VARS: &'static [&'static str] = &[
        "AICC_BIND",
        "AICC_DATA_DIR",
        "AICC_MODEL_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "AICC_DEMO",
        "AICC_EMBEDDER",
        "AICC_GENERATOR",
        "AICC_GENERATOR_MODEL",
        "AICC_GENERATOR_THREADS",
        "AICC_GENERATOR_CONTEXT_TOKENS",
        "AICC_GENERATOR_QUEUE",
        "AICC_GENERATOR_URL",
        "AICC_GENERATOR_REMOTE_MODEL",
        "AICC_GENERATOR_API_KEY",
        "AICC_BOT",
        "AICC_DIALOG_FIRST_TOKEN_TIMEOUT_MS",
        "AICC_DIALOG_ANSWER_TIMEOUT_MS",
        "AICC_DIALOG_MAX_ANSWER_TOKENS",
        "AICC_WEB_DIR",
        "AICC_LOG",
        "AICC_JWT_SECRET",
        "AICC_LOGIN_ATTEMPTS_PER_MINUTE",
        "AICC_WIDGET_CONVERSATIONS_PER_MINUTE",
        "AICC_MAX_BODY_BYTES",
        "AICC_MAX_IMPORT_BYTES",
        "AICC_MAX_MESSAGE_CHARS",
        "AICC_MAX_JSON_DEPTH",
        "AICC_WS_FRAMES_PER_10S",
    ];

    fn apply_env(&mut self, var: &str, value: &str) -> Result<(), SettingsError> {
        fn num<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, SettingsError> {
            v.trim().parse().map_err(|_| SettingsError::Env { var: var.into(), message: format!("`{v}` is not a number") })
        }
        fn flag(var: &str, v: &str) -> Result<bool, SettingsError> {
            match v.trim() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                other => Err(SettingsError::Env { var: var.into(), message: format!("`{other}` is not 0 or 1") }),
            }
        }
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match var {
            "AICC_BIND" => self.bind = value.into(),
            "AICC_DATA_DIR" => self.data_dir = value.into(),
            "AICC_MODEL_DIR" => self.model_dir = value.into(),
            "DATABASE_URL" => self.database_url = opt(value),
            "REDIS_URL" => self.redis_url = opt(value),
            "AICC_DEMO" => self.demo = flag(var, value)?,
            "AICC_WEB_DIR" => self.web_dir = opt(value).map(PathBuf::from),
            "AICC_BOT" => self.dialog.bot = flag(var, value)?,
            "AICC_DIALOG_FIRST_TOKEN_TIMEOUT_MS" => self.dialog.first_token_timeout_ms = num(var, value)?,
            "AICC_DIALOG_ANSWER_TIMEOUT_MS" => self.dialog.answer_timeout_ms = num(var, value)?,
            "AICC_DIALOG_MAX_ANSWER_TOKENS" => self.dialog.max_answer_tokens = num(var, value)?,
            "AICC_EMBEDDER" => self.embedder = value.trim().into(),
            "AICC_GENERATOR" => {
                self.generator.backend = match value.trim() {
                    "local" => GeneratorBackend::Local,
                    "remote" => GeneratorBackend::Remote,
                    "none" | "off" => GeneratorBackend::None,
                    other => {
                        return Err(SettingsError::Env {
                            var: var.into(),
                            message: format!("`{other}` is not local, remote or none"),
                        })
                    }
                }
            }
            "AICC_GENERATOR_MODEL" => self.generator.model = value.trim().into(),
            "AICC_GENERATOR_THREADS" => self.generator.threads = num(var, value)?,
            "AICC_GENERATOR_CONTEXT_TOKENS" => self.generator.context_tokens = num(var, value)?,
            "AICC_GENERATOR_QUEUE" => self.generator.queue = num(var, value)?,
            "AICC_GENERATOR_URL" => self.generator.remote_url = opt(value),
            "AICC_GENERATOR_REMOTE_MODEL" => self.generator.remote_model = value.trim().into(),
            "AICC_GENERATOR_API_KEY" => self.generator.remote_api_key = opt(value),
            "AICC_LOG" => self.log = value.into(),
            "AICC_JWT_SECRET" => self.auth.jwt_secret = opt(value),
            "AICC_LOGIN_ATTEMPTS_PER_MINUTE" => self.auth.login_attempts_per_minute = num(var, value)?,
            "AICC_WIDGET_CONVERSATIONS_PER_MINUTE" => self.auth.widget_conversations_per_minute = num(var, value)?,
            "AICC_MAX_BODY_BYTES" => self.limits.body_bytes = num(var, value)?,
            "AICC_MAX_IMPORT_BYTES" => self.limits.import_bytes = num(var, value)?,
            "AICC_MAX_MESSAGE_CHARS" => self.limits.message_chars = num(var, value)?,
            "AICC_MAX_JSON_DEPTH" => self.limits.json_depth = num(var, value)?,
            "AICC_WS_FRAMES_PER_10S" => self.limits.ws_frames_per_10s = num(var, value)?,
            _ => {}
        }
        Ok(())
    }

    /// The effective configuration for the start-up log, secrets replaced.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if self.auth.jwt_secret.is_some() {
            v["auth"]["jwt_secret"] = "<redacted>".into();
        }
        if self.generator.remote_api_key.is_some() {
            v["generator"]["remote_api_key"] = "<redacted>".into();
        }
        for key in ["database_url", "redis_url"] {
            if let Some(url) = v[key].as_str() {
                v[key] = redact_url_password(url).into();
            }
        }
        v
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else { return url.to_string() };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &creds[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

/// A tenant's own settings, edited by its admins (`GET|PUT /v1/admin/settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    pub dialog: DialogThresholds,
    pub pii: PiiPolicy,
    /// Bot texts per key (`greeting`, `fallback`, …) and language (`en`, `ko`).
    pub texts: BTreeMap<String, BTreeMap<String, String>>,
    pub business_hours: BusinessHours,
    /// Origins allowed to embed the widget (`https://shop.example.com`); `*` allows any.
    pub allowed_origins: Vec<String>,
    pub tokens: TokenLifetimes,
    /// A bot conversation with no message for this long is closed.
    pub idle_timeout_secs: u64,
    /// How queued conversations reach agents.
    pub assignment: AssignmentMode,
}

/// `manual`: agents claim from the queue. `round_robin` / `least_busy`: the
/// server assigns queued conversations to online agents of the right team who
/// are under their maximum of concurrent conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentMode {
    #[default]
    Manual,
    RoundRobin,
    LeastBusy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DialogThresholds {
    /// A knowledge hit scoring at least this is answered with the FAQ itself.
    pub direct: f32,
    /// Between `rag` and `direct`: the generator answers from the passages.
    pub rag: f32,
    /// Below this intent confidence the message is out of scope.
    pub intent_min: f32,
    /// Candidates closer than this to the best one trigger a clarifying question.
    pub clarify_margin: f32,
    /// Unanswered turns in a row before the bot hands over to a human.
    pub max_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessHours {
    /// IANA time-zone name.
    pub timezone: String,
    /// Opening hours per weekday (`mon` … `sun`) as `["09:00", "18:00"]`; absent = closed.
    pub days: BTreeMap<String, [String; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TokenLifetimes {
    pub staff_secs: u64,
    pub customer_secs: u64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        let texts = [
            ("greeting", "Hello! How can I help you today?", "안녕하세요! 무엇을 도와드릴까요?"),
            ("fallback", "I'm sorry, I don't know the answer to that. Would you like to talk to an agent?", "죄송합니다. 그 질문에는 답을 드리기 어렵습니다. 상담원을 연결해 드릴까요?"),
            ("handoff", "I'm connecting you to an agent.", "상담원에게 연결해 드리겠습니다."),
            ("offline", "No agent is online right now. Leave a message and we will get back to you.", "지금은 상담 가능한 상담원이 없습니다. 메시지를 남겨 주시면 연락드리겠습니다."),
            ("after_hours", "Our agents are away until {opens}. Leave a message and we will get back to you.", "지금은 상담 시간이 아닙니다. 상담원은 {opens}부터 응대합니다. 메시지를 남겨 주시면 연락드리겠습니다."),
            ("queued", "You are number {position} in the queue. An agent will be with you shortly.", "대기 순서는 {position}번입니다. 곧 상담원이 연결됩니다."),
            ("thanks", "You're welcome!", "천만에요!"),
            ("goodbye", "Goodbye! Have a nice day.", "안녕히 가세요. 좋은 하루 보내세요."),
            ("clarify", "Which of these do you mean?", "어떤 내용을 문의하셨나요?"),
            ("agent", "Talk to an agent", "상담원 연결"),
            ("unavailable", "I'm sorry, I can't answer that right now. Would you like to talk to an agent?", "죄송합니다. 지금은 답변을 드리기 어렵습니다. 상담원을 연결해 드릴까요?"),
        ]
        .into_iter()
        .map(|(k, en, ko)| (k.to_string(), BTreeMap::from([("en".to_string(), en.to_string()), ("ko".to_string(), ko.to_string())])))
        .collect();
        Self {
            dialog: DialogThresholds::default(),
            pii: PiiPolicy::default(),
            texts,
            business_hours: BusinessHours::default(),
            allowed_origins: vec!["*".into()],
            tokens: TokenLifetimes::default(),
            idle_timeout_secs: 30 * 60,
            assignment: AssignmentMode::Manual,
        }
    }
}

impl Default for DialogThresholds {
    fn default() -> Self {
        Self { direct: 0.75, rag: 0.40, intent_min: 0.50, clarify_margin: 0.05, max_failures: 2 }
    }
}

impl Default for BusinessHours {
    fn default() -> Self {
        let weekdays = ["mon", "tue", "wed", "thu", "fri"];
        Self {
            timezone: "Asia/Seoul".into(),
            days: weekdays.iter().map(|d| (d.to_string(), ["09:00".to_string(), "18:00".to_string()])).collect(),
        }
    }
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self { staff_secs: 8 * 3600, customer_secs: 24 * 3600 }
    }
}

/// One problem with submitted settings: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl TenantSettings {
    /// Checks what serde cannot: ranges, orderings and formats. Every problem is reported.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: &str| errs.push(FieldError { field: field.into(), message: message.into() });
        let d = &self.dialog;
        for (name, v) in [("direct", d.direct), ("rag", d.rag), ("intent_min", d.intent_min), ("clarify_margin", d.clarify_margin)] {
            if !(0.0..=1.0).contains(&v) {
                err(&format!("dialog.{name}"), "must be between 0 and 1");
            }
        }
        if d.rag > d.direct {
            err("dialog.rag", "must not be above dialog.direct");
        }
        for (key, langs) in &self.texts {
            for (lang, text) in langs {
                if !matches!(lang.as_str(), "en" | "ko") {
                    err(&format!("texts.{key}.{lang}"), "language must be `en` or `ko`");
                }
                if text.trim().is_empty() || text.chars().count() > 1000 {
                    err(&format!("texts.{key}.{lang}"), "must be 1 to 1000 characters");
                }
            }
        }
        if self.business_hours.timezone.parse::<chrono_tz::Tz>().is_err() {
            err("business_hours.timezone", "must be an IANA time zone such as Asia/Seoul");
        }
        for (day, [open, close]) in &self.business_hours.days {
            if !matches!(day.as_str(), "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun") {
                err(&format!("business_hours.days.{day}"), "day must be one of mon..sun");
            }
            match (parse_hhmm(open), parse_hhmm(close)) {
                (Some(o), Some(c)) if o < c => {}
                (Some(_), Some(_)) => err(&format!("business_hours.days.{day}"), "opening must be before closing"),
                _ => err(&format!("business_hours.days.{day}"), "times must be HH:MM"),
            }
        }
        for origin in &self.allowed_origins {
            if !valid_origin(origin) {
                err("allowed_origins", &format!("`{origin}` is not `*` or an origin like https://example.com"));
            }
        }
        if !(60..=30 * 86400).contains(&self.tokens.staff_secs) {
            err("tokens.staff_secs", "must be between 60 and 2592000");
        }
        if !(60..=30 * 86400).contains(&self.tokens.customer_secs) {
            err("tokens.customer_secs", "must be between 60 and 2592000");
        }
        if !(60..=7 * 86400).contains(&self.idle_timeout_secs) {
            err("idle_timeout_secs", "must be between 60 and 604800");
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Whether a browser page at `origin` may call this tenant's widget endpoints.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The localised text for `key`, falling back to English.
    pub fn text(&self, key: &str, lang: &str) -> Option<&str> {
        let langs = self.texts.get(key)?;
        langs.get(lang).or_else(|| langs.get("en")).map(String::as_str)
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl BusinessHours {
    fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Whether agents are working at `now`. No hours at all means always open.
    pub fn is_open(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        if self.days.is_empty() {
            return true;
        }
        let local = now.with_timezone(&self.tz());
        let day = WEEKDAYS[local.weekday().num_days_from_monday() as usize];
        let minute = local.hour() * 60 + local.minute();
        self.days.get(day).is_some_and(|[open, close]| {
            matches!((parse_hhmm(open), parse_hhmm(close)), (Some(o), Some(c)) if o <= minute && minute < c)
        })
    }

    /// When agents are next back, as the tenant's local `mon 09:00 (Asia/Seoul)`.
    pub fn next_opening(&self, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
        use chrono::{Datelike, Timelike};
        let local = now.with_timezone(&self.tz());
        let minute = local.hour() * 60 + local.minute();
        (0..8).find_map(|ahead| {
            let date = local.date_naive() + chrono::Duration::days(ahead);
            let day = WEEKDAYS[date.weekday().num_days_from_monday() as usize];
            let [open, _] = self.days.get(day)?;
            let o = parse_hhmm(open)?;
            (ahead > 0 || o > minute).then(|| format!("{day} {open} ({})", self.timezone))
        })
    }
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m).or((h == 24 && m == 0).then_some(1440))
}

fn valid_origin(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else { return false };
    !rest.is_empty() && !rest.contains('/') && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let s = Settings::load(Some("bind = \"0.0.0.0:9000\"\ndemo = false\n[limits]\nmessage_chars = 10\n"), [
            ("AICC_BIND", "127.0.0.1:0"),
            ("AICC_MAX_BODY_BYTES", "100"),
        ])
        .unwrap();
        assert_eq!(s.bind, "127.0.0.1:0");
        assert!(!s.demo);
        assert_eq!(s.limits.message_chars, 10);
        assert_eq!(s.limits.body_bytes, 100);
        assert_eq!(s.limits.import_bytes, Limits::default().import_bytes);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Settings::load(None, [("AICC_MAX_BODY_BYTES", "lots")]).unwrap_err();
        assert!(e.to_string().contains("AICC_MAX_BODY_BYTES"), "{e}");
        assert!(Settings::load(Some("nope = 1"), []).is_err());
        assert!(Settings::load(None, [("AICC_DEMO", "maybe")]).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Settings::load(None, [
            ("AICC_JWT_SECRET", "s3cret"),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/aicc"),
        ])
        .unwrap();
        let text = s.redacted().to_string();
        assert!(!text.contains("s3cret") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://app:***@db:5432/aicc"));
    }

    #[test]
    fn tenant_settings_validation_reports_every_problem() {
        assert!(TenantSettings::default().validate().is_ok());
        let mut t = TenantSettings::default();
        t.dialog.direct = 1.5;
        t.allowed_origins = vec!["ftp://x".into()];
        t.business_hours.days.insert("mon".into(), ["18:00".into(), "09:00".into()]);
        let errs = t.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"dialog.direct"));
        assert!(fields.contains(&"allowed_origins"));
        assert!(fields.contains(&"business_hours.days.mon"));
    }

    #[test]
    fn business_hours() {
        use chrono::TimeZone;
        let hours = BusinessHours::default(); // mon-fri 09:00-18:00 Asia/Seoul (UTC+9)
        let utc = |d, h, m| chrono::Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        assert!(hours.is_open(utc(30, 1, 0)), "Mon 10:00 in Seoul");
        assert!(!hours.is_open(utc(30, 9, 30)), "Mon 18:30 in Seoul");
        assert!(!hours.is_open(utc(28, 3, 0)), "Sat 12:00 in Seoul");
        assert_eq!(hours.next_opening(utc(28, 3, 0)).unwrap(), "mon 09:00 (Asia/Seoul)");
        assert_eq!(hours.next_opening(utc(29, 23, 0)).unwrap(), "mon 09:00 (Asia/Seoul)", "Mon 08:00 local");
        assert!(BusinessHours { days: Default::default(), ..hours.clone() }.is_open(utc(28, 3, 0)), "no hours: always open");
        let mut bad = TenantSettings::default();
        bad.business_hours.timezone = "Mars/Olympus".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn origins() {
        let mut t = TenantSettings { allowed_origins: vec!["https://shop.example.com".into()], ..Default::default() };
        assert!(t.origin_allowed("https://shop.example.com"));
        assert!(!t.origin_allowed("https://evil.example.com"));
        t.allowed_origins.push("*".into());
        assert!(t.origin_allowed("https://evil.example.com"));
    }
}
