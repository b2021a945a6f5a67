//! From token ids to the text a customer sees: incremental detokenisation
//! that never splits a UTF-8 character (a Korean syllable is three bytes,
//! often spread over two byte-level tokens), and stop strings that are cut
//! off before they are shown.

use super::tokenizer::GgufTokenizer;
use super::LlmError;

/// Decodes a growing id sequence piece by piece (the text-generation-inference
/// scheme: re-decode a short window and emit what it added, unless that ends
/// in an incomplete character).
#[derive(Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Adds one id; returns the whole characters it completes, if any.
    pub fn push(&mut self, tokenizer: &GgufTokenizer, id: u32) -> Result<Option<String>, LlmError> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let after = tokenizer.decode(&self.ids[self.prefix..])?;
        if after.len() > before.len() && !after.ends_with('\u{FFFD}') {
            let piece = match after.get(before.len()..) {
                Some(p) if after.starts_with(&before) => p.to_string(),
                // The window decodes differently with the new id: emit the difference by characters.
                _ => after.chars().skip(before.chars().count()).collect(),
            };
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// What is still held back (an incomplete character at the very end).
    pub fn flush(&mut self, tokenizer: &GgufTokenizer) -> Result<Option<String>, LlmError> {
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let after = tokenizer.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        let rest: String = after.chars().skip(before.chars().count()).filter(|&c| c != '\u{FFFD}').collect();
        Ok((!rest.is_empty()).then_some(rest))
    }
}

/// Holds back text that may be the start of a stop string.
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

pub enum Filtered {
    /// Text to show now (may be empty).
    Show(String),
    /// A stop string was reached: show this text, then end.
    Stop(String),
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    pub fn push(&mut self, piece: &str) -> Filtered {
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let shown = self.held[..at].to_string();
            self.held.clear();
            return Filtered::Stop(shown);
        }
        // Keep the longest tail that some stop string starts with.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in self.held.char_indices() {
                let tail = &self.held[i..];
                if s.starts_with(tail) {
                    keep = keep.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let shown = self.held[..cut].to_string();
        self.held.drain(..cut);
        Filtered::Show(shown)
    }

    /// At the end of generation nothing is a stop any more.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            match f.push(p) {
                Filtered::Show(s) => out.push_str(&s),
                Filtered::Stop(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn stop_strings_across_pieces_are_cut_and_false_starts_are_shown() {
        assert_eq!(run(&["\nUser:"], &["Hi", " there", "\nUs", "er:", " more"]), ("Hi there".into(), true));
        assert_eq!(run(&["\nUser:"], &["a\nU", "nless"]), ("a\nUnless".into(), false));
        assert_eq!(run(&["끝"], &["안녕", "하세요 끝", "입니다"]), ("안녕하세요 ".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }
}
