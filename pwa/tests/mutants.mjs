// The mutants of one PWA module, made by StrykerJS's instrumenter (tests/mutation/js.py runs them, issue 23):
// `node pwa/tests/mutants.mjs MODULE OUT` writes MODULE instrumented to OUT (every mutant in it, switched on by the
// environment variable __STRYKER_ACTIVE_MUTANT__=<id>, as Stryker's command runner does) and prints its mutants as
// JSON: [{id, mutator, start: [line, column], end: [line, column], replacement}], lines from 1, columns from 0.
import { readFile, writeFile } from "node:fs/promises";
import { Instrumenter } from "@stryker-mutator/instrumenter";

const [module, out] = process.argv.slice(2);
const quiet = { debug() {}, info() {}, warn: console.error, error: console.error, isDebugEnabled: () => false,
  isTraceEnabled: () => false, isInfoEnabled: () => false };
const { files, mutants } = await new Instrumenter(quiet).instrument(
  [{ name: module, mutate: true, content: await readFile(module, "utf8") }],
  { plugins: null, excludedMutations: [], ignorers: [] });
await writeFile(out, files[0].content);
const at = ({ line, column }) => [line + 1, column];
process.stdout.write(JSON.stringify(mutants.map((m) => ({ id: m.id, mutator: m.mutatorName, start: at(m.location.start),
  end: at(m.location.end), replacement: m.replacement }))));
