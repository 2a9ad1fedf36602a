//! Fuzzing the edge: random protobuf messages of every request type, decoded and parsed into
//! their commands. Whatever arrives, the parse never panics, and every refusal is
//! INVALID_ARGUMENT naming at least one field: nothing a caller sends can reach a use case
//! unchecked, or become INTERNAL on the way in.
//!
//! The messages are built field by field (a random tag, wire type and value; strings drawn from
//! numbers, ids, wildcards, control characters and any Unicode; nested messages two deep), so
//! that most of them decode and exercise the parse itself rather than the protobuf decoder.
//! `PROPTEST_CASES` raises the count (CI runs the default of this file, 2,000 a request type).

use numbering_client::v1 as pb;
use proptest::prelude::*;
use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::domain::command::{
    AddNumbers, Batch, ChangeAccountState, CreateAccount, CreateSeries, Delete, MoveNumbers,
    OneChange, UpdateAccount, UpdateNumber, UpdateSeries, Withdraw,
};
use crate::error::Error;

/// One field of a random message.
#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Text(String),
    Message(Vec<(u32, Value)>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Numbers as people write them, with letters, wildcards and separators.
        "[+]?[0-9 ().*?%_A-Za-z-]{0,20}",
        // Ids, well formed or nearly.
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[0-9a-f-]{30,40}",
        // Field-mask paths and enum-ish words.
        "[a-z_.]{0,30}",
        // Anything, control characters and NUL included.
        any::<String>(),
        "[\\x00-\\x1f]{0,8}",
        // Long values, to reach every length limit.
        "[a-z0-9]{200,400}",
    ]
}

fn value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(i64::MIN as u64),
            Just(i32::MAX as u64),
            any::<u64>(),
            0u64..20,
        ]
        .prop_map(Value::Varint),
        text().prop_map(Value::Text),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            3 => leaf,
            1 => fields(depth - 1).prop_map(Value::Message),
        ]
        .boxed()
    }
}

fn fields(depth: u32) -> BoxedStrategy<Vec<(u32, Value)>> {
    prop::collection::vec((1u32..=16, value(depth)), 0..8).boxed()
}

fn encode(fields: &[(u32, Value)], out: &mut Vec<u8>) {
    for (tag, v) in fields {
        match v {
            Value::Varint(n) => {
                encode_key(*tag, WireType::Varint, out);
                encode_varint(*n, out);
            }
            Value::Text(s) => {
                encode_key(*tag, WireType::LengthDelimited, out);
                encode_varint(s.len() as u64, out);
                out.put_slice(s.as_bytes());
            }
            Value::Message(inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                encode_key(*tag, WireType::LengthDelimited, out);
                encode_varint(body.len() as u64, out);
                out.put_slice(&body);
            }
        }
    }
}

/// A refusal at the edge must be INVALID_ARGUMENT and name its fields.
fn assert_refused_at_the_edge(what: &str, e: Error) {
    match e {
        Error::InvalidArgument(violations) => {
            assert!(!violations.is_empty(), "{what}: a refusal names no field");
            for v in &violations {
                assert!(!v.field.is_empty(), "{what}: a violation without a field");
                assert!(
                    !v.description.is_empty(),
                    "{what}: {} refused with no reason",
                    v.field
                );
            }
        }
        other => panic!("{what}: refused with {other:?}, not INVALID_ARGUMENT"),
    }
}

/// Decodes `bytes` as `R` and, when it decodes, parses it with `parse`.
fn parse_as<R: Message + Default, C>(bytes: &[u8], parse: impl Fn(&R) -> crate::error::Result<C>) {
    if let Ok(request) = R::decode(bytes)
        && let Err(e) = parse(&request)
    {
        assert_refused_at_the_edge(std::any::type_name::<R>(), e);
    }
}

/// Every request with a parse, as `(request type, command)`.
macro_rules! every_request {
    ($bytes:expr; $($request:ident => $command:ty),+ $(,)?) => {
        $(parse_as::<pb::$request, $command>($bytes, |r| <$command>::try_from(r));)+
    };
}

fn parse_every_request(bytes: &[u8]) {
    every_request!(bytes;
        AddNumberRequest => AddNumbers,
        BatchAddNumbersRequest => AddNumbers,
        UpdateNumberRequest => UpdateNumber,
        DeleteNumberRequest => Delete,
        DeleteSeriesRequest => Delete,
        CreateSeriesRequest => CreateSeries,
        UpdateSeriesRequest => UpdateSeries,
        CreateAccountRequest => CreateAccount,
        UpdateAccountRequest => UpdateAccount,
        SuspendAccountRequest => ChangeAccountState,
        ResumeAccountRequest => ChangeAccountState,
        AllocateNumbersRequest => MoveNumbers,
        TransferNumbersRequest => MoveNumbers,
        WithdrawNumbersRequest => Withdraw,
        AssignNumberRequest => OneChange,
        ReassignNumberRequest => OneChange,
        ReserveNumberRequest => OneChange,
        UnassignNumberRequest => OneChange,
        UnreserveNumberRequest => OneChange,
        ReleaseNumberRequest => OneChange,
        UnbindNumberRequest => OneChange,
        BatchAssignNumbersRequest => Batch<OneChange>,
        BatchReserveNumbersRequest => Batch<OneChange>,
        BatchUnassignNumbersRequest => Batch<OneChange>,
        BatchReleaseNumbersRequest => Batch<OneChange>,
    );
    parse_as::<pb::NumberFilter, _>(bytes, super::filter);
    parse_as::<pb::SearchAvailableNumbersRequest, _>(bytes, super::search);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_request_panics_or_escapes_invalid_argument(fields in fields(2)) {
        let mut bytes = Vec::new();
        encode(&fields, &mut bytes);
        parse_every_request(&bytes);
    }

    #[test]
    fn no_byte_string_panics_or_escapes_invalid_argument(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        parse_every_request(&bytes);
    }
}

#[test]
fn the_generator_reaches_the_parse() {
    // The fuzzer is only worth its cases if random fields decode into requests that the parse
    // then refuses or accepts: count both over a fixed seed.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let mut refused = 0;
    for _ in 0..2000 {
        let fields = fields(2).new_tree(&mut runner).expect("a tree").current();
        let mut bytes = Vec::new();
        encode(&fields, &mut bytes);
        if let Ok(r) = pb::AllocateNumbersRequest::decode(bytes.as_slice())
            && MoveNumbers::try_from(&r).is_err()
        {
            refused += 1;
        }
    }
    assert!(
        refused > 100,
        "only {refused} of 2,000 random messages reached AllocateNumbers' parse"
    );
}
