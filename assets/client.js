// cloakroom's browser client: calls through the BFF with the session cookie
// and the CSRF header. The page never holds a token; cloakroom adds it.
//
//   import { api, user, login, logout } from '/auth/client.js';
//
// Served by cloakroom at /auth/client.js (types at /auth/client.d.ts); copy
// it into your app's sources if you prefer to bundle it.

/** Thrown by api() after it has sent the browser to sign in. */
export class LoginRequired extends Error {
  constructor() {
    super('login_required');
    this.name = 'LoginRequired';
  }
}

const CSRF = { 'X-CSRF': '1' };

/** The current page, as a return_to that /auth/login accepts. */
function here() {
  return location.pathname + location.search;
}

/** Sends the browser to sign in, then back to `returnTo` (a local path). */
export function login(returnTo = here()) {
  location.assign('/auth/login?return_to=' + encodeURIComponent(returnTo));
}

/** Whether a 401 is cloakroom saying "no session" (code login_required). */
async function isLoginRequired(response) {
  if (response.status !== 401) return false;
  try {
    const problem = await response.clone().json();
    return problem.code === 'login_required';
  } catch {
    return false;
  }
}

/**
 * fetch() through cloakroom: adds `X-CSRF: 1` and the cookie. On a 401
 * `login_required` it sends the browser to sign in (and back here) and
 * throws LoginRequired, unless `loginRedirect: false` is given.
 */
export async function api(path, init = {}) {
  const { loginRedirect = true, ...rest } = init;
  const headers = new Headers(rest.headers);
  for (const [k, v] of Object.entries(CSRF)) headers.set(k, v);
  const response = await fetch(path, { ...rest, headers, credentials: 'include' });
  if (loginRedirect && (await isLoginRequired(response))) {
    login();
    throw new LoginRequired();
  }
  return response;
}

/**
 * The signed-in user's claims and session expiry, or null when signed out:
 * a 401, or the 200 `{"authenticated": false}` of session.anonymous_user.
 */
export async function user() {
  const response = await api('/auth/user', { loginRedirect: false });
  if (response.status === 401) return null;
  if (!response.ok) throw new Error(`/auth/user answered ${response.status}`);
  const body = await response.json();
  return body.authenticated === false ? null : body;
}

/**
 * Ends the session here and at the IdP: cloakroom deletes it and revokes
 * the refresh token, then the browser visits the IdP's end-session page,
 * which comes back to the app.
 */
export async function logout() {
  const response = await api('/auth/logout', { method: 'POST', loginRedirect: false });
  const { logout_url: logoutUrl } = response.ok ? await response.json() : {};
  location.assign(logoutUrl || '/');
}
