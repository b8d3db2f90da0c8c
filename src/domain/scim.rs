//! SCIM 2.0 filters and PATCH paths (RFC 7644 §3.4.2.2, §3.5.2): a tokenizer and a
//! recursive-descent parser with size and depth limits, and the evaluation of a filter against a
//! resource's JSON. Pure: no I/O, no store, no HTTP.

use serde_json::Value;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of parentheses, `not` and value paths.
pub const MAX_DEPTH: usize = 16;
/// Most comparisons in one filter.
pub const MAX_TERMS: usize = 64;

/// `urn:…:User:name.givenName` → uri `urn:…:User`, attr `name`, sub `givenName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@"]`: some element of the multi-valued attribute
    /// matches the inner filter (whose paths are relative to the element).
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH operation's `path`: an attribute, optionally narrowed to the elements of a
/// multi-valued attribute that match a filter, optionally down to a sub-attribute of those.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// `emails[type eq "work"].value`
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(serde_json::Number),
    Open,
    Close,
    LBracket,
    RBracket,
}

/// Why a filter or path was refused (SCIM `invalidFilter` / `invalidPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(m.into()))
}

fn tokenize(s: &str) -> Result<Vec<Tok>, ParseError> {
    if s.len() > MAX_FILTER_BYTES {
        return err(format!("longer than {MAX_FILTER_BYTES} bytes"));
    }
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            b']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            b'"' => {
                // A JSON string: find its end (a quote not escaped), then let serde decode it.
                let start = i;
                i += 1;
                let mut escaped = false;
                loop {
                    let Some(&c) = b.get(i) else {
                        return err("a string is not closed");
                    };
                    i += 1;
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => break,
                        _ => {}
                    }
                }
                let v: String = serde_json::from_str(&s[start..i])
                    .map_err(|_| ParseError("a string has a bad escape".into()))?;
                out.push(Tok::Str(v));
            }
            c if c == b'-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let n: serde_json::Number = s[start..i]
                    .parse()
                    .map_err(|_| ParseError(format!("{:?} is not a number", &s[start..i])))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == b'$' || c == b'_' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || matches!(b[i], b'_' | b'-' | b'$' | b':' | b'.'))
                {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_string()));
            }
            _ => {
                let c = s[i..].chars().next().unwrap_or('?');
                return err(format!("unexpected {c:?}"));
            }
        }
    }
    Ok(out)
}

/// Parses an attribute path (`userName`, `name.givenName`, `urn:…:User:userName`,
/// `urn:…:enterprise:2.0:User:manager.value`).
pub fn parse_attr_path(w: &str) -> Result<AttrPath, ParseError> {
    let (uri, rest) = if w.to_ascii_lowercase().starts_with("urn:") {
        match w.rfind(':') {
            Some(i) => (Some(w[..i].to_string()), &w[i + 1..]),
            None => return err(format!("{w:?} is not an attribute path")),
        }
    } else {
        (None, w)
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let valid = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
        return err(format!("{w:?} is not an attribute path"));
    }
    Ok(AttrPath {
        uri,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    terms: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.at) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let mut left = self.and(depth)?;
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let mut left = self.unary(depth)?;
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, ParseError> {
        if depth > MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH}"));
        }
        if self.peek_word().as_deref() == Some("not") {
            self.at += 1;
            if self.toks.get(self.at) != Some(&Tok::Open) {
                return err("not must be followed by a parenthesis");
            }
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        match self.toks.get(self.at) {
            Some(Tok::Open) => {
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.toks.get(self.at) != Some(&Tok::Close) {
                    return err("a parenthesis is not closed");
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.at += 1;
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return err(format!("more than {MAX_TERMS} comparisons"));
                }
                let path = parse_attr_path(&w)?;
                if self.toks.get(self.at) == Some(&Tok::LBracket) {
                    if path.sub.is_some() {
                        return err(format!(
                            "{w:?}: a value filter follows the attribute itself"
                        ));
                    }
                    self.at += 1;
                    let inner = self.or(depth + 1)?;
                    if self.toks.get(self.at) != Some(&Tok::RBracket) {
                        return err("a value filter is not closed with ]");
                    }
                    self.at += 1;
                    return Ok(Filter::ValuePath(path, Box::new(inner)));
                }
                let op = self
                    .peek_word()
                    .ok_or_else(|| ParseError(format!("an operator must follow {w:?}")))?;
                self.at += 1;
                let op = match op.as_str() {
                    "pr" => return Ok(Filter::Present(path)),
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "co" => Op::Co,
                    "sw" => Op::Sw,
                    "ew" => Op::Ew,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return err(format!("unknown operator {other:?}")),
                };
                let value = match self.toks.get(self.at) {
                    Some(Tok::Str(s)) => Value::String(s.clone()),
                    Some(Tok::Num(n)) => Value::Number(n.clone()),
                    Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => return err(format!("{w:?} is not a value (strings are quoted)")),
                    },
                    _ => return err("a comparison needs a value"),
                };
                self.at += 1;
                Ok(Filter::Compare(path, op, value))
            }
            _ => err("expected an attribute, not or a parenthesis"),
        }
    }
}

