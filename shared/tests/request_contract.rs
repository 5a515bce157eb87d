//! The event request contract, one test per rule, each checking the answer and the field
//! path it names.

use herald_core::domain::{JobUser, PlatformFilter, UserRef};
use herald_core::request::{parse, EventRequest, FieldError, RequestError, Targets};
use herald_core::Limits;
use serde_json::{json, Value};

fn ok(body: Value) -> EventRequest {
    parse(body.to_string().as_bytes(), &Limits::default()).expect("valid request")
}

fn invalid(body: Value) -> Vec<FieldError> {
    match parse(body.to_string().as_bytes(), &Limits::default()) {
        Err(RequestError::Invalid(errors)) => errors,
        other => panic!("expected 422, got {other:?}"),
    }
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn platform_ids(request: &EventRequest) -> Vec<&str> {
    match &request.targets {
        Targets::Platform { users, .. } => users
            .iter()
            .map(|u| match &u.user {
                UserRef::Platform { id, .. } => id.as_str(),
                UserRef::Bm { .. } => panic!("bm ref"),
            })
            .collect(),
        other => panic!("expected platform targets, got {other:?}"),
    }
}

#[test]
fn seed_example_explicit_telegram_user() {
    let request = ok(json!({"platform": "tg", "users": ["123456"], "data": {}}));
    assert_eq!(
        request.targets,
        Targets::Platform {
            platform: "tg".into(),
            users: vec![JobUser {
                user: UserRef::Platform {
                    platform: "tg".into(),
                    id: "123456".into()
                },
                patch: None
            }]
        }
    );
    assert!(request.data.is_empty());
    assert!(!request.dry_run);
}

#[test]
fn seed_example_everyone_on_any_platform() {
    let request = ok(json!({"platform": "any", "users": "everyone", "data": {}}));
    assert_eq!(
        request.targets,
        Targets::Everyone {
            platform: PlatformFilter::Any
        }
    );
}

#[test]
fn everyone_on_one_platform() {
    let request = ok(json!({"platform": "tg", "users": "everyone"}));
    assert_eq!(
        request.targets,
        Targets::Everyone {
            platform: PlatformFilter::Only("tg".into())
        }
    );
}

#[test]
fn seed_example_users_bm() {
    let request = ok(json!({"users_bm": ["5c517b7773515eaha3078e2f"], "data": {}}));
    assert_eq!(
        request.targets,
        Targets::Bm {
            users: vec![JobUser {
                user: UserRef::Bm {
                    id: "5c517b7773515eaha3078e2f".into()
                },
                patch: None
            }]
        }
    );
}

#[test]
fn integer_ids_are_normalised_to_strings_and_deduplicated_in_order() {
    let request =
        ok(json!({"platform": "tg", "users": ["b", 123456, "a", "123456", "b", -100200300]}));
    assert_eq!(platform_ids(&request), ["b", "123456", "a", "-100200300"]);
}

#[test]
fn a_single_id_may_stand_alone() {
    assert_eq!(
        platform_ids(&ok(json!({"platform": "tg", "users": "42"}))),
        ["42"]
    );
    assert_eq!(
        platform_ids(&ok(json!({"platform": "tg", "users": 42}))),
        ["42"]
    );
}

#[test]
fn a_single_bad_id_is_named_by_the_field_alone() {
    let errors = invalid(json!({"platform": "tg", "users": true}));
    assert_eq!(fields(&errors), ["users"]);
}

#[test]
fn data_is_absent_null_or_an_object() {
    assert!(ok(json!({"platform": "tg", "users": ["1"]}))
        .data
        .is_empty());
    assert!(ok(json!({"platform": "tg", "users": ["1"], "data": null}))
        .data
        .is_empty());
    let request = ok(json!({"platform": "tg", "users": ["1"], "data": {"b": 1, "a": 2}}));
    // Key order is kept as sent.
    assert_eq!(request.data.keys().collect::<Vec<_>>(), ["b", "a"]);
    let errors = invalid(json!({"platform": "tg", "users": ["1"], "data": [1]}));
    assert_eq!(fields(&errors), ["data"]);
}

#[test]
fn per_user_entries_carry_their_own_data() {
    let request = ok(json!({
        "platform": "tg",
        "users": [{"id": 1, "data": {"name": "Ann"}}, "2", {"id": "3"}],
        "data": {"shop": "x"}
    }));
    let Targets::Platform { users, .. } = request.targets else {
        panic!()
    };
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].patch.as_ref().unwrap()["name"], "Ann");
    assert!(users[1].patch.is_none());
    assert!(users[2].patch.is_none());
}

