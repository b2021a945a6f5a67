//! Knowledge-base import files: CSV (`,` `;` or tab), JSON and XLSX, parsed
//! into [`Article`]s and validated as a whole.
//!
//! The columns are `id?,intent?,language?,question,answer,tags?`, found by name
//! in a header row (case-insensitive; unknown columns are ignored). Every
//! problem in a file is reported with the line (CSV, JSON) or spreadsheet row
//! (XLSX) it is on, and a file with any problem yields no articles at all
//! ([`KbError::Invalid`]).
//!
//! The format is told by the upload's content type or file name and checked
//! against the bytes ([`detect_format`]); an XLSX file is checked for zip-bomb
//! shapes before the spreadsheet reader touches it.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};

use aicc_core::{Article, KbError, LineError, Upload};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The most articles one file may hold.
pub const MAX_ARTICLES: usize = 100_000;
/// Limits on the fields, in characters (Unicode scalar values).
pub const MAX_QUESTION_CHARS: usize = 1_000;
pub const MAX_ANSWER_CHARS: usize = 20_000;
pub const MAX_ID_CHARS: usize = 128;
pub const MAX_INTENT_CHARS: usize = 128;
/// The most line errors reported; further ones are summed up in one last entry.
pub const MAX_ERRORS: usize = 1_000;

/// The most an XLSX file may unpack to, all its parts together.
pub const MAX_XLSX_UNPACKED_BYTES: u64 = 200 * MIB;
/// The most parts (zip entries) an XLSX file may have.
pub const MAX_XLSX_ENTRIES: usize = 10_000;
/// A part larger than [`XLSX_RATIO_MIN_BYTES`] may be compressed at most this much.
pub const MAX_XLSX_RATIO: u64 = 100;
pub const XLSX_RATIO_MIN_BYTES: u64 = 10 * MIB;

const MIB: u64 = 1024 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";
/// OLE compound file: legacy `.xls`, or an encrypted (password-protected) `.xlsx`.
const CFB_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// An accepted import format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Json,
    Xlsx,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
            Format::Xlsx => "XLSX",
        }
    }
}

// ---------------------------------------------------------------------------
// Format detection
// ---------------------------------------------------------------------------

/// What a content type says about the format.
enum TypeHint {
    /// A definite format.
    Format(Format),
    /// Text of some kind (`text/plain`): CSV or JSON, by name or content.
    Text,
    /// Says nothing (`application/octet-stream`, none, …): by name, else by content.
    Generic,
}

fn content_type_hint(content_type: &str) -> Result<TypeHint, KbError> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(match essence.as_str() {
        "" | "application/octet-stream" | "binary/octet-stream" | "application/unknown"
        | "application/x-download" | "application/force-download" | "application/zip"
        | "application/x-zip" | "application/x-zip-compressed"
        // Windows labels `.csv` files so; a legacy `.xls` is then told by its bytes.
        | "application/vnd.ms-excel" => TypeHint::Generic,
        "text/plain" => TypeHint::Text,
        "text/csv" | "application/csv" | "text/x-csv" | "application/x-csv"
        | "text/comma-separated-values" | "text/x-comma-separated-values"
        | "text/tab-separated-values" => TypeHint::Format(Format::Csv),
        "application/json" | "text/json" | "application/x-json" => TypeHint::Format(Format::Json),
        XLSX_MIME => TypeHint::Format(Format::Xlsx),
        other if other.ends_with("+json") => TypeHint::Format(Format::Json),
        other => {
            return Err(KbError::UnsupportedFormat(format!(
                "unsupported content type \"{other}\"; upload a CSV, JSON or XLSX file"
            )))
        }
    })
}

/// The lower-cased extension of a file name, if it has one.
fn extension(filename: &str) -> Option<String> {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() && ext.is_empty() {
        return None;
    }
    Some(ext.trim().to_ascii_lowercase())
}

fn extension_hint(filename: &str) -> Result<Option<Format>, KbError> {
    Ok(match extension(filename).as_deref() {
        Some("csv" | "tsv" | "tab") => Some(Format::Csv),
        Some("json") => Some(Format::Json),
        Some("xlsx" | "xlsm") => Some(Format::Xlsx),
        Some("xls") => {
            return Err(KbError::UnsupportedFormat(
                "legacy Excel .xls files are not supported; save the sheet as .xlsx or CSV (UTF-8)".into(),
            ))
        }
        _ => None,
    })
}

/// Whether the upload is tab-separated by its name or content type.
fn is_tab_separated(upload: &Upload) -> bool {
    let by_type = upload
        .content_type
        .as_deref()
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/tab-separated-values")
        })
        .unwrap_or(false);
    let by_name = upload
        .filename
        .as_deref()
        .and_then(extension)
        .map(|e| e == "tsv" || e == "tab")
        .unwrap_or(false);
    by_type || by_name
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Empty, or nothing but a BOM and whitespace.
fn is_blank(bytes: &[u8]) -> bool {
    strip_bom(bytes).iter().all(|b| b.is_ascii_whitespace())
}

fn first_significant_byte(bytes: &[u8]) -> Option<u8> {
    strip_bom(bytes).iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(EMPTY_ZIP_MAGIC)
}

fn is_utf16(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF")
}

/// Whether the bytes look like binary data rather than text: a NUL, or more
/// than 1% control characters (other than tab, newline, carriage return, form
/// feed) in the first 8 KiB.
fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return true;
    }
    let head = &bytes[..bytes.len().min(8192)];
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    controls * 100 > head.len()
}

/// Guesses the format from the bytes alone.
fn sniff(bytes: &[u8]) -> Result<Format, KbError> {
    if is_blank(bytes) {
        return Ok(Format::Csv);
    }
    if is_zip(bytes) {
        return Ok(Format::Xlsx);
    }
    if bytes.starts_with(CFB_MAGIC) {
        return Err(legacy_excel());
    }
    if is_utf16(bytes) {
        return Err(utf16());
    }
    if looks_binary(bytes) {
        return Err(KbError::UnsupportedFormat(
            "the file is not CSV, JSON or XLSX (it looks like binary data)".into(),
        ));
    }
    Ok(sniff_text(bytes))
}

/// CSV or JSON, for bytes already known to be text.
fn sniff_text(bytes: &[u8]) -> Format {
    match first_significant_byte(bytes) {
        Some(b'[' | b'{') => Format::Json,
        _ => Format::Csv,
    }
}

fn legacy_excel() -> KbError {
    KbError::UnsupportedFormat(
        "the file is a legacy Excel .xls workbook or a password-protected spreadsheet; \
         save it as an unprotected .xlsx or as CSV (UTF-8)"
            .into(),
    )
}

fn utf16() -> KbError {
    KbError::UnsupportedFormat("the file is UTF-16 text; save it as UTF-8".into())
}

/// Checks that the bytes are what `told` says; `source` names who said it.
fn check_bytes(format: Format, bytes: &[u8], source: &str) -> Result<Format, KbError> {
    if is_blank(bytes) {
        // Nothing to contradict; `parse` reports the empty file.
        return Ok(format);
    }
    let mismatch =
        |what: &str| KbError::UnsupportedFormat(format!("the {source} says {} but the file {what}", format.name()));
    match format {
        Format::Xlsx => {
            if bytes.starts_with(ZIP_MAGIC) {
                Ok(format)
            } else if bytes.starts_with(CFB_MAGIC) {
                Err(legacy_excel())
            } else if bytes.starts_with(EMPTY_ZIP_MAGIC) {
                Err(mismatch("is an empty zip archive"))
            } else if !looks_binary(bytes) {
                Err(mismatch("is text, not a spreadsheet (an XLSX file is a zip archive)"))
            } else {
                Err(mismatch("is not a zip archive, so not an XLSX spreadsheet"))
            }
        }
        Format::Json => match first_significant_byte(bytes) {
            Some(b'[' | b'{') => Ok(format),
            _ if is_zip(bytes) => Err(mismatch("is a zip archive (an XLSX spreadsheet?)")),
            _ if is_utf16(bytes) => Err(utf16()),
            _ => Err(mismatch("does not start with `[` or `{`")),
        },
        Format::Csv => {
            if is_zip(bytes) {
                Err(mismatch("is a zip archive (an XLSX spreadsheet? upload it as .xlsx)"))
            } else if bytes.starts_with(CFB_MAGIC) {
                Err(legacy_excel())
            } else if is_utf16(bytes) {
                Err(utf16())
            } else if bytes.contains(&0) {
                Err(mismatch("contains NUL bytes, so it is not UTF-8 text"))
            } else {
                Ok(format)
            }
        }
    }
}

/// Tells the format of an upload by its content type (`text/csv`,
/// `application/json`, the XLSX type; `application/octet-stream` and none defer
/// to the name), else by its file extension (`.csv`, `.tsv`, `.json`, `.xlsx`),
/// else by sniffing the bytes; and checks the bytes agree: an XLSX file must be
/// a zip archive, JSON must start with `[` or `{`, CSV must be text (not a zip,
/// no NUL bytes). A mismatch or an unknown content type is
/// [`KbError::UnsupportedFormat`].
pub fn detect_format(upload: &Upload) -> Result<Format, KbError> {
    let bytes = &upload.bytes;
    let type_hint = match upload.content_type.as_deref() {
        Some(t) => content_type_hint(t)?,
        None => TypeHint::Generic,
    };
    // The name counts only where the content type leaves the format open.
    let name_hint = match (&type_hint, upload.filename.as_deref()) {
        (TypeHint::Format(_), _) | (_, None) => None,
        (_, Some(name)) => extension_hint(name)?,
    };
    let content_type = upload
        .content_type
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let filename = upload.filename.as_deref().unwrap_or("");
    match (type_hint, name_hint) {
        (TypeHint::Format(format), _) => check_bytes(format, bytes, &format!("content type \"{content_type}\"")),
        (TypeHint::Text | TypeHint::Generic, Some(format)) => {
            check_bytes(format, bytes, &format!("file name \"{filename}\""))
        }
        (TypeHint::Text, None) => {
            if is_blank(bytes) {
                return Ok(Format::Csv);
            }
            let source = format!("content type \"{content_type}\"");
            if is_zip(bytes) || bytes.starts_with(CFB_MAGIC) || looks_binary(bytes) {
                return Err(KbError::UnsupportedFormat(format!(
                    "the {source} says text but the file is binary (an XLSX spreadsheet? upload it as .xlsx)"
                )));
            }
            check_bytes(sniff_text(bytes), bytes, &source)
        }
        (TypeHint::Generic, None) => sniff(bytes),
    }
}

// ---------------------------------------------------------------------------
// Ids and languages
// ---------------------------------------------------------------------------

