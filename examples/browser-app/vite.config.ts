// Vite builds the example app into a static folder; any web server on its own origin serves it.
// Where the API and the sign-in are is read at run time from config.json beside index.html.
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  // The dev server's address is printed (Vite's default "info" level), so it can be opened.
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
});
