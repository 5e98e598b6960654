// The test IdP: oidc-provider (a certified OpenID Provider) on 127.0.0.1.
//
// Usage: node server.mjs '<json settings>'
// Prints its issuer URL as the first line of stdout, then serves until killed.
//
// Settings (all optional):
//   client_id, client_secret, redirect_uris, post_logout_redirect_uris
//   access_token_ttl   seconds, default 300
//   rotate_refresh     rotate refresh tokens on use, default true
//   token_delay        {call, ms, phase}: hold the call-th token endpoint
//                      request ms milliseconds, `before` handling it (and drop
//                      it if the client is gone by then: it never arrived) or
//                      `after` (the grant is spent, the answer is late)
//   revocation_listed_in  which metadata names the revocation endpoint (it
//                      works in every case): `both` (default: OIDC discovery
//                      and RFC 8414 /.well-known/oauth-authorization-server),
//                      `rfc8414` (only the latter, LO-13) or `nowhere`
//   users              {name: {claim: value, …, acr_allowed: [acr, …]}}:
//                      claims that replace or add to a user's defaults
//                      (name, email, email_verified: true; `groups` and
//                      `org` go with the profile scope), and the acr values
//                      the user can reach
//   require_auth_time  put auth_time in every ID token, default false (it is
//                      there anyway when max_age or prompt=login was asked)
//   userinfo_tokens    access tokens for the UserInfo endpoint (opaque, no
//                      API audience) instead of JWTs for the test API; then
//                      ID tokens are thin: the user's claims beyond `sub`
//                      come only from UserInfo, as Entra ID and Okta do
//
// The shape of a real IdP's metadata and its quirks (docs/idps/):
//   issuer_path        the issuer's path after host and port: '/' publishes
//                      `http://127.0.0.1:PORT/` (Auth0's form), '/realms/x'
//                      serves the whole provider under that path (Keycloak,
//                      Entra ID's '/TENANT/v2.0', Okta's '/oauth2/default');
//                      default '' (no path)
//   metadata_omit      discovery fields left out, e.g.
//                      ['code_challenge_methods_supported'] (Entra ID)
//   audience_param     accept Auth0's `audience` authorization parameter:
//                      the access token is a JWT for that audience only
//                      when it is sent, an opaque one otherwise
//   refuse_scopes      scopes an authorization request may not ask for: it
//                      is answered 400 invalid_scope (Google and
//                      offline_access)
//   par                switch on pushed authorization requests (RFC 9126),
//                      default false (oidc-provider's own default is on;
//                      the other tests see the authorization request on
//                      the browser's redirect)
//   require_par        with par: the metadata says
//                      require_pushed_authorization_requests, and an
//                      authorization request that was not pushed is refused
//   par_delay          with par: hold every pushed authorization request
//                      this many milliseconds before handling it
//   client_jwks        the client's public keys ({keys: [JWK, …]}), for
//                      token_endpoint_auth_method: 'private_key_jwt'
//   offline_access_type  a refresh token only for a login that sent
//                      access_type=offline and prompt=consent (Google)
//   exchange_token_ttl seconds an exchanged token lives, default
//                      access_token_ttl
//   dpop_nonce         DPoP (RFC 9449, on for every test: a token is bound
//                      only when a proof comes with its request) with
//                      server nonces required: a proof without the
//                      IdP's current nonce is answered use_dpop_nonce
//   dpop_ignored       the token endpoint drops every DPoP proof before
//                      handling the request, and the authorization
//                      endpoint every dpop_jkt, as an IdP without DPoP
//                      does: its tokens are bearer tokens; GET
//                      /__dpop_ignored?on=true|false switches it later
//
// Every login gets an `acr`: the first of the authorization request's
// acr_values the user can reach, else urn:cloakroom:test:password.
//   backchannel_logout_uri  registers the client for OpenID Connect
//                      Back-Channel Logout there (with
//                      backchannel_logout_session_required, default true:
//                      ID tokens carry `sid`). An end-session at the IdP
//                      (GET /session/end?client_id=…, then its form) posts
//                      a logout token to it before answering.
//
// The dev interactions (a login form taking any user name and a consent
// form) stand in for a real login page; any login becomes the subject.
//
// Two resource servers besides the default API (RFC 8707, PX-23): each
// token for one of them names it as its `aud` and carries only its scopes
// (RESOURCES below). A login asks for them with `resource` parameters; a
// refresh grant narrows to one of them.
//
// Token exchange (RFC 8693), which oidc-provider does not ship, is
// registered below: the subject token is checked for real (an access token
// by the provider's signature or its store, an ID token by its signature
// and expiry; either must have been issued to the client asking), and the
// answer is a JWT access token signed by the provider for the audience
// asked for (EXCHANGE_AUDIENCES, or one of RESOURCES), naming the subject's
// `sub`. Anything else is refused as the RFC says: invalid_grant for the
// subject token, invalid_target for an audience or resource, invalid_scope.
//
// GET /__stats answers with what the tests must check on the IdP's side:
// how many grants of each type succeeded (`resource_grants`: refresh
// grants by the resource they named; `client_grants`: client credentials
// grants by resource, '' for none; `exchange_grants`: token exchanges by
// audience, and `exchange_subjects` by subject token type), how many
// grants were revoked, and how many token and revocation (RFC 7009)
// requests arrived (and of the token requests, how many carried a DPoP
// proof and how many were refused for want of a DPoP nonce), the most
// pushed authorization requests it held at once, and how many
// back-channel logouts the client acknowledged or failed (with the last
// failure's message).
// GET /__issued lists every token the token endpoint issued.
// GET /__authorizations lists the query of every authorization request, as
// received. GET /__pushed lists the parameters of every pushed
// authorization request the IdP accepted (the client assertion left out).
// GET /__dpop_ignored?on=true|false switches dpop_ignored.
// GET /__advance?seconds=N moves the IdP's clock N seconds forward, with
// the clock a test moves in cloakroom.
// GET /__outage?mode=M takes the whole provider (not these test endpoints)
// down: `down` answers every request 503 temporarily_unavailable, `hang`
// holds every request unanswered until the mode changes (then it is served
// as the new mode says, if its client is still there), `up` ends the
// outage; its state (grants, tokens) is kept throughout, as a real IdP's
// database would be. /__stats counts the requests `held` now.
//
// Token introspection (RFC 7662, /token/introspection) is on, so tests can
// ask whether a refresh token is still active without spending it.

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const settings = JSON.parse(process.argv[2] || '{}');
const users = settings.users ?? {};
const PASSWORD_ACR = 'urn:cloakroom:test:password';

