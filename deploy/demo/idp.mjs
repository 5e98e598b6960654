// The demo's identity provider: oidc-provider (a certified OpenID Provider)
// on 127.0.0.1, with one confidential client for cloakroom and a sign-in
// page that accepts the demo users (password: demo).
//
// Usage: node idp.mjs '<json settings>'   (deploy/demo/run does this)
// Prints its issuer URL as the first line of stdout, then serves until killed.
//
// Settings (all optional):
//   port                      default 0 (any free port)
//   client_id, client_secret  default cloakroom-demo / demo-secret
//   redirect_uris             default ['http://localhost:8080/auth/callback']
//   post_logout_redirect_uris default ['http://localhost:8080/']
//   access_token_ttl          seconds, default 30 (short, to show renewal)
//
// Imported, startIdp(settings, hooks) returns { issuer, provider, server };
// hooks.tokenIssued(body) sees each token endpoint answer.

import http from 'node:http';
import { pathToFileURL } from 'node:url';
import Provider from 'oidc-provider';

/** The audience of the demo API's access tokens. */
export const API = 'urn:cloakroom:demo-api';

const USERS = {
  demo: { name: 'Dana Demo', email: 'demo@example.test' },
  alice: { name: 'Alice Example', email: 'alice@example.test' },
};
const PASSWORD = 'demo';

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; background: #eef1f6; margin: 0; color: #1d2330; }
  main { max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: 12px;
         box-shadow: 0 4px 24px rgba(0,0,0,.08); }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; } p.hint { color: #5b6475; margin: 0 0 1.25rem; font-size: .9rem; }
  label { display: block; font-size: .85rem; margin: .75rem 0 .25rem; color: #5b6475; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .55rem .7rem;
         border: 1px solid #c9cfda; border-radius: 8px; font-size: 1rem; }
  button { margin-top: 1.25rem; width: 100%; padding: .65rem; border: 0; border-radius: 8px;
           background: #4b3fd1; color: #fff; font-size: 1rem; cursor: pointer; }
  .error { color: #b3261e; font-size: .9rem; } .badge { font-size: .75rem; color: #4b3fd1; letter-spacing: .05em; }
</style></head><body><main>${body}</main></body></html>`;

function loginPage(uid, client, error) {
  return page('Sign in: demo IdP', `
  <div class="badge">DEMO IDENTITY PROVIDER</div>
  <h1>Sign in</h1>
  <p class="hint">to <b>${escape(client)}</b>. Use <b>demo</b> / <b>demo</b>.</p>
  ${error ? `<p class="error">${escape(error)}</p>` : ''}
  <form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
    <label for="login">User name</label>
    <input id="login" name="login" type="text" value="demo" required autofocus>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" required>
    <button type="submit">Sign in</button>
  </form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('form too large');
  }
  return Object.fromEntries(new URLSearchParams(body));
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No form-action: the sign-in form's redirects lead back to the app's origin.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(html);
}

export async function startIdp(settings = {}, hooks = {}) {
  const server = http.createServer();
  await new Promise((resolve) => { server.listen(settings.port ?? 0, '127.0.0.1', resolve); });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const ttl = settings.access_token_ttl ?? 30;

  const provider = new Provider(issuer, {
    clients: [{
      client_id: settings.client_id ?? 'cloakroom-demo',
      client_secret: settings.client_secret ?? 'demo-secret',
      client_name: 'the cloakroom demo',
      redirect_uris: settings.redirect_uris ?? ['http://localhost:8080/auth/callback'],
      post_logout_redirect_uris: settings.post_logout_redirect_uris ?? ['http://localhost:8080/'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Sign-out from the demo app ends the IdP session too, without a
        // second question: the form is submitted as soon as it loads.
        logoutSource: async (ctx, form) => {
          const confirm = form.replace('</form>', '<input type="hidden" name="logout" value="yes"></form>');
          ctx.type = 'html';
          ctx.set('cache-control', 'no-store');
          ctx.body = page('Signing out: demo IdP', `
  <div class="badge">DEMO IDENTITY PROVIDER</div>
  <h1>Signing you out…</h1>
  ${confirm}
  <button type="submit" form="op.logoutForm" id="confirm-logout">Sign out of the demo IdP</button>
  <script>document.getElementById('op.logoutForm').submit()</script>`);
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api', audience: API, accessTokenFormat: 'jwt', accessTokenTTL: ttl,
        }),
      },
    },
    rotateRefreshToken: true,
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: ttl, IdToken: 3600, RefreshToken: 8 * 3600, Interaction: 600, Session: 8 * 3600, Grant: 8 * 3600,
    },
    // The demo client is first-party: consent is given in full, once.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid offline_access profile email');
      grant.addResourceScope(API, 'api');
      await grant.save();
      return grant;
    },
    findAccount: async (ctx, sub) => {
      const user = USERS[sub];
      if (!user) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...user, email_verified: true }) };
    },
  });

  if (hooks.tokenIssued) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/token' && ctx.body && typeof ctx.body === 'object') hooks.tokenIssued(ctx.body);
    });
  }

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(req.url.split('?')[0]);
    if (!match) { callback(req, res); return; }
    try {
      const details = await provider.interactionDetails(req, res);
      const client = details.params.client_id;
      if (details.prompt.name === 'consent') {
        // The demo client is first-party: grant what it asks, without a question.
        const { details: missing } = details.prompt;
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: client });
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      if (req.method === 'GET' && !match[2]) { sendHtml(res, 200, loginPage(details.uid, client)); return; }
      if (req.method === 'POST' && match[2]) {
        const form = await readForm(req);
        const login = String(form.login ?? '').trim().toLowerCase();
        if (!USERS[login] || form.password !== PASSWORD) {
          sendHtml(res, 200, loginPage(details.uid, client, 'Unknown user or wrong password.'));
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
        return;
      }
      sendHtml(res, 405, page('Not allowed', '<p>Method not allowed.</p>'));
    } catch (e) {
      sendHtml(res, 400, page('Sign-in expired', `<h1>This sign-in has expired</h1><p class="hint">${escape(e.message)}</p><p><a href="/">Start again from the app.</a></p>`));
    }
  });
  return { issuer, provider, server };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { issuer } = await startIdp(JSON.parse(process.argv[2] || '{}'));
  console.log(issuer);
}
