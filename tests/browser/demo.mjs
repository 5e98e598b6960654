// The demo in a real browser: Debian's chromium driven by playwright-core
// (nothing is downloaded). Run by tests/browser.rs, which starts the IdP,
// the demo API and cloakroom serving the demo SPA.
//
// Usage: node demo.mjs '{"base": "http://localhost:PORT", "artifacts": "DIR"}'
// Writes screenshots and readable.json (everything the page could read)
// into DIR, and prints one JSON line of results last.

import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const { base, artifacts, renewalSeconds = 13 } = JSON.parse(process.argv[2]);
mkdirSync(artifacts, { recursive: true });
const results = { steps: [] };
const step = (name) => { results.steps.push(name); console.error(`browser: ${name}`); };
const shot = (page, name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // As root chromium needs --no-sandbox; the rest keep it off the network
  // (this machine has none) and quiet.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage'],
});

// Everything from cloakroom's origin that the page's scripts could read:
// response bodies and headers (Set-Cookie is never readable by scripts).
const readable = [];
const apiCalls = [];
function watch(page) {
  page.on('response', async (response) => {
    const url = response.url();
    if (!url.startsWith(base)) return;
    const headers = { ...(await response.allHeaders()) };
    delete headers['set-cookie'];
    let body = '';
    if (response.status() < 300 || response.status() >= 400) {
      body = await response.text().catch(() => '');
    }
    readable.push({ url, status: response.status(), headers, body });
    if (url.startsWith(`${base}/api/`)) {
      let json = null;
      try { json = JSON.parse(body); } catch { /* not JSON */ }
      apiCalls.push({ status: response.status(), token_id: json?.token_id ?? null, at: Date.now() });
    }
  });
}

try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  watch(page);
  // Every document load, for the failure report.
  results.navigations = [];
  page.on('response', (r) => {
    if (r.request().isNavigationRequest()) results.navigations.push(`${r.request().method()} ${r.url().split('?')[0]} ${r.status()}`);
  });
  page.on('requestfailed', (r) => results.navigations.push(`FAILED ${r.url().split('?')[0]} ${r.failure()?.errorText}`));

  // 1. Signed out: the SPA, served by cloakroom, offers to sign in.
  await page.goto(`${base}/`);
  await page.locator('#signed-out').waitFor();
  await shot(page, '01-signed-out');
  step('signed-out page');

  // 2. Sign in through the IdP's own pages.
  await page.click('#signin');
  await page.waitForURL(/\/interaction\//);
  results.idp_login_url = new URL(page.url()).origin;
  await page.fill('#password', 'demo');
  await shot(page, '02-idp-login');
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/`);
  await page.locator('#signed-in').waitFor();
  step('signed in');

  // 3. Who am I, and the API's view of the token.
  await page.locator('#api-result dd').first().waitFor();
  results.user = await page.locator('#user').innerText();
  results.api_result = await page.locator('#api-result').innerText();
  await shot(page, '03-signed-in');
  step('API called');

  // 4. The browser holds no token: no readable cookie, nothing in storage.
  results.document_cookie = await page.evaluate(() => document.cookie);
  results.storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  results.cookies = (await context.cookies()).map((c) => ({
    name: c.name, domain: c.domain, httpOnly: c.httpOnly, sameSite: c.sameSite,
  }));

  // 5. Several access-token lifetimes: the SPA calls every 2 s, and clicks too.
  const before = apiCalls.length;
  const until = Date.now() + renewalSeconds * 1000;
  while (Date.now() < until) {
    await page.click('#call');
    await page.waitForTimeout(900);
  }
  await page.waitForTimeout(500);
  const during = apiCalls.slice(before);
  results.renewal = {
    calls: during.length,
    statuses: [...new Set(during.map((c) => c.status))],
    tokens: [...new Set(during.map((c) => c.token_id))].length,
    renewals_shown: Number(await page.locator('#renewals').innerText()),
    failures_shown: Number(await page.locator('#failures').innerText()),
  };
  await shot(page, '04-renewed');
  step('tokens renewed');

  // 6. A page on another origin, in the same browser, tries to use the
  // session: a CORS fetch with X-CSRF, a no-cors fetch, an <img>.
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>another site</title><h1>Another site</h1>
<img id="img" src="${base}/api/whoami">
<pre id="out"></pre>
<script>
  const out = {};
  const target = ${JSON.stringify(`${base}/api/whoami`)};
  Promise.all([
    fetch(target, { credentials: 'include', headers: { 'X-CSRF': '1' } })
      .then(r => r.text().then(t => out.cors = r.status + ' ' + t), e => out.cors = 'rejected: ' + e.name),
    fetch(target, { credentials: 'include', mode: 'no-cors' })
      .then(r => out.no_cors = r.type + ' ' + r.status, e => out.no_cors = 'rejected: ' + e.name),
  ]).then(() => { document.getElementById('out').textContent = JSON.stringify(out); window.done = out; });
</script>`);
  });
  await new Promise((resolve) => { evil.listen(0, '127.0.0.1', resolve); });
  const evilOrigin = `http://127.0.0.1:${evil.address().port}`;
  const attacker = await context.newPage();
  const crossSite = [];
  attacker.on('request', async (request) => {
    if (!request.url().startsWith(base)) return;
    const headers = await request.allHeaders();
    crossSite.push({ method: request.method(), cookie: Boolean(headers.cookie?.includes('cloakroom')) });
  });
  attacker.on('response', (response) => {
    if (response.url().startsWith(base)) crossSite.push({ status: response.status() });
  });
  await attacker.goto(`${evilOrigin}/`);
  await attacker.waitForFunction(() => window.done);
  await attacker.waitForTimeout(300);
  results.cross_origin = {
    script_saw: await attacker.evaluate(() => window.done),
    requests: crossSite,
  };
  await shot(attacker, '05-another-origin');
  await attacker.close();
  evil.close();
  step('another origin refused');

  // The user's own page still works after the attempt.
  results.still_signed_in = await page.evaluate(async () => {
    const r = await fetch('/api/whoami', { headers: { 'X-CSRF': '1' }, credentials: 'include' });
    return r.status;
  });

  // 7. Sign out: the session ends here and at the IdP. The automatic calls
  // stop first, and the one in flight is let finish: its 401 after the
  // logout would send the page to sign in again, cutting the visit to the
  // IdP's end-session page short (the client module's race, noted in
  // docs/spa.md).
  await page.uncheck('#auto');
  await page.waitForLoadState('networkidle');
  await page.click('#signout');
  await page.waitForURL(`${base}/`);
  await page.locator('#signed-out').waitFor();
  await shot(page, '06-signed-out-again');
  results.after_logout = await page.evaluate(async () => {
    const r = await fetch('/api/whoami', { headers: { 'X-CSRF': '1' }, credentials: 'include' });
    return { status: r.status, code: (await r.json()).code };
  });
  // The IdP session is gone too: signing in asks for the password again.
  await page.click('#signin');
  await page.waitForURL(/\/interaction\//);
  results.idp_asks_again = await page.locator('#password').isVisible();
  step('signed out');

  writeFileSync(join(artifacts, 'readable.json'), JSON.stringify(readable, null, 1));
  results.readable_responses = readable.length;
  results.jwt_in_readable = readable.some((r) => /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.test(r.body + JSON.stringify(r.headers)));
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = String(e?.stack ?? e);
  const pages = browser.contexts().flatMap((c) => c.pages());
  for (const [i, p] of pages.entries()) await shot(p, `failure-${i}`).catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
