//! The socket framing (SPEC §6): one JSON object per line each way, answers in order.
//!
//! A request is the JSON form of `engine::Request` (`{"op":"get",...}`) plus an optional
//! `"id"` of any JSON type, echoed back. An answer is the JSON form of `engine::Response`
//! with `"ok":true` and `"id"` added, or `{"ok":false,"id":...,"error":{"code","message"}}`.
//!
//! Decoding never panics on any input (a property test feeds it arbitrary bytes) and its
//! error messages never quote the request line back, so a mistyped secret cannot end up
//! in a log through them.

use super::{Request, Response};
use crate::error::Error;
use serde_json::{Map, Value};

/// Longest accepted request line, without its newline.
pub const MAX_LINE: usize = 64 * 1024;

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("request", msg)
}

/// Decodes one request line. Returns the `id` to echo (null when absent or unreadable)
/// and the request or the error to answer with.
pub fn decode(line: &[u8]) -> (Value, Result<Request, Error>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return (
                Value::Null,
                Err(bad(format!(
                    "malformed JSON at line {}, column {}; send one JSON object per line",
                    e.line(),
                    e.column()
                ))),
            );
        }
    };
    let Value::Object(mut obj) = value else {
        return (
            Value::Null,
            Err(bad("a request is a JSON object with an \"op\" field")),
        );
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => return (id, Err(bad("\"op\" must be a string"))),
        None => return (id, Err(bad("missing \"op\" field"))),
    };
    if op.len() > 64 || !op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return (
            id,
            Err(bad("unknown op; see docs/protocol.md for the list")),
        );
    }
    let req = serde_json::from_value::<Request>(Value::Object(obj)).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown variant") {
            bad(format!(
                "unknown op {op:?}; see docs/protocol.md for the list"
            ))
        } else {
            // serde's messages name fields and expected types; for invalid values they
            // can quote the value, so only the classification goes back.
            bad(format!("invalid fields for op {op:?}: {}", describe(&msg)))
        }
    });
    (id, req)
}

/// The part of a serde error message that names what was wrong, never a quoted value.
fn describe(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing field {}", rest.split(' ').next().unwrap_or(""));
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown field {}", rest.split(',').next().unwrap_or(""));
    }
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        // "invalid type: string \"...\", expected u32" → keep only the expectation
        return match msg.rsplit_once("expected ") {
            Some((_, exp)) => format!("a field has the wrong type (expected {exp})"),
            None => "a field has the wrong type".into(),
        };
    }
    "see docs/protocol.md".into()
}

/// Encodes a success line (with its newline).
///
/// Every `Response` serialises to a JSON object with at least `"kind"`, so the answer is
/// `{"ok":true,"id":ID,` followed by that object without its opening brace: no
/// intermediate `Value` on the hot path.
pub fn encode_ok(id: &Value, resp: &Response) -> Vec<u8> {
    // One buffer: the envelope's head, then the response object written after it with its
    // opening `{` turned into `,` (no second buffer holding the token).
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"ok\":true,\"id\":");
    // a `Value` always serialises
    let _ = serde_json::to_writer(&mut out, id);
    let body_at = out.len();
    if let Err(e) = serde_json::to_writer(&mut out, resp) {
        zeroize::Zeroize::zeroize(&mut out);
        return encode_err(id, &Error::Internal(format!("cannot encode: {e}")));
    }
    if out.get(body_at) != Some(&b'{') || out.len() - body_at <= 2 {
        // an empty (or non-object) body: the envelope alone
        zeroize::Zeroize::zeroize(&mut out);
        let mut m = Map::new();
        m.insert("ok".into(), Value::Bool(true));
        m.insert("id".into(), id.clone());
        return line(&Value::Object(m));
    }
    out[body_at] = b',';
    out.push(b'\n');
    out
}

/// Encodes an error line (with its newline).
pub fn encode_err(id: &Value, err: &Error) -> Vec<u8> {
    encode_err_code(id, err.code(), &err.to_string())
}

pub fn encode_err_code(id: &Value, code: &str, message: &str) -> Vec<u8> {
    // written by hand to keep the documented field order: ok, id, error
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"ok\":false,\"id\":");
    let _ = serde_json::to_writer(&mut out, id);
    out.extend_from_slice(b",\"error\":{\"code\":");
    let _ = serde_json::to_writer(&mut out, code);
    out.extend_from_slice(b",\"message\":");
    let _ = serde_json::to_writer(&mut out, message);
    out.extend_from_slice(b"}}\n");
    out
}

