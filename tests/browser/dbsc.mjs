// Device-bound sessions (DBSC) in a real browser: Debian's chromium with its
// DBSC features on, driven by playwright-core (nothing is downloaded). Run
// by tests/browser_dbsc.rs, which starts the test IdP, the echo upstream,
// and cloakroom behind nginx over https (with `cookie.host_http_prefix`),
// and makes `home` hold an NSS db that trusts the test CA: DBSC needs https
// the browser trusts (with --ignore-certificate-errors it skips silently).
//
// Usage: node dbsc.mjs '{"base": "https://localhost:PORT",
//   "metrics": "http://127.0.0.1:ADMIN/metrics", "home": "DIR"}'
// Prints one JSON line of results last; the test asserts on it. No cookie
// value is printed: the script compares them and says what it found.

import { chromium } from 'playwright-core';

const { base, metrics, home } = JSON.parse(process.argv[2]);
const SESSION = '__Host-Http-cloakroom';
const BOUND = '__Host-cloakroom-bound';
const results = { steps: [] };
const step = (name) => { results.steps.push(name); console.error(`browser: ${name}`); };

// One series of cloakroom's admin /metrics, summed (0 when absent).
async function counted(series) {
  const text = await (await fetch(metrics)).text();
  return text.split('\n')
    .filter((line) => line.startsWith(`${series} `))
    .reduce((sum, line) => sum + Number(line.slice(series.length + 1)), 0);
}
const device = (event) => counted(`cloakroom_device_sessions_total{event="${event}"}`);
const ANOMALY = 'cloakroom_anomalies_total{kind="session_cookie_without_device"}';

// Polls `probe` until `done` holds of what it returns; what it returned last.
async function until(probe, done, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > end) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// `name=value` pairs of a Cookie header, in order.
const pairs = (header) => (header ?? '').split(/;\s*/).filter(Boolean).map((pair) => {
  const at = pair.indexOf('=');
  return [pair.slice(0, at), pair.slice(at + 1)];
});

// `GET /api/orders` from the page, as the SPA sends it; its status and
// code, the Cookie header the browser sent (once DBSC let it go), and the
// cookies the echo upstream got.
async function api(page) {
  const [request, answer] = await Promise.all([
    page.waitForRequest((r) => r.url() === `${base}/api/orders`),
    page.evaluate(async () => {
      const r = await fetch('/api/orders', { headers: { 'X-CSRF': '1' } });
      return { status: r.status, body: await r.text() };
    }),
  ]);
  let json = null;
  try { json = JSON.parse(answer.body); } catch { /* not JSON */ }
  const upstream = (json?.headers ?? []).filter(([name]) => name === 'cookie').map(([, value]) => value);
  return {
    status: answer.status,
    code: json?.code ?? null,
    sent: pairs((await request.allHeaders()).cookie),
    upstream_cookies: upstream.flatMap((header) => pairs(header).map(([name]) => name)),
  };
}

