//! Validated inputs: handles, emails, names, passwords. Parse, don't validate.

/// Handle rules shared by accounts, workspaces and users: 1–63 characters of lowercase ASCII
/// letters, digits and dashes, not starting or ending with a dash.
pub fn handle(s: &str) -> Result<String, String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || s.len() > 63 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "invalid handle {s:?}: use 1-63 lowercase letters, digits and dashes, not starting or ending with a dash"
        ));
    }
    Ok(s.to_string())
}

/// A display name: trimmed, 1–100 characters, no control characters.
pub fn name(field: &str, s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || s.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(format!("{field} must be 1-100 printable characters"));
    }
    Ok(t.to_string())
}

/// Optional free text (descriptions, locations): at most `max` characters, no control characters
/// other than newlines and tabs.
pub fn text(field: &str, s: &str, max: usize) -> Result<String, String> {
    if s.chars().count() > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!(
            "{field} must be at most {max} printable characters"
        ));
    }
    Ok(s.to_string())
}

/// An email address, kept as given; compared lowercased. A pragmatic check: one `@`, a non-empty
/// local part, a dotted domain, no spaces, at most 254 characters.
pub fn email(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bad = || format!("invalid email address {s:?}");
    if s.chars().count() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// Passwords: 8–1024 characters (the upper bound keeps hashing cost bounded).
pub fn password(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if !(8..=1024).contains(&n) {
        return Err("password must be 8-1024 characters".into());
    }
    Ok(())
}

/// A handle derived from an email's local part, for users who do not choose one.
pub fn handle_from_email(email: &str) -> String {
    let local = email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut h: String = local
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(40);
    if h.is_empty() {
        h.push_str("user");
    }
    h
}

/// An email address as request bodies carry it (the schema of what [`email`] accepts).
pub struct EmailAddress;

/// [`email`]'s rule as a pattern: no spaces or control characters, one `@`, a dotted domain
/// without empty labels; surrounding blanks are trimmed.
pub const EMAIL_PATTERN: &str =
    r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$";

impl utoipa::PartialSchema for EmailAddress {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(254))
            .pattern(Some(EMAIL_PATTERN))
            .into()
    }
}
impl utoipa::ToSchema for EmailAddress {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert!(handle("acme-2").is_ok());
        for bad in ["", "Acme", "a_b", "-a", "a-", "a b", &"a".repeat(64)] {
            assert!(handle(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn emails() {
        assert!(email("Ann@Example.com").is_ok());
        for bad in [
            "", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.c", "a@c.", "a@b..c",
        ] {
            assert!(email(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn derived_handles_are_valid() {
        for e in ["ann.lee@x.io", "__@x.io", "A+B@x.io"] {
            assert!(handle(&handle_from_email(e)).is_ok(), "{e}");
        }
    }
}
