//! Labelled utterances from CSV: a header row, columns found by name (`text`,
//! `intent`, optional `language`), in any order. Bad input is one error that
//! lists every problem with its line, so a user fixes a file in one pass.
//! Pure (bytes in, examples out): the API's import and the training code
//! (aicc-models `intent::data`, which adds reading a file) share it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Longest text accepted, in characters (E5 sees at most 512 tokens anyway).
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub text: String,
    pub intent: String,
    pub language: Option<String>,
}

/// One problem; `line` is the 1-based line where the row starts (`None`: the
/// file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub line: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct DataError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {n} problem{}", self.file, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            match p.line {
                Some(l) => write!(f, "\n  line {l}: {}", p.message)?,
                None => write!(f, "\n  {}", p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for DataError {}

/// What a file must satisfy beyond well-formed rows.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Training needs two examples of a class (one may go to the dev split).
    pub min_per_class: usize,
    pub min_classes: usize,
}

impl Rules {
    pub const TRAIN: Rules = Rules { min_per_class: 2, min_classes: 2 };
    /// A test set may hold a single example of a class, or a single class.
    pub const TEST: Rules = Rules { min_per_class: 1, min_classes: 1 };
}

pub fn parse(bytes: &[u8], file: &str, rules: Rules) -> Result<Vec<Example>, DataError> {
    let mut problems = vec![];
    let fail = |problems: Vec<Problem>| Err(DataError { file: file.to_string(), problems });
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return fail(vec![Problem { line: None, message: "the file is empty (a header row `text,intent` is required)".into() }]);
    }
    // Byte records: a non-UTF-8 row is reported with its line instead of ending the read.
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return fail(vec![Problem { line: Some(1), message: format!("unreadable header: {e}") }]),
        None => return fail(vec![Problem { line: None, message: "the file is empty".into() }]),
    };
    let header_line = header.position().map_or(1, |p| p.line());
    let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase()).collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let (text_col, intent_col, lang_col) = (col("text"), col("intent"), col("language"));
    let missing: Vec<&str> = [("text", text_col), ("intent", intent_col)].iter().filter(|(_, c)| c.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        let found = names.join(",");
        return fail(vec![Problem {
            line: Some(header_line),
            message: format!("missing column{} {} (the header row is `{found}`; required: text, intent; optional: language)",
                if missing.len() > 1 { "s" } else { "" }, missing.join(", ")),
        }]);
    }
    let (text_col, intent_col) = (text_col.unwrap_or(0), intent_col.unwrap_or(0));

    let mut examples = vec![];
    let mut lines = vec![];
    // Exact text → (line, intent): byte-identical rows are duplicates. Trimmed
    // text → (line, intent): the model sees trimmed text, so two intents for it
    // conflict. (BANKING77 repeats 4 texts with extra newlines, same intent:
    // harmless, so those are accepted.)
    let mut exact: HashMap<String, u64> = HashMap::new();
    let mut trimmed: HashMap<String, (u64, String)> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                problems.push(Problem { line, message: format!("unreadable CSV: {e}") });
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).map(std::str::from_utf8);
        let (raw_text, raw_intent) = match (field(text_col), field(intent_col)) {
            (Some(Ok(t)), Some(Ok(i))) => (t, i),
            (None, _) | (_, None) => {
                problems.push(Problem { line: Some(line), message: format!("{} fields, the header has {}", record.len(), names.len()) });
                continue;
            }
            _ => {
                problems.push(Problem { line: Some(line), message: "not valid UTF-8 (save the file as UTF-8)".into() });
                continue;
            }
        };
        let language = match lang_col.and_then(field) {
            Some(Ok(l)) if !l.trim().is_empty() => Some(l.trim().to_string()),
            Some(Err(_)) => {
                problems.push(Problem { line: Some(line), message: "not valid UTF-8 (save the file as UTF-8)".into() });
                continue;
            }
            _ => None,
        };
        let (text, intent) = (raw_text.trim(), raw_intent.trim());
        let chars = text.chars().count();
        let mut ok = true;
        if text.is_empty() {
            problems.push(Problem { line: Some(line), message: "empty text".into() });
            ok = false;
        } else if chars > MAX_TEXT_CHARS {
            problems.push(Problem { line: Some(line), message: format!("the text is {chars} characters long; at most {MAX_TEXT_CHARS} are allowed") });
            ok = false;
        }
        if intent.is_empty() {
            problems.push(Problem { line: Some(line), message: "empty intent".into() });
            ok = false;
        }
        if !ok {
            continue;
        }
        if let Some(first) = exact.get(raw_text) {
            if trimmed.get(text).is_some_and(|(_, i)| i == intent) {
                problems.push(Problem { line: Some(line), message: format!("duplicate of line {first}") });
                continue;
            }
        }
        if let Some((first, other)) = trimmed.get(text) {
            if other != intent {
                problems.push(Problem {
                    line: Some(line),
                    message: format!("the same text as line {first} with another intent (`{intent}` here, `{other}` there)"),
                });
                continue;
            }
        }
        exact.entry(raw_text.to_string()).or_insert(line);
        trimmed.entry(text.to_string()).or_insert((line, intent.to_string()));
        lines.push(line);
        examples.push(Example { text: text.to_string(), intent: intent.to_string(), language });
    }
    if examples.is_empty() && problems.is_empty() {
        problems.push(Problem { line: None, message: "no rows after the header".into() });
    }
    let mut per_class: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (e, l) in examples.iter().zip(&lines) {
        per_class.entry(&e.intent).or_default().push(*l);
    }
    for (intent, ls) in &per_class {
        if ls.len() < rules.min_per_class {
            problems.push(Problem {
                line: ls.first().copied(),
                message: format!("intent `{intent}` has only {} example{}; at least {} are needed",
                    ls.len(), if ls.len() == 1 { "" } else { "s" }, rules.min_per_class),
            });
        }
    }
    if !per_class.is_empty() && per_class.len() < rules.min_classes {
        let names: Vec<&str> = per_class.keys().copied().collect();
        problems.push(Problem {
            line: None,
            message: format!("only {} intent ({}); at least {} are needed", per_class.len(), names.join(", "), rules.min_classes),
        });
    }
    // In file order; whole-file problems last.
    problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
    if problems.is_empty() {
        Ok(examples)
    } else {
        fail(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(csv: &[u8]) -> Vec<Problem> {
        parse(csv, "t.csv", Rules::TRAIN).expect_err("should be rejected").problems
    }

    fn has(ps: &[Problem], line: Option<u64>, needle: &str) -> bool {
        ps.iter().any(|p| p.line == line && p.message.contains(needle))
    }

    #[test]
    fn columns_by_name_in_any_order() {
        let a = parse(b"intent,language,text\ngreet,en,hello\ngreet,en,hi there\nbye,,see you\nbye,ko,\xEC\x95\x88\xEB\x85\x95\n", "t", Rules::TRAIN).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a[0], Example { text: "hello".into(), intent: "greet".into(), language: Some("en".into()) });
        assert_eq!(a[2].language, None);
        assert_eq!(a[3].text, "안녕");
        let b = parse(b"\xEF\xBB\xBFText,Intent\n\"a, quoted\nmultiline\",x\nb,x\nc,y\nd,y\n", "t", Rules::TRAIN).unwrap();
        assert_eq!(b[0].text, "a, quoted\nmultiline");
        assert_eq!(b[0].intent, "x");
    }

    #[test]
    fn empty_file_and_missing_columns() {
        assert!(has(&problems(b""), None, "empty"));
        assert!(has(&problems(b"  \n\n"), None, "empty"));
        assert!(has(&problems(b"text,intent\n"), None, "no rows"));
        let ps = problems(b"utterance,label\nhello,greet\n");
        assert!(has(&ps, Some(1), "missing columns text, intent"), "{ps:?}");
        assert!(has(&problems(b"text,lang\nhello,en\n"), Some(1), "missing column intent"));
    }

    #[test]
    fn every_row_problem_is_listed_with_its_line() {
        let long = "x".repeat(100_000);
        let csv = format!(
            "text,intent\nhello,greet\n  ,greet\nhi,\n{long},greet\nhello,greet\nhey,greet\nhey,bye\nbye now,bye\ncya,bye\nonly,lonely\n"
        );
        let mut bytes = csv.into_bytes();
        bytes.extend_from_slice(b"caf\xE9,bye\n"); // Latin-1, line 12
        let ps = problems(&bytes);
        assert!(has(&ps, Some(3), "empty text"), "{ps:?}");
        assert!(has(&ps, Some(4), "empty intent"), "{ps:?}");
        assert!(has(&ps, Some(5), "100000 characters"), "{ps:?}");
        assert!(has(&ps, Some(6), "duplicate of line 2"), "{ps:?}");
        assert!(has(&ps, Some(8), "same text as line 7"), "{ps:?}");
        assert!(has(&ps, Some(11), "`lonely` has only 1 example"), "{ps:?}");
        assert!(has(&ps, Some(12), "UTF-8"), "{ps:?}");
        assert_eq!(ps.len(), 7, "{ps:?}");
        let shown = DataError { file: "t.csv".into(), problems: ps }.to_string();
        assert!(shown.starts_with("t.csv: 7 problems\n  line 3: empty text"), "{shown}");
    }

    #[test]
    fn a_multiline_row_is_named_by_its_first_line() {
        let ps = problems(b"text,intent\na,x\nb,x\n\"two\nlines\",\nc,y\nd,y\n");
        assert!(has(&ps, Some(4), "empty intent"), "{ps:?}");
        assert_eq!(ps.len(), 1);
    }

    #[test]
    fn one_class_and_short_rows() {
        let ps = problems(b"text,intent\na,x\nb,x\n");
        assert!(has(&ps, None, "only 1 intent (x)"), "{ps:?}");
        let ps = problems(b"intent,text\nx\nx,a\nx,b\ny,c\ny,d\n");
        assert!(has(&ps, Some(2), "1 fields"), "{ps:?}");
        // A test set may have one example of a class, and one class.
        assert_eq!(parse(b"text,intent\na,x\n", "t", Rules::TEST).unwrap().len(), 1);
    }

    #[test]
    fn whitespace_variants_with_the_same_intent_are_kept() {
        let ok = parse(b"text,intent\n\"\nhi\",x\nhi,x\nb,y\nc,y\n", "t", Rules::TRAIN).unwrap();
        assert_eq!(ok.len(), 4);
        let ps = problems(b"text,intent\n\"\nhi\",x\nhi,y\nb,y\nc,x\n");
        assert!(has(&ps, Some(4), "another intent"), "{ps:?}");
    }
}