// The IdP's own clock: the system's, moved forward by /__advance.
let ahead = 0;
const systemNow = Date.now.bind(Date);
Date.now = () => systemNow() + ahead;
const API = 'urn:cloakroom:test-api';
const RESOURCES = {
  'urn:cloakroom:test:orders': 'orders:read',
  'urn:cloakroom:test:billing': 'billing:read',
};
// What a token may be exchanged for: audience -> the scopes it grants.
const EXCHANGE_AUDIENCES = {
  'urn:cloakroom:test:ledger': 'ledger:read ledger:write',
  'urn:cloakroom:test:reports': 'reports:read',
};
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPES = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
};
const asList = (value) => (value === undefined ? [] : [value].flat());
const stats = {
  grants: {},
  resource_grants: {},
  client_grants: {},
  exchange_grants: {},
  exchange_subjects: {},
  revoked: 0,
  revocations: 0,
  revocation_requests: 0,
  token_requests: 0,
  // Token requests that carried a DPoP proof, and those refused for
  // want of a nonce (use_dpop_nonce).
  dpop_token_requests: 0,
  dpop_nonce_refusals: 0,
  par_in_flight_max: 0,
  held: 0,
  backchannel: { success: 0, error: 0, last_error: null },
};
// Every token the token endpoint handed out, so tests can prove none of
// them ever reaches a browser or a log line (PX-25).
const issued = [];

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
const issuerPath = settings.issuer_path ?? '';
const issuer = `${origin}${issuerPath}`;
// The provider's routes, under the issuer's path when it has one.
const mount = issuerPath.replace(/\/$/, '');
const audienceMode = settings.audience_param ?? false;
const refusedScopes = settings.refuse_scopes ?? [];
// Switched by /__dpop_ignored as well.
let dpopIgnored = settings.dpop_ignored ?? false;
// Nonces of logins that asked for offline access as Google wants it.
const offlineNonces = new Set();
const authorizations = [];
const pushed = [];

