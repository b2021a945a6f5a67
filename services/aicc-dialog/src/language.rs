//! Which language a customer writes in, and so which language the bot answers
//! in. Only the two first-class languages are told apart: Hangul means Korean,
//! Latin letters mean English; text with neither (digits, emoji) says nothing.

/// `ko` or `en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }

    /// From a locale or language tag (`ko-KR`, `en`, `EN_us`); anything else is `None`.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        match tag.get(..2).map(|p| p.to_ascii_lowercase()).as_deref() {
            Some("ko") => Some(Lang::Ko),
            Some("en") => Some(Lang::En),
            _ => None,
        }
    }
}

pub fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

/// The share of Hangul among the letters of `text` (0 when it has none).
pub fn hangul_share(text: &str) -> f32 {
    let (mut hangul, mut letters) = (0usize, 0usize);
    for c in text.chars() {
        if is_hangul(c) {
            hangul += 1;
            letters += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    if letters == 0 {
        0.0
    } else {
        hangul as f32 / letters as f32
    }
}

/// The language of `text`, or `None` when it has no letters to tell by. A
/// Korean message with a few English product names ("앱에서 Apple Pay 등록") is
/// Korean: any real share of Hangul decides.
pub fn detect(text: &str) -> Option<Lang> {
    if !text.chars().any(char::is_alphabetic) {
        return None;
    }
    Some(if hangul_share(text) >= 0.2 { Lang::Ko } else { Lang::En })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_korean_from_english() {
        assert_eq!(detect("카드를 잃어버렸어요"), Some(Lang::Ko));
        assert_eq!(detect("I lost my card"), Some(Lang::En));
        assert_eq!(detect("앱에서 Apple Pay 등록은 어떻게 하나요?"), Some(Lang::Ko));
        assert_eq!(detect("1234 !!! 👍"), None);
        assert_eq!(Lang::from_tag("ko-KR"), Some(Lang::Ko));
        assert_eq!(Lang::from_tag("EN_us"), Some(Lang::En));
        assert_eq!(Lang::from_tag("fr"), None);
        assert_eq!(Lang::from_tag("k"), None);
    }
}
