// node --test pwa/tests/: offline/validation.js over the shared vectors (tests/vectors/validation.json, which
// tests/test_error_vectors.py holds the Python side to), with the one declaration as the server exports it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { attributeErrors, characters, fieldErrors, firstCharacters } from "../offline/validation.js";

const root = new URL("../../", import.meta.url);
const vectors = JSON.parse(await readFile(new URL("tests/vectors/validation.json", root), "utf8"));
// /schema.json, from the declaration itself (server/domain/declaration.py export_json): never a copy that can drift.
const schema = JSON.parse(execFileSync(new URL(".venv/bin/python", root).pathname,
  ["-c", "import json; from server.domain.declaration import export_json; print(json.dumps(export_json()))"],
  { cwd: root, encoding: "utf8" }));

// The vectors' conventions: `set` null removes a field, "LONG:n" is n times 字 and "LONG:n:c" n times the character
// c, `null` lists fields sent as null (tests/test_error_vectors.py).
function long(value) {
  if (typeof value !== "string" || !value.startsWith("LONG:")) return value;
  const [count, char = "字"] = value.slice("LONG:".length).split(":");
  return char.repeat(Number(count));
}

function documentOf({ base, set, null: nulls = [] }) {
  const doc = { ...vectors.bases[base] };
  for (const [name, value] of Object.entries(set)) {
    if (value === null) delete doc[name];
    else doc[name] = long(value);
  }
  for (const name of nulls) doc[name] = null;
  return doc;
}

for (const vector of vectors.vectors) {
  test(`a form's fields: ${vector.name}`, () => {
    assert.deepEqual(fieldErrors(schema, documentOf(vector)), vector.errors);
  });
}

for (const vector of vectors.attributes) {
  test(`a category's questions: ${vector.name}`, () => {
    const answers = Object.fromEntries(Object.entries(vector.answers).map(([code, value]) => [code, long(value)]));
    assert.deepEqual(attributeErrors(vectors.category, answers), vector.errors);
  });
}

// Offline, a text field's length is judged on text only: a value of another type (no form sends one) is the sync
// gateway's to refuse (declaration.validate: err_not_string), not a length to count.
test("a text field's length is judged on text only", () => {
  const visit = documentOf({ base: "visit", set: {} });
  const max = schema.types.visit.fields.notes.max_length;
  assert.deepEqual(fieldErrors(schema, { ...visit, notes: Array(max + 1).fill("x") }), {});
  assert.deepEqual(fieldErrors(schema, { ...visit, notes: "x".repeat(max + 1) }), { notes: { key: "err_too_long",
    params: { max } } });
});

// What the offline pages cut a typed text to is what Python's [:n] keeps: whole characters, never half an emoji.
test("text is counted and cut in characters, as Python does", () => {
  assert.equal(characters("家🏠a"), 3);
  assert.equal(firstCharacters("🏠🏠🏠", 2), "🏠🏠");
  assert.equal(firstCharacters("家🏠", 5), "家🏠");
  assert.equal(firstCharacters("", 3), "");
});