#[test]
fn per_user_data_must_be_an_object() {
    let errors = invalid(json!({"platform": "tg", "users": ["1", {"id": "2", "data": 5}]}));
    assert_eq!(fields(&errors), ["users[1].data"]);
}

#[test]
fn a_user_entry_needs_an_id() {
    let errors = invalid(json!({"platform": "tg", "users": [{"data": {}}]}));
    assert_eq!(fields(&errors), ["users[0].id"]);
}

#[test]
fn a_repeated_id_with_different_data_is_refused() {
    let errors = invalid(json!({"platform": "tg", "users": [
        {"id": "1", "data": {"a": 1}}, "2", {"id": 1, "data": {"a": 2}}
    ]}));
    assert_eq!(fields(&errors), ["users[2]"]);
    // The same id with the same data is a plain duplicate.
    let request = ok(
        json!({"platform": "tg", "users": [{"id": "1", "data": {"a": 1}}, {"id": 1, "data": {"a": 1}}]}),
    );
    assert_eq!(platform_ids(&request), ["1"]);
}

#[test]
fn ids_are_strings_or_integers() {
    let errors = invalid(json!({"platform": "tg", "users": ["1", 1.5, null, true, [1], "2"]}));
    assert_eq!(
        fields(&errors),
        ["users[1]", "users[2]", "users[3]", "users[4]"]
    );
}

#[test]
fn an_id_must_not_be_empty() {
    let errors = invalid(json!({"platform": "tg", "users": ["1", ""]}));
    assert_eq!(fields(&errors), ["users[1]"]);
}

#[test]
fn an_id_is_at_most_128_characters() {
    let longest = "й".repeat(128);
    assert_eq!(
        platform_ids(&ok(json!({"platform": "tg", "users": [longest.clone()]}))),
        [longest]
    );
    let errors = invalid(json!({"platform": "tg", "users": ["1", "2", "3", "x".repeat(129)]}));
    assert_eq!(fields(&errors), ["users[3]"]);
}

#[test]
fn an_id_has_no_control_characters() {
    let errors = invalid(json!({"platform": "tg", "users": ["ok", "a\nb", "\u{7f}"]}));
    assert_eq!(fields(&errors), ["users[1]", "users[2]"]);
    let errors = invalid(json!({"users_bm": ["tab\there"]}));
    assert_eq!(fields(&errors), ["users_bm[0]"]);
}

#[test]
fn at_most_10000_users_per_request() {
    let users: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    assert_eq!(
        platform_ids(&ok(json!({"platform": "tg", "users": users}))).len(),
        10_000
    );
    let users: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let errors = invalid(json!({"platform": "tg", "users": users}));
    assert_eq!(fields(&errors), ["users"]);
    assert!(errors[0].message.contains("10000"), "{}", errors[0].message);
    let bm: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    assert_eq!(fields(&invalid(json!({"users_bm": bm}))), ["users_bm"]);
}

#[test]
fn an_empty_user_list_is_refused() {
    assert_eq!(
        fields(&invalid(json!({"platform": "tg", "users": []}))),
        ["users"]
    );
    assert_eq!(fields(&invalid(json!({"users_bm": []}))), ["users_bm"]);
}

#[test]
fn exactly_one_of_users_and_users_bm() {
    let errors = invalid(json!({"platform": "tg", "users": ["1"], "users_bm": ["a"]}));
    assert_eq!(fields(&errors), ["users_bm"]);
    let errors = invalid(json!({"platform": "tg", "data": {}}));
    assert_eq!(fields(&errors), ["users"]);
}

#[test]
fn platform_is_required_with_users() {
    assert_eq!(fields(&invalid(json!({"users": ["1"]}))), ["platform"]);
    assert_eq!(fields(&invalid(json!({"users": "everyone"}))), ["platform"]);
    // users_bm needs none.
    ok(json!({"users_bm": ["a"]}));
}

#[test]
fn any_is_only_allowed_with_everyone() {
    let errors = invalid(json!({"platform": "any", "users": ["123456"]}));
    assert_eq!(fields(&errors), ["platform"]);
}

