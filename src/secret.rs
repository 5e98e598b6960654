//! `Secret<T>`: a value that never prints and is wiped from memory on drop;
//! and on top of it one type per token kind ([`AccessToken`],
//! [`RefreshToken`], [`IdToken`]), so one kind cannot be put where another
//! belongs.

use std::fmt;

use zeroize::Zeroize;

/// Holds a secret (client secret, cookie key, token). `Debug` prints
/// `[redacted]`; the only way to the value is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

// === impl Secret ===

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Call sites are easy to audit by this name.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<'de, T: Zeroize + serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret::new)
    }
}

/// Serialises the value itself: only for sealing records, never for output.
impl<T: Zeroize + serde::Serialize> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Declares a token type over `Secret<String>`: `Debug` prints
/// `Name([redacted])`, the string is wiped on drop, and it (de)serialises as
/// the bare string, exactly as `Secret<String>` does, so the sealed record's
/// format does not depend on which type holds a token.
macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Secret<String>);

        impl $name {
            pub fn new(value: String) -> Self {
                Self(Secret::new(value))
            }

            /// The token itself: only where it is sent (the bearer header, an
            /// IdP call) or checked.
            pub fn expose(&self) -> &str {
                self.0.expose()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

token_type! {
    /// An OAuth access token: what the bearer header carries upstream.
    AccessToken
}

token_type! {
    /// An OAuth refresh token: sent to the IdP only, to refresh or revoke.
    RefreshToken
}

token_type! {
    /// An OpenID Connect ID token (a JWT): validated, and sent back to the
    /// IdP only as a logout hint.
    IdToken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    /// Debug redacts and names the kind; the value (de)serialises as the
    /// bare string, byte for byte as `Secret<String>` does.
    fn check<T>(make: fn(String) -> T, expose: fn(&T) -> &str, debug: &str)
    where
        T: fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        let token = make("tok-hunter2".into());
        assert_eq!(format!("{token:?}"), debug);
        assert_eq!(format!("{token:#?}"), debug);
        assert_eq!(format!("{:?}", Some(&token)), format!("Some({debug})"));
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, r#""tok-hunter2""#);
        assert_eq!(
            json,
            serde_json::to_string(&Secret::new(String::from("tok-hunter2"))).unwrap()
        );
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(expose(&back), "tok-hunter2");
        assert!(serde_json::from_str::<T>("42").is_err(), "a string only");
    }

    #[test]
    fn access_token_redacts_and_round_trips() {
        check(AccessToken::new, AccessToken::expose, "AccessToken([redacted])");
    }

    #[test]
    fn refresh_token_redacts_and_round_trips() {
        check(
            RefreshToken::new,
            RefreshToken::expose,
            "RefreshToken([redacted])",
        );
    }

    #[test]
    fn id_token_redacts_and_round_trips() {
        check(IdToken::new, IdToken::expose, "IdToken([redacted])");
    }
}