// The cookies of cloakroom's origin, by name.
async function jar(context) {
  const host = new URL(base).hostname;
  return (await context.cookies()).filter((c) => c.domain === host);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // As root chromium needs --no-sandbox. DBSC needs both features: the
  // second lets it use software keys where there is no TPM.
  args: ['--no-sandbox',
    '--enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting',
    '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  // The NSS db trusting the test CA is $HOME/.pki/nssdb.
  env: { ...process.env, HOME: home },
});

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  // DBSC's own account of what it did (registration, refreshes).
  const cdp = await context.newCDPSession(page);
  results.dbsc_events = [];
  cdp.on('Network.deviceBoundSessionEventOccurred', (e) => {
    const creation = e.creationEventDetails;
    const refresh = e.refreshEventDetails;
    const failed = (creation ?? refresh)?.failedRequest;
    results.dbsc_events.push({
      kind: creation ? 'creation' : refresh ? 'refresh' : e.challengeEventDetails ? 'challenge' : 'other',
      succeeded: e.succeeded,
      fetch: (creation ?? refresh)?.fetchResult,
      ...(refresh ? { result: refresh.refreshResult, proactive: refresh.wasFullyProactiveRefresh } : {}),
      ...(failed ? { failed: `${failed.requestUrl} ${failed.responseError ?? ''} ${failed.responseErrorBody ?? ''}` } : {}),
    });
  });
  await cdp.send('Network.enable');
  await cdp.send('Network.enableDeviceBoundSessions', { enable: true });

  // 1. Sign in through the test IdP's own pages; the login's answer offers
  // DBSC, and the browser registers on its own.
  await page.goto(`${base}/auth/login?return_to=/`);
  await page.fill('input[name=login]', 'alice');
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  const consent = page.getByRole('button', { name: 'Continue' });
  const landed = (url) => url.href.startsWith(`${base}/`);
  await Promise.race([consent.waitFor(), page.waitForURL(landed)]).catch(() => {});
  if (!landed(new URL(page.url()))) await consent.click();
  await page.waitForURL(`${base}/`);
  step('signed in');
  // The SPA asks who is signed in; while the session is unbound, the
  // answer offers DBSC too.
  results.user = await page.evaluate(async () => (await fetch('/auth/user', { headers: { 'X-CSRF': '1' } })).status);
  results.registered = await until(() => device('registered'), (n) => n >= 1);
  step('registered');

  // 2. The cookies, by their __Host-Http- names; the API answers.
  const cookies = await jar(context);
  results.cookies = cookies.map((c) => ({
    name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path,
  }));
  const session = cookies.find((c) => c.name === SESSION);
  const bound = cookies.find((c) => c.name === BOUND);
  results.api = await api(page);
  step('API called');

  // 3. A script cannot plant a session cookie: document.cookie refuses a
  // __Host-Http- name, so the jar and the next request keep the real one.
  results.document_cookie = await page.evaluate(() => {
    document.cookie = '__Host-Http-cloakroom=forged; Path=/; Secure';
    return document.cookie;
  });
  const after = await jar(context);
  results.forged = {
    in_jar: after.filter((c) => c.name === SESSION).map((c) => c.value === session?.value ? 'real' : 'other'),
  };
  const call = await api(page);
  results.forged.status = call.status;
  results.forged.sent = call.sent.filter(([name]) => name === SESSION)
    .map(([, value]) => value === session?.value ? 'real' : 'other');
  step('forged cookie refused');

  // 4. The bound cookie gone: the browser holds the next request, refreshes
  // (403 with a challenge, then its proof), and sends the request with the
  // new bound cookie.
  await context.clearCookies({ name: BOUND });
  results.bound_cleared = !(await jar(context)).some((c) => c.name === BOUND);
  const held = await api(page);
  const renewed = (await jar(context)).find((c) => c.name === BOUND);
  results.refresh = {
    status: held.status,
    refreshed: await device('refreshed'),
    challenged: await device('challenged'),
    renewed: Boolean(renewed) && renewed.value !== bound?.value,
    sent_bound: held.sent.filter(([name]) => name === BOUND)
      .map(([, value]) => value === renewed?.value ? 'renewed' : 'other'),
    anomalies: await counted(ANOMALY),
  };
  step('refreshed');

  // 5. The session cookie copied into another browser profile, without
  // the device's key: refused, and counted as an anomaly.
  const thief = await browser.newContext();
  await thief.addCookies([{
    name: SESSION, value: session?.value ?? '', url: base, secure: true, httpOnly: true, sameSite: 'Strict',
  }]);
  const thiefPage = await thief.newPage();
  await thiefPage.goto(`${base}/`);
  const stolen = await api(thiefPage);
  results.copied = {
    status: stolen.status,
    code: stolen.code,
    sent: stolen.sent.map(([name]) => name),
    anomalies: await counted(ANOMALY),
  };
  step('copied cookie refused');

  // 6. The device's own browser goes on.
  results.still = (await api(page)).status;
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = String(e?.stack ?? e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
