//! Checks on a generated answer before it becomes the bot's message. The
//! prompt asks the model to cite and to stay within the passages, but a small
//! model does neither reliably (docs/dialog.md), so the answer is checked:
//!
//! - every number, amount, percentage, date and phone number must appear in
//!   the passages (or in the customer's own words);
//! - citations are attributed after generation: each sentence goes to the
//!   passage it is most similar to, and `[n]` markers that point at no given
//!   passage are dropped; markers are renumbered to the message's citations;
//! - at least one sentence must be supported by a passage;
//! - the answer is in the customer's language, does not read out the
//!   instructions, and is not a disguised "I don't know".
//!
//! A failed check is not repaired by guessing: the turn falls back to the
//! best FAQ answer or an honest don't-know.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::language::{hangul_share, Lang};

fn re(p: &str) -> Regex {
    Regex::new(p).expect("constant regex")
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\d+(?:[.,:]\d+)*"));
static MARKER: LazyLock<Regex> = LazyLock::new(|| re(r"\s?\[(\d{1,2})\]"));
/// A list index at the start of a line ("1. Open the app"), not a fact.
static LIST_INDEX: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*\d{1,2}[.)]\s"));
static NUMBER_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|percent|half|twice|double)\b")
});
const WORD_VALUES: [(&str, &str); 20] = [
    ("zero", "0"), ("one", "1"), ("two", "2"), ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6"),
    ("seven", "7"), ("eight", "8"), ("nine", "9"), ("ten", "10"), ("eleven", "11"), ("twelve", "12"),
    ("fifteen", "15"), ("twenty", "20"), ("thirty", "30"), ("fifty", "50"), ("hundred", "100"),
    ("thousand", "1000"), ("percent", "%"),
];
/// What a model writes when it has no answer.
static NO_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:i (?:do not|don't) know|i'm not sure|i am not sure|(?:do|does) not (?:contain|provide|mention|include)|no information|not (?:mentioned|provided|covered) in|cannot find|can't find|unable to (?:find|answer))|알 수 없|모르겠|정보가 없|나와 있지 않|언급되어 있지 않|찾을 수 없|답변(?:을|드리기)? 어렵")
});

/// A passage as given to the generator: `[n]` in the prompt.
#[derive(Debug, Clone)]
pub struct Passage {
    pub article_id: String,
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A number the passages do not contain.
    UnsupportedNumber { value: String },
    /// No sentence is close enough to any passage.
    Ungrounded,
    WrongLanguage,
    /// It repeats the instructions.
    Leak,
    /// The model said it does not know.
    NoAnswer,
    Empty,
}

/// The outcome: the text with renumbered markers and the passages it cites
/// (indexes into the given passages, in citation order), plus what was
/// repaired and what failed.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub text: String,
    pub cited: Vec<usize>,
    pub dropped_markers: Vec<usize>,
    pub problems: Vec<Problem>,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Digits as compared: separators and leading zeros do not matter ("1,000" = "1000", "09" = "9").
fn canonical(number: &str) -> String {
    let digits: String = number.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    let digits = digits.trim_end_matches('.');
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    }
}

/// Every number in `text`, whole and in its parts ("5–7" → 5, 7; "09:00" → 9:00, 9, 0).
fn numbers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in NUMBER.find_iter(text) {
        out.insert(canonical(m.as_str()));
        for part in m.as_str().split([',', ':']) {
            if !part.is_empty() {
                out.insert(canonical(part));
            }
        }
    }
    out
}

/// Numbers in `answer` that neither the passages nor the question contain.
pub fn unsupported_numbers(answer: &str, sources: &[&str]) -> Vec<String> {
    let known: BTreeSet<String> = sources.iter().flat_map(|s| numbers(s)).collect();
    let known_words: String = sources.join(" ").to_lowercase();
    let stripped = LIST_INDEX.replace_all(&MARKER.replace_all(answer, ""), "").to_string();
    let mut bad = Vec::new();
    for m in NUMBER.find_iter(&stripped) {
        let whole = canonical(m.as_str());
        // "1,500" is known if the sources say 1500 or 1,500; "10:30" if they say 10:30.
        if !known.contains(&whole) {
            bad.push(m.as_str().to_string());
        }
    }
    for m in NUMBER_WORDS.find_iter(&stripped) {
        let word = m.as_str().to_lowercase();
        let value = WORD_VALUES.iter().find(|(w, _)| *w == word).map(|(_, v)| *v);
        let spelled = known_words.contains(&word);
        let in_digits = value.is_some_and(|v| if v == "%" { known_words.contains('%') } else { known.contains(v) });
        // "one" is also a pronoun ("the one you ordered"): only flag it next to a unit-ish word.
        if word == "one" {
            continue;
        }
        if !spelled && !in_digits {
            bad.push(m.as_str().to_string());
        }
    }
    bad
}

