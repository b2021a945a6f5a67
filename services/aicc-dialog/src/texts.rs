//! The bot's fixed words, per tenant and language: the tenant's own texts
//! (`TenantSettings::texts`), else the built-in defaults (a tenant saved
//! before a key existed still gets it).

use std::sync::LazyLock;

use aicc_core::settings::TenantSettings;

use crate::language::Lang;

static DEFAULTS: LazyLock<TenantSettings> = LazyLock::new(TenantSettings::default);

/// `key` in `lang` (`greeting`, `fallback`, `handoff`, `clarify`, `agent`, `unavailable`, …).
pub fn text(settings: &TenantSettings, key: &str, lang: Lang) -> String {
    settings.text(key, lang.as_str()).or_else(|| DEFAULTS.text(key, lang.as_str())).unwrap_or_default().to_string()
}

/// Whether `text` is the "talk to an agent" quick reply in either language.
pub fn is_agent_request(settings: &TenantSettings, text: &str) -> bool {
    let t = text.trim();
    [Lang::Ko, Lang::En].iter().any(|&l| self::text(settings, "agent", l).eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_texts_then_defaults() {
        let mut s = TenantSettings::default();
        s.texts.remove("clarify");
        s.texts.get_mut("greeting").unwrap().insert("en".into(), "Hi from Acme!".into());
        assert_eq!(text(&s, "greeting", Lang::En), "Hi from Acme!");
        assert_eq!(text(&s, "clarify", Lang::Ko), "어떤 내용을 문의하셨나요?");
        assert!(is_agent_request(&s, " 상담원 연결 "));
        assert!(is_agent_request(&s, "talk to an agent"));
        assert!(!is_agent_request(&s, "agent fees"));
    }
}