/// A stable id for an article without one: `faq-` and the first 16 hex digits
/// of the SHA-256 of `language`, a newline and the question (trimmed, inner
/// whitespace collapsed to one space, lower-cased). The same input gives the
/// same id everywhere.
pub fn stable_id(language: &str, question: &str) -> String {
    let normalised = question.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let mut hasher = Sha256::new();
    hasher.update(language.trim().as_bytes());
    hasher.update(b"\n");
    hasher.update(normalised.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(4 + 16);
    id.push_str("faq-");
    for byte in &digest[..8] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

fn is_hangul(c: char) -> bool {
    matches!(c,
        '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}'
        | '\u{A960}'..='\u{A97F}' | '\u{D7B0}'..='\u{D7FF}')
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}')
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// ISO 639-1 for whatlang's ISO 639-3 languages.
fn iso639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    }
}

/// The language of a text as an ISO 639-1 code: `ko` when a good share (a
/// quarter or more) of its letters are Hangul and Hangul leads the CJK
/// scripts (Korean FAQs name `Apple Pay`, `OTP`, …), `ja` / `zh` likewise for
/// kana / Han; otherwise whatlang's guess, trusted for non-Latin scripts and,
/// for Latin text, only when whatlang calls it reliable — short or unclear
/// Latin text is `en`. Plain-ASCII text full of English function words is
/// `en` without asking whatlang (which costs ~100 µs a text: an import of
/// 50,000 rows without languages would spend seconds on it).
pub fn detect_language(text: &str) -> String {
    let (mut letters, mut hangul, mut kana, mut han, mut non_ascii) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        if c.is_ascii() {
            continue;
        }
        non_ascii += 1;
        if is_hangul(c) {
            hangul += 1;
        } else if is_kana(c) {
            kana += 1;
        } else if is_han(c) {
            han += 1;
        }
    }
    if letters == 0 {
        return "en".into();
    }
    if hangul > 0 && hangul >= kana + han && hangul * 4 >= letters {
        return "ko".into();
    }
    if kana > 0 && (kana + han) * 4 >= letters {
        return "ja".into();
    }
    if han > 0 && hangul == 0 && han * 4 >= letters {
        return "zh".into();
    }
    if non_ascii * 20 <= letters && looks_english(text) {
        return "en".into();
    }
    // whatlang's time grows with the text; the head of an answer tells as much.
    let head = match text.char_indices().nth(LANGUAGE_SAMPLE_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    };
    match whatlang::detect(head) {
        Some(info) if info.script() != whatlang::Script::Latin => iso639_1(info.lang()).into(),
        Some(info) if info.is_reliable() => iso639_1(info.lang()).into(),
        _ => "en".into(),
    }
}

/// How much of a text whatlang looks at.
const LANGUAGE_SAMPLE_CHARS: usize = 1_000;

/// English function words (sorted) that other Latin-script languages do not use as
/// words (so not `a`, `an`, `do`, `for`, `has`, `i`, `in`, `is`, `me`, `of`,
/// `on`, `to`, `was`, `we`, `will`, …).
const ENGLISH_WORDS: &[&str] = &[
    "about", "after", "also", "and", "any", "are", "at", "be", "been", "before", "between", "but", "by", "can",
    "can't", "could", "did", "didn't", "does", "doesn't", "don't", "down", "each", "every", "from", "get", "hasn't",
    "have", "haven't", "here", "how", "i'm", "if", "into", "isn't", "it", "it's", "its", "just", "may", "more", "must",
    "my", "need", "not", "off", "only", "or", "other", "our", "out", "over", "please", "same", "should", "some",
    "than", "that", "the", "their", "them", "then", "there", "they", "they're", "this", "through", "too", "toward",
    "towards", "under", "until", "up", "us", "very", "want", "we're", "were", "what", "when", "whenever", "where",
    "which", "while", "who", "why", "with", "within", "without", "won't", "would", "yes", "you", "you're", "your",
];

/// At least three words, a sixth or more of them English function words
/// (English FAQ texts run at a fifth to a half; other languages near none).
fn looks_english(text: &str) -> bool {
    let (mut words, mut english) = (0usize, 0usize);
    for word in text.split(|c: char| !(c.is_alphabetic() || c == '\'')) {
        let word = word.trim_matches('\'');
        if word.is_empty() {
            continue;
        }
        words += 1;
        if word.len() <= 8 && ENGLISH_WORDS.binary_search(&word.to_ascii_lowercase().as_str()).is_ok() {
            english += 1;
        }
    }
    words >= 3 && english * 6 >= words
}

/// Normalises a language column value (`EN`, `en-US`, `ko_KR`, `eng` → `en`,
/// `ko`, `en`) or says why it is not a language code.
fn normalise_language(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let primary = trimmed.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    let valid = (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase());
    if !valid {
        return Err(format!(
            "language \"{trimmed}\" is not a language code (use e.g. en, ko)"
        ));
    }
    if primary.len() == 3 {
        // ISO 639-2/B codes first, then whatlang's ISO 639-3 ones.
        let bibliographic = match primary.as_str() {
            "chi" | "zho" => Some("zh"),
            "fre" => Some("fr"),
            "ger" => Some("de"),
            "dut" => Some("nl"),
            "gre" => Some("el"),
            "cze" => Some("cs"),
            "per" | "fas" => Some("fa"),
            "rum" => Some("ro"),
            "slo" => Some("sk"),
            "arm" => Some("hy"),
            "geo" => Some("ka"),
            "wel" => Some("cy"),
            "msa" | "may" => Some("ms"),
            "nor" => Some("no"),
            _ => None,
        };
        if let Some(code) = bibliographic {
            return Ok(code.into());
        }
        if let Some(lang) = whatlang::Lang::from_code(primary.as_str()) {
            return Ok(iso639_1(lang).into());
        }
    }
    Ok(primary)
}

