// Vite builds the example app into a static folder; any web server on its own origin serves it.
// Where the API and the sign-in are is read at run time from config.json beside index.html.
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  logLevel: "warn",
});