/// Sentences, with their byte ranges in `text`.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(pos, c)) in chars.iter().enumerate() {
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let ends = match c {
            '\n' | '!' | '?' | '。' => true,
            // "1.5%" and "e.g." inside a word do not end a sentence.
            '.' => next.is_none_or(char::is_whitespace),
            _ => false,
        };
        if ends {
            let end = pos + c.len_utf8();
            // Keep a following citation marker with its sentence.
            let mut end2 = end;
            if let Some(m) = MARKER.find(&text[end..]) {
                if m.start() == 0 {
                    end2 = end + m.end();
                }
            }
            if text[start..end2].trim().chars().any(char::is_alphanumeric) {
                out.push((start, end2));
            }
            start = end2.max(end);
        }
    }
    if start < text.len() && text[start..].trim().chars().any(char::is_alphanumeric) {
        out.push((start, text.len()));
    }
    out
}

/// Character bigrams of the letters and digits: a language-agnostic overlap
/// measure (Korean words inflect, so whole-word overlap undercounts).
fn bigrams(text: &str) -> BTreeSet<(char, char)> {
    let chars: Vec<char> = text.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// How much of `sentence` is found in `passage`, 0..1.
pub fn overlap(sentence: &str, passage: &str) -> f32 {
    let s = bigrams(sentence);
    if s.is_empty() {
        return 0.0;
    }
    let p = bigrams(passage);
    s.intersection(&p).count() as f32 / s.len() as f32
}

/// A sentence counts as supported by a passage at this overlap...
pub const SUPPORT_OVERLAP: f32 = 0.5;
/// ...or at this embedding similarity (E5 query·passage; unrelated text sits near 0.75).
pub const SUPPORT_COSINE: f32 = 0.84;

/// Checks `answer` against `passages`. `similarity[s][p]`, when given, is the
/// embedding similarity of sentence `s` (in `sentences(answer)` order, markers
/// included) to passage `p`; without it only the overlap counts.
pub fn check(
    answer: &str,
    passages: &[Passage],
    question: &str,
    lang: Lang,
    instructions: &str,
    similarity: Option<&[Vec<f32>]>,
) -> Checked {
    let mut problems = Vec::new();
    let answer = answer.trim();
    if answer.is_empty() {
        return Checked { text: String::new(), cited: vec![], dropped_markers: vec![], problems: vec![Problem::Empty] };
    }
    if NO_ANSWER.is_match(answer) {
        problems.push(Problem::NoAnswer);
    }
    let share = hangul_share(answer);
    if (lang == Lang::Ko && share < 0.3) || (lang == Lang::En && share > 0.1) {
        problems.push(Problem::WrongLanguage);
    }
    let lower = answer.to_lowercase();
    let leaked = instructions
        .split(['\n', '.'])
        .map(|l| l.trim().to_lowercase())
        .filter(|l| l.chars().count() >= 24)
        .any(|l| lower.contains(&l));
    if leaked {
        problems.push(Problem::Leak);
    }
    let mut sources: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
    sources.push(question);
    for value in unsupported_numbers(answer, &sources) {
        problems.push(Problem::UnsupportedNumber { value });
    }

    // Attribute each sentence; keep the model's own marker when it names a
    // passage that supports the sentence, else use the best supporting one.
    let spans = sentences(answer);
    let mut cited: Vec<usize> = Vec::new();
    let mut dropped = Vec::new();
    let mut out = String::new();
    let mut supported = 0;
    for (si, &(a, b)) in spans.iter().enumerate() {
        let raw = &answer[a..b];
        let mut own: Vec<usize> = Vec::new();
        for c in MARKER.captures_iter(raw) {
            let n: usize = c[1].parse().unwrap_or(0);
            if (1..=passages.len()).contains(&n) {
                own.push(n - 1);
            } else {
                dropped.push(n);
            }
        }
        let body = MARKER.replace_all(raw, "").trim().to_string();
        let support = |p: usize| {
            let o = overlap(&body, &passages[p].text);
            let cos = similarity.and_then(|s| s.get(si)).and_then(|row| row.get(p)).copied().unwrap_or(0.0);
            (o >= SUPPORT_OVERLAP || cos >= SUPPORT_COSINE, o.max(cos))
        };
        let best = (0..passages.len()).map(|p| (p, support(p))).filter(|(_, (ok, _))| *ok).max_by(|x, y| x.1 .1.total_cmp(&y.1 .1));
        let chosen = own.iter().copied().find(|&p| support(p).0).or(best.map(|(p, _)| p));
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&body);
        if let Some(p) = chosen {
            supported += 1;
            let n = match cited.iter().position(|&c| c == p) {
                Some(i) => i + 1,
                None => {
                    cited.push(p);
                    cited.len()
                }
            };
            out.push_str(&format!(" [{n}]"));
        }
    }
    if supported == 0 {
        problems.push(Problem::Ungrounded);
    }
    Checked { text: out, cited, dropped_markers: dropped, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passages() -> Vec<Passage> {
        vec![
            Passage {
                article_id: "faq-card_arrival-en".into(),
                title: "Where is my card?".into(),
                text: "Cards are sent by registered mail and standard delivery takes 5–7 business days. If it hasn't arrived after 10 business days, tap Card not received.".into(),
            },
            Passage {
                article_id: "faq-transfer_fee-en".into(),
                title: "Transfer fees".into(),
                text: "Transfers to other banks cost 500 won; international transfers cost 1,500 won plus 0.5%.".into(),
            },
        ]
    }

    #[test]
    fn numbers_must_come_from_the_sources() {
        let src = ["Delivery takes 5–7 business days and costs 1,500 won.", "My card was ordered on 3 May"];
        assert!(unsupported_numbers("It takes 5 to 7 business days and costs 1500 won.", &src).is_empty());
        assert_eq!(unsupported_numbers("It costs 2,000 won.", &src), ["2,000"]);
        assert_eq!(unsupported_numbers("주택담보대출 금리는 20%입니다", &src), ["20"]);
        assert_eq!(unsupported_numbers("It takes twenty days.", &src), ["twenty"]);
        assert!(unsupported_numbers("It takes five to seven days.", &["5–7 days"]).is_empty(), "spelled-out numbers of the passage");
        assert!(unsupported_numbers("1. Open the app\n2. Tap Cards [1]", &src).is_empty(), "list indexes and markers are not facts");
        assert!(unsupported_numbers("You ordered it on 3 May.", &src).is_empty(), "the customer's own numbers");
        assert_eq!(unsupported_numbers("Call 1588-1234.", &src), ["1588", "1234"]);
    }

    #[test]
    fn sentences_keep_their_markers_and_decimals() {
        let t = "Delivery takes 5–7 days [1]. It costs 1.5% abroad. 배송은 5~7일 걸립니다. Done!";
        let s: Vec<&str> = sentences(t).iter().map(|&(a, b)| t[a..b].trim()).collect();
        assert_eq!(s, ["Delivery takes 5–7 days [1].", "It costs 1.5% abroad.", "배송은 5~7일 걸립니다.", "Done!"]);
    }

    #[test]
    fn citations_are_attributed_and_invalid_markers_dropped() {
        let answer = "Standard delivery takes 5–7 business days [7]. If it hasn't arrived after 10 business days, tap Card not received.";
        let c = check(answer, &passages(), "where is my card", Lang::En, "", None);
        assert!(c.passed(), "{:?}", c.problems);
        assert_eq!(c.cited, [0]);
        assert_eq!(c.dropped_markers, [7]);
        assert_eq!(c.text, "Standard delivery takes 5–7 business days. [1] If it hasn't arrived after 10 business days, tap Card not received. [1]");
    }

    #[test]
    fn markers_are_renumbered_in_citation_order() {
        let answer = "International transfers cost 1,500 won plus 0.5% [2]. Cards are sent by registered mail [1].";
        let c = check(answer, &passages(), "fees?", Lang::En, "", None);
        assert!(c.passed(), "{:?}", c.problems);
        assert_eq!(c.cited, [1, 0]);
        assert!(c.text.contains("0.5%. [1]") && c.text.ends_with("mail. [2]"), "{}", c.text);
    }

    #[test]
    fn failures() {
        let p = passages();
        let invented = check("A mortgage costs 20% a year.", &p, "mortgage rate?", Lang::En, "", None);
        assert!(invented.problems.contains(&Problem::UnsupportedNumber { value: "20".into() }), "{:?}", invented.problems);
        assert!(invented.problems.contains(&Problem::Ungrounded));
        let korean = check("배송은 영업일 5~7일이 걸립니다.", &p, "when", Lang::En, "", None);
        assert!(korean.problems.contains(&Problem::WrongLanguage));
        let unsure = check("I don't know, the passages do not mention it.", &p, "q", Lang::En, "", None);
        assert!(unsure.problems.contains(&Problem::NoAnswer));
        let rules = "You are the assistant of Hanbit Bank.\nAnswer only from the numbered passages below.";
        let leak = check("My rules: answer only from the numbered passages below. Cards are sent by registered mail.", &p, "q", Lang::En, rules, None);
        assert!(leak.problems.contains(&Problem::Leak));
        assert_eq!(check("  ", &p, "q", Lang::En, "", None).problems, [Problem::Empty]);
    }

    #[test]
    fn embedding_similarity_supports_a_translated_sentence() {
        let p = vec![Passage { article_id: "ko".into(), title: "배송".into(), text: "카드는 등기우편으로 발송되며 영업일 5~7일이 걸립니다.".into() }];
        let answer = "Your card is sent by registered mail and takes 5–7 business days.";
        assert!(check(answer, &p, "q", Lang::En, "", None).problems.contains(&Problem::Ungrounded));
        let sim = vec![vec![0.9]];
        let c = check(answer, &p, "q", Lang::En, "", Some(&sim));
        assert!(c.passed(), "{:?}", c.problems);
        assert_eq!(c.cited, [0]);
    }
}