// oidc-provider's default adapter keeps at most 1,000 entries (an LRU): a
// few hundred logins in, it forgets refresh tokens it issued, as no real
// IdP does. Its own adapter over this store keeps each entry until it
// expires.
class ExpiringStore {
  #entries = new Map();

  get(key) {
    const entry = this.#entries.get(key);
    if (entry && entry.expiry <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry?.value;
  }

  set(key, value, options) {
    const expiry = options?.maxAge ? Date.now() + options.maxAge : Infinity;
    this.#entries.set(key, { value, expiry });
  }

  delete(key) {
    this.#entries.delete(key);
  }
}
const store = new ExpiringStore();

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [{
    client_id: settings.client_id ?? 'cloakroom',
    client_secret: settings.client_secret ?? 'test-secret',
    redirect_uris: settings.redirect_uris ?? ['http://localhost:8080/auth/callback'],
    post_logout_redirect_uris: settings.post_logout_redirect_uris ?? ['http://localhost:8080/'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials', TOKEN_EXCHANGE],
    response_types: ['code'],
    token_endpoint_auth_method: settings.token_endpoint_auth_method ?? 'client_secret_basic',
    ...(settings.client_jwks ? { jwks: settings.client_jwks } : {}),
    require_auth_time: settings.require_auth_time ?? false,
    ...(settings.backchannel_logout_uri ? {
      backchannel_logout_uri: settings.backchannel_logout_uri,
      backchannel_logout_session_required: settings.backchannel_logout_session_required ?? true,
    } : {}),
  }],
  pkce: { required: () => true },
  acrValues: [...new Set([PASSWORD_ACR, ...Object.values(users).flatMap((u) => u.acr_allowed ?? [])])],
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api', ...Object.values(RESOURCES)],
  claims: { openid: ['sub'], profile: ['name', 'groups', 'org'], email: ['email', 'email_verified'] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    pushedAuthorizationRequests: {
      enabled: settings.par ?? false,
      requirePushedAuthorizationRequests: settings.require_par ?? false,
    },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    dPoP: {
      enabled: true,
      ...(settings.dpop_nonce ? {
        nonceSecret: randomBytes(32),
        requireNonce: () => true,
      } : {}),
    },
    resourceIndicators: {
      enabled: true,
      // With audience_param, no audience means no JWT access token; with
      // userinfo_tokens, the access token is for the UserInfo endpoint.
      // A login that named resources gets a token for the default API
      // only if it named it too.
      defaultResource: (ctx, client, oneOf) => {
        if (oneOf) return oneOf.includes(API) ? API : undefined;
        return settings.userinfo_tokens || audienceMode ? undefined : API;
      },
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: RESOURCES[resource] ?? 'api',
        audience: RESOURCES[resource] || audienceMode ? resource : API,
        accessTokenFormat: 'jwt',
        accessTokenTTL: settings.access_token_ttl ?? 300,
      }),
    },
  },
  // The IdP's own outgoing calls (back-channel logout) go to cloakroom on
  // 127.0.0.1, which oidc-provider's guard against server-side request
  // forgery refuses as a special-use address. Everything here is on this
  // machine's loopback: call it without the guard.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  rotateRefreshToken: settings.rotate_refresh ?? true,
  // Issue refresh tokens to this confidential client whenever it may use them.
  // (With offline_access_type, only for logins that asked as Google wants.)
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && (!settings.offline_access_type || offlineNonces.has(code?.nonce)),
  ttl: {
    AccessToken: settings.access_token_ttl ?? 300,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 24 * 3600,
  },
  // Every consent is given in full, so the grant covers what was asked.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    const resources = asList(ctx.oidc.params.resource);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      const missing = resources.filter((resource) => !found?.getResourceScope(resource));
      if (found && missing.length) {
        for (const resource of missing) found.addResourceScope(resource, RESOURCES[resource] ?? 'api');
        await found.save();
      }
      return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access profile email');
    for (const resource of resources.length ? resources : [API]) {
      grant.addResourceScope(resource, RESOURCES[resource] ?? 'api');
    }
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => {
      const { acr_allowed: _, ...extra } = users[sub] ?? {};
      return {
        sub, name: `User ${sub}`, email: `${sub}@example.test`, email_verified: true, ...extra,
      };
    },
  }),
});

