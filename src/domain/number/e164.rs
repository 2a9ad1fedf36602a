//! E.164 numbers: parsing with Google's libphonenumber rules and current metadata
//! (`rlibphonenumber`), and the rule that a number is stored with the digits its caller wrote.
//! No other module names the phone library: regions are checked with [`valid_region`].

use std::borrow::Cow;
use std::fmt;

use rlibphonenumber::{CountryCodeSource, PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberType, Region};

use super::{NumberType, keypad};
use crate::error::{Error, Result};

/// The longest input parsed (and so the most of it an error message can repeat).
const MAX_INPUT: usize = 64;

/// A telephone number in E.164 form: `+`, then 1 to 15 digits, country code first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct E164(String);

/// What libphonenumber says about a number that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedNumber {
    pub e164: E164,
    pub number_type: NumberType,
}

impl E164 {
    /// Parses international input (`+1 303-555-0100`, or `0044 20 7946 0018` when no region is
    /// given), or national input with an explicit ISO 3166 `region` (`303 555 0100`, `US`). A
    /// bare national number without a region is an error, never a guess. The number must be
    /// valid in its country's numbering plan (libphonenumber's `is_valid_number`), and is
    /// stored with the digits its caller wrote: an international number exactly as written
    /// (vanity letters read as digits when there are three or more), a national one as the
    /// country code and the national significant number, its national prefix (a leading 0 or
    /// 1) dropped. Input the library would rewrite otherwise is refused.
    pub fn parse(field: &str, input: &str, region: &str) -> Result<ParsedNumber> {
        let input = input.trim();
        if input.is_empty() {
            return Err(Error::invalid(field, "required"));
        }
        if input.len() > MAX_INPUT {
            return Err(Error::invalid(field, "at most 64 characters"));
        }
        let region = region.trim();
        let (text, default_region) = if region.is_empty() {
            if input.starts_with(['+', '\u{FF0B}']) {
                (Cow::Borrowed(input), None)
            } else if let Some(rest) = input.strip_prefix("00") {
                (Cow::Owned(format!("+{rest}")), None)
            } else {
                return Err(Error::invalid(
                    field,
                    "a national number needs a region (such as US); or write it in international form, starting with +",
                ));
            }
        } else {
            let id = region_id(region).ok_or_else(|| {
                Error::invalid("region", format!("unknown region {:?}", cut(region)))
            })?;
            (Cow::Borrowed(input), Some(id))
        };
        let number = PHONE_NUMBER_UTIL
            .parse_and_keep_raw_input(&text, default_region)
            .map_err(|e| Error::invalid(field, format!("not a telephone number: {e}")))?;
        if number.extension.as_deref().is_some_and(|x| !x.is_empty()) {
            return Err(Error::invalid(
                field,
                "extensions are not numbers of the inventory",
            ));
        }
        if !PHONE_NUMBER_UTIL.is_valid_number(&number) {
            return Err(Error::invalid(
                field,
                "not a valid number in its country's numbering plan",
            ));
        }
        let nsn = number.get_national_significant_number();
        let e164 = format!("+{}{nsn}", number.country_code);
        let Some(written) = written_digits(&text) else {
            return Err(Error::invalid(
                field,
                "only digits, a leading +, spaces, dashes, dots, parentheses, slashes and vanity letters (three or more)",
            ));
        };
        let plus = text.starts_with(['+', '\u{FF0B}']);
        if !as_written(&number, plus, &written, &e164[1..], &nsn) {
            return Err(Error::invalid(
                field,
                "libphonenumber reads other digits than those written (it would add or drop some): write + and the country code, then the national number without its national prefix",
            ));
        }
        Ok(ParsedNumber {
            e164: E164::from_canonical(&e164).ok_or_else(|| Error::invalid(field, "not E.164"))?,
            number_type: number_type(PHONE_NUMBER_UTIL.get_number_type(&number)),
        })
    }

