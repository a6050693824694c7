//! Validated text: the length and character rules every entry point shares, and one
//! newtype per kind of user-written text whose only constructor applies its rule.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 30;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const DISPLAY_NAME_MAX: usize = 50;
pub const BIO_MAX: usize = 300;
pub const POST_TEXT_MAX: usize = 2000;
pub const COMMENT_TEXT_MAX: usize = 2000;
pub const MESSAGE_TEXT_MAX: usize = 4000;
pub const MEDIA_URL_MAX: usize = 2048;
pub const CLIENT_MESSAGE_ID_MAX: usize = 64;
/// How long after its creation a post may be edited (by its author).
pub const POST_EDIT_WINDOW_SECONDS: i64 = 120;

/// The username rule: 3–30 letters a–z (any case), digits or underscores.
fn check_username(raw: &str) -> Result<()> {
    let len = raw.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(Error::validation(format!(
            "username must be {USERNAME_MIN}–{USERNAME_MAX} characters"
        )));
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::validation(
            "username may contain only letters a–z, digits and underscores",
        ));
    }
    Ok(())
}

pub fn validate_password(raw: &str) -> Result<()> {
    let len = raw.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        return Err(Error::validation(format!(
            "password must be {PASSWORD_MIN}–{PASSWORD_MAX} characters"
        )));
    }
    Ok(())
}

/// Validates user-written text: `min..=max` characters after trimming, no control
/// characters except newline. Returns the text trimmed of surrounding whitespace.
fn validate_text(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        return Err(Error::validation(if min == 0 {
            format!("{field} must be at most {max} characters")
        } else {
            format!("{field} must be {min}–{max} characters")
        }));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::validation(format!(
            "{field} must not contain control characters other than newline"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Declares a validated-text newtype: its only constructor is `parse`, which applies
/// `$validate`; serialised as the bare string, so stored items and bodies do not change.
macro_rules! validated_text {
    ($(#[$doc:meta])* $name:ident, $validate:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `raw` against the rule; a breach is a 400 `validation` error.
            pub fn parse(raw: &str) -> Result<Self> {
                let validate: fn(&str) -> Result<String> = $validate;
                validate(raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(text: $name) -> String {
                text.0
            }
        }
    };
}

validated_text!(
    /// A username as the user typed it (case kept for display): 3–30 letters a–z (any
    /// case), digits or underscores. Uniqueness ignores case: see [`Username::canonical`].
    Username,
    |raw| check_username(raw).map(|()| raw.to_owned())
);

impl Username {
    /// The lower-case form: the uniqueness key and what logins look up.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

validated_text!(
    /// A display name: 1–50 characters after trimming, one line.
    DisplayName,
    |raw| {
        let name = validate_text(raw, "display_name", 1, DISPLAY_NAME_MAX)?;
        if name.contains('\n') {
            return Err(Error::validation("display_name must be a single line"));
        }
        Ok(name)
    }
);

validated_text!(
    /// A profile bio: at most 300 characters after trimming (may be empty).
    Bio,
    |raw| validate_text(raw, "bio", 0, BIO_MAX)
);

validated_text!(
    /// A post's text: 1–2000 characters after trimming.
    PostText,
    |raw| validate_text(raw, "text", 1, POST_TEXT_MAX)
);

validated_text!(
    /// A comment's text: 1–2000 characters after trimming.
    CommentText,
    |raw| validate_text(raw, "text", 1, COMMENT_TEXT_MAX)
);

validated_text!(
    /// A direct message's text: 1–4000 characters after trimming.
    MessageText,
    |raw| validate_text(raw, "text", 1, MESSAGE_TEXT_MAX)
);

validated_text!(
    /// A post's media: an absolute `https` URL with a host, in its normalised form.
    MediaUrl,
    |raw| {
        if raw.len() > MEDIA_URL_MAX {
            return Err(Error::validation(format!(
                "media_url must be at most {MEDIA_URL_MAX} bytes"
            )));
        }
        let url =
            url::Url::parse(raw).map_err(|_| Error::validation("media_url must be a URL"))?;
        if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
            return Err(Error::validation("media_url must be an https URL"));
        }
        Ok(url.to_string())
    }
);

validated_text!(
    /// A client's idempotency id for a message: 1–64 characters of `[A-Za-z0-9_-]`.
    ClientMessageId,
    |raw| {
        if raw.is_empty()
            || raw.len() > CLIENT_MESSAGE_ID_MAX
            || !raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation(format!(
                "client_message_id must be 1–{CLIENT_MESSAGE_ID_MAX} characters of [A-Za-z0-9_-]"
            )));
        }
        Ok(raw.to_owned())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_insensitive_and_restricted() {
        let name = Username::parse("Alice_01").unwrap();
        assert_eq!(
            (name.as_str(), name.canonical().as_str()),
            ("Alice_01", "alice_01")
        );
        for bad in [
            "ab",
            "a".repeat(31).as_str(),
            "al ice",
            "alice!",
            "ålice",
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Username::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(PostText::parse(&"é".repeat(2000)).is_ok());
        assert!(PostText::parse(&"é".repeat(2001)).is_err());
        assert!(MessageText::parse(&"x".repeat(4000)).is_ok());
        assert!(MessageText::parse(&"x".repeat(4001)).is_err());
        assert!(CommentText::parse(&"x".repeat(2001)).is_err());
        assert!(PostText::parse("   ").is_err());
        assert_eq!(
            PostText::parse("  hi\nthere ").unwrap().as_str(),
            "hi\nthere"
        );
    }

    #[test]
    fn profile_text_rules() {
        assert!(DisplayName::parse("two\nlines").is_err());
        assert!(DisplayName::parse(&"d".repeat(51)).is_err());
        assert_eq!(Bio::parse("  ").unwrap().as_str(), "");
        assert!(Bio::parse(&"b".repeat(301)).is_err());
        assert!(ClientMessageId::parse("abc-1_2").is_ok());
        assert!(ClientMessageId::parse("a b").is_err());
        assert!(ClientMessageId::parse(&"c".repeat(65)).is_err());
    }

    #[test]
    fn validated_text_serialises_as_the_bare_string_and_revalidates() {
        let text = PostText::parse(" hello ").unwrap();
        assert_eq!(
            serde_json::to_value(&text).unwrap(),
            serde_json::json!("hello")
        );
        let back: PostText = serde_json::from_value(serde_json::json!("hello")).unwrap();
        assert_eq!(back, text);
        assert!(serde_json::from_value::<PostText>(serde_json::json!("")).is_err());
    }

    #[test]
    fn control_characters_other_than_newline_are_rejected() {
        assert!(PostText::parse("tab\there").is_err());
        assert!(PostText::parse("nul\u{0}").is_err());
        assert!(PostText::parse("bell\u{7}").is_err());
        assert!(PostText::parse("line\nbreak").is_ok());
    }

    #[test]
    fn media_urls_must_be_https() {
        assert!(MediaUrl::parse("https://cdn.example.com/a.png").is_ok());
        assert!(MediaUrl::parse("http://cdn.example.com/a.png").is_err());
        assert!(MediaUrl::parse("javascript:alert(1)").is_err());
        assert!(MediaUrl::parse("not a url").is_err());
    }

    #[test]
    fn passwords_have_length_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"p".repeat(129)).is_err());
    }
}