// Token exchange (RFC 8693 §2). The subject token is checked as the
// provider would check its own: signature, issuer, expiry by the IdP's
// clock, and the client it was issued to.
const epoch = () => Math.floor(Date.now() / 1000);
let jwks;
const ownKeys = () => {
  jwks ??= jose.createRemoteJWKSet(new URL(`${origin}${mount}/jwks`));
  return jwks;
};
const subjectOf = async (ctx, token, type) => {
  const { client } = ctx.oidc;
  const refuse = (why) => new errors.InvalidGrant(`subject_token ${why}`);
  if (type === TOKEN_TYPES.id_token) {
    let payload;
    try {
      ({ payload } = await provider.IdToken.validate(token, client));
    } catch {
      throw refuse('is not an ID token of this provider for this client');
    }
    // IdToken.validate leaves expiry to its caller (an id_token_hint may be stale).
    if (!(payload.exp > epoch())) throw refuse('has expired');
    return payload.sub;
  }
  if (type !== TOKEN_TYPES.access_token) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (token.split('.').length === 3) {
    let payload;
    try {
      ({ payload } = await jose.jwtVerify(token, ownKeys(), {
        issuer: provider.issuer, typ: 'at+jwt', currentDate: new Date(Date.now()),
      }));
    } catch {
      throw refuse('is not a valid access token of this provider');
    }
    if (payload.client_id !== client.clientId) throw refuse('was issued to another client');
    return payload.sub;
  }
  const found = await provider.AccessToken.find(token);
  if (!found?.isValid) throw refuse('is not a valid access token of this provider');
  if (found.clientId !== client.clientId) throw refuse('was issued to another client');
  return found.accountId;
};
provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { params, client } = ctx.oidc;
  const sub = await subjectOf(ctx, params.subject_token, params.subject_token_type);
  if (params.requested_token_type && params.requested_token_type !== TOKEN_TYPES.access_token) {
    throw new errors.InvalidRequest('only access tokens are issued');
  }
  if (params.actor_token) throw new errors.InvalidRequest('no delegation here');
  const { resource } = params;
  if (resource !== undefined && !RESOURCES[resource] && !EXCHANGE_AUDIENCES[resource]) {
    throw new errors.InvalidTarget('unknown resource');
  }
  const audience = params.audience ?? resource;
  const offered = EXCHANGE_AUDIENCES[audience] ?? RESOURCES[audience];
  if (!offered) throw new errors.InvalidTarget('unknown audience');
  const asked = String(params.scope ?? '').split(' ').filter(Boolean);
  const refused = asked.find((scope) => !offered.split(' ').includes(scope));
  if (refused) throw new errors.InvalidScope('scope not offered for this audience', refused);
  const ttl = settings.exchange_token_ttl ?? settings.access_token_ttl ?? 300;
  const token = new provider.AccessToken({
    accountId: sub,
    client,
    gty: 'token_exchange',
    scope: (asked.length ? asked : offered.split(' ')).join(' '),
    expiresIn: ttl,
    resourceServer: {
      audience, scope: offered, accessTokenFormat: 'jwt', identifier: () => audience,
    },
  });
  const value = await token.save();
  stats.exchange_grants[audience] = (stats.exchange_grants[audience] ?? 0) + 1;
  const kind = Object.keys(TOKEN_TYPES).find((k) => TOKEN_TYPES[k] === params.subject_token_type);
  stats.exchange_subjects[kind] = (stats.exchange_subjects[kind] ?? 0) + 1;
  ctx.body = {
    access_token: value,
    issued_token_type: TOKEN_TYPES.access_token,
    token_type: 'Bearer',
    expires_in: ttl,
    scope: token.scope,
  };
}, [
  'subject_token', 'subject_token_type', 'requested_token_type', 'actor_token', 'actor_token_type',
  'audience', 'resource', 'scope',
]);

