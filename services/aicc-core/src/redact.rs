//! PII redaction applied to every customer/agent message before it is stored,
//! logged or sent to a model. Pure functions; every regex is compiled once.
//!
//! Matching strategy: each kind is scanned separately into candidate spans, then
//! spans are claimed in priority order (email, RRN/SSN, licence, passport,
//! card, account, phone), so a more specific kind wins an overlap. Disabled
//! kinds still claim their span (and are left as-is), so e.g. an RRN is never
//! half-redacted as a phone number just because the tenant switched RRN
//! redaction off.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Which kinds of PII a tenant redacts. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PiiPolicy {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
    /// National identity numbers: 주민등록번호, foreigner registration numbers, US SSNs.
    pub rrn: bool,
    pub account: bool,
    /// Passport numbers (after a passport keyword).
    pub passport: bool,
    /// Korean driver's licence numbers.
    pub license: bool,
}

impl Default for PiiPolicy {
    fn default() -> Self {
        Self {
            email: true,
            phone: true,
            card: true,
            rrn: true,
            account: true,
            passport: true,
            license: true,
        }
    }
}

impl PiiPolicy {
    fn allows(&self, kind: PiiKind) -> bool {
        match kind {
            PiiKind::Email => self.email,
            PiiKind::Phone => self.phone,
            PiiKind::Card => self.card,
            PiiKind::Rrn => self.rrn,
            PiiKind::Account => self.account,
            PiiKind::Passport => self.passport,
            PiiKind::License => self.license,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Rrn,
    Account,
    Passport,
    License,
}

impl PiiKind {
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Card => "[CARD]",
            PiiKind::Rrn => "[RRN]",
            PiiKind::Account => "[ACCOUNT]",
            PiiKind::Passport => "[PASSPORT]",
            PiiKind::License => "[LICENSE]",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// Kinds actually redacted, in order of first appearance, deduplicated.
    pub found: Vec<PiiKind>,
}

/// Phone shapes: Korean (+82 or leading 0, mobile/Seoul/area/070 prefixes) and
/// NANP (+1, "(415) 555-2671", "415-555-2671"; area/exchange start 2-9 so random
/// digit groups rarely qualify).
/// Korean numbers may also space their hyphens out ("010 - 1234 - 5678").
const PHONE: &str = r"(?:\+82[-. ]?|0)(?:1[016789]|2|[3-6][1-5]|70)(?: ?[-.] ?| )?\d{3,4}(?: ?[-.] ?| )?\d{4}|\(0(?:2|[3-6][1-5]|70)\)[-. ]?\d{3,4}[-. ]?\d{4}|\+1[-. ]?\(?[2-9]\d{2}\)?[-. ]?[2-9]\d{2}[-. ]?\d{4}|\([2-9]\d{2}\)[-. ]?[2-9]\d{2}[-. ]?\d{4}|[2-9]\d{2}[-. ][2-9]\d{2}[-. ]\d{4}";

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant PII regex must compile")
}

static EMAIL_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"));
/// YYMMDD-GNNNNNN with a plausible month/day and gender digit 1-8.
static RRN_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-?[1-8]\d{6}"));
/// Contiguous run, 4-4-4-x groups (one separator style), or Amex/Diners 4-6-4/5.
/// Fixed group shapes keep an unrelated trailing number ("... 3 days") out of the match.
static CARD_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\d{4}(?: \d{4}){2} \d{1,7}|\d{4}(?:-\d{4}){2}-\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{13,19}")
});
/// Hyphenated Korean bank layouts (3-3-6, 4-3-6, 3-6-2-3, 6-2-6, 4-2-7, ...).
static ACCOUNT_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\d{3,6}(?:-\d{2,7}){2,3}"));
/// Any 10-14 digit number (hyphens allowed) a few characters after an account keyword.
static ACCOUNT_KW_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:계좌\s*번호|계좌|\baccount(?:\s*(?:number|num|no\.?|#))?|\bacct\.?|\ba/c)[^\d\n]{0,12}?(\d[\d-]{8,22}\d)",
    )
});
/// A bank's name right before a 10-14 digit number ("신한 110123456789로"):
/// customers rarely say "account" when they name the bank.
static BANK_KW_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:은행|뱅크|국민|신한|우리|하나|농협|기업|새마을|우체국|수협|신협|\bbank)[^\d\n]{0,16}?(\d[\d-]{8,22}\d)")
});
/// US Social Security numbers, AAA-GG-SSSS (checked by `ssn_valid`).
static SSN_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\d{3}-\d{2}-\d{4}"));
/// Korean passports (M12345678, or M123A4567 since 2021) and the common
/// one-letter-eight-digit shapes elsewhere, a few characters after a keyword.
static PASSPORT_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:여권\s*번호|여권|passport(?:\s*(?:number|num|no\.?|#))?)[^A-Za-z0-9\n]{0,12}?([A-Za-z]\d{8}|[A-Za-z]\d{3}[A-Za-z]\d{4})")
});
/// Korean driver's licences: region (11-28), year, serial, check — hyphenated,
/// or as 12 digits after a licence keyword.
static LICENSE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:1[1-9]|2[0-8])-\d{2}-\d{6}-\d{2}"));
static LICENSE_KW_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:운전\s*면허\s*번호|면허\s*번호|면허증|driver'?s?\s*licen[cs]e(?:\s*(?:number|no\.?|#))?)[^\d\n]{0,12}?((?:1[1-9]|2[0-8])\d{10})")
});
/// Numbers opening with YYYY-MM-DD / YYYYMMDD are timestamps or order ids, not cards
/// or accounts (no card network issues 19xx/200x-2220 prefixes).
static DATE_PREFIX_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:19|20)\d{2}-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12]\d|3[01])"));
static PHONE_RE: LazyLock<Regex> = LazyLock::new(|| re(PHONE));
/// Used to hand phone-shaped hyphen groups (010-1234-5678, 415-555-2671) to the phone kind.
static PHONE_FULL_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!("^(?:{PHONE})$")));

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: PiiKind,
}