#[test]
fn platform_is_a_lowercase_name() {
    assert_eq!(
        fields(&invalid(json!({"platform": "Telegram!", "users": ["1"]}))),
        ["platform"]
    );
    assert_eq!(
        fields(&invalid(json!({"platform": 1, "users": ["1"]}))),
        ["platform"]
    );
    assert_eq!(
        fields(&invalid(json!({"platform": "", "users": ["1"]}))),
        ["platform"]
    );
    ok(json!({"platform": "viber", "users": ["1"]}));
}

#[test]
fn everyone_belongs_in_users_not_users_bm() {
    assert_eq!(
        fields(&invalid(json!({"users_bm": "everyone"}))),
        ["users_bm"]
    );
}

#[test]
fn dry_run_is_a_boolean() {
    assert!(ok(json!({"platform": "tg", "users": ["1"], "dry_run": true})).dry_run);
    let errors = invalid(json!({"platform": "tg", "users": ["1"], "dry_run": "yes"}));
    assert_eq!(fields(&errors), ["dry_run"]);
}

#[test]
fn unknown_fields_are_ignored() {
    ok(json!({"platform": "tg", "users": ["1"], "source": "crm", "version": 2}));
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = invalid(json!({"platform": "tg", "users": ["", 2.5], "data": 3, "dry_run": 1}));
    assert_eq!(fields(&errors), ["data", "dry_run", "users[0]", "users[1]"]);
}

fn nested(depth: usize) -> Value {
    // An object `depth` levels deep: {"a": {"a": ... {}}}.
    (1..depth).fold(json!({}), |inner, _| json!({ "a": inner }))
}

#[test]
fn data_nests_at_most_64_levels() {
    ok(json!({"platform": "tg", "users": ["1"], "data": nested(64)}));
    let errors = invalid(json!({"platform": "tg", "users": ["1"], "data": nested(65)}));
    assert_eq!(fields(&errors), ["data"]);
    let errors = invalid(json!({"platform": "tg", "users": [{"id": "1", "data": nested(65)}]}));
    assert_eq!(fields(&errors), ["users[0].data"]);
}

#[test]
fn nesting_beyond_what_the_parser_allows_is_a_422_not_a_crash() {
    let body = format!(
        "{{\"platform\":\"tg\",\"users\":[\"1\"],\"data\":{}{}}}",
        "{\"a\":".repeat(5000),
        "}".repeat(5001)
    );
    match parse(body.as_bytes(), &Limits::default()) {
        Err(RequestError::Invalid(errors)) => assert_eq!(fields(&errors), [""]),
        other => panic!("expected 422, got {other:?}"),
    }
}

fn small_limits() -> Limits {
    Limits {
        max_body_bytes: 4096,
        max_data_bytes: 100,
        ..Limits::default()
    }
}

fn too_large(body: Value, limits: &Limits) -> Vec<FieldError> {
    match parse(body.to_string().as_bytes(), limits) {
        Err(RequestError::TooLarge(errors)) => errors,
        other => panic!("expected 413, got {other:?}"),
    }
}

#[test]
fn data_is_at_most_256_kib_serialized() {
    let limits = Limits::default();
    // {"k":"..."} is 8 bytes of syntax around the string.
    let exact = json!({"k": "x".repeat(256 * 1024 - 8)});
    parse(
        json!({"platform": "tg", "users": ["1"], "data": exact})
            .to_string()
            .as_bytes(),
        &limits,
    )
    .expect("exactly at the limit");
    let over = json!({"k": "x".repeat(256 * 1024 - 7)});
    let errors = too_large(
        json!({"platform": "tg", "users": ["1"], "data": over}),
        &limits,
    );
    assert_eq!(fields(&errors), ["data"]);
}

#[test]
fn per_user_data_merged_over_data_stays_within_the_limit() {
    let limits = small_limits();
    let body = json!({
        "platform": "tg",
        "users": [{"id": "1", "data": {"b": "y".repeat(40)}}, {"id": "2", "data": {"b": "y".repeat(60)}}],
        "data": {"a": "x".repeat(40)}
    });
    let errors = too_large(body, &limits);
    assert_eq!(fields(&errors), ["users[1].data"]);
    // A patch that removes keys may be large on its own terms yet merge small.
    let body = json!({
        "platform": "tg",
        "users": [{"id": "1", "data": {"a": null, "b": "y".repeat(60)}}],
        "data": {"a": "x".repeat(60)}
    });
    parse(body.to_string().as_bytes(), &limits).expect("merged size is within the limit");
}