// A login reaches the first acr asked for that its user can reach. The dev
// login form has no say in it, so its result is completed here.
const finished = provider.interactionFinished.bind(provider);
provider.interactionFinished = async (req, res, result, options) => {
  if (result?.login) {
    const { params } = await provider.interactionDetails(req, res);
    const reachable = users[result.login.accountId]?.acr_allowed ?? [];
    const asked = (params.acr_values ?? '').split(' ').filter(Boolean);
    result.login.acr = asked.find((acr) => reachable.includes(acr)) ?? PASSWORD_ACR;
  }
  return finished(req, res, result, options);
};

// What each authorization request carried, and the quirks of the IdP whose
// shape this one takes.
provider.use(async (ctx, next) => {
  if (ctx.path !== '/auth' || ctx.method !== 'GET') return next();
  const query = { ...ctx.query };
  authorizations.push(query);
  const asked = String(query.scope ?? '').split(' ');
  const refused = asked.find((scope) => refusedScopes.includes(scope));
  if (refused) {
    ctx.status = 400;
    ctx.type = 'text/plain';
    ctx.body = `invalid_scope: ${refused}`;
    return undefined;
  }
  if (settings.offline_access_type && query.access_type === 'offline'
    && String(query.prompt ?? '').split(' ').includes('consent')) {
    offlineNonces.add(query.nonce);
  }
  if (dpopIgnored) {
    // An IdP without DPoP knows no dpop_jkt either.
    const { dpop_jkt: _, ...rest } = ctx.query;
    ctx.query = rest;
  }
  if (audienceMode) {
    // Auth0's `audience` is what RFC 8707 calls `resource`.
    const { audience, ...rest } = query;
    ctx.query = audience ? { ...rest, resource: audience } : rest;
  }
  return next();
});

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
let tokenCalls = 0;
provider.use(async (ctx, next) => {
  if (ctx.path !== '/token' || ctx.method !== 'POST') return next();
  if (ctx.get('dpop')) stats.dpop_token_requests += 1;
  if (dpopIgnored) delete ctx.req.headers.dpop;
  await next();
  if (ctx.body?.error === 'use_dpop_nonce') stats.dpop_nonce_refusals += 1;
  return undefined;
});
provider.use(async (ctx, next) => {
  if (ctx.path === '/token/revocation' && ctx.method === 'POST') stats.revocation_requests += 1;
  if (ctx.path === '/token' && ctx.method === 'POST') stats.token_requests += 1;
  const delay = settings.token_delay;
  if (!delay || ctx.path !== '/token' || ctx.method !== 'POST') return next();
  tokenCalls += 1;
  if (tokenCalls !== delay.call) return next();
  if (delay.phase === 'after') {
    await next();
    await sleep(delay.ms);
    return undefined;
  }
  let gone = false;
  ctx.res.on('close', () => { if (!ctx.res.writableFinished) gone = true; });
  await sleep(delay.ms);
  if (gone) return undefined;
  return next();
});

let parInFlight = 0;
provider.use(async (ctx, next) => {
  if (ctx.path !== '/request' || ctx.method !== 'POST') return next();
  parInFlight += 1;
  stats.par_in_flight_max = Math.max(stats.par_in_flight_max, parInFlight);
  try {
    if (settings.par_delay) await sleep(settings.par_delay);
    return await next();
  } finally {
    parInFlight -= 1;
  }
});