/// Redact every PII kind enabled in `policy`, replacing each match with its placeholder.
pub fn redact(text: &str, policy: &PiiPolicy) -> Redacted {
    // Matched on a copy with full-width forms and dashes folded to ASCII
    // (Korean IMEs type "０１０－１２３４－５６７８"; phones turn hyphens into
    // "–"); the spans are mapped back, so the rest of the text is kept as typed.
    let (folded, origin) = fold(text);
    let mut claimed = spans(&folded);
    for s in &mut claimed {
        (s.start, s.end) = (origin[s.start], origin[s.end]);
    }

    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut last = 0;
    for s in claimed.into_iter().filter(|s| policy.allows(s.kind)) {
        out.push_str(&text[last..s.start]);
        out.push_str(s.kind.placeholder());
        last = s.end;
        if !found.contains(&s.kind) {
            found.push(s.kind);
        }
    }
    out.push_str(&text[last..]);
    Redacted { text: out, found }
}

/// `text` with full-width ASCII forms, the ideographic space and Unicode
/// dashes/minus as plain ASCII, and for each byte of it (and its end) the
/// byte offset in `text` it came from.
fn fold(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        let folded = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' => '-',
            _ => c,
        };
        let before = out.len();
        out.push(folded);
        origin.extend(std::iter::repeat_n(i, out.len() - before));
    }
    origin.push(text.len());
    (out, origin)
}