fn line(v: &Value) -> Vec<u8> {
    // A `Value` always serialises.
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Parses an answer line on the client side: the response, or the daemon's error.
pub fn decode_answer(line: &[u8]) -> Result<Response, Error> {
    let bad_answer = |what: &str| {
        Error::Internal(format!(
            "the daemon sent an unreadable answer ({what}); are the CLI and the daemon the same version?"
        ))
    };
    let value: Value = serde_json::from_slice(line).map_err(|_| bad_answer("not JSON"))?;
    let Value::Object(mut obj) = value else {
        return Err(bad_answer("not an object"));
    };
    obj.remove("id");
    match obj.remove("ok") {
        Some(Value::Bool(true)) => {
            serde_json::from_value(Value::Object(obj)).map_err(|_| bad_answer("unknown kind"))
        }
        Some(Value::Bool(false)) => {
            let err = obj.get("error");
            let field = |k: &str| {
                err.and_then(|e| e.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            Err(Error::Remote {
                code: field("code"),
                message: field("message"),
            })
        }
        _ => Err(bad_answer("no \"ok\" field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_requests_and_echoes_ids() {
        let (id, r) = decode(br#"{"op":"get","connection":"a/b/c","id":7}"#);
        assert_eq!(id, serde_json::json!(7));
        assert!(matches!(r, Ok(Request::Get { .. })));
        let (id, r) = decode(br#"{"id":"x","op":"hello"}"#);
        assert_eq!(id, serde_json::json!("x"));
        assert!(matches!(r, Ok(Request::Hello)));
    }

    #[test]
    fn table_of_bad_requests() {
        for (line, want) in [
            (&b"{"[..], "malformed JSON"),
            (b"[]", "JSON object"),
            (b"42", "JSON object"),
            (br#"{"id":1}"#, "missing \"op\""),
            (br#"{"op":3}"#, "must be a string"),
            (br#"{"op":"frobnicate"}"#, "unknown op \"frobnicate\""),
            (br#"{"op":"DROP TABLE"}"#, "unknown op"),
            (br#"{"op":"get"}"#, "missing field `connection`"),
            (
                br#"{"op":"get","connection":"a/b/c","x":1}"#,
                "unknown field `x`",
            ),
            (
                br#"{"op":"tenant_grant","tenant":"a","uid":"s3cr3t"}"#,
                "wrong type",
            ),
        ] {
            let (_, r) = decode(line);
            let e = r.expect_err(std::str::from_utf8(line).unwrap_or("?"));
            assert_eq!(e.code(), "bad_request");
            let msg = e.to_string();
            assert!(msg.contains(want), "{msg} lacks {want}");
            assert!(!msg.contains("s3cr3t"), "{msg} quotes a value");
        }
    }

    #[test]
    fn answers_roundtrip() {
        let ok = encode_ok(
            &serde_json::json!(1),
            &Response::Done {
                message: "fine".into(),
            },
        );
        assert!(ok.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["id"], 1);
        assert_eq!(v["kind"], "done");
        assert!(matches!(decode_answer(&ok), Ok(Response::Done { .. })));
        let err = encode_err(&Value::Null, &Error::Forbidden("no".into()));
        match decode_answer(&err) {
            Err(Error::Remote { code, .. }) => assert_eq!(code, "forbidden"),
            other => panic!("{other:?}"),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            ".{0,20}".prop_map(Value::String),
            prop_oneof![
                Just("get"),
                Just("put"),
                Just("auth"),
                Just("list"),
                Just("hello"),
                Just("tenant_grant"),
                Just("client_set"),
                Just("status"),
            ]
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("op".to_string()),
                        Just("id".to_string()),
                        Just("connection".to_string()),
                        Just("token".to_string()),
                        Just("tenant".to_string()),
                        Just("uid".to_string()),
                        ".{0,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let (_, r) = decode(&bytes);
            if let Err(e) = r { prop_assert_eq!(e.code(), "bad_request"); }
        }

        #[test]
        fn decode_never_panics_on_json(v in json_value()) {
            let line = serde_json::to_vec(&v).unwrap();
            let (_, r) = decode(&line);
            if let Err(e) = r { prop_assert_eq!(e.code(), "bad_request"); }
        }

        #[test]
        fn decode_answer_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_answer(&bytes);
        }
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
        let mut s = String::new();
        for _ in 0..100_000 {
            s.push('[');
        }
        let (_, r) = decode(s.as_bytes());
        assert!(r.is_err());
        let mut o = String::from("{\"op\":\"put\",\"connection\":\"a/b/c\",\"token\":");
        for _ in 0..100_000 {
            o.push_str("{\"a\":");
        }
        let (_, r) = decode(o.as_bytes());
        assert!(r.is_err());
    }
}
