// The offline app's form checks over the shared behaviour vectors (tests/test_error_vectors.py).
// stdin: JSON {"schema": /schema.json, "docs": [...]} or {"category": {...}, "answers": [...]};
// stdout: JSON [fieldErrors(schema, doc), ...] or [attributeErrors(category, answers), ...].
import { attributeErrors, fieldErrors } from "../offline/validation.js";

let input = "";
for await (const chunk of process.stdin) {
  input += chunk;
}
const { schema, docs, category, answers } = JSON.parse(input);
const results = docs ? docs.map((doc) => fieldErrors(schema, doc)) : answers.map((a) => attributeErrors(category, a));
process.stdout.write(JSON.stringify(results));