/// Parses a `filter` query parameter.
pub fn parse_filter(s: &str) -> Result<Filter, ParseError> {
    let mut p = Parser {
        toks: tokenize(s)?,
        at: 0,
        terms: 0,
    };
    if p.toks.is_empty() {
        return err("the filter is empty");
    }
    let f = p.or(0)?;
    if p.at != p.toks.len() {
        return err("unexpected text after the filter");
    }
    Ok(f)
}

/// Parses a PATCH operation's `path`: `members`, `name.familyName`,
/// `members[value eq "…"]`, `emails[type eq "work"].value`, `urn:…:User:active`.
pub fn parse_patch_path(s: &str) -> Result<PatchPath, ParseError> {
    if s.len() > MAX_FILTER_BYTES {
        return err(format!("longer than {MAX_FILTER_BYTES} bytes"));
    }
    let Some(open) = s.find('[') else {
        return Ok(PatchPath {
            attr: parse_attr_path(s.trim())?,
            filter: None,
            sub: None,
        });
    };
    let attr = parse_attr_path(&s[..open])?;
    if attr.sub.is_some() {
        return err(format!(
            "{s:?}: a value filter follows the attribute itself"
        ));
    }
    // The filter runs to the last ']'; after it, an optional `.subAttribute`.
    let close = s
        .rfind(']')
        .filter(|c| *c > open)
        .ok_or_else(|| ParseError("a value filter is not closed with ]".into()))?;
    let mut p = Parser {
        toks: tokenize(&s[open + 1..close])?,
        at: 0,
        terms: 0,
    };
    if p.toks.is_empty() {
        return err("the value filter is empty");
    }
    let filter = p.or(1)?;
    if p.at != p.toks.len() {
        return err("unexpected text in the value filter");
    }
    let sub = match &s[close + 1..] {
        "" => None,
        tail => match tail.strip_prefix('.') {
            Some(sub) if parse_attr_path(sub).is_ok_and(|a| a.sub.is_none() && a.uri.is_none()) => {
                Some(sub.to_string())
            }
            _ => return err("only a .subAttribute may follow a value filter"),
        },
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub,
    })
}

/// The value of `name` in a JSON object, the name compared case-insensitively (RFC 7643 §2.1).
pub fn get_ci<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    o.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Attributes compared case-exactly (RFC 7643: `id`, `externalId` and `meta.location`, and
/// values of member references); every other string is compared ignoring case.
fn case_exact(attr: &str, sub: Option<&str>) -> bool {
    matches!(attr.to_ascii_lowercase().as_str(), "id" | "externalid")
        || (attr.eq_ignore_ascii_case("members")
            && sub.is_none_or(|s| s.eq_ignore_ascii_case("value")))
}

/// The values `path` reaches in `resource` (the elements of multi-valued attributes; for
/// `emails` alone, each element's `value`).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(v) = get_ci(resource, &path.attr) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .filter_map(|item| match (&path.sub, item) {
            (Some(sub), _) => get_ci(item, sub),
            (None, Value::Object(_)) => get_ci(item, "value"),
            (None, v) => Some(v),
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering = match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            // Timestamps order as instants; other strings lexically.
            let dates = (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(e),
            );
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Co => return a.contains(&e),
                Op::Sw => return a.starts_with(&e),
                Op::Ew => return a.ends_with(&e),
                _ => {}
            }
            match dates {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(&e),
            }
        }
        (Value::Number(a), Value::Number(e)) => match (a.as_f64(), e.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => return false,
        },
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => return a == e,
            Op::Ne => return a != e,
            _ => return false,
        },
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

/// Whether `resource` matches `filter`. A comparison on a multi-valued attribute matches when
/// any value does; `ne` matches when no value equals; an absent attribute matches only `ne`
/// (and `not (… pr)`).
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(f) => !matches(f, resource),
        Filter::Present(p) => values(resource, p)
            .iter()
            .any(|v| !matches!(v, Value::String(s) if s.is_empty()) && *v != &Value::Array(vec![])),
        Filter::ValuePath(p, inner) => match get_ci(resource, &p.attr) {
            Some(Value::Array(items)) => items.iter().any(|item| matches(inner, item)),
            Some(item @ Value::Object(_)) => matches(inner, item),
            _ => false,
        },
        Filter::Compare(p, op, expected) => {
            let found = values(resource, p);
            let exact = case_exact(&p.attr, p.sub.as_deref());
            if *op == Op::Ne {
                return !found.iter().any(|v| compare(v, Op::Eq, expected, exact));
            }
            found.iter().any(|v| compare(v, *op, expected, exact))
        }
    }
}

