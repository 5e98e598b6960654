// The demo SPA: no build step, no token. Everything goes through
// cloakroom's client module, served by cloakroom itself.
import { api, user, login, logout, LoginRequired } from '/auth/client.js';

const $ = (id) => document.getElementById(id);
const state = { token: null, renewals: 0, calls: 0, failures: 0, timer: null };

function fill(dl, entries) {
  dl.replaceChildren();
  for (const [k, v] of entries) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

const time = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

async function callApi() {
  state.calls += 1;
  $('calls').textContent = state.calls;
  try {
    const response = await api('/api/whoami');
    const seen = await response.json();
    if (!response.ok) throw new Error(`${response.status} ${seen.code ?? seen.error ?? ''}`);
    $('api-error').hidden = true;
    if (state.token && seen.token_id !== state.token.token_id) {
      state.renewals += 1;
      $('renewals').textContent = state.renewals;
      $('last-renewal').textContent = `Last renewal at ${new Date().toLocaleTimeString()}: a new token (id ${seen.token_id}) arrived with the same session.`;
    }
    state.token = seen;
    fill($('api-result'), [
      ['subject', seen.sub],
      ['client', seen.client_id],
      ['scopes', seen.scope],
      ['issued', time(seen.iat)],
      ['expires', time(seen.exp)],
      ['token id', seen.token_id],
      ['verified with', seen.verified_with],
    ]);
  } catch (e) {
    if (e instanceof LoginRequired) return;
    state.failures += 1;
    $('failures').textContent = state.failures;
    $('api-error').textContent = `The call failed: ${e.message}`;
    $('api-error').hidden = false;
  }
}

function tick() {
  const token = state.token;
  if (!token) return;
  const left = Math.max(0, token.exp - Date.now() / 1000);
  const life = Math.max(1, token.exp - token.iat);
  $('countdown').textContent = `${left.toFixed(0)} s left`;
  $('bar-fill').style.width = `${(100 * left) / life}%`;
}

function autoCall() {
  clearInterval(state.timer);
  state.timer = $('auto').checked ? setInterval(callApi, 2000) : null;
}

async function main() {
  // Back from the IdP's sign-out page: drop its state parameter from the URL.
  if (location.search) history.replaceState(null, '', location.pathname);
  $('signin').addEventListener('click', () => login('/'));
  $('signout').addEventListener('click', () => logout());
  $('call').addEventListener('click', callApi);
  $('auto').addEventListener('change', autoCall);

  const me = await user();
  $('status').textContent = '';
  if (!me) {
    $('signed-out').hidden = false;
    return;
  }
  $('signed-in').hidden = false;
  fill($('user'), [
    ['subject', me.sub],
    ['name', me.name ?? ''],
    ['email', me.email ?? ''],
    ['session ends', new Date(me.expires_at * 1000).toLocaleString()],
    ['idle timeout', new Date(me.idle_expires_at * 1000).toLocaleTimeString()],
  ]);
  await callApi();
  setInterval(tick, 250);
  autoCall();
}

main().catch((e) => { $('status').textContent = `Something went wrong: ${e.message}`; });
