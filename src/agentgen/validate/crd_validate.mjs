// Validate custom resources with @kubernetes-models, whose validators are generated from the
// projects' published CRDs. stdin: [{module, kind, doc}]; stdout: [null | "error message"].
// Usage: node crd_validate.mjs NODE_MODULES_DIR
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modulesDir = process.argv[2];
const items = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const item of items) {
  try {
    const module = await import(pathToFileURL(join(modulesDir, item.module)).href);
    new module[item.kind](item.doc).validate();
    results.push(null);
  } catch (error) {
    results.push(String(error && error.message ? error.message : error));
  }
}
process.stdout.write(JSON.stringify(results));
