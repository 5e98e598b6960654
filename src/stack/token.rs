//! The user's access token, for routes with `token: user`: taken from the
//! session the session layer found, refreshed first when it is due, and
//! handed to the leaf as the `Authorization` value to inject. Without a
//! session (an `optional` route), nothing is added.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::BoxError;
use crate::refresh::{RefreshError, Refresher};
use crate::secret::AccessToken;
use crate::session::Loaded;

use super::ResponseFuture;

/// The `Authorization` value the leaf injects upstream.
#[derive(Clone)]
pub struct Bearer(pub HeaderValue);

/// Adds [`UserToken`].
#[derive(Clone)]
pub struct UserTokenLayer {
    refresher: Arc<Refresher>,
}

#[derive(Clone)]
pub struct UserToken<S> {
    inner: S,
    refresher: Arc<Refresher>,
}

impl UserTokenLayer {
    pub fn new(refresher: &Arc<Refresher>) -> Self {
        Self {
            refresher: refresher.clone(),
        }
    }
}

impl<S> Layer<S> for UserTokenLayer {
    type Service = UserToken<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UserToken {
            inner,
            refresher: self.refresher.clone(),
        }
    }
}

impl<S> Service<Request<Body>> for UserToken<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let refresher = self.refresher.clone();
        Box::pin(async move {
            if let Some(loaded) = super::session::loaded(&request).cloned() {
                let token = access_token(&refresher, &loaded).await?;
                request
                    .extensions_mut()
                    .insert(Bearer(bearer_header(token.expose())?));
            }
            let below: ResponseFuture = Box::pin(inner.call(request));
            below.await
        })
    }
}

/// How long a request with a still-valid access token waits for its refresh.
const REFRESH_PATIENCE: Duration = Duration::from_secs(2);

/// The session's access token, refreshed first when it is about to expire.
/// While the IdP or the store cannot refresh it, a token that is still
/// valid is used as it is (RF-10); an expired one gives a 503 that keeps
/// the session (RF-11).
async fn access_token(refresher: &Arc<Refresher>, loaded: &Loaded) -> Result<Arc<AccessToken>, BoxError> {
    let now = refresher.now();
    let record = &loaded.record;
    if refresher.is_fresh(record) {
        return Ok(Arc::new(record.access_token.clone()));
    }
    if record.refresh_token.is_none() {
        // Nothing to refresh with: the token serves until it expires (LG-18).
        if record.access_expires_at > now {
            return Ok(Arc::new(record.access_token.clone()));
        }
        return Err(RefreshError::Ended.into());
    }
    let flight = refresher.refresh(loaded);
    let valid_for = Duration::from_secs(record.access_expires_at.saturating_sub(now));
    let refreshed = if valid_for > 2 * REFRESH_PATIENCE {
        // The current token still works for a while: a slow IdP delays this
        // request by at most REFRESH_PATIENCE; the refresh goes on without it.
        tokio::time::timeout(REFRESH_PATIENCE, flight)
            .await
            .unwrap_or(Err(RefreshError::Pending))
    } else {
        flight.await
    };
    match refreshed {
        Ok(fresh) => Ok(fresh.access_token),
        // Judged now, not before the refresh: a slow IdP may have outlived it.
        Err(e) if !matches!(e, RefreshError::Ended) && record.access_expires_at > refresher.now() => {
            tracing::debug!(error = %e, "refresh postponed; the current access token is still valid");
            Ok(Arc::new(record.access_token.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `Authorization: Bearer <token>`, marked sensitive so no layer logs it.
fn bearer_header(token: &str) -> Result<HeaderValue, BoxError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    Ok(value)
}