fn validate_id(id: &str) -> Result<(), String> {
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(format!("id is {chars} characters; the limit is {MAX_ID_CHARS}"));
    }
    if let Some(bad) = id.chars().find(|&c| !is_id_char(c)) {
        return Err(format!(
            "id \"{id}\" has the character {bad:?}; ids may only use letters A-Z and a-z, digits and . _ : - ?"
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9._:-]`, and `?`: the demo bank's ids carry the banking77
/// intent `reverted_card_payment?` (`faq-reverted_card_payment?-en`).
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '?')
}

/// Splits a tags cell on `;`, `|` and `,`; trims, drops empties and repeats.
fn split_tags(raw: &str, into: &mut Vec<String>) {
    for tag in raw.split([';', '|', ',']) {
        push_tag(tag, into);
    }
}

fn push_tag(tag: &str, into: &mut Vec<String>) {
    let tag = tag.trim();
    if !tag.is_empty() && !into.iter().any(|t| t == tag) {
        into.push(tag.to_string());
    }
}

// ---------------------------------------------------------------------------
// Validation shared by the formats
// ---------------------------------------------------------------------------

/// The known columns, in the contract's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Intent,
    Language,
    Question,
    Answer,
    Tags,
}

const COLUMNS: [Column; 6] = [
    Column::Id,
    Column::Intent,
    Column::Language,
    Column::Question,
    Column::Answer,
    Column::Tags,
];

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Intent => "intent",
            Column::Language => "language",
            Column::Question => "question",
            Column::Answer => "answer",
            Column::Tags => "tags",
        }
    }

    fn from_name(name: &str) -> Option<Column> {
        let name = name.trim().trim_start_matches('\u{feff}').trim();
        COLUMNS.iter().copied().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    fn required(self) -> bool {
        matches!(self, Column::Question | Column::Answer)
    }
}

/// Where each known column is in a header row.
#[derive(Debug, Default)]
struct Header {
    index: [Option<usize>; 6],
}

impl Header {
    /// Maps header cell names to columns; the errors are for line `line`.
    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>, line: u64, errors: &mut Vec<LineError>) -> Header {
        let mut header = Header::default();
        for (i, name) in names.into_iter().enumerate() {
            let Some(column) = Column::from_name(name) else {
                continue;
            };
            let slot = &mut header.index[column as usize];
            match slot {
                Some(first) => errors.push(LineError {
                    line,
                    message: format!(
                        "column \"{}\" appears twice (columns {} and {})",
                        column.name(),
                        *first + 1,
                        i + 1
                    ),
                }),
                None => *slot = Some(i),
            }
        }
        for column in COLUMNS {
            if column.required() && header.index[column as usize].is_none() {
                errors.push(LineError {
                    line,
                    message: format!("missing required column \"{}\"", column.name()),
                });
            }
        }
        header
    }

    fn get(&self, column: Column) -> Option<usize> {
        self.index[column as usize]
    }
}

/// The raw values of one article, before validation.
#[derive(Debug, Default)]
struct Fields {
    id: Option<String>,
    intent: Option<String>,
    language: Option<String>,
    question: Option<String>,
    answer: Option<String>,
    tags: Vec<String>,
    /// Columns whose value could not be read (wrong type, bad encoding): their
    /// problem is reported already, so no "is empty" on top.
    unreadable: [bool; 6],
}

impl Fields {
    fn mark_unreadable(&mut self, column: Column) {
        self.unreadable[column as usize] = true;
    }

    fn readable(&self, column: Column) -> bool {
        !self.unreadable[column as usize]
    }

    fn set(&mut self, column: Column, value: String) {
        match column {
            Column::Id => self.id = Some(value),
            Column::Intent => self.intent = Some(value),
            Column::Language => self.language = Some(value),
            Column::Question => self.question = Some(value),
            Column::Answer => self.answer = Some(value),
            Column::Tags => split_tags(&value, &mut self.tags),
        }
    }

    fn is_blank(&self) -> bool {
        let blank = |v: &Option<String>| v.as_deref().map(|s| s.trim().is_empty()).unwrap_or(true);
        blank(&self.id)
            && blank(&self.intent)
            && blank(&self.language)
            && blank(&self.question)
            && blank(&self.answer)
            && self.tags.is_empty()
    }
}

/// A required text field: trimmed, non-empty, at most `limit` characters.
/// `None` (with no new problem) when the value was unreadable.
fn required_text(
    value: Option<String>,
    readable: bool,
    column: Column,
    limit: usize,
    errors: &mut Vec<String>,
) -> Option<String> {
    let name = column.name();
    let value = value.as_deref().map(str::trim).unwrap_or("");
    if !readable {
        return None;
    }
    if value.is_empty() {
        errors.push(format!("{name} is empty"));
        return None;
    }
    let chars = value.chars().count();
    if chars > limit {
        errors.push(format!("{name} is {chars} characters; the limit is {limit}"));
        return None;
    }
    Some(value.to_string())
}

/// Collects the articles of a file and every problem found in it.
struct Collector {
    articles: Vec<Article>,
    errors: Vec<LineError>,
    /// The line each id was first seen on.
    first_line: HashMap<String, u64>,
    rows: usize,
}

impl Collector {
    fn new() -> Collector {
        Collector {
            articles: Vec::new(),
            errors: Vec::new(),
            first_line: HashMap::new(),
            rows: 0,
        }
    }

    fn error(&mut self, line: u64, message: impl Into<String>) {
        self.errors.push(LineError {
            line,
            message: message.into(),
        });
    }

    /// Counts a row; false (after recording the error) when it is one too many
    /// and reading should stop.
    fn count_row(&mut self, line: u64) -> bool {
        self.rows += 1;
        if self.rows > MAX_ARTICLES {
            self.error(
                line,
                format!("the file has more than {MAX_ARTICLES} articles; the limit is {MAX_ARTICLES}"),
            );
            return false;
        }
        true
    }

    /// A row that is wrong as a whole (wrong field count, not an object):
    /// `message` is its only error.
    fn reject(&mut self, line: u64, message: String) -> bool {
        if !self.count_row(line) {
            return false;
        }
        self.error(line, message);
        true
    }

    /// Validates one row; `problems` are those found while reading it (types,
    /// encoding). False when reading should stop.
    fn push(&mut self, line: u64, fields: Fields, mut problems: Vec<String>) -> bool {
        if !self.count_row(line) {
            return false;
        }
        let (question_readable, answer_readable) = (fields.readable(Column::Question), fields.readable(Column::Answer));
        let language_readable = fields.readable(Column::Language);
        let Fields {
            id,
            intent,
            language,
            question,
            answer,
            tags,
            ..
        } = fields;

        let id = id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let id_ok = match &id {
            Some(id) => match validate_id(id) {
                Ok(()) => true,
                Err(e) => {
                    problems.push(e);
                    false
                }
            },
            None => true,
        };
        let intent = intent.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(intent) = &intent {
            let chars = intent.chars().count();
            if chars > MAX_INTENT_CHARS {
                problems.push(format!("intent is {chars} characters; the limit is {MAX_INTENT_CHARS}"));
            }
        }
        let given_language = language.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let mut language = match given_language {
            Some(raw) => match normalise_language(raw) {
                Ok(code) => Some(code),
                Err(e) => {
                    problems.push(e);
                    None
                }
            },
            None => None,
        };
        let question = required_text(
            question,
            question_readable,
            Column::Question,
            MAX_QUESTION_CHARS,
            &mut problems,
        );
        let answer = required_text(answer, answer_readable, Column::Answer, MAX_ANSWER_CHARS, &mut problems);
        if given_language.is_none() && language_readable {
            language = match (&question, &answer) {
                (Some(q), Some(a)) => Some(detect_language(&format!("{q} {a}"))),
                (Some(q), None) => Some(detect_language(q)),
                _ => None,
            };
        }

        // The id, given or derived, is checked for repeats even when the row has
        // other problems: the report then names every repeat at once.
        let id = match (id, &language, &question) {
            (Some(id), _, _) if id_ok => Some(id),
            (None, Some(language), Some(question)) => Some(stable_id(language, question)),
            _ => None,
        };
        if let Some(id) = &id {
            match self.first_line.get(id) {
                Some(first) => problems.push(format!("duplicate id `{id}` (first on line {first})")),
                None => {
                    self.first_line.insert(id.clone(), line);
                }
            }
        }

        if problems.is_empty() {
            if let (Some(id), Some(language), Some(question), Some(answer)) = (id, language, question, answer) {
                self.articles.push(Article {
                    id,
                    intent,
                    language,
                    question,
                    answer,
                    tags,
                });
                return true;
            }
        }
        for message in problems {
            self.error(line, message);
        }
        true
    }

    fn finish(mut self) -> Result<Vec<Article>, KbError> {
        if self.errors.is_empty() && self.articles.is_empty() {
            self.error(1, "the file has no articles");
        }
        if self.errors.is_empty() {
            return Ok(self.articles);
        }
        Err(KbError::Invalid(cap_errors(self.errors)))
    }
}

/// At most [`MAX_ERRORS`] errors, then one that says how many more there were
/// (on the line of the first one left out).
fn cap_errors(mut errors: Vec<LineError>) -> Vec<LineError> {
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        let line = errors[MAX_ERRORS].line;
        errors.truncate(MAX_ERRORS);
        let noun = if more == 1 { "error" } else { "errors" };
        errors.push(LineError {
            line,
            message: format!("and {more} more {noun}"),
        });
    }
    errors
}

fn invalid(line: u64, message: impl Into<String>) -> KbError {
    KbError::Invalid(vec![LineError {
        line,
        message: message.into(),
    }])
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Parses and validates a whole import file (format by [`detect_format`]).
/// Any problem anywhere is [`KbError::Invalid`] with every problem and its line
/// (at most [`MAX_ERRORS`] and a count of the rest); otherwise the articles in
/// file order. Ids left out are [`stable_id`]s, languages left out are
/// [`detect_language`]'s.
pub fn parse(upload: &Upload) -> Result<Vec<Article>, KbError> {
    let format = detect_format(upload)?;
    if is_blank(&upload.bytes) {
        return Err(invalid(1, "the file is empty"));
    }
    match format {
        Format::Csv => parse_csv(&upload.bytes, is_tab_separated(upload)),
        Format::Json => parse_json(&upload.bytes),
        Format::Xlsx => parse_xlsx(&upload.bytes),
    }
}

/// The delimiter of a CSV file, from its first non-empty line: whichever of
/// `,` `;` and tab occurs most often outside quotes (a comma when none or a tie).
fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' '))
        .unwrap_or(bytes.len());
    let (mut commas, mut semicolons, mut tabs) = (0usize, 0usize, 0usize);
    let mut quoted = false;
    for &b in &bytes[start..] {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            b'\t' if !quoted => tabs += 1,
            _ => {}
        }
    }
    if semicolons > commas && semicolons >= tabs {
        b';'
    } else if tabs > commas && tabs > semicolons {
        b'\t'
    } else {
        b','
    }
}

fn is_blank_record(record: &csv::ByteRecord) -> bool {
    record.iter().all(|field| field.iter().all(|b| b.is_ascii_whitespace()))
}

fn record_line(record: &csv::ByteRecord) -> u64 {
    record.position().map(|p| p.line()).unwrap_or(0)
}

fn parse_csv(bytes: &[u8], tab_separated: bool) -> Result<Vec<Article>, KbError> {
    let bytes = strip_bom(bytes);
    let delimiter = if tab_separated { b'\t' } else { sniff_delimiter(bytes) };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let read_error = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(1);
        invalid(line, format!("the CSV could not be read: {e}"))
    };

    // The header: the first record that is not blank.
    loop {
        if !reader.read_byte_record(&mut record).map_err(read_error)? {
            return Err(invalid(1, "the file is empty"));
        }
        if !is_blank_record(&record) {
            break;
        }
    }
    let header_line = record_line(&record).max(1);
    let mut header_errors = Vec::new();
    let names: Vec<String> = record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    if record.iter().any(|f| std::str::from_utf8(f).is_err()) {
        header_errors.push(LineError {
            line: header_line,
            message: "invalid UTF-8 in the header (save the file as UTF-8)".into(),
        });
    }
    let header = Header::from_names(names.iter().map(String::as_str), header_line, &mut header_errors);
    if !header_errors.is_empty() {
        return Err(KbError::Invalid(header_errors));
    }
    let width = record.len();

    let mut out = Collector::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                out.error(line, format!("the CSV could not be read: {e}"));
                break;
            }
        }
        if is_blank_record(&record) {
            continue;
        }
        let line = record_line(&record);
        if record.len() != width {
            let found = record.len();
            if !out.reject(line, format!("expected {width} fields as in the header, found {found}")) {
                break;
            }
            continue;
        }
        let mut fields = Fields::default();
        let mut problems = Vec::new();
        for column in COLUMNS {
            let Some(index) = header.get(column) else { continue };
            let raw = record.get(index).unwrap_or(b"");
            match std::str::from_utf8(raw) {
                Ok(text) => fields.set(column, text.to_string()),
                Err(_) => {
                    fields.mark_unreadable(column);
                    problems.push(format!(
                        "invalid UTF-8 in column \"{}\" (save the file as UTF-8)",
                        column.name()
                    ))
                }
            }
        }
        if !out.push(line, fields, problems) {
            break;
        }
    }
    out.finish()
}

/// `{"articles": [...]}`.
#[derive(Deserialize)]
struct JsonWrapper<'a> {
    #[serde(borrow, default)]
    articles: Option<Vec<&'a RawValue>>,
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_error(e: &serde_json::Error) -> KbError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    let message = match e.classify() {
        serde_json::error::Category::Data => {
            format!("the JSON must be an array of articles or {{\"articles\": [...]}}: {message}")
        }
        _ => format!("invalid JSON: {message} (column {})", e.column()),
    };
    invalid(e.line().max(1) as u64, message)
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn parse_json(bytes: &[u8]) -> Result<Vec<Article>, KbError> {
    let bytes = strip_bom(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = newlines(&bytes[..e.valid_up_to()]) + 1;
            return Err(invalid(line, "invalid UTF-8 (save the file as UTF-8)"));
        }
    };
    let elements: Vec<&RawValue> = match first_significant_byte(bytes) {
        Some(b'[') => serde_json::from_str(text).map_err(|e| json_error(&e))?,
        _ => {
            let wrapper: JsonWrapper = serde_json::from_str(text).map_err(|e| json_error(&e))?;
            match wrapper.articles {
                Some(articles) => articles,
                None => return Err(invalid(1, "the JSON object has no \"articles\" array")),
            }
        }
    };

    let base = text.as_ptr() as usize;
    let (mut offset, mut line) = (0usize, 1u64);
    let mut out = Collector::new();
    for raw in elements {
        let start = (raw.get().as_ptr() as usize).saturating_sub(base).min(text.len());
        if start >= offset {
            line += newlines(&bytes[offset..start]);
            offset = start;
        }
        let value: Value = match serde_json::from_str(raw.get()) {
            Ok(value) => value,
            Err(e) => {
                if !out.reject(line, format!("invalid JSON: {e}")) {
                    break;
                }
                continue;
            }
        };
        let Value::Object(map) = value else {
            let kind = json_kind(&value);
            if !out.reject(line, format!("an article must be a JSON object, found {kind}")) {
                break;
            }
            continue;
        };
        let mut fields = Fields::default();
        let mut typed: Vec<(Column, String)> = Vec::new();
        for (key, value) in map {
            let Some(column) = Column::from_name(&key) else {
                continue;
            };
            let problem = match (column, value) {
                (_, Value::Null) => None,
                (Column::Tags, Value::String(s)) => {
                    split_tags(&s, &mut fields.tags);
                    None
                }
                (Column::Tags, Value::Array(items)) => {
                    let mut problem = None;
                    for item in items {
                        match item {
                            Value::String(s) => push_tag(&s, &mut fields.tags),
                            other => {
                                problem = Some(format!(
                                    "tags must be a string or an array of strings, found {} in the array",
                                    json_kind(&other)
                                ));
                                break;
                            }
                        }
                    }
                    problem
                }
                (Column::Tags, other) => Some(format!(
                    "tags must be a string or an array of strings, found {}",
                    json_kind(&other)
                )),
                (_, Value::String(s)) => {
                    fields.set(column, s);
                    None
                }
                (Column::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                    fields.set(column, n.to_string());
                    None
                }
                (_, other) => Some(format!(
                    "{} must be a string, found {}",
                    column.name(),
                    json_kind(&other)
                )),
            };
            if let Some(problem) = problem {
                fields.mark_unreadable(column);
                typed.push((column, problem));
            }
        }
        // In column order, whatever the order of the keys.
        typed.sort_by_key(|(column, _)| *column as usize);
        let problems = typed.into_iter().map(|(_, problem)| problem).collect();
        if !out.push(line, fields, problems) {
            break;
        }
    }
    out.finish()
}

/// Refuses zip archives that are not spreadsheets or that would unpack to too
/// much, before the spreadsheet reader opens them: more than
/// [`MAX_XLSX_ENTRIES`] parts, more than [`MAX_XLSX_UNPACKED_BYTES`] in all, a
/// part over [`XLSX_RATIO_MIN_BYTES`] compressed more than [`MAX_XLSX_RATIO`]:1,
/// or a part that unpacks to more than it declares.
fn check_xlsx_zip(bytes: &[u8]) -> Result<(), KbError> {
    let corrupt = |e: &dyn std::fmt::Display| {
        KbError::UnsupportedFormat(format!(
            "the file is not a readable XLSX spreadsheet (corrupt or truncated zip: {e})"
        ))
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(&e))?;
    if zip.len() > MAX_XLSX_ENTRIES {
        return Err(KbError::TooLarge(format!(
            "the spreadsheet has {} parts; the limit is {MAX_XLSX_ENTRIES}",
            zip.len()
        )));
    }
    if zip.index_for_name("xl/workbook.xml").is_none() {
        return Err(KbError::UnsupportedFormat(
            "not an XLSX spreadsheet: the zip archive has no xl/workbook.xml".into(),
        ));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| corrupt(&e))?;
        let (size, compressed) = (entry.size(), entry.compressed_size());
        total = total.saturating_add(size);
        if total > MAX_XLSX_UNPACKED_BYTES {
            return Err(KbError::TooLarge(format!(
                "the spreadsheet unpacks to more than {} MiB; the limit is {} MiB",
                MAX_XLSX_UNPACKED_BYTES / MIB,
                MAX_XLSX_UNPACKED_BYTES / MIB
            )));
        }
        if size > XLSX_RATIO_MIN_BYTES && size > compressed.saturating_mul(MAX_XLSX_RATIO) {
            return Err(KbError::TooLarge(format!(
                "part \"{}\" of the spreadsheet unpacks from {compressed} to {size} bytes \
                 (more than {MAX_XLSX_RATIO}:1); refused as a possible zip bomb",
                entry.name()
            )));
        }
    }
    // The sizes above are what the archive declares; unpack each part (into
    // nothing) to make sure none is larger, and that each one's CRC holds.
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| corrupt(&e))?;
        if entry.is_dir() {
            continue;
        }
        let declared = entry.size();
        let name = entry.name().to_string();
        let unpacked =
            io::copy(&mut (&mut entry).take(declared.saturating_add(1)), &mut io::sink()).map_err(|e| corrupt(&e))?;
        if unpacked > declared {
            return Err(KbError::TooLarge(format!(
                "part \"{name}\" of the spreadsheet unpacks to more than the {declared} bytes it declares; \
                 refused as a possible zip bomb"
            )));
        }
    }
    Ok(())
}

/// A cell as text: integers without `.0`; `Err` for an error value.
fn cell_text(cell: &calamine::Data) -> Result<String, String> {
    use calamine::Data;
    Ok(match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(d) => d.to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(e.to_string()),
    })
}

fn parse_xlsx(bytes: &[u8]) -> Result<Vec<Article>, KbError> {
    use calamine::{Reader, SheetType};
    check_xlsx_zip(bytes)?;
    let unreadable =
        |e: &dyn std::fmt::Display| KbError::UnsupportedFormat(format!("the XLSX spreadsheet could not be read: {e}"));
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(Cursor::new(bytes)).map_err(|e| unreadable(&e))?;
    let sheets = workbook.sheets_metadata().to_vec();
    let worksheets = sheets.iter().filter(|s| s.typ == SheetType::WorkSheet);
    let sheet = worksheets
        .clone()
        .find(|s| s.name.trim().eq_ignore_ascii_case("faq"))
        .or_else(|| worksheets.clone().next())
        .map(|s| s.name.clone())
        .ok_or_else(|| KbError::UnsupportedFormat("the XLSX spreadsheet has no worksheet".into()))?;
    let range = workbook.worksheet_range(&sheet).map_err(|e| unreadable(&e))?;
    let Some((first_row, _)) = range.start() else {
        return Err(invalid(1, format!("the worksheet \"{sheet}\" is empty")));
    };

    let mut rows = range.rows();
    let header_row = rows.next().unwrap_or(&[]);
    let header_line = first_row as u64 + 1;
    let mut header_errors = Vec::new();
    let names: Vec<String> = header_row.iter().map(|c| cell_text(c).unwrap_or_default()).collect();
    let header = Header::from_names(names.iter().map(String::as_str), header_line, &mut header_errors);
    if !header_errors.is_empty() {
        return Err(KbError::Invalid(header_errors));
    }

    let mut out = Collector::new();
    for (i, row) in rows.enumerate() {
        let line = header_line + 1 + i as u64;
        let mut fields = Fields::default();
        let mut problems = Vec::new();
        for column in COLUMNS {
            let Some(index) = header.get(column) else { continue };
            let Some(cell) = row.get(index) else { continue };
            match cell_text(cell) {
                Ok(text) => fields.set(column, text),
                Err(value) => {
                    fields.mark_unreadable(column);
                    problems.push(format!("column \"{}\" holds the error value {value}", column.name()))
                }
            }
        }
        if problems.is_empty() && fields.is_blank() {
            continue;
        }
        if !out.push(line, fields, problems) {
            break;
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    const DEMO_FAQ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../demo/faq.csv");

    fn upload(bytes: impl Into<Vec<u8>>, content_type: Option<&str>, filename: Option<&str>) -> Upload {
        Upload {
            bytes: bytes.into(),
            content_type: content_type.map(str::to_string),
            filename: filename.map(str::to_string),
        }
    }

    fn csv(text: &str) -> Upload {
        upload(text.as_bytes().to_vec(), Some("text/csv"), Some("faq.csv"))
    }

    fn json(text: &str) -> Upload {
        upload(text.as_bytes().to_vec(), Some("application/json"), Some("faq.json"))
    }

    fn errors(result: Result<Vec<Article>, KbError>) -> Vec<LineError> {
        match result {
            Err(KbError::Invalid(errors)) => errors,
            Err(other) => panic!("expected Invalid, got {other:?}"),
            Ok(articles) => panic!("expected Invalid, got {} articles", articles.len()),
        }
    }

    fn lines_and_messages(errors: &[LineError]) -> Vec<(u64, &str)> {
        errors.iter().map(|e| (e.line, e.message.as_str())).collect()
    }

    fn unsupported(result: Result<Format, KbError>) -> String {
        match result {
            Err(KbError::UnsupportedFormat(message)) => message,
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    // --- demo file ----------------------------------------------------------

    #[test]
    fn demo_faq_parses() {
        let bytes = std::fs::read(DEMO_FAQ).expect("demo/faq.csv");
        let articles = parse(&upload(bytes, Some("text/csv"), Some("faq.csv"))).unwrap();
        assert_eq!(articles.len(), 178);
        let first = &articles[0];
        assert_eq!(first.id, "faq-card_arrival-en");
        assert_eq!(first.intent.as_deref(), Some("card_arrival"));
        assert_eq!(first.language, "en");
        assert_eq!(first.tags, vec!["card", "delivery"]);
        assert!(first.answer.contains("tap \"Card not received\" on the same screen"));
        assert_eq!(articles[1].language, "ko");
        assert_eq!(articles[1].id, "faq-card_arrival-ko");
    }

    #[test]
    fn demo_faq_languages_are_detected_as_given() {
        let bytes = std::fs::read(DEMO_FAQ).unwrap();
        let articles = parse(&upload(bytes, None, Some("faq.csv"))).unwrap();
        for a in &articles {
            assert_eq!(
                detect_language(&format!("{} {}", a.question, a.answer)),
                a.language,
                "{}",
                a.id
            );
            assert_eq!(
                detect_language(&a.question),
                a.language,
                "question of {}: {}",
                a.id,
                a.question
            );
        }
    }

    #[test]
    fn demo_faq_without_ids_and_languages_gets_the_same_languages_and_unique_ids() {
        let bytes = std::fs::read(DEMO_FAQ).unwrap();
        let given = parse(&upload(bytes.clone(), None, Some("faq.csv"))).unwrap();
        // Keep only question, answer and tags.
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["question", "answer", "tags"]).unwrap();
        for record in reader.records() {
            let record = record.unwrap();
            writer.write_record([&record[3], &record[4], &record[5]]).unwrap();
        }
        let stripped = writer.into_inner().unwrap();
        let derived = parse(&upload(stripped, None, Some("faq.csv"))).unwrap();
        assert_eq!(derived.len(), given.len());
        for (d, g) in derived.iter().zip(&given) {
            assert_eq!(d.language, g.language, "{}", g.id);
            assert_eq!(d.id, stable_id(&g.language, &g.question));
            assert_eq!(d.intent, None);
        }
    }

    // --- CSV ------------------------------------------------------------------

    #[test]
    fn csv_minimal_columns_and_trimming() {
        let articles = parse(&csv(
            "Question , ANSWER\n  How do I reset my PIN?  ,\"  Go to Cards > PIN.\nThen confirm.  \"\n",
        ))
        .unwrap();
        assert_eq!(articles.len(), 1);
        let a = &articles[0];
        assert_eq!(a.question, "How do I reset my PIN?");
        assert_eq!(a.answer, "Go to Cards > PIN.\nThen confirm.");
        assert_eq!(a.language, "en");
        assert_eq!(a.id, stable_id("en", "How do I reset my PIN?"));
        assert!(a.tags.is_empty());
        assert_eq!(a.intent, None);
    }

    #[test]
    fn csv_bom_is_stripped() {
        let text = "\u{feff}id,question,answer\nq1,Where is my card?,On its way.\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles[0].id, "q1");
        let errs = errors(parse(&csv("\u{feff}question\nWhere?\n")));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "missing required column \"answer\"")]
        );
    }

    #[test]
    fn csv_semicolon_delimiter() {
        let text =
            "id;question;answer;tags\nq1;Where is my card, please?;It is on its way, promise.;card|delivery, post\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles[0].question, "Where is my card, please?");
        assert_eq!(articles[0].answer, "It is on its way, promise.");
        assert_eq!(articles[0].tags, vec!["card", "delivery", "post"]);
    }

    #[test]
    fn csv_tab_delimiter_sniffed_and_by_extension() {
        let text = "id\tquestion\tanswer\nq1\tWhere is my card?\tOn its way, soon.\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles[0].answer, "On its way, soon.");
        // A one-column-looking header in a .tsv file is still tab-separated.
        let text = "question\tanswer\nWhere, exactly?\tHere, there.\n";
        let articles = parse(&upload(text, None, Some("faq.tsv"))).unwrap();
        assert_eq!(articles[0].question, "Where, exactly?");
        let articles = parse(&upload(text, Some("text/tab-separated-values"), None)).unwrap();
        assert_eq!(articles[0].answer, "Here, there.");
    }

    #[test]
    fn delimiter_sniffing() {
        assert_eq!(sniff_delimiter(b"id,question,answer\n1;2;3;4;5\n"), b',');
        assert_eq!(sniff_delimiter(b"id;question;answer,x\n"), b';');
        assert_eq!(sniff_delimiter(b"\"a,b,c\";question;answer\n"), b';');
        assert_eq!(sniff_delimiter(b"\r\n\nid\tquestion\tanswer\n"), b'\t');
        assert_eq!(sniff_delimiter(b"question\n"), b',');
        let articles = parse(&csv("\n\nquestion;answer\nWhere, then?;There, now.\n")).unwrap();
        assert_eq!(articles[0].answer, "There, now.");
    }

    #[test]
    fn csv_quoted_newlines_and_doubled_quotes() {
        let text =
            "id,question,answer\nq1,\"Multi\nline question?\",\"He said \"\"hi\"\".\n\nBye.\"\nq2,Second?,Yes.\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles.len(), 2);
        assert_eq!(articles[0].question, "Multi\nline question?");
        assert_eq!(articles[0].answer, "He said \"hi\".\n\nBye.");
        assert_eq!(articles[1].id, "q2");
    }

    #[test]
    fn csv_crlf_line_endings() {
        let text = "id,question,answer\r\nq1,Where?,There.\r\nq2,When?,Now.\r\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles.len(), 2);
        assert_eq!(articles[1].answer, "Now.");
    }

    #[test]
    fn csv_missing_required_column_is_one_error() {
        let text = "id,question,tags\nq1,Where?,x\nq2,When?,y\n";
        let errs = errors(parse(&csv(text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "missing required column \"answer\"")]
        );
        let errs = errors(parse(&csv("id,tags\nq1,x\n")));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (1, "missing required column \"question\""),
                (1, "missing required column \"answer\"")
            ]
        );
    }

    #[test]
    fn csv_duplicate_column() {
        let errs = errors(parse(&csv("question,answer,Question\na,b,c\n")));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "column \"question\" appears twice (columns 1 and 3)")]
        );
    }

    #[test]
    fn csv_unknown_columns_are_ignored() {
        let text = "notes,question,extra,answer\n\u{fffd} junk,Where?,whatever,There.\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles[0].question, "Where?");
    }

    #[test]
    fn csv_empty_fields_are_reported_on_the_line_their_record_starts() {
        let text = concat!(
            "id,question,answer\n",                           // 1
            "q1,\"Two\nline question\",\"Three\n\nlines\"\n", // 2-5
            "q2,,Answer.\n",                                  // 6
            "q3,\"Another\nquestion\",\n",                    // 7-8
            "q4,Fine?,\"Multi\nline\"\n",                     // 9-10
            "q5,  ,   \n",                                    // 11
        );
        let errs = errors(parse(&csv(text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (6, "question is empty"),
                (7, "answer is empty"),
                (11, "question is empty"),
                (11, "answer is empty")
            ]
        );
    }

    #[test]
    fn csv_whitespace_only_rows_are_skipped() {
        let text = "id,question,answer\n\nq1,Where?,There.\n   \n , , \n\t\nq2,When?,Now.\n\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(
            articles.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            vec!["q1", "q2"]
        );
    }

    #[test]
    fn csv_wrong_field_count() {
        let text = "id,intent,language,question,answer,tags\nq1,i,en,Where?,There.,t\nq2,i,en,When?\nq3,i,en,Why?,Because.,t,extra\n";
        let errs = errors(parse(&csv(text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (3, "expected 6 fields as in the header, found 4"),
                (4, "expected 6 fields as in the header, found 7")
            ]
        );
    }

    #[test]
    fn csv_too_long_fields() {
        let long_q = "q".repeat(1203);
        let long_a = "a".repeat(20_001);
        let long_id = "i".repeat(129);
        let long_intent = "n".repeat(129);
        let text = format!(
            "id,intent,question,answer\nok,,{},fine\nok2,,fine?,{}\n{},{},fine?,fine\n,,{},fine\nmax,,{},{}\n",
            long_q,
            long_a,
            long_id,
            long_intent,
            "x".repeat(1000),
            "é".repeat(1000),
            "y".repeat(20_000)
        );
        let errs = errors(parse(&csv(&text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (2, "question is 1203 characters; the limit is 1000"),
                (3, "answer is 20001 characters; the limit is 20000"),
                (4, "id is 129 characters; the limit is 128"),
                (4, "intent is 129 characters; the limit is 128"),
            ]
        );
    }

    #[test]
    fn csv_limits_count_characters_not_bytes() {
        let text = format!("question,answer\n{},{}\n", "가".repeat(1000), "나".repeat(20_000));
        let articles = parse(&csv(&text)).unwrap();
        assert_eq!(articles[0].language, "ko");
    }

    #[test]
    fn csv_bad_language() {
        let text = "question,answer,language\nWhere?,There.,english\nWhere 2?,There.,e1\nWhere 3?,There.,EN-us\nWhere 4?,There.,ko_KR\nWhere 5?,There.,KOR\nWhere 6?,There.,fil\n";
        let errs = errors(parse(&csv(text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (2, "language \"english\" is not a language code (use e.g. en, ko)"),
                (3, "language \"e1\" is not a language code (use e.g. en, ko)"),
            ]
        );
    }

    #[test]
    fn language_normalisation() {
        assert_eq!(normalise_language("EN").unwrap(), "en");
        assert_eq!(normalise_language(" en-US ").unwrap(), "en");
        assert_eq!(normalise_language("ko_KR").unwrap(), "ko");
        assert_eq!(normalise_language("eng").unwrap(), "en");
        assert_eq!(normalise_language("kor").unwrap(), "ko");
        assert_eq!(normalise_language("zh-Hant-TW").unwrap(), "zh");
        assert_eq!(normalise_language("fil").unwrap(), "fil");
        assert!(normalise_language("english").is_err());
        assert!(normalise_language("e").is_err());
        assert!(normalise_language("한국어").is_err());
        assert!(normalise_language("-en").is_err());
    }

    #[test]
    fn csv_detected_languages_for_rows_without_one() {
        let text = "id,language,question,answer\nk,,비밀번호를 잊어버렸어요. 어떻게 재설정하나요?,앱에서 로그인 화면의 '비밀번호 찾기'를 눌러 주세요.\ne,,I forgot my password. How do I reset it?,Tap Forgot password on the sign-in screen.\ng,de,Wo ist meine Karte?,Unterwegs.\n";
        let articles = parse(&csv(text)).unwrap();
        assert_eq!(articles[0].language, "ko");
        assert_eq!(articles[1].language, "en");
        assert_eq!(articles[2].language, "de");
    }

    #[test]
    fn detect_language_short_questions() {
        for q in [
            "카드 분실 신고는 어떻게 하나요?",
            "환전 수수료가 얼마예요?",
            "OTP 재발급은 어떻게 하나요?",
            "Apple Pay나 Google Pay에 카드를 등록할 수 있나요?",
            "ATM에서 PIN 변경",
            "이체 한도",
        ] {
            assert_eq!(detect_language(q), "ko", "{q}");
        }
        for q in [
            "How do I reset my PIN?",
            "Where is my card?",
            "Card not received",
            "Why was I charged a fee?",
            "Can I use Apple Pay?",
            "Transfer limit",
            "ATM",
            "How do I send money to 김철수?",
            "1234",
            "",
        ] {
            assert_eq!(detect_language(q), "en", "{q}");
        }
        assert_eq!(detect_language("カードが届きません。どうすればいいですか？"), "ja");
        assert_eq!(detect_language("我的卡还没有到，怎么办？"), "zh");
        assert_eq!(detect_language("Где моя карта? Я заказал её две недели назад."), "ru");
        assert_eq!(
            detect_language(
                "Ich habe meine Karte vor zwei Wochen bestellt und sie ist immer noch nicht angekommen. Wo ist sie?"
            ),
            "de"
        );
    }

    #[test]
    fn english_fast_path_agrees_with_whatlang() {
        assert!(
            ENGLISH_WORDS.windows(2).all(|w| w[0] < w[1]),
            "ENGLISH_WORDS must be sorted"
        );
        assert!(looks_english("How do I reset my PIN?"));
        assert!(looks_english("Where is the nearest ATM? You can find it in the app."));
        assert!(!looks_english(
            "Wo ist meine Karte? Ich habe sie vor zwei Wochen bestellt."
        ));
        assert!(!looks_english("¿Dónde está mi tarjeta? La pedí hace dos semanas."));
        assert!(!looks_english(
            "Waar is mijn kaart? Ik heb hem twee weken geleden besteld."
        ));
        assert!(!looks_english("PIN"));
        for foreign in [
            "Hvor er mit kort? Jeg bestilte det for to uger siden, og det er stadig ikke kommet. Hvad kan jeg gøre?",
            "Où est ma carte ? Je l'ai commandée il y a deux semaines et elle n'est toujours pas arrivée.",
            "Gdzie jest moja karta? Zamówiłem ją dwa tygodnie temu i nadal nie dotarła. Co mogę zrobić?",
            "Var är mitt kort? Jag beställde det för två veckor sedan och det har fortfarande inte kommit.",
            "Onde está o meu cartão? Pedi há duas semanas e ainda não chegou. O que posso fazer?",
        ] {
            assert!(!looks_english(foreign), "{foreign}");
        }
        // Where the fast path answers, whatlang (when sure) says English too.
        let bytes = std::fs::read(DEMO_FAQ).unwrap();
        for a in parse(&upload(bytes, None, Some("faq.csv")))
            .unwrap()
            .iter()
            .filter(|a| a.language == "en")
        {
            let text = format!("{} {}", a.question, a.answer);
            assert!(looks_english(&text), "{}", a.id);
            let info = whatlang::detect(&text).unwrap();
            assert!(
                !info.is_reliable() || info.lang() == whatlang::Lang::Eng,
                "{}: {info:?}",
                a.id
            );
        }
    }

    #[test]
    fn stable_ids() {
        let a = stable_id("en", "How do I reset my PIN?");
        assert_eq!(a, stable_id("en", "  how do I   reset\nmy PIN?  "));
        assert_ne!(a, stable_id("ko", "How do I reset my PIN?"));
        assert_ne!(a, stable_id("en", "How do I reset my password?"));
        assert!(a.starts_with("faq-"));
        assert_eq!(a.len(), 4 + 16);
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Pinned, so that a change to the derivation (which would change every
        // derived id in every tenant) is noticed: sha256("en\nhello")[..8].
        let digest = Sha256::digest(b"en\nhello");
        let expected: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(stable_id("en", "  Hello "), format!("faq-{expected}"));
        assert!(validate_id(&a).is_ok());
    }

    #[test]
    fn csv_bad_ids() {
        let text = "id,question,answer\nhas space,Where?,There.\nok.id:1_x-y,When?,Now.\n아이디,Why?,Because.\n";
        let errs = errors(parse(&csv(text)));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 2);
        assert!(
            errs[0].message.starts_with("id \"has space\" has the character ' '"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[1].line, 4);
        assert!(validate_id("faq-reverted_card_payment?-en").is_ok());
        for bad in ["a/b", "a#b", "a%20", "a\"b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_duplicate_ids_given_and_derived() {
        let text = concat!(
            "id,language,question,answer\n",       // 1
            "a,en,First?,One.\n",                  // 2
            "b,en,Second?,Two.\n",                 // 3
            "a,en,Third?,Three.\n",                // 4
            ",en,Where is my card?,Here.\n",       // 5
            ",EN,  where is my   CARD? ,Again.\n", // 6: same derived id
            ",ko,Where is my card?,Here.\n",       // 7: other language, other id
        );
        let errs = errors(parse(&csv(text)));
        let derived = stable_id("en", "Where is my card?");
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (4, "duplicate id `a` (first on line 2)"),
                (6, format!("duplicate id `{derived}` (first on line 5)").as_str())
            ]
        );
        // A given id equal to an earlier derived one is a duplicate too.
        let text = format!("id,language,question,answer\n,en,Where is my card?,Here.\n{derived},en,Other?,Other.\n");
        let errs = errors(parse(&csv(&text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(3, format!("duplicate id `{derived}` (first on line 2)").as_str())]
        );
    }

    #[test]
    fn csv_invalid_utf8_is_an_error_on_its_line() {
        let mut bytes = b"id,question,answer\nq1,Where?,There.\nq2,\"Two\nlines\",".to_vec();
        bytes.extend_from_slice(b"\xC4\xAB\xFF\xFE bad\n"); // record starting on line 3
        bytes.extend_from_slice(b"q3,\xB0\xA1\xB3\xAA?,Fine.\n"); // CP949, line 5
        bytes.extend_from_slice(b"q4,Fine?,Fine.\n");
        let errs = errors(parse(&upload(bytes, Some("text/csv"), None)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (3, "invalid UTF-8 in column \"answer\" (save the file as UTF-8)"),
                (5, "invalid UTF-8 in column \"question\" (save the file as UTF-8)"),
            ]
        );
        // Sniffed without any hint: still CSV, still line errors.
        let errs = errors(parse(&upload(b"question,answer\n\xB0\xA1,x\n".to_vec(), None, None)));
        assert_eq!(errs[0].line, 2);
        // Invalid UTF-8 in the header.
        let errs = errors(parse(&csv_bytes(b"question,answer,\xFF\nq,a,x\n")));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "invalid UTF-8 in the header (save the file as UTF-8)")]
        );
    }

    fn csv_bytes(bytes: &[u8]) -> Upload {
        upload(bytes.to_vec(), Some("text/csv"), None)
    }

    #[test]
    fn csv_header_only_and_empty_files() {
        let errs = errors(parse(&csv("id,question,answer\n")));
        assert_eq!(lines_and_messages(&errs), vec![(1, "the file has no articles")]);
        let errs = errors(parse(&csv("id,question,answer\n\n  \n,,\n")));
        assert_eq!(lines_and_messages(&errs), vec![(1, "the file has no articles")]);
        for empty in ["", "\u{feff}", "  \n\n"] {
            let errs = errors(parse(&csv(empty)));
            assert_eq!(lines_and_messages(&errs), vec![(1, "the file is empty")]);
            let errs = errors(parse(&upload(empty, None, None)));
            assert_eq!(lines_and_messages(&errs), vec![(1, "the file is empty")]);
            let errs = errors(parse(&upload(empty, None, Some("faq.xlsx"))));
            assert_eq!(lines_and_messages(&errs), vec![(1, "the file is empty")]);
        }
    }

    #[test]
    fn all_errors_are_collected_and_capped() {
        let mut text = String::from("question,answer\n");
        for i in 0..1500 {
            text.push_str(",\n"); // blank row: skipped
            text.push_str(&format!("x{i},\n")); // answer empty
        }
        let errs = errors(parse(&csv(&text)));
        assert_eq!(errs.len(), MAX_ERRORS + 1);
        assert_eq!(
            errs[0],
            LineError {
                line: 3,
                message: "answer is empty".into()
            }
        );
        assert_eq!(errs[999].line, 3 + 2 * 999);
        assert_eq!(
            errs[1000],
            LineError {
                line: 3 + 2 * 1000,
                message: "and 500 more errors".into()
            }
        );
    }

    #[test]
    fn too_many_articles() {
        let mut text = String::from("id,language,question,answer\n");
        for i in 0..=MAX_ARTICLES + 5 {
            text.push_str(&format!("{i},en,Q{i}?,A.\n"));
        }
        let errs = errors(parse(&csv(&text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(
                MAX_ARTICLES as u64 + 2,
                "the file has more than 100000 articles; the limit is 100000"
            )]
        );
        // Exactly the limit is fine.
        let mut text = String::from("id,language,question,answer\n");
        for i in 0..MAX_ARTICLES {
            text.push_str(&format!("{i},en,Q{i}?,A.\n"));
        }
        assert_eq!(parse(&csv(&text)).unwrap().len(), MAX_ARTICLES);
    }

    #[test]
    fn csv_50k_rows_parse_quickly() {
        let mut text = String::from("id,intent,language,question,answer,tags\n");
        for i in 0..50_000 {
            text.push_str(&format!(
                "faq-{i},intent_{m},{lang},How do I do thing number {i} with my card?,\"You do thing {i} in the app under Cards, then \"\"Confirm\"\".\",card;app\n",
                m = i % 77,
                lang = if i % 2 == 0 { "en" } else { "ko" },
            ));
        }
        let upload = csv(&text);
        let started = Instant::now();
        let articles = parse(&upload).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(articles.len(), 50_000);
        assert_eq!(articles[49_999].id, "faq-49999");
        assert_eq!(
            articles[3].answer,
            "You do thing 3 in the app under Cards, then \"Confirm\"."
        );
        // Well under a second optimised; this crate's own code is unoptimised in
        // test builds and the machine may be busy, so the bound is generous.
        assert!(elapsed.as_secs_f64() < 5.0, "50k rows took {elapsed:?}");
        eprintln!("50k CSV rows parsed in {elapsed:?}");
    }

    // --- JSON -----------------------------------------------------------------

    #[test]
    fn json_array() {
        let text = r#"[
  {"id": "q1", "question": "Where is my card?", "answer": "On its way.", "tags": "card;delivery", "intent": "card_arrival", "language": "EN"},
  {"Question": "카드가 안 와요", "Answer": "곧 도착합니다.", "tags": ["card", " delivery ", "card", ""], "extra": {"ignored": true}},
  {"id": 17, "question": "Numeric id?", "answer": "Fine.", "intent": null, "tags": null}
]"#;
        let articles = parse(&json(text)).unwrap();
        assert_eq!(articles.len(), 3);
        assert_eq!(articles[0].id, "q1");
        assert_eq!(articles[0].language, "en");
        assert_eq!(articles[0].intent.as_deref(), Some("card_arrival"));
        assert_eq!(articles[0].tags, vec!["card", "delivery"]);
        assert_eq!(articles[1].language, "ko");
        assert_eq!(articles[1].id, stable_id("ko", "카드가 안 와요"));
        assert_eq!(articles[1].tags, vec!["card", "delivery"]);
        assert_eq!(articles[2].id, "17");
        assert_eq!(articles[2].intent, None);
    }

    #[test]
    fn json_articles_object() {
        let text = "\u{feff}{\"version\": 3, \"articles\": [{\"question\": \"Where?\", \"answer\": \"There.\"}]}";
        let articles = parse(&json(text)).unwrap();
        assert_eq!(articles[0].question, "Where?");
        let errs = errors(parse(&json(r#"{"faqs": []}"#)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "the JSON object has no \"articles\" array")]
        );
        let errs = errors(parse(&json(r#"{"articles": []}"#)));
        assert_eq!(lines_and_messages(&errs), vec![(1, "the file has no articles")]);
        let errs = errors(parse(&json("[]")));
        assert_eq!(lines_and_messages(&errs), vec![(1, "the file has no articles")]);
    }

    #[test]
    fn json_line_numbers_are_where_each_element_starts() {
        let text = concat!(
            "{\n",                                        // 1
            "  \"articles\": [\n",                        // 2
            "    {\"question\": \"Fine?\",\n",            // 3
            "     \"answer\": \"Multi\\nline\"},\n",      // 4
            "    {\n",                                    // 5
            "      \"question\": \"\",\n",                // 6
            "      \"answer\": \"x\"\n",                  // 7
            "    },\n",                                   // 8
            "    {\"question\": \"Fine?\", \"answer\": \"Dup.\"},\n", // 9
            "\n",                                         // 10
            "    \"just a string\",\n",                   // 11
            "    {\"question\": \"OK\", \"answer\": \"\"}, {\"question\": \"Q\", \"answer\": \"A\", \"language\": \"english\"}\n", // 12
            "  ]\n",
            "}\n",
        );
        let errs = errors(parse(&json(text)));
        let dup = stable_id("en", "Fine?");
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (5, "question is empty"),
                (9, format!("duplicate id `{dup}` (first on line 3)").as_str()),
                (11, "an article must be a JSON object, found a string"),
                (12, "answer is empty"),
                (12, "language \"english\" is not a language code (use e.g. en, ko)"),
            ]
        );
    }

    #[test]
    fn json_syntax_error_has_serde_line() {
        let text = "[\n  {\"question\": \"Q\", \"answer\": \"A\"},\n  {\"question\": \"Q2\" \"answer\": \"A\"}\n]";
        let errs = errors(parse(&json(text)));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 3);
        assert!(
            errs[0].message.starts_with("invalid JSON: expected `,` or `}`"),
            "{}",
            errs[0].message
        );
        let errs = errors(parse(&json("[{\"question\": \"Q\"")));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.starts_with("invalid JSON: EOF"), "{}", errs[0].message);
        let errs = errors(parse(&json("{\"articles\": 5}")));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("\"articles\""), "{}", errs[0].message);
    }

    #[test]
    fn json_wrong_types() {
        let text = concat!(
            "[\n",
            "  {\"question\": 42, \"answer\": \"A\"},\n", // 2
            "  {\"question\": \"Q\", \"answer\": [\"A\"], \"tags\": 3},\n", // 3
            "  {\"question\": \"Q3\", \"answer\": \"A\", \"tags\": [\"ok\", 1], \"id\": 1.5}\n", // 4
            "]\n",
        );
        let errs = errors(parse(&json(text)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (2, "question must be a string, found a number"),
                (3, "answer must be a string, found an array"),
                (3, "tags must be a string or an array of strings, found a number"),
                (4, "id must be a string, found a number"),
                (
                    4,
                    "tags must be a string or an array of strings, found a number in the array"
                ),
            ]
        );
    }

    #[test]
    fn json_invalid_utf8() {
        let errs = errors(parse(&upload(
            b"[\n{\"question\": \"\xFF\"}]".to_vec(),
            Some("application/json"),
            None,
        )));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(2, "invalid UTF-8 (save the file as UTF-8)")]
        );
    }

    // --- XLSX -----------------------------------------------------------------

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    fn column_letter(i: usize) -> char {
        (b'A' + i as u8) as char
    }

    /// A cell as written in sheet XML.
    enum Cell<'a> {
        Str(&'a str),
        Num(&'a str),
        Err(&'a str),
    }

    /// A worksheet: its name and its rows (row number, cells from column A).
    type Sheet<'a> = (&'a str, Vec<(u32, Vec<Cell<'a>>)>);

    /// A minimal XLSX: one or more worksheets of inline-string and number cells;
    /// with `shared`, the first sheet's strings go into sharedStrings.xml.
    fn xlsx(sheets: &[Sheet], shared: bool) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let mut put = |name: &str, body: String| {
            zip.start_file(name, options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        };
        let mut content_types = String::from(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>"#,
        );
        let mut workbook_sheets = String::new();
        let mut rels = String::new();
        let mut strings: Vec<String> = Vec::new();
        let mut sheet_xml = Vec::new();
        for (n, (name, rows)) in sheets.iter().enumerate() {
            let id = n + 1;
            content_types.push_str(&format!(
                r#"<Override PartName="/xl/worksheets/sheet{id}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#
            ));
            workbook_sheets.push_str(&format!(
                r#"<sheet name="{}" sheetId="{id}" r:id="rId{id}"/>"#,
                xml_escape(name)
            ));
            rels.push_str(&format!(
                r#"<Relationship Id="rId{id}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{id}.xml"/>"#
            ));
            let mut xml = String::from(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
            );
            for (r, cells) in rows {
                xml.push_str(&format!(r#"<row r="{r}">"#));
                for (c, cell) in cells.iter().enumerate() {
                    let at = format!("{}{r}", column_letter(c));
                    match cell {
                        Cell::Str("") => {}
                        Cell::Str(s) if shared && n == 0 => {
                            strings.push(s.to_string());
                            xml.push_str(&format!(r#"<c r="{at}" t="s"><v>{}</v></c>"#, strings.len() - 1));
                        }
                        Cell::Str(s) => xml.push_str(&format!(
                            r#"<c r="{at}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>"#,
                            xml_escape(s)
                        )),
                        Cell::Num(v) => xml.push_str(&format!(r#"<c r="{at}"><v>{v}</v></c>"#)),
                        Cell::Err(v) => xml.push_str(&format!(r#"<c r="{at}" t="e"><v>{v}</v></c>"#)),
                    }
                }
                xml.push_str("</row>");
            }
            xml.push_str("</sheetData></worksheet>");
            sheet_xml.push(xml);
        }
        if shared {
            content_types.push_str(r#"<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>"#);
            rels.push_str(r#"<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>"#);
        }
        content_types.push_str("</Types>");
        put("[Content_Types].xml", content_types);
        put(
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into(),
        );
        put(
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{workbook_sheets}</sheets></workbook>"#
            ),
        );
        put(
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#
            ),
        );
        for (n, xml) in sheet_xml.into_iter().enumerate() {
            put(&format!("xl/worksheets/sheet{}.xml", n + 1), xml);
        }
        if shared {
            let items: String = strings
                .iter()
                .map(|s| format!(r#"<si><t xml:space="preserve">{}</t></si>"#, xml_escape(s)))
                .collect();
            put(
                "xl/sharedStrings.xml",
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{n}" uniqueCount="{n}">{items}</sst>"#,
                    n = strings.len()
                ),
            );
        }
        zip.finish().unwrap().into_inner()
    }

    fn faq_rows() -> Vec<(u32, Vec<Cell<'static>>)> {
        use Cell::*;
        vec![
            (
                1,
                vec![
                    Str("ID"),
                    Str("Question"),
                    Str("Answer"),
                    Str("Tags"),
                    Str("Language"),
                    Str("Notes"),
                ],
            ),
            (
                2,
                vec![
                    Num("1001"),
                    Str("Where is my card?"),
                    Str("On its way.\nTrack it in the app."),
                    Str("card; delivery"),
                    Str("en"),
                    Str("x"),
                ],
            ),
            (3, vec![Str(""), Str(""), Str(""), Str(""), Str(""), Str("")]),
            (
                4,
                vec![
                    Str("q-2"),
                    Str("카드가 안 와요"),
                    Str("곧 도착합니다."),
                    Str(""),
                    Str(""),
                    Str(""),
                ],
            ),
            (
                5,
                vec![
                    Num("3.5"),
                    Str("Decimal id?"),
                    Str("Fine."),
                    Str(""),
                    Str("EN-GB"),
                    Str(""),
                ],
            ),
        ]
    }

    fn xlsx_upload(bytes: Vec<u8>) -> Upload {
        upload(bytes, Some(XLSX_MIME), Some("faq.xlsx"))
    }

    #[test]
    fn xlsx_good_inline_and_shared_strings() {
        for shared in [false, true] {
            let bytes = xlsx(&[("Sheet1", faq_rows())], shared);
            assert_eq!(detect_format(&upload(bytes.clone(), None, None)).unwrap(), Format::Xlsx);
            let articles = parse(&xlsx_upload(bytes)).unwrap();
            assert_eq!(articles.len(), 3, "shared strings: {shared}");
            assert_eq!(articles[0].id, "1001");
            assert_eq!(articles[0].answer, "On its way.\nTrack it in the app.");
            assert_eq!(articles[0].tags, vec!["card", "delivery"]);
            assert_eq!(articles[1].id, "q-2");
            assert_eq!(articles[1].language, "ko");
            assert_eq!(articles[2].id, "3.5");
            assert_eq!(articles[2].language, "en");
        }
    }

    #[test]
    fn xlsx_row_numbers_and_faq_sheet() {
        use Cell::*;
        let other = vec![(1, vec![Str("nothing"), Str("here")])];
        let faq = vec![
            (3, vec![Str("question"), Str("answer")]),
            (4, vec![Str("Fine?"), Str("Yes.")]),
            (6, vec![Str(""), Str("No question.")]),
            (7, vec![Str("Error?"), Err("#N/A")]),
        ];
        let bytes = xlsx(&[("Notes", other), ("FAQ", faq)], false);
        let errs = errors(parse(&xlsx_upload(bytes)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (6, "question is empty"),
                (7, "column \"answer\" holds the error value #N/A")
            ]
        );
        // Without a sheet named faq, the first sheet is read.
        let bytes = xlsx(&[("Notes", vec![(1, vec![Str("nothing"), Str("here")])])], false);
        let errs = errors(parse(&xlsx_upload(bytes)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![
                (1, "missing required column \"question\""),
                (1, "missing required column \"answer\"")
            ]
        );
        // Header only.
        let bytes = xlsx(&[("Sheet1", vec![(1, vec![Str("question"), Str("answer")])])], true);
        let errs = errors(parse(&xlsx_upload(bytes)));
        assert_eq!(lines_and_messages(&errs), vec![(1, "the file has no articles")]);
        // An empty sheet.
        let bytes = xlsx(&[("Sheet1", vec![])], false);
        let errs = errors(parse(&xlsx_upload(bytes)));
        assert_eq!(
            lines_and_messages(&errs),
            vec![(1, "the worksheet \"Sheet1\" is empty")]
        );
    }

    #[test]
    fn xlsx_cell_text() {
        use calamine::Data;
        assert_eq!(cell_text(&Data::Float(1001.0)).unwrap(), "1001");
        assert_eq!(cell_text(&Data::Float(-3.0)).unwrap(), "-3");
        assert_eq!(cell_text(&Data::Float(3.25)).unwrap(), "3.25");
        assert_eq!(cell_text(&Data::Int(7)).unwrap(), "7");
        assert_eq!(cell_text(&Data::Empty).unwrap(), "");
        assert_eq!(cell_text(&Data::Bool(true)).unwrap(), "TRUE");
        assert!(cell_text(&Data::Error(calamine::CellErrorType::Div0)).is_err());
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn xlsx_zip_that_is_not_a_spreadsheet() {
        let bytes = zip_of(&[("readme.txt", b"hello"), ("word/document.xml", b"<w/>")]);
        match parse(&xlsx_upload(bytes.clone())) {
            Err(KbError::UnsupportedFormat(m)) => assert!(m.contains("not an XLSX spreadsheet"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Sniffed as XLSX (a zip), refused the same way.
        assert!(matches!(
            parse(&upload(bytes, None, None)),
            Err(KbError::UnsupportedFormat(_))
        ));
        // A workbook.xml that is not one: calamine refuses it, we do not panic.
        let bytes = zip_of(&[("xl/workbook.xml", b"garbage")]);
        assert!(matches!(parse(&xlsx_upload(bytes)), Err(KbError::UnsupportedFormat(_))));
    }

    /// A workbook whose `entry` is `mib` MiB of zeros, streamed in 1 MiB
    /// pieces so the test stays small in memory.
    fn workbook_with_zeros(entry: &str, mib: usize) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("xl/workbook.xml", options).unwrap();
        zip.write_all(b"<workbook/>").unwrap();
        zip.start_file(entry, options).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..mib {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn xlsx_bomb_is_refused() {
        // 300 MiB of zeros: the archive is ~300 KiB.
        let bytes = workbook_with_zeros("xl/worksheets/sheet1.xml", 300);
        assert!(bytes.len() < 2 << 20, "bomb is {} bytes", bytes.len());
        match parse(&xlsx_upload(bytes)) {
            Err(KbError::TooLarge(m)) => assert!(m.contains("200 MiB"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xlsx_high_ratio_part_is_refused() {
        // 20 MiB of zeros: under the total limit, over 100:1 and over 10 MiB.
        let bytes = workbook_with_zeros("xl/sharedStrings.xml", 20);
        match parse(&xlsx_upload(bytes)) {
            Err(KbError::TooLarge(m)) => assert!(m.contains("100:1") && m.contains("xl/sharedStrings.xml"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xlsx_part_larger_than_declared_is_refused() {
        // 1 MiB of zeros, then both headers patched to declare 1000 bytes.
        let body = vec![0u8; 1 << 20];
        let mut bytes = zip_of(&[("xl/workbook.xml", &body)]);
        let declared = 1000u32.to_le_bytes();
        let patch = |bytes: &mut Vec<u8>, signature: &[u8], offset: usize| {
            let at = bytes.windows(4).position(|w| w == signature).unwrap();
            bytes[at + offset..at + offset + 4].copy_from_slice(&declared);
        };
        patch(&mut bytes, b"PK\x03\x04", 22);
        patch(&mut bytes, b"PK\x01\x02", 24);
        match parse(&xlsx_upload(bytes)) {
            Err(KbError::TooLarge(_)) | Err(KbError::UnsupportedFormat(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xlsx_too_many_entries() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("xl/workbook.xml", options).unwrap();
        for i in 0..MAX_XLSX_ENTRIES {
            zip.start_file(format!("x/{i}"), options).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        match parse(&xlsx_upload(bytes)) {
            Err(KbError::TooLarge(m)) => assert!(m.contains("10000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// A small deterministic pseudo-random byte stream (xorshift).
    fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn xlsx_garbage_never_panics() {
        // Random bytes claiming to be XLSX.
        let garbage = random_bytes(42, 4096);
        assert!(matches!(
            parse(&xlsx_upload(garbage.clone())),
            Err(KbError::UnsupportedFormat(_))
        ));
        // Random bytes behind the zip magic.
        let mut fake = ZIP_MAGIC.to_vec();
        fake.extend_from_slice(&garbage);
        assert!(matches!(parse(&xlsx_upload(fake)), Err(KbError::UnsupportedFormat(_))));
        // A real spreadsheet, truncated at many points and with bytes flipped.
        let good = xlsx(&[("Sheet1", faq_rows())], true);
        for cut in (0..good.len()).step_by(97) {
            let _ = parse(&xlsx_upload(good[..cut].to_vec()));
        }
        for seed in 0..200u64 {
            let mut bad = good.clone();
            let noise = random_bytes(seed + 7, 8);
            let at = (seed as usize * 7919) % bad.len();
            for (i, b) in noise.iter().enumerate() {
                if at + i < bad.len() {
                    bad[at + i] ^= b;
                }
            }
            let _ = parse(&xlsx_upload(bad));
        }
        // Legacy .xls bytes.
        let mut xls = CFB_MAGIC.to_vec();
        xls.extend_from_slice(&garbage);
        let message = unsupported(detect_format(&upload(xls.clone(), Some(XLSX_MIME), None)));
        assert!(message.contains(".xls"), "{message}");
        assert!(matches!(
            parse(&upload(xls, None, None)),
            Err(KbError::UnsupportedFormat(_))
        ));
    }

    // --- detect_format ----------------------------------------------------------

    #[test]
    fn detect_by_content_type() {
        let text = b"question,answer\nq,a\n".to_vec();
        let array = b"  [{\"question\": \"q\", \"answer\": \"a\"}]".to_vec();
        let zip = xlsx(&[("Sheet1", faq_rows())], false);
        for ct in [
            "text/csv",
            "text/csv; charset=utf-8",
            "application/csv",
            "TEXT/CSV",
            "text/tab-separated-values",
        ] {
            assert_eq!(
                detect_format(&upload(text.clone(), Some(ct), None)).unwrap(),
                Format::Csv,
                "{ct}"
            );
        }
        for ct in ["application/json", "application/json; charset=UTF-8", "text/json"] {
            assert_eq!(
                detect_format(&upload(array.clone(), Some(ct), None)).unwrap(),
                Format::Json,
                "{ct}"
            );
        }
        assert_eq!(
            detect_format(&upload(zip.clone(), Some(XLSX_MIME), None)).unwrap(),
            Format::Xlsx
        );
        // text/plain: CSV-ish, JSON when it looks like JSON.
        assert_eq!(
            detect_format(&upload(text.clone(), Some("text/plain"), None)).unwrap(),
            Format::Csv
        );
        assert_eq!(
            detect_format(&upload(array.clone(), Some("text/plain"), None)).unwrap(),
            Format::Json
        );
        // octet-stream: sniffed.
        let octet = Some("application/octet-stream");
        assert_eq!(detect_format(&upload(text.clone(), octet, None)).unwrap(), Format::Csv);
        assert_eq!(
            detect_format(&upload(array.clone(), octet, None)).unwrap(),
            Format::Json
        );
        assert_eq!(detect_format(&upload(zip.clone(), octet, None)).unwrap(), Format::Xlsx);
        // The content type wins over the name.
        assert_eq!(
            detect_format(&upload(text.clone(), Some("text/csv"), Some("faq.json"))).unwrap(),
            Format::Csv
        );
        // Unknown content types.
        for ct in ["image/png", "application/pdf", "text/html"] {
            let message = unsupported(detect_format(&upload(text.clone(), Some(ct), Some("faq.csv"))));
            assert!(message.contains(ct), "{message}");
        }
    }

    #[test]
    fn detect_by_extension() {
        let text = b"question,answer\nq,a\n".to_vec();
        let array = b"[]".to_vec();
        let zip = xlsx(&[("Sheet1", faq_rows())], false);
        assert_eq!(
            detect_format(&upload(text.clone(), None, Some("faq.csv"))).unwrap(),
            Format::Csv
        );
        assert_eq!(
            detect_format(&upload(text.clone(), None, Some("FAQ.TSV"))).unwrap(),
            Format::Csv
        );
        assert_eq!(
            detect_format(&upload(array.clone(), None, Some("dir/faq.json"))).unwrap(),
            Format::Json
        );
        assert_eq!(
            detect_format(&upload(zip.clone(), None, Some("C:\\x\\faq.xlsx"))).unwrap(),
            Format::Xlsx
        );
        let octet = Some("application/octet-stream");
        assert_eq!(
            detect_format(&upload(zip.clone(), octet, Some("faq.xlsx"))).unwrap(),
            Format::Xlsx
        );
        // Windows sends .csv files as application/vnd.ms-excel.
        let excel = Some("application/vnd.ms-excel");
        assert_eq!(
            detect_format(&upload(text.clone(), excel, Some("faq.csv"))).unwrap(),
            Format::Csv
        );
        let message = unsupported(detect_format(&upload(text.clone(), None, Some("faq.xls"))));
        assert!(message.contains(".xls"), "{message}");
        // A definite content type is not second-guessed by the name.
        assert_eq!(
            detect_format(&upload(text.clone(), Some("text/csv"), Some("faq.xls"))).unwrap(),
            Format::Csv
        );
        // An unknown extension defers to the bytes.
        assert_eq!(
            detect_format(&upload(text.clone(), None, Some("faq.txt"))).unwrap(),
            Format::Csv
        );
        assert_eq!(detect_format(&upload(zip, None, Some("faq"))).unwrap(), Format::Xlsx);
    }

    #[test]
    fn detect_by_sniffing() {
        let zip = xlsx(&[("Sheet1", faq_rows())], false);
        assert_eq!(
            detect_format(&upload(b"question,answer\n".to_vec(), None, None)).unwrap(),
            Format::Csv
        );
        assert_eq!(
            detect_format(&upload("\u{feff} \n[]", None, None)).unwrap(),
            Format::Json
        );
        assert_eq!(
            detect_format(&upload(b"{\"articles\": []}".to_vec(), None, None)).unwrap(),
            Format::Json
        );
        assert_eq!(detect_format(&upload(zip, None, None)).unwrap(), Format::Xlsx);
        assert_eq!(detect_format(&upload(Vec::new(), None, None)).unwrap(), Format::Csv);
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        assert!(unsupported(detect_format(&upload(png, None, None))).contains("not CSV, JSON or XLSX"));
        let utf16 = b"\xFF\xFEq\0u\0".to_vec();
        assert!(unsupported(detect_format(&upload(utf16.clone(), None, None))).contains("UTF-16"));
        assert!(unsupported(detect_format(&upload(utf16, Some("text/csv"), None))).contains("UTF-16"));
    }

    #[test]
    fn detect_mismatches() {
        let text = b"question,answer\nq,a\n".to_vec();
        let zip = xlsx(&[("Sheet1", faq_rows())], false);
        // Says XLSX, is text.
        let m = unsupported(detect_format(&upload(text.clone(), Some(XLSX_MIME), None)));
        assert!(m.contains("says XLSX") && m.contains("text"), "{m}");
        let m = unsupported(detect_format(&upload(text.clone(), None, Some("faq.xlsx"))));
        assert!(m.contains("file name \"faq.xlsx\""), "{m}");
        // Says CSV, is a zip.
        let m = unsupported(detect_format(&upload(zip.clone(), Some("text/csv"), None)));
        assert!(m.contains("says CSV") && m.contains("zip"), "{m}");
        assert!(matches!(
            detect_format(&upload(zip.clone(), None, Some("faq.csv"))),
            Err(KbError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            detect_format(&upload(zip.clone(), Some("text/plain"), None)),
            Err(KbError::UnsupportedFormat(_))
        ));
        // Says JSON, is CSV text or a zip.
        let m = unsupported(detect_format(&upload(text.clone(), Some("application/json"), None)));
        assert!(m.contains("says JSON") && m.contains("`[` or `{`"), "{m}");
        let m = unsupported(detect_format(&upload(zip, None, Some("faq.json"))));
        assert!(m.contains("zip"), "{m}");
        // Says CSV, holds NUL bytes.
        let m = unsupported(detect_format(&upload(
            b"question\0,answer".to_vec(),
            Some("text/csv"),
            None,
        )));
        assert!(m.contains("NUL"), "{m}");
        // parse reports the same.
        assert!(matches!(
            parse(&upload(text, Some(XLSX_MIME), None)),
            Err(KbError::UnsupportedFormat(_))
        ));
    }
}
