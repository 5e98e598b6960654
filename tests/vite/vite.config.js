// vite.config.js
import { defineConfig } from 'vite';

// cloakroom serves /auth/client.js, not Vite: the import stays as written,
// in `vite build`'s bundle too, and the browser gets the module from cloakroom.
const cloakroomClient = {
  name: 'cloakroom-client',
  resolveId: (id) => (id === '/auth/client.js' ? { id, external: true } : null),
  // The dev server preloads what a page imports; not this one.
  load: (id) => (id === '/auth/client.js' ? '' : null),
};

export default defineConfig({
  plugins: [cloakroomClient],
  // 127.0.0.1, where cloakroom's route points: `localhost` may be ::1 alone.
  server: { host: '127.0.0.1', port: 5173, strictPort: true, hmr: { clientPort: 8080 } },
});
