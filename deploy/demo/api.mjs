// The demo API: verifies the bearer JWT that cloakroom injects, against the
// IdP's published keys (JWKS), and answers whose token it got, with which
// scopes and expiry. It never answers with the token itself.
//
// Usage: node api.mjs '{"issuer": "http://127.0.0.1:PORT", "port": 0}'
// Prints its URL as the first line of stdout, then serves until killed.
//
//   GET /api/whoami  200 {sub, client_id, scope, iat, exp, expires_in, token_id}
//                    401 when the bearer is missing or does not verify

import http from 'node:http';
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const settings = JSON.parse(process.argv[2] || '{}');
const issuer = settings.issuer;
if (!issuer) throw new Error('settings.issuer is required');
const audience = settings.audience ?? 'urn:cloakroom:demo-api';
const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));

function json(res, status, value, extra = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  if (path !== '/api/whoami') { json(res, 404, { error: 'not_found' }); return; }
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : null;
  if (!token) {
    json(res, 401, { error: 'no bearer token' }, { 'www-authenticate': 'Bearer' });
    return;
  }
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer, audience, algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    });
    const now = Math.floor(Date.now() / 1000);
    json(res, 200, {
      sub: payload.sub,
      client_id: payload.client_id,
      scope: payload.scope,
      aud: payload.aud,
      iat: payload.iat,
      exp: payload.exp,
      expires_in: payload.exp - now,
      alg: protectedHeader.alg,
      // Which token this was, without the token: a hash prefix of its jti.
      token_id: createHash('sha256').update(String(payload.jti ?? payload.iat)).digest('hex').slice(0, 10),
      verified_with: `${issuer}/jwks`,
    });
  } catch (e) {
    json(res, 401, { error: 'invalid token', reason: e.code ?? 'unverified' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
});

server.listen(settings.port ?? 0, '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
