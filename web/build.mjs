// Bundles the reference page (src/main.js with viem) into the Python package's data:
// gateway/webapp/static/app.js. Deterministic: the same lock file gives the same bytes.
//   node build.mjs           write the bundle
//   node build.mjs --check   exit 1 when the committed bundle differs from a fresh build
//   node build.mjs --entry src/snippets.js --out DIR/snippets.js   another entry (tests)

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const entry = resolve(here, option("--entry", "src/main.js"));
const out = option("--out", join(here, "..", "gateway", "webapp", "static", "app.js"));

const result = await build({
  entryPoints: [entry],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  write: false,
  logLevel: "warning",
  nodePaths: [join(here, "node_modules")], // for entries outside web/ (the tests' harness)
});
const bytes = result.outputFiles[0].contents;
if (args.includes("--check")) {
  const committed = readFileSync(out);
  if (!committed.equals(Buffer.from(bytes))) {
    console.error(`${out} is not what build.mjs makes from the lock file: run make web`);
    process.exit(1);
  }
  console.log(`${out}: up to date (${bytes.length} bytes)`);
} else {
  writeFileSync(out, bytes);
  console.log(`${out}: ${bytes.length} bytes`);
}
