//! What the upstream Prefect server (Starlette + FastAPI + Python's `json`) would read from a
//! query string or a JSON body, and the canonical forms the gateway forwards in their place.
//!
//! The gateway decides on what it parsed and forwards only that (GUIDE §4): a parameter it must
//! control is removed from the query whatever its spelling, a body it must control is parsed and
//! re-serialized with the field set, and anything it cannot read the way the upstream would —
//! or more strictly — is refused. Pure: no I/O.

use serde_json::{Map, Value};

/// Why a query or body was refused (becomes a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

/// Percent-decodes `s` as Python's `urllib.parse.unquote_plus` does (`+` is a space), but refuses
/// what Python would read leniently: a `%` not followed by two hex digits, and bytes that are not
/// UTF-8 (Python substitutes U+FFFD, so two different names could decode alike).
pub fn decode_component(s: &str) -> Result<String, Unreadable> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
                match (h(i + 1), h(i + 2)) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(Unreadable("a malformed percent-escape in the query")),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Unreadable("a query parameter that is not UTF-8"))
}

/// The query without any parameter whose decoded name is `name` (compared without regard to
/// case, stricter than FastAPI): `Ok(None)` when nothing is left. Parameters are split on `&`
/// only, as Starlette does; a `;` (which older Pythons also split on) is refused, and so is any
/// parameter name the upstream could decode differently (see [`decode_component`]). Kept
/// parameters are forwarded exactly as sent.
pub fn strip_query_param(query: &str, name: &str) -> Result<Option<String>, Unreadable> {
    if query.contains(';') {
        return Err(Unreadable(
            "a ';' in the query (send it percent-encoded as %3B)",
        ));
    }
    let mut kept = String::with_capacity(query.len());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = decode_component(raw_name)?;
        decode_component(raw_value)?;
        if decoded.eq_ignore_ascii_case(name) {
            continue;
        }
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    Ok((!kept.is_empty()).then_some(kept))
}

/// Parses a request body as one JSON object, more strictly than Python's `json.loads` (UTF-8
/// only, no byte-order mark, no `NaN`/`Infinity`); an empty body is the empty object (FastAPI
/// reads no body as all defaults). Duplicate keys resolve as in Python: the last one wins, and
/// re-serializing the result leaves no duplicate for the upstream to read differently.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, Unreadable> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice::<Map<String, Value>>(body).map_err(|_| {
        Unreadable(
            "the body is not one JSON object in UTF-8 (no byte-order mark, no NaN or Infinity)",
        )
    })
}

/// The body with `field` set to `value` at the top level, re-serialized (what the gateway
/// forwards instead of the client's bytes).
pub fn with_field(body: &[u8], field: &str, value: Value) -> Result<Vec<u8>, Unreadable> {
    let mut m = json_object(body)?;
    m.insert(field.to_string(), value);
    // Serializing a `Map` of `Value`s cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(&m).map_err(|_| Unreadable("the body could not be re-serialized"))
}

/// The number of items of a JSON array body, parsed strictly (see [`json_object`]); what the
/// gateway charges item-counted routes by. A body it cannot count is refused rather than
/// charged as one item.
pub fn array_len(body: &[u8]) -> Result<usize, Unreadable> {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body)
        .map(|v| v.len())
        .map_err(|_| {
            Unreadable(
                "the body is not one JSON array in UTF-8 (no byte-order mark, no NaN or Infinity)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_parameter_is_removed_and_the_rest_kept_as_sent() {
        for q in [
            "include_secrets=true",
            "include_secrets=1",
            "include_secrets=yes",
            "include_secrets=on",
            "include_secrets=t",
            "include_secrets=y",
            "include_secrets=%74rue",
            "include%5Fsecrets=true",
            "include%5fsecrets=TRUE",
            "INCLUDE_SECRETS=true",
            "include_secrets=false&include_secrets=true",
            "include_secrets",
            "&&include_secrets=true&",
        ] {
            assert_eq!(strip_query_param(q, "include_secrets"), Ok(None), "{q}");
        }
        assert_eq!(
            strip_query_param("a=1&include_secrets=true&b=%20x+y", "include_secrets"),
            Ok(Some("a=1&b=%20x+y".into()))
        );
        assert_eq!(
            strip_query_param("limit=5", "include_secrets"),
            Ok(Some("limit=5".into()))
        );
        // A name that decodes to something else stays.
        assert_eq!(
            strip_query_param("include+secrets=true", "include_secrets"),
            Ok(Some("include+secrets=true".into()))
        );
    }

    #[test]
    fn queries_the_upstream_could_read_differently_are_refused() {
        for q in [
            "include_secrets=true;x=1",
            "include%5_secrets=1",
            "include%ZZsecrets=1",
            "a=%",
            "include_secrets%FF=1",
            "x=%C3",
        ] {
            assert!(strip_query_param(q, "include_secrets").is_err(), "{q}");
        }
    }

    #[test]
    fn bodies_are_parsed_strictly_and_rewritten_with_the_field_set() {
        let out = with_field(
            br#"{"include_secrets": true, "limit": 3, "include_secrets": "true"}"#,
            "include_secrets",
            Value::Bool(false),
        )
        .expect("readable");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v, serde_json::json!({"include_secrets": false, "limit": 3}));
        assert_eq!(
            with_field(b"", "include_secrets", Value::Bool(false)).expect("empty"),
            br#"{"include_secrets":false}"#
        );
        for bad in [
            &b"\xEF\xBB\xBF{\"include_secrets\": true}"[..],
            &b"{\0\"\0i\0\"\0:\0 \x001\0}\0"[..],
            &b"\xFF\xFE{\0}\0"[..],
            br#"{"limit": NaN}"#,
            br#"{"limit": Infinity}"#,
            br#"[{"include_secrets": true}]"#,
            br#"{"a": 1} {"include_secrets": true}"#,
            b"   ",
            b"\"include_secrets\"",
        ] {
            assert!(
                with_field(bad, "include_secrets", Value::Bool(false)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn arrays_are_counted_strictly() {
        assert_eq!(array_len(br#"[{"a":1},{"b":2}]"#), Ok(2));
        assert_eq!(array_len(b"[]"), Ok(0));
        assert!(array_len(b"\xEF\xBB\xBF[1,2]").is_err());
        assert!(array_len(b"[NaN, 1]").is_err());
        assert!(array_len(b"{}").is_err());
        assert!(array_len(b"").is_err());
    }
}
