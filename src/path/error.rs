//! Why a request path is refused: by its normalisation (`path.rs`) or by
//! the stricter rules of token routes (`nested.rs`).

/// Why a request path cannot be normalised; the request gets a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with /")]
    NotAbsolute,
    #[error("encoded '/', '\\', '.' or NUL in path")]
    AmbiguousEncoding,
    #[error("malformed percent-encoding in path")]
    BadEncoding,
    #[error("backslash or control character in path")]
    BadCharacter,
    #[error("nested encoding of '/', '\\', '.', NUL or a control character in path")]
    NestedEncoding,
    #[error("compatibility form of '/', '\\', '.' or '%' in path")]
    CompatibilityForm,
}
