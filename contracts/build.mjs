// Compiles contracts/src with the pinned solc (npm) and OpenZeppelin from node_modules into
// gateway/chain/artifacts/<Contract>.json (package data, so an installed gateway has them)
// ({contractName, sourceName, abi, bytecode,
// deployedBytecode, compiler}). `node build.mjs --check` compiles and fails when the
// committed artifacts differ from a fresh compile.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = path.dirname(new URL(import.meta.url).pathname);
const srcDir = path.join(root, "src");
const outDir = path.join(root, "..", "gateway", "chain", "artifacts");
const check = process.argv.includes("--check");

const walk = (dir) =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith(".sol") ? [path.join(dir, e.name)] : []);

const sources = Object.fromEntries(
  walk(srcDir).sort().map((file) => [path.relative(root, file), { content: fs.readFileSync(file, "utf8") }]));

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const findImports = (importPath) => {
  const candidate = path.join(root, "node_modules", importPath);
  return fs.existsSync(candidate) ? { contents: fs.readFileSync(candidate, "utf8") } : { error: `not found: ${importPath}` };
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

let stale = 0;
fs.mkdirSync(outDir, { recursive: true });
for (const [sourceName, contracts] of Object.entries(output.contracts)) {
  for (const [contractName, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object || !sourceName.startsWith("src/")) continue; // interfaces, libraries
    const artifact = {
      contractName,
      sourceName,
      compiler: `solc ${solc.version()}`,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    };
    const file = path.join(outDir, `${contractName}.json`);
    const text = `${JSON.stringify(artifact, null, 2)}\n`;
    if (check) {
      if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) {
        console.error(`stale artifact: ${path.relative(root, file)}`);
        stale += 1;
      }
    } else {
      fs.writeFileSync(file, text);
      console.log(`wrote ${path.relative(root, file)}`);
    }
  }
}
process.exit(stale ? 1 : 0);
