//! Text analysis for Korean and English in one analyzer, so a question that
//! mixes both ("카드 PIN 변경") or a tenant with both languages needs no
//! language routing at query time:
//! - Latin letters and digits form words: lower-cased, English stop words
//!   dropped, Snowball-stemmed ("cards", "carded" → "card").
//! - Hangul, kana and CJK ideographs form runs that are cut into overlapping
//!   character bigrams ("카드를" → "카드", "드를"): a dictionary-free analysis
//!   that matches stems with their particles attached (Korean morphology
//!   glues 를/은/에서 onto the noun), works offline and needs no ko-dic.
//!   A one-character run is kept as a unigram.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in every index.
pub const ANALYZER: &str = "aicc_ko_en";

/// Short function words that only add noise to FAQ matching.
const EN_STOP_WORDS: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "it", "its", "is", "are", "was", "were", "be",
    "been", "am", "do", "does", "did", "to", "of", "in", "on", "at", "for", "with", "and", "or", "so", "that",
    "this", "there", "can", "could", "would", "should", "will", "please", "hi", "hello", "what", "how", "why",
    "when", "where", "which", "who", "have", "has", "had", "about", "if", "as", "by", "from", "just", "still",
];

pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MixedTokenizer)
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(EN_STOP_WORDS.iter().map(|s| s.to_string())))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analyzed terms of `text`, in order (duplicates kept).
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Cjk,
    Other,
}

fn class(c: char) -> Class {
    match c as u32 {
        0x1100..=0x11FF // Hangul jamo
        | 0x3040..=0x30FF // kana
        | 0x3130..=0x318F // Hangul compatibility jamo
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF // CJK ideographs
        | 0xA960..=0xA97F
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF => Class::Cjk,
        _ if c.is_alphanumeric() => Class::Word,
        _ => Class::Other,
    }
}

/// Words and CJK bigrams, with byte offsets into the original text.
#[derive(Clone, Default)]
pub struct MixedTokenizer;

pub struct MixedTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for MixedTokenizer {
    type TokenStream<'a> = MixedTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> MixedTokenStream {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize| {
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position: tokens.len(),
                text: text[from..to].to_string(),
                position_length: 1,
            })
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let end_of = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
        let mut i = 0;
        while i < chars.len() {
            let kind = class(chars[i].1);
            let start = i;
            while i < chars.len() && class(chars[i].1) == kind {
                i += 1;
            }
            match kind {
                Class::Other => {}
                Class::Word => push(chars[start].0, end_of(i)),
                Class::Cjk if i - start == 1 => push(chars[start].0, end_of(i)),
                Class::Cjk => {
                    for j in start..i - 1 {
                        push(chars[j].0, end_of(j + 2));
                    }
                }
            }
        }
        MixedTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for MixedTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_lower_cased_stemmed_and_stripped_of_stop_words() {
        assert_eq!(terms("I LOST my Cards yesterday!"), ["lost", "card", "yesterday"]);
        assert_eq!(terms("transfers transferred"), ["transfer", "transfer"]);
    }

    #[test]
    fn korean_is_cut_into_bigrams_that_survive_particles() {
        assert_eq!(terms("카드를 잃어버렸어요"), ["카드", "드를", "잃어", "어버", "버렸", "렸어", "어요"]);
        // The stem of "카드를" and "카드가" is shared.
        assert!(terms("카드가").contains(&"카드".to_string()));
        assert_eq!(terms("돈"), ["돈"], "a one-syllable word stays whole");
    }

    #[test]
    fn mixed_text_and_query_syntax_are_plain_text() {
        assert_eq!(terms("카드 PIN 변경"), ["카드", "pin", "변경"]);
        assert_eq!(terms("\"card\" AND (pin:*~) -fee"), ["card", "pin", "fee"]);
        assert!(terms("?!… 🙂🙂").is_empty());
        assert_eq!(terms("2,000원"), ["2", "000", "원"]);
    }
}
