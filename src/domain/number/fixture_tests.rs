//! E.164 parsing against tests/fixtures/e164_examples.csv: what Google's libphonenumber says of
//! every region's example number of every type, and inputs that must be refused.

use super::{E164, NumberType};

/// One input of the fixture and what must come of it: `Some((e164, type))`, or `None` when it
/// must be refused.
pub(super) struct Case {
    pub region: String,
    pub input: String,
    pub want: Option<(String, String)>,
}

pub(super) fn cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/e164_examples.csv"
    );
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_path(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.unwrap();
        let (region, national, international, e164, number_type) =
            (&row[0], &row[2], &row[3], &row[4], &row[5]);
        let want = (number_type != "rejected").then(|| (e164.to_string(), number_type.to_string()));
        if !national.is_empty() {
            out.push(Case {
                region: region.to_string(),
                input: national.to_string(),
                want: want.clone(),
            });
        }
        if !international.is_empty() {
            out.push(Case {
                region: String::new(),
                input: international.to_string(),
                want,
            });
        }
    }
    out
}

/// What a parser made of the fixture: the inputs it got wrong, described, and how many of those
/// it accepted with the right E.164 but the wrong type.
pub(super) struct Outcome {
    pub inputs: usize,
    pub wrong: Vec<String>,
    pub wrong_type: usize,
}

pub(super) fn run(parse: impl Fn(&str, &str) -> Option<(String, NumberType)>) -> Outcome {
    let cases = cases();
    let mut wrong = Vec::new();
    let mut wrong_type = 0;
    for c in &cases {
        let got = parse(&c.input, &c.region).map(|(e, t)| (e, t.as_str().to_string()));
        if got == c.want {
            continue;
        }
        if let (Some(g), Some(w)) = (&got, &c.want)
            && g.0 == w.0
        {
            wrong_type += 1;
        }
        let show = |o: &Option<(String, String)>| match o {
            Some((e, t)) => format!("{e} {t}"),
            None => "rejected".to_string(),
        };
        wrong.push(format!(
            "region {:?} input {:?}: expected {}, got {}",
            c.region,
            c.input,
            show(&c.want),
            show(&got)
        ));
    }
    Outcome {
        inputs: cases.len(),
        wrong,
        wrong_type,
    }
}

#[test]
fn every_example_number_is_accepted_as_libphonenumber_reads_it_and_every_negative_refused() {
    let o = run(|input, region| {
        E164::parse("e164", input, region)
            .ok()
            .map(|p| (p.e164.as_str().to_string(), p.number_type))
    });
    assert!(o.inputs > 2000, "only {} inputs in the fixture", o.inputs);
    assert!(
        o.wrong.is_empty(),
        "{} of {} inputs wrong ({} with the right E.164 but the wrong type):\n{}",
        o.wrong.len(),
        o.inputs,
        o.wrong_type,
        o.wrong.join("\n")
    );
}

/// `cargo test --lib parse_speed -- --ignored --nocapture`: every input of the fixture, parsed
/// again and again.
#[test]
#[ignore]
fn parse_speed() {
    let cases = cases();
    for _ in 0..2 {
        let start = std::time::Instant::now();
        let rounds = 20;
        let mut accepted = 0;
        for _ in 0..rounds {
            for c in &cases {
                accepted += E164::parse("e164", &c.input, &c.region).is_ok() as usize;
            }
        }
        let n = rounds * cases.len();
        println!(
            "{n} parses ({accepted} accepted): {} ns per parse",
            start.elapsed().as_nanos() / n as u128
        );
    }
}
