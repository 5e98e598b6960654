// Types for cloakroom's browser client, served at /auth/client.js.

/** Thrown by api() after it has sent the browser to sign in. */
export declare class LoginRequired extends Error {
  name: 'LoginRequired';
}

/** What GET /auth/user answers: the configured claims (session.claims) and expiries. */
export interface User {
  /** Always true here: a signed-out answer makes user() return null. */
  authenticated: true;
  sub: string;
  name?: string;
  email?: string;
  /** Absolute session end, seconds since the epoch. */
  expires_at: number;
  /** Idle session end, seconds since the epoch; activity moves it. */
  idle_expires_at: number;
  [claim: string]: unknown;
}

export interface ApiInit extends RequestInit {
  /** On a 401 login_required, send the browser to sign in (default true). */
  loginRedirect?: boolean;
}

/** fetch() through cloakroom, with `X-CSRF: 1` and the session cookie. */
export declare function api(path: string, init?: ApiInit): Promise<Response>;

/** The signed-in user, or null when signed out (a 401, or `{"authenticated": false}`). */
export declare function user(): Promise<User | null>;

/** Sends the browser to /auth/login?return_to=… (default: the current page). */
export declare function login(returnTo?: string): void;

/** Ends the session here and at the IdP, then navigates to the IdP's logout page. */
export declare function logout(): Promise<void>;
