//! The SPA's side of the contract, served by cloakroom itself at fixed
//! paths: `/auth/client.js` (an ES module: `api()`, `user()`, `login()`,
//! `logout()`) and `/auth/client.d.ts` (its TypeScript types). The files
//! live in `assets/` and are compiled in, so the module always matches the
//! cloakroom that serves it.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::body::{self, Body};

const CLIENT_JS: &str = include_str!("../assets/client.js");
const CLIENT_DTS: &str = include_str!("../assets/client.d.ts");

/// The answer for `path` if it is one of the client files, else `None`.
/// Revalidated on every use (`no-cache` with an ETag), so an upgraded
/// cloakroom's module is picked up at once.
pub(crate) fn serve(path: &str, method: &Method, headers: &HeaderMap) -> Option<Response<Body>> {
    let (text, content_type) = match path {
        "/auth/client.js" => (CLIENT_JS, "text/javascript; charset=utf-8"),
        "/auth/client.d.ts" => (CLIENT_DTS, "text/plain; charset=utf-8"),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let digest = Sha256::digest(text.as_bytes());
    let etag = format!("\"{}\"", hex::encode(&digest[..12]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let mut response = match (fresh, method == Method::HEAD) {
        (true, _) => {
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        (false, true) => Response::new(body::empty()),
        (false, false) => Response::new(body::full(Bytes::from_static(text.as_bytes()))),
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, tag);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_module_and_its_types_are_served_with_their_content_types() {
        let none = HeaderMap::new();
        let js = serve("/auth/client.js", &Method::GET, &none).unwrap();
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let etag = js.headers()[header::ETAG].clone();
        let text = js.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&text).unwrap();
        for export in [
            "export async function api",
            "export async function user",
            "export async function logout",
            "export function login",
        ] {
            assert!(text.contains(export), "{export}");
        }
        let dts = serve("/auth/client.d.ts", &Method::GET, &none).unwrap();
        assert_eq!(dts.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");

        let mut revalidate = HeaderMap::new();
        revalidate.insert(header::IF_NONE_MATCH, etag);
        let again = serve("/auth/client.js", &Method::GET, &revalidate).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        assert!(serve("/auth/client.js", &Method::POST, &none).is_none());
        assert!(serve("/auth/other.js", &Method::GET, &none).is_none());
    }
}
