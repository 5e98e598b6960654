import { api, user, login, logout } from '/auth/client.js';

const me = await user();                  // {authenticated: true, sub, name, email, expires_at, idle_expires_at} or null
if (!me) login();                         // → /auth/login?return_to=<this page>, and back
const orders = await (await api('/api/orders')).json();   // cloakroom adds the bearer
await api('/api/orders', { method: 'POST', body: JSON.stringify(order),
                           headers: { 'Content-Type': 'application/json' } });
await logout();                           // ends the session here and at the IdP