/// The PII spans of `text` (already folded), in text order, without overlaps.
fn spans(text: &str) -> Vec<Span> {
    let digits = |s: &str| s.bytes().filter(u8::is_ascii_digit).count();
    let dated = |s: &str| DATE_PREFIX_RE.is_match(s);
    // Pushed in priority order; the greedy claim below relies on that.
    let mut cands = Vec::new();
    scan(&EMAIL_RE, 0, text, PiiKind::Email, |_| true, &mut cands);
    scan(&RRN_RE, 0, text, PiiKind::Rrn, |_| true, &mut cands);
    scan(&SSN_RE, 0, text, PiiKind::Rrn, ssn_valid, &mut cands);
    scan(&LICENSE_RE, 0, text, PiiKind::License, |_| true, &mut cands);
    scan(&LICENSE_KW_RE, 1, text, PiiKind::License, |_| true, &mut cands);
    scan(&PASSPORT_RE, 1, text, PiiKind::Passport, |_| true, &mut cands);
    scan(
        &CARD_RE,
        0,
        text,
        PiiKind::Card,
        |s| (13..=19).contains(&digits(s)) && luhn(s) && !dated(s),
        &mut cands,
    );
    scan(
        &ACCOUNT_KW_RE,
        1,
        text,
        PiiKind::Account,
        |s| (10..=14).contains(&digits(s)) && !dated(s),
        &mut cands,
    );
    let banked = |s: &str| (10..=14).contains(&digits(s)) && !PHONE_FULL_RE.is_match(s) && !dated(s);
    scan(&BANK_KW_RE, 1, text, PiiKind::Account, banked, &mut cands);
    let generic_account =
        |s: &str| (10..=14).contains(&digits(s)) && !PHONE_FULL_RE.is_match(s) && !dated(s);
    scan(
        &ACCOUNT_RE,
        0,
        text,
        PiiKind::Account,
        generic_account,
        &mut cands,
    );
    scan(&PHONE_RE, 0, text, PiiKind::Phone, |_| true, &mut cands);

    let mut claimed: Vec<Span> = Vec::new();
    for c in cands {
        if !claimed.iter().any(|k| c.start < k.end && k.start < c.end) {
            claimed.push(c);
        }
    }
    claimed.sort_by_key(|s| s.start);
    claimed
}

/// Collect matches of capture `group` that are not glued to neighbouring digits and
/// pass `ok`. After a rejected match the search resumes inside it (at the next digit
/// run), so a valid number hidden behind an invalid leftmost match is still found.
fn scan(
    re: &Regex,
    group: usize,
    text: &str,
    kind: PiiKind,
    ok: impl Fn(&str) -> bool,
    out: &mut Vec<Span>,
) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(caps) = re.captures_at(text, pos) {
        let (Some(whole), Some(m)) = (caps.get(0), caps.get(group)) else {
            break;
        };
        if !glued(bytes, m.start(), m.end()) && ok(m.as_str()) {
            out.push(Span {
                start: m.start(),
                end: m.end(),
                kind,
            });
            pos = whole.end();
        } else {
            let mut i = whole.start() + 1;
            while i < bytes.len()
                && (!text.is_char_boundary(i)
                    || (bytes[i].is_ascii_digit() && bytes[i - 1].is_ascii_digit()))
            {
                i += 1;
            }
            pos = i;
        }
    }
}

/// True when the span is part of a longer number: a digit right next to it, or a
/// digit behind a `-`/`.` (grouped numbers, decimals). Byte checks are UTF-8 safe
/// because multi-byte characters never contain ASCII bytes.
fn glued(b: &[u8], start: usize, end: usize) -> bool {
    let at = |i: Option<usize>, f: fn(&u8) -> bool| i.and_then(|i| b.get(i)).is_some_and(f);
    let digit: fn(&u8) -> bool = u8::is_ascii_digit;
    let sep: fn(&u8) -> bool = |c| matches!(c, b'-' | b'.');
    let left = at(start.checked_sub(1), digit)
        || (at(start.checked_sub(1), sep) && at(start.checked_sub(2), digit));
    let right = at(Some(end), digit) || (at(Some(end), sep) && at(end.checked_add(1), digit));
    left || right
}

/// SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
fn ssn_valid(s: &str) -> bool {
    let (area, rest) = s.split_at(3);
    area != "000" && area != "666" && !area.starts_with('9') && &rest[1..3] != "00" && &rest[4..] != "0000"
}

