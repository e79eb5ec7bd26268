/// <reference types="vitest/config" />
// Builds the debug page (index.html) and the reference service's upload page (upload.html) into
// otel_rag/web/static/, which the Python package serves. Relative asset URLs: the server sets <base href>.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: resolve(__dirname, "../otel_rag/web/static"),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: { index: resolve(__dirname, "index.html"), upload: resolve(__dirname, "upload.html") },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.tsx", "src/**/*.test.ts"],
    setupFiles: ["src/test-setup.ts"],
  },
});