/// A boolean as IdPs send it: `true`/`false`, or the strings `"True"`/`"False"` (Entra ID).
pub fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> Value {
        json!({
            "id": "Abc-1", "userName": "Alice@Acme.test", "externalId": "00u1",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@acme.test", "type": "work", "primary": true},
                       {"value": "a@home.test", "type": "home"}],
            "active": true,
            "meta": {"created": "2026-01-02T03:04:05Z", "lastModified": "2026-06-01T00:00:00+00:00"}
        })
    }

    fn m(f: &str) -> bool {
        matches(
            &parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e}")),
            &alice(),
        )
    }

    #[test]
    fn the_operators_compare_as_rfc_7644_says() {
        assert!(
            m(r#"userName eq "alice@acme.test""#),
            "userName ignores case"
        );
        assert!(!m(r#"externalId eq "00U1""#), "externalId is case-exact");
        assert!(m(r#"id eq "Abc-1""#) && !m(r#"id eq "abc-1""#));
        assert!(m(r#"userName ne "bob@acme.test""#) && !m(r#"userName ne "ALICE@acme.test""#));
        assert!(
            m(r#"userName co "@acme""#) && m(r#"userName sw "ali""#) && m(r#"userName ew ".TEST""#)
        );
        assert!(m(r#"name.familyName eq "liddell""#));
        assert!(
            m(r#"emails eq "a@home.test""#),
            "a multi-valued attribute matches any value"
        );
        assert!(m(r#"emails.type eq "work""#));
        assert!(m("active eq true") && !m("active eq false"));
        assert!(!m("title pr") && m("userName pr") && m("emails pr"));
        assert!(
            !m(r#"meta.created lt "2026-01-02T04:00:00+01:00""#),
            "instants, not strings: 03:00Z is not before 03:00Z"
        );
        assert!(m(r#"meta.created le "2026-01-02T04:04:05+01:00""#));
        assert!(
            m(r#"meta.lastModified gt "2026-05-31T23:59:59Z""#)
                && m(r#"meta.lastModified ge "2026-06-01T00:00:00Z""#)
        );
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ALICE@ACME.TEST""#
        ));
    }

    #[test]
    fn logic_follows_precedence_and_parentheses() {
        assert!(
            m(r#"userName eq "x" or userName sw "alice" and active eq true"#),
            "and binds tighter"
        );
        assert!(!m(
            r#"(userName eq "x" or userName sw "alice") and active eq false"#
        ));
        assert!(m(r#"not (userName eq "x")"#) && !m(r#"NOT (userName pr)"#));
        assert!(m(r#"emails[type eq "work" and value co "@acme"]"#));
        assert!(
            !m(r#"emails[type eq "home" and value co "@acme"]"#),
            "both on the same element"
        );
        assert!(
            m(r#"userName Eq "alice@acme.test" AND active EQ true"#),
            "keywords in any case"
        );
    }

    #[test]
    fn malformed_or_oversized_filters_are_refused_with_a_reason() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName eq alice"#,
            r#"userName xx "a""#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"userName eq "a" and"#,
            r#"not userName eq "a""#,
            r#"emails[type eq "work""#,
            r#"userName eq "unterminated"#,
            r#"1userName eq "a""#,
            r#"userName eq "a" extra"#,
            "userName eq \"\\x\"",
            r#"userName ~ "a""#,
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_filter(&deep).unwrap_err().0.contains("deeper"));
        let nots = format!("{}(userName pr){}", "not (".repeat(20), ")".repeat(20));
        assert!(parse_filter(&nots).is_err());
        let many = vec![r#"userName eq "a""#; 70].join(" or ");
        assert!(parse_filter(&many).unwrap_err().0.contains("comparisons"));
        let long = format!(r#"userName eq "{}""#, "a".repeat(5000));
        assert!(parse_filter(&long).unwrap_err().0.contains("longer"));
    }

    #[test]
    fn patch_paths_as_okta_and_entra_send_them() {
        let p = parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#)
            .expect("path");
        assert_eq!(p.attr.attr, "members");
        assert!(matches!(p.filter, Some(Filter::Compare(_, Op::Eq, _))));
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).expect("path");
        assert_eq!(
            (p.attr.attr.as_str(), p.sub.as_deref()),
            ("emails", Some("value"))
        );
        let p = parse_patch_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName")
            .expect("path");
        assert_eq!(
            (
                p.attr.uri.as_deref(),
                p.attr.attr.as_str(),
                p.attr.sub.as_deref()
            ),
            (
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "name",
                Some("givenName")
            )
        );
        assert_eq!(
            parse_patch_path("active").expect("path").attr.attr,
            "active"
        );
        for bad in [
            "",
            "[x]",
            "members[",
            "members]",
            r#"members[value eq "a"]x"#,
            "name..x",
            "a b",
        ] {
            assert!(parse_patch_path(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn booleans_arrive_as_strings_from_entra() {
        assert_eq!(loose_bool(&json!("False")), Some(false));
        assert_eq!(loose_bool(&json!("TRUE")), Some(true));
        assert_eq!(loose_bool(&json!(false)), Some(false));
        assert_eq!(loose_bool(&json!("no")), None);
    }
}