// What each pushed authorization request carried, once the IdP took it.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/request' || ctx.method !== 'POST' || ctx.status !== 201) return;
  const params = {};
  for (const [key, value] of Object.entries(ctx.oidc?.params ?? {})) {
    if (value !== undefined && key !== 'client_assertion') params[key] = value;
  }
  pushed.push(params);
});

// Some IdPs name their revocation endpoint only in RFC 8414 metadata (LO-13).
const listedIn = settings.revocation_listed_in ?? 'both';
const unlisted = {
  '/.well-known/openid-configuration': listedIn !== 'both',
  '/.well-known/oauth-authorization-server': listedIn === 'nowhere',
};
provider.use(async (ctx, next) => {
  await next();
  if (unlisted[ctx.path] && ctx.body && typeof ctx.body === 'object') {
    delete ctx.body.revocation_endpoint;
  }
  if (ctx.path === '/.well-known/openid-configuration' && ctx.body && typeof ctx.body === 'object') {
    for (const field of settings.metadata_omit ?? []) delete ctx.body[field];
  }
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.body && typeof ctx.body === 'object') {
    for (const key of ['access_token', 'refresh_token', 'id_token']) {
      if (ctx.body[key]) issued.push(ctx.body[key]);
    }
  }
});

provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params.grant_type;
  stats.grants[type] = (stats.grants[type] ?? 0) + 1;
  const { resource } = ctx.oidc.params;
  if (type === 'refresh_token' && resource) {
    stats.resource_grants[resource] = (stats.resource_grants[resource] ?? 0) + 1;
  }
  if (type === 'client_credentials') {
    const key = resource ?? '';
    stats.client_grants[key] = (stats.client_grants[key] ?? 0) + 1;
  }
});
provider.on('grant.revoked', () => { stats.revoked += 1; });
provider.on('backchannel.success', () => { stats.backchannel.success += 1; });
provider.on('backchannel.error', (ctx, err) => {
  stats.backchannel.error += 1;
  stats.backchannel.last_error = String(err?.message ?? err);
});
// A refresh token destroyed: revoked (RFC 7009) or its grant revoked.
provider.on('refresh_token.destroyed', () => { stats.revocations += 1; });

// The outage /__outage sets, and the requests held while it is `hang`.
let outage = 'up';
const holding = new Set();
const held = (res) => new Promise((resolve) => {
  stats.held += 1;
  const release = () => {
    if (!holding.delete(release)) return;
    stats.held -= 1;
    resolve();
  };
  holding.add(release);
  res.on('close', release);
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  if (req.url.startsWith('/__dpop_ignored?')) {
    dpopIgnored = new URL(req.url, issuer).searchParams.get('on') === 'true';
    res.end('ok');
    return;
  }
  if (req.url.startsWith('/__advance?')) {
    ahead += 1000 * Number(new URL(req.url, issuer).searchParams.get('seconds'));
    res.end('ok');
    return;
  }
  if (req.url.startsWith('/__outage?')) {
    outage = new URL(req.url, issuer).searchParams.get('mode');
    for (const release of [...holding]) release();
    res.end('ok');
    return;
  }
  const own = {
    '/__stats': stats, '/__issued': issued, '/__authorizations': authorizations, '/__pushed': pushed,
  };
  if (own[req.url]) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(own[req.url]));
    return;
  }
  if (outage === 'hang') {
    await held(res);
    if (req.socket.destroyed) return;
  }
  if (outage === 'down') {
    res.statusCode = 503;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ error: 'temporarily_unavailable' }));
    return;
  }
  if (mount) {
    // Mounted as a framework would: the provider sees the path below the
    // issuer's, and finds its mount point in originalUrl.
    if (req.url !== mount && !req.url.startsWith(`${mount}/`)) {
      res.statusCode = 404;
      res.end();
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length) || '/';
  }
  callback(req, res);
});

console.log(issuer);