/// Luhn checksum over the ASCII digits of `s` (separators ignored).
fn luhn(s: &str) -> bool {
    let sum: u32 = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use PiiKind::*;

    fn r(text: &str) -> Redacted {
        redact(text, &PiiPolicy::default())
    }

    fn assert_redacts(input: &str, expected: &str, kinds: &[PiiKind]) {
        let got = r(input);
        assert_eq!(got.text, expected, "input: {input}");
        assert_eq!(got.found, kinds, "input: {input}");
    }

    fn assert_untouched(input: &str) {
        assert_redacts(input, input, &[]);
    }

    #[test]
    fn placeholders() {
        let all = [Email, Phone, Card, Rrn, Account, Passport, License].map(PiiKind::placeholder);
        assert_eq!(all, ["[EMAIL]", "[PHONE]", "[CARD]", "[RRN]", "[ACCOUNT]", "[PASSPORT]", "[LICENSE]"]);
    }

    #[test]
    fn email_en_and_ko() {
        assert_redacts(
            "Mail me at john.doe+bank@example.co.uk today",
            "Mail me at [EMAIL] today",
            &[Email],
        );
        assert_redacts(
            "이메일은 hong.gildong@hanbit.kr 입니다",
            "이메일은 [EMAIL] 입니다",
            &[Email],
        );
        assert_redacts(
            "메일:kim_01@naver.com로 보내주세요",
            "메일:[EMAIL]로 보내주세요",
            &[Email],
        );
        // Digits inside an address belong to the email, not a phone number.
        assert_redacts("01012345678@naver.com", "[EMAIL]", &[Email]);
    }

    #[test]
    fn korean_phones() {
        for p in [
            "010-1234-5678",
            "01012345678",
            "010 1234 5678",
            "02-123-4567",
            "02-1234-5678",
            "031-123-4567",
            "070-1234-5678",
            "(02) 123-4567",
            "+82 10-1234-5678",
            "+82-10-1234-5678",
            "+821012345678",
        ] {
            assert_redacts(
                &format!("제 번호는 {p}입니다."),
                "제 번호는 [PHONE]입니다.",
                &[Phone],
            );
        }
    }

    #[test]
    fn international_phones() {
        for p in [
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+1 (415) 555-2671",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
        ] {
            assert_redacts(
                &format!("Call me at {p}, thanks."),
                "Call me at [PHONE], thanks.",
                &[Phone],
            );
        }
    }

    #[test]
    fn cards_pass_luhn() {
        for c in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5555555555554444",
            "3782 822463 10005",
        ] {
            assert_redacts(
                &format!("My card is {c}. Thanks"),
                "My card is [CARD]. Thanks",
                &[Card],
            );
        }
        assert_redacts(
            "카드번호 4111-1111-1111-1111 분실했어요",
            "카드번호 [CARD] 분실했어요",
            &[Card],
        );
        // A trailing unrelated number is not swallowed into the card match.
        assert_redacts(
            "card 4111 1111 1111 1111 3 days ago",
            "card [CARD] 3 days ago",
            &[Card],
        );
    }

    #[test]
    fn luhn_failing_cards_untouched() {
        for c in [
            "4111 1111 1111 1112",
            "4111-1111-1111-1112",
            "4111111111111112",
            "1234567812345678",
        ] {
            assert_untouched(&format!("card {c}"));
        }
        assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
    }

    #[test]
    fn rrn() {
        assert_redacts(
            "주민등록번호는 900101-1234567 입니다",
            "주민등록번호는 [RRN] 입니다",
            &[Rrn],
        );
        assert_redacts("주민번호 9001011234567", "주민번호 [RRN]", &[Rrn]);
        assert_redacts("My RRN is 051231-4123456.", "My RRN is [RRN].", &[Rrn]);
        // Passes Luhn too, but RRN is the more specific kind.
        assert_redacts("9001011234563", "[RRN]", &[Rrn]);
        assert_redacts("계좌 9001011234563", "계좌 [RRN]", &[Rrn]);
        // Implausible month/day, gender digit, or wrong length.
        for bad in [
            "901301-1234567",
            "900132-1234567",
            "900101-9234567",
            "900101-0234567",
            "900101-12345678",
        ] {
            assert_untouched(&format!("번호 {bad}"));
        }
    }

    #[test]
    fn hyphenated_accounts() {
        for a in [
            "110-123-456789",
            "1002-345-678901",
            "123-456789-01-234",
            "123456-78-901234",
            "3333-01-1234567",
            "301-1234-5678-91",
        ] {
            assert_redacts(
                &format!("{a} 계좌로 입금해 주세요"),
                "[ACCOUNT] 계좌로 입금해 주세요",
                &[Account],
            );
        }
        assert_redacts(
            "Please wire to 110-123-456789 today",
            "Please wire to [ACCOUNT] today",
            &[Account],
        );
    }

    #[test]
    fn keyword_accounts() {
        assert_redacts("계좌번호: 110123456789", "계좌번호: [ACCOUNT]", &[Account]);
        assert_redacts(
            "입금계좌는 1234567890입니다",
            "입금계좌는 [ACCOUNT]입니다",
            &[Account],
        );
        assert_redacts(
            "account number 12345678901",
            "account number [ACCOUNT]",
            &[Account],
        );
        assert_redacts("Acct: 123456789012", "Acct: [ACCOUNT]", &[Account]);
        assert_redacts("a/c no 12345678901234", "a/c no [ACCOUNT]", &[Account]);
        // Without a keyword a bare run is not an account; too short/long is not either.
        assert_untouched("reference 123456789012");
        assert_untouched("account ending in 6789");
        assert_untouched("account 123456789012345");
    }

    #[test]
    fn non_pii_numbers_untouched() {
        for t in [
            "이체 금액은 50,000원입니다",
            "I was charged $1,200 twice",
            "잔액 ₩1,000,000,000",
            "The transfer on 2024-05-01 at 14:30 failed",
            "2024.05.01 14:30:59 거래",
            "It takes 3 days",
            "주문 5건, 주문번호 #12345",
            "Order 20240501 qty 3",
            "pi is 3.14159265358979",
            "주문번호 2024-05-01-1234",
            "ID: 20240501143000", // Luhn-valid timestamp
            "1588-1234 고객센터",
            "Hello, I need help with my Hanbit Bank account.",
            "안녕하세요, 한빛은행 상담원입니다.",
            "",
        ] {
            assert_untouched(t);
        }
    }

    #[test]
    fn multiple_pii_and_found_order() {
        let got = r(
            "Email a@b.com, call 010-1234-5678, card 4111111111111111, RRN 900101-1234567, \
                     acct 110-123-456789, also b@c.org and 02-123-4567",
        );
        assert_eq!(
            got.text,
            "Email [EMAIL], call [PHONE], card [CARD], RRN [RRN], acct [ACCOUNT], also [EMAIL] and [PHONE]"
        );
        assert_eq!(got.found, vec![Email, Phone, Card, Rrn, Account]);

        let ko = r("주민번호 900101-1234567, 연락처 010-9876-5432, 환불계좌 1002-345-678901");
        assert_eq!(
            ko.text,
            "주민번호 [RRN], 연락처 [PHONE], 환불계좌 [ACCOUNT]"
        );
        assert_eq!(ko.found, vec![Rrn, Phone, Account]);
        assert_redacts("010-1234-5678,010-2222-3333", "[PHONE],[PHONE]", &[Phone]);
    }

    #[test]
    fn policy_switches() {
        let text = "a@b.com 010-1234-5678 4111111111111111 900101-1234567 110-123-456789";
        let off = |f: fn(&mut PiiPolicy)| {
            let mut p = PiiPolicy::default();
            f(&mut p);
            redact(text, &p)
        };
        let got = off(|p| p.email = false);
        assert_eq!(got.text, "a@b.com [PHONE] [CARD] [RRN] [ACCOUNT]");
        assert_eq!(got.found, vec![Phone, Card, Rrn, Account]);
        assert_eq!(
            off(|p| p.phone = false).text,
            "[EMAIL] 010-1234-5678 [CARD] [RRN] [ACCOUNT]"
        );
        assert_eq!(
            off(|p| p.card = false).text,
            "[EMAIL] [PHONE] 4111111111111111 [RRN] [ACCOUNT]"
        );
        assert_eq!(
            off(|p| p.rrn = false).text,
            "[EMAIL] [PHONE] [CARD] 900101-1234567 [ACCOUNT]"
        );
        assert_eq!(
            off(|p| p.account = false).text,
            "[EMAIL] [PHONE] [CARD] [RRN] 110-123-456789"
        );
        let none = PiiPolicy {
            email: false,
            phone: false,
            card: false,
            rrn: false,
            account: false,
            passport: false,
            license: false,
        };
        assert_eq!(
            redact(text, &none),
            Redacted {
                text: text.to_string(),
                found: vec![]
            }
        );
        // A disabled RRN stays whole; it is not re-matched as card/account/phone.
        let no_rrn = PiiPolicy {
            rrn: false,
            ..PiiPolicy::default()
        };
        assert_eq!(
            redact("계좌 9001011234563", &no_rrn).text,
            "계좌 9001011234563"
        );
    }

    #[test]
    fn full_width_and_unicode_dashes() {
        assert_redacts("제 번호는 ０１０－１２３４－５６７８입니다", "제 번호는 [PHONE]입니다", &[Phone]);
        assert_redacts("연락처 010–1234–5678 (문자 주세요)", "연락처 [PHONE] (문자 주세요)", &[Phone]);
        assert_redacts("메일 ｈｏｎｇ＠ｎａｖｅｒ．ｃｏｍ 으로", "메일 [EMAIL] 으로", &[Email]);
        assert_redacts("주민번호 ９００１０１－１２３４５６７", "주민번호 [RRN]", &[Rrn]);
        // The rest of the text keeps its full-width forms.
        assert_redacts("（문의）　０１０１２３４５６７８", "（문의）　[PHONE]", &[Phone]);
        assert_untouched("가격은 ５０，０００원입니다");
    }

    #[test]
    fn spaced_hyphens_in_korean_phones() {
        assert_redacts("010 - 1234 - 5678 로 전화 주세요", "[PHONE] 로 전화 주세요", &[Phone]);
        assert_redacts("call 010 -1234- 5678", "call [PHONE]", &[Phone]);
    }

    #[test]
    fn accounts_after_a_bank_name() {
        assert_redacts("신한 110123456789로 보내주세요", "신한 [ACCOUNT]로 보내주세요", &[Account]);
        assert_redacts("카카오뱅크 3333012345678", "카카오뱅크 [ACCOUNT]", &[Account]);
        assert_redacts("my Citi bank number is 1234567890", "my Citi bank number is [ACCOUNT]", &[Account]);
        // A phone number after a bank's name is still a phone number.
        assert_redacts("국민은행 01012345678", "국민은행 [PHONE]", &[Phone]);
        assert_untouched("한빛은행 고객센터 1566-0770");
        assert_untouched("하나 2024050114300 거래");
    }

    #[test]
    fn us_social_security_numbers() {
        assert_redacts("My SSN is 123-45-6789.", "My SSN is [RRN].", &[Rrn]);
        for bad in ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000"] {
            assert_untouched(&format!("ref {bad}"));
        }
        assert_untouched("on 2024-05-01 at 10");
    }

    #[test]
    fn passports_after_a_keyword() {
        assert_redacts("여권번호는 M12345678 입니다", "여권번호는 [PASSPORT] 입니다", &[Passport]);
        assert_redacts("여권: M123A4567", "여권: [PASSPORT]", &[Passport]);
        assert_redacts("Passport no. X12345678, expires 2030", "Passport no. [PASSPORT], expires 2030", &[Passport]);
        assert_untouched("order M12345678 shipped");
        assert_untouched("passport M123456789");
    }

    #[test]
    fn korean_driving_licences() {
        assert_redacts("면허번호 11-12-345678-90 입니다", "면허번호 [LICENSE] 입니다", &[License]);
        assert_redacts("운전면허 번호: 111234567890", "운전면허 번호: [LICENSE]", &[License]);
        assert_redacts("driver's license 28-99-123456-01", "driver's license [LICENSE]", &[License]);
        assert_untouched("10-12-345678-90");
    }

    #[test]
    fn policy_serde() {
        let p: PiiPolicy = serde_json::from_str("{}").expect("empty policy");
        assert_eq!(p, PiiPolicy::default());
        let p: PiiPolicy = serde_json::from_str(r#"{"card": false}"#).expect("partial policy");
        assert_eq!(
            p,
            PiiPolicy {
                card: false,
                ..PiiPolicy::default()
            }
        );
        assert!(serde_json::from_str::<PiiPolicy>(r#"{"ssn": true}"#).is_err());
        assert_eq!(serde_json::to_string(&Rrn).expect("kind"), r#""rrn""#);
    }
}