#[test]
fn the_body_is_at_most_1_mib() {
    let limits = Limits::default();
    let body = format!(
        "{{\"platform\":\"tg\",\"users\":[\"1\"],\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    match parse(body.as_bytes(), &limits) {
        Err(RequestError::TooLarge(errors)) => assert_eq!(fields(&errors), [""]),
        other => panic!("expected 413, got {other:?}"),
    }
}

#[test]
fn malformed_json_reports_line_and_column() {
    let body = b"{\n  \"platform\": \"tg\",\n  \"users\": [\"1\",]\n}";
    match parse(body, &Limits::default()) {
        Err(RequestError::Malformed { line, column, .. }) => assert_eq!((line, column), (3, 17)),
        other => panic!("expected 400, got {other:?}"),
    }
    assert!(matches!(
        parse(b"", &Limits::default()),
        Err(RequestError::Malformed { .. })
    ));
    assert!(matches!(
        parse(b"\xff\xfe{}", &Limits::default()),
        Err(RequestError::Malformed { .. })
    ));
}

#[test]
fn the_body_is_a_json_object() {
    for body in ["[]", "\"tg\"", "1", "null"] {
        match parse(body.as_bytes(), &Limits::default()) {
            Err(RequestError::Invalid(errors)) => assert_eq!(fields(&errors), [""]),
            other => panic!("expected 422 for {body}, got {other:?}"),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so that a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mangled_bodies_get_an_answer_never_a_panic() {
    let seeds = [
        json!({"platform": "tg", "users": ["123456", 7, {"id": "8", "data": {"a": [1, {"b": null}]}}], "data": {"x": "y"}}),
        json!({"platform": "any", "users": "everyone", "data": {}, "dry_run": true}),
        json!({"users_bm": ["5c517b7773515eaha3078e2f"], "data": {"n": 1.5e300}}),
    ];
    let alphabet = b"{}[]\":,0123456789-.eE \\u\x00\xff\x7fabtnrfl";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let limits = Limits::default();
    for round in 0..20_000 {
        let mut body = seeds[round % seeds.len()].to_string().into_bytes();
        for _ in 0..(1 + rng.next() % 6) {
            let at = (rng.next() as usize) % (body.len() + 1);
            let byte = alphabet[(rng.next() as usize) % alphabet.len()];
            match rng.next() % 3 {
                0 if at < body.len() => body[at] = byte,
                1 if at < body.len() => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        // Any answer is fine; what matters is that there is one.
        let _ = parse(&body, &limits);
    }
}

#[test]
fn a_platform_is_named_by_the_one_rule_and_bm_is_reserved() {
    // `bm` names state ids in the admin API's user routes, so no request may target it;
    // the rule is `ids::Platform`'s, the one imports follow too.
    for platform in ["bm", "Telegram", "t g", ""] {
        let errors = invalid(json!({"platform": platform, "users": ["1"]}));
        assert_eq!(fields(&errors), ["platform"], "{platform:?}");
    }
    assert_eq!(
        platform_ids(&ok(json!({"platform": "wa", "users": ["1"]}))),
        ["1"]
    );
}

#[test]
fn send_at_is_an_rfc3339_time_with_its_offset_at_most_thirty_days_ahead() {
    use herald_core::request::parse_at;
    let now = 1_796_000_000_000; // 2026-11-30T00:53:20Z
    let at = |send_at: Value| {
        let body = json!({"platform": "tg", "users": "everyone", "send_at": send_at});
        parse_at(body.to_string().as_bytes(), &Limits::default(), now)
    };
    let moscow = at(json!("2026-12-24T12:00:00+03:00")).unwrap();
    assert_eq!(moscow.send_at, Some(1_798_102_800_000));
    assert_eq!(
        at(json!("2026-12-24T09:00:00Z")).unwrap().send_at,
        moscow.send_at
    );
    assert_eq!(at(Value::Null).unwrap().send_at, None);
    assert_eq!(ok(json!({"platform": "tg", "users": ["1"]})).send_at, None);
    for refused in [
        json!("2026-12-24T09:00:00"),
        json!("2026-12-31T00:53:21Z"),
        json!(1_798_102_800),
        json!("next week"),
    ] {
        match at(refused.clone()) {
            Err(RequestError::Invalid(errors)) => {
                assert_eq!(fields(&errors), ["send_at"], "{refused}")
            }
            other => panic!("{refused}: expected 422, got {other:?}"),
        }
    }
}