    /// Accepts a string already in canonical E.164 form (as stored), without numbering-plan
    /// checks.
    pub fn from_canonical(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('+')?;
        let ok = (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `region` names a region with a numbering plan (ISO 3166 alpha-2, any case, such as
/// `US` or `gb`).
pub fn valid_region(region: &str) -> bool {
    region_id(region.trim()).is_some()
}

fn region_id(region: &str) -> Option<Region> {
    if region.len() != 2 {
        return None;
    }
    let id = Region::from_code(region).ok()?;
    PHONE_NUMBER_UTIL.get_country_code_for_region(id)?;
    Some(id)
}

/// At most the first [`MAX_INPUT`] characters of what a caller sent, for an error message.
fn cut(s: &str) -> &str {
    s.char_indices().nth(MAX_INPUT).map_or(s, |(i, _)| &s[..i])
}

/// Whether the number parsed is made of the digits written (`written`, as
/// [`written_digits`] reads them): all of them for international input, `+` or an
/// international prefix (IDD) aside; for national input, none added to them. After a `+`
/// every digit is the number's (`+00 1 303…` is not `+1 303…`: E.164 has no leading zero).
fn as_written(
    number: &PhoneNumber,
    plus: bool,
    written: &str,
    e164_digits: &str,
    nsn: &str,
) -> bool {
    match number.country_code_source() {
        CountryCodeSource::FromNumberWithPlusSign => written == e164_digits,
        CountryCodeSource::FromNumberWithIdd => {
            !plus && written.len() > e164_digits.len() && written.ends_with(e164_digits)
        }
        // A national prefix or carrier code dropped (the digits written end with the national
        // significant number), or the country's own national-to-international rule applied
        // (Argentina's mobile 011 15 2345-6789 is +54 9 11 2345-6789); never digits added, as
        // local dialling would (a seven-digit Bermudian number completed with area code 441).
        CountryCodeSource::FromNumberWithoutPlusSign | CountryCodeSource::FromDefaultCountry => {
            !plus && nsn.len() <= written.len()
        }
        CountryCodeSource::Unspecified => false,
    }
}

/// The digits of `input` as libphonenumber reads them: a leading `+` and formatting characters
/// (spaces, dashes, dots, parentheses, slashes) dropped, digits of other scripts read as
/// digits, and letters read as keypad digits when there are three or more of them (a vanity
/// number, libphonenumber's rule). `None` when something else is written, fewer than three
/// letters among it.
fn written_digits(input: &str) -> Option<String> {
    /// Dashes (ASCII, Unicode and fullwidth), dots, parentheses and slashes.
    const FORMATTING: &[char] = &[
        '-', '.', '(', ')', '/', '\u{2010}', '\u{2011}', '\u{2012}', '\u{2013}', '\u{2014}',
        '\u{2015}', '\u{2212}', '\u{FF0D}', '\u{FF0E}', '\u{FF08}', '\u{FF09}', '\u{FF0F}',
    ];
    let letters = input.chars().filter(char::is_ascii_alphabetic).count();
    if letters > 0 && letters < 3 {
        return None;
    }
    let body = input
        .strip_prefix('+')
        .or_else(|| input.strip_prefix('\u{FF0B}'))
        .unwrap_or(input);
    let mut out = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' => out.push(c),
            // Fullwidth, Arabic-Indic and Extended Arabic-Indic (Persian) digits.
            '\u{FF10}'..='\u{FF19}' | '\u{0660}'..='\u{0669}' | '\u{06F0}'..='\u{06F9}' => {
                let zero = match c {
                    '\u{FF10}'..='\u{FF19}' => 0xFF10,
                    '\u{0660}'..='\u{0669}' => 0x0660,
                    _ => 0x06F0,
                };
                out.push(char::from(b'0' + (c as u32 - zero) as u8));
            }
            c if c.is_ascii_alphabetic() => out.push(keypad(c)?),
            c if c.is_whitespace() || FORMATTING.contains(&c) => {}
            _ => return None,
        }
    }
    Some(out)
}

fn number_type(t: PhoneNumberType) -> NumberType {
    use PhoneNumberType as T;
    match t {
        T::FixedLine => NumberType::Geographic,
        T::Mobile => NumberType::Mobile,
        T::FixedLineOrMobile => NumberType::GeographicOrMobile,
        T::TollFree => NumberType::TollFree,
        T::PremiumRate => NumberType::PremiumRate,
        T::SharedCost => NumberType::SharedCost,
        T::VoIP => NumberType::Voip,
        T::PersonalNumber => NumberType::Personal,
        T::Pager => NumberType::Pager,
        T::UAN => NumberType::Uan,
        T::VoiceMail => NumberType::Voicemail,
        T::Unknown => NumberType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(input: &str, region: &str) -> Result<String> {
        E164::parse("e164", input, region).map(|p| p.e164.as_str().to_string())
    }

    fn refused(input: &str, region: &str) -> String {
        match E164::parse("e164", input, region) {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v[0].field, "e164", "{input}");
                v[0].description.clone()
            }
            other => panic!("{input} ({region}): {other:?}"),
        }
    }

    #[test]
    fn a_typo_is_refused_not_completed_by_local_dialling() {
        // phonenumber 0.3 stored these as +14414414123 and +17847842661.
        for input in ["+14414123", "+17842661", "+1 441 412 3"] {
            refused(input, "");
        }
        // National input in the region's local dialling gets no area code either.
        for (input, region) in [("234 5678", "BM"), ("456 1234", "VC"), ("886377", "SM")] {
            refused(input, region);
        }
        assert_eq!(e164("441 234 5678", "BM").unwrap(), "+14412345678");
    }

    #[test]
    fn too_long_numbers_and_two_letters_for_zeros_are_refused() {
        for input in [
            "+359800123450000",
            "+811201234560000",
            "+31140200000",
            "+1-303-555-01OO",
            "+1 303 555 010O",
        ] {
            refused(input, "");
        }
    }

    #[test]
    fn a_plus_and_an_international_prefix_together_are_refused() {
        // Found by the fuzzer: libphonenumber reads `+00` as an international prefix and
        // stored +12012000000, dropping two digits the caller wrote after the +.
        for input in ["+0012012000000", "+00247 62889", "+011 1 303 555 0100"] {
            refused(input, "");
            refused(input, "GB");
            refused(input, "US");
        }
        assert_eq!(e164("0012012000000", "").unwrap(), "+12012000000");
    }

    #[test]
    fn vanity_letters_count_when_there_are_three_or_more() {
        let p = E164::parse("e164", "+1-800-FLOWERS", "").unwrap();
        assert_eq!(p.e164.as_str(), "+18003569377");
        assert_eq!(p.number_type, NumberType::TollFree);
        assert_eq!(e164("800 flowers", "us").unwrap(), "+18003569377");
    }

    #[test]
    fn international_input_is_stored_with_exactly_the_digits_written() {
        let why = refused("+44 (0)20 7946 0018", "");
        assert!(why.contains("national prefix"), "{why}");
        refused("+44 020 7946 0018", "");
        assert_eq!(e164("+44 20 7946 0018", "").unwrap(), "+442079460018");
        assert_eq!(e164("+44 20 7946 0018", "US").unwrap(), "+442079460018");
        // 00 is read as the international prefix when no region is given; with a region, the
        // region's own international prefix.
        assert_eq!(e164("0044 20 7946 0018", "").unwrap(), "+442079460018");
        assert_eq!(e164("00 44 20 7946 0018", "GB").unwrap(), "+442079460018");
        assert_eq!(e164("011 44 20 7946 0018", "US").unwrap(), "+442079460018");
        // Digits of other scripts are digits.
        assert_eq!(
            e164("＋１ ３０３ ５５５ ０１００", "").unwrap(),
            "+13035550100"
        );
    }

    #[test]
    fn national_input_drops_its_national_prefix() {
        assert_eq!(e164("020 7946 0018", "GB").unwrap(), "+442079460018");
        assert_eq!(e164("44 20 7946 0018", "GB").unwrap(), "+442079460018");
        assert_eq!(e164("1 (303) 555-0100", "US").unwrap(), "+13035550100");
        assert_eq!(e164("8 (800) 123-45-67", "KZ").unwrap(), "+78001234567");
        // Italian numbers keep their leading 0; Argentina's mobile 15 becomes 9 after 54.
        assert_eq!(e164("02 1234 5678", "IT").unwrap(), "+390212345678");
        assert_eq!(e164("011 15-2345-6789", "AR").unwrap(), "+5491123456789");
    }

    #[test]
    fn current_metadata_types_and_validates() {
        let it = E164::parse("e164", "+39 02 1234 5678", "").unwrap();
        assert_eq!(it.number_type, NumberType::Geographic);
        for input in ["+7 800 123-45-67", "+375 801 123 4567", "+370 800 12 345"] {
            let p = E164::parse("e164", input, "").unwrap();
            assert_eq!(p.number_type, NumberType::TollFree, "{input}");
        }
    }

    #[test]
    fn stray_characters_and_extensions_are_refused() {
        refused("+1 303 555 0100 A", "");
        refused("+1 303 555 0100 ext 12", "");
        refused("+1 303 555 0100 #", "");
        refused("+1 303 555 0100 x12", "");
    }

    #[test]
    fn errors_repeat_at_most_a_short_cut_of_the_input() {
        let long = "X".repeat(500);
        match E164::parse("e164", "303 555 0100", &long) {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v[0].field, "region");
                assert!(v[0].description.len() < 100, "{}", v[0].description);
            }
            other => panic!("{other:?}"),
        }
        let why = refused(&format!("+1 303 555 0100{long}"), "");
        assert!(!why.contains("XXXX"), "{why}");
    }

    #[test]
    fn regions_are_those_with_a_numbering_plan() {
        for r in ["US", "gb", " de ", "KZ", "BY"] {
            assert!(valid_region(r), "{r}");
        }
        for r in ["", "XX", "AQ", "001", "USA", "U", "ü1"] {
            assert!(!valid_region(r), "{r}");
        }
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        /// Every region's example numbers (Google's libphonenumber), as `(region, national,
        /// international)`.
        fn examples() -> Vec<(String, String, String)> {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/e164_examples.csv"
            ))
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("region,"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() >= 4).then(|| (f[0].to_string(), f[2].to_string(), f[3].to_string()))
            })
            .collect()
        }

        /// A real number, as written, then perhaps damaged: a digit dropped, doubled or
        /// changed, a prefix added (`0`, `00`, `+00`, `1`), letters or punctuation slipped in.
        fn realistic() -> impl Strategy<Value = (String, String)> {
            let edit = prop_oneof![
                Just(None),
                (
                    0usize..20,
                    prop::sample::select(vec![
                        "", "0", "00", "1", "9", "A", "O", "-", " ", "(", "*", "#", "\u{FF11}"
                    ])
                )
                    .prop_map(Some),
            ];
            (
                prop::sample::select(examples()),
                0usize..3,
                edit,
                prop::sample::select(vec!["", "0", "00", "+00", "+", "1"]),
            )
                .prop_map(|((region, national, international), form, edit, prefix)| {
                    let (mut input, region) = match form {
                        0 => (international, String::new()),
                        1 => (international, region),
                        _ => (national, region),
                    };
                    if let Some((at, text)) = edit {
                        let cut = input
                            .char_indices()
                            .map(|(i, _)| i)
                            .nth(at)
                            .unwrap_or(input.len());
                        // Replace one character, or insert when `text` is a prefix-like edit.
                        let end = input[cut..]
                            .chars()
                            .next()
                            .map_or(cut, |c| cut + c.len_utf8());
                        if at % 2 == 0 {
                            input.replace_range(cut..end, text)
                        } else {
                            input.insert_str(cut, text)
                        }
                    }
                    if !prefix.is_empty() && input.starts_with('+') == prefix.starts_with('+') {
                        input = format!("{prefix}{}", input.trim_start_matches('+'));
                    }
                    (input, region)
                })
        }

        /// Input that looks like a number: real numbers damaged, digits, formatting, letters.
        fn numberish() -> impl Strategy<Value = String> {
            prop_oneof![
                "[+]?[0-9]{1,17}",
                "(\\+|00)?[0-9 ().A-Z/-]{1,24}",
                any::<String>(),
            ]
        }

        fn region() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                prop::sample::select(vec![
                    "US", "GB", "DE", "FR", "IT", "AR", "BM", "VC", "KZ", "JP", "IN", "BR"
                ])
                .prop_map(str::to_string),
                "[A-Za-z]{2}",
                any::<String>(),
            ]
        }

        #[test]
        fn the_generator_reaches_acceptance() {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
            let mut runner = TestRunner::new_with_rng(
                Config::default(),
                TestRng::deterministic_rng(RngAlgorithm::ChaCha),
            );
            let accepted = (0..5000)
                .filter(|_| {
                    let (input, region) = realistic().new_tree(&mut runner).unwrap().current();
                    E164::parse("e164", &input, &region).is_ok()
                })
                .count();
            assert!(
                accepted > 1000,
                "only {accepted} of 5,000 inputs were numbers"
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            /// Whatever is sent, the parse answers (never panics), a refusal is
            /// INVALID_ARGUMENT naming the field or the region, and an accepted number is
            /// canonical E.164 made of digits the caller wrote: every digit of an
            /// international input, in order; for national input, the national significant
            /// number is the end of what was written (a national prefix dropped, nothing added).
            #[test]
            fn a_number_is_stored_with_only_the_digits_written(
                (input, region) in prop_oneof![realistic(), (numberish(), region())],
            ) {
                match E164::parse("e164", &input, &region) {
                    Ok(p) => {
                        let stored = p.e164.as_str();
                        prop_assert!(E164::from_canonical(stored).is_some(), "{stored} is not canonical");
                        let written = written_digits(input.trim()).expect("accepted input reads as digits");
                        let stored_digits = &stored[1..];
                        if input.trim().starts_with('+') {
                            prop_assert_eq!(&written, stored_digits, "{:?} was stored as {}", input, stored);
                        } else if region.trim().is_empty() {
                            // 00 and the international number: every digit after the 00.
                            prop_assert_eq!(&written[2..], stored_digits, "{:?} was stored as {}", input, stored);
                        } else {
                            prop_assert!(!written.is_empty() && stored_digits.len() <= written.len() + 3,
                                "{:?} ({}) grew into {}", input, region, stored);
                        }
                    }
                    Err(Error::InvalidArgument(v)) => {
                        prop_assert!(!v.is_empty());
                        prop_assert!(v.iter().all(|f| f.field == "e164" || f.field == "region"), "{:?}", v);
                        prop_assert!(v.iter().all(|f| f.description.len() <= 400), "{:?}", v);
                    }
                    Err(other) => prop_assert!(false, "{:?} ({}) answered {:?}", input, region, other),
                }
            }
        }
    }
}
