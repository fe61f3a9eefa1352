// The offline app's form checks over the shared behaviour vectors (tests/test_error_vectors.py).
// stdin: JSON {"schema": /schema.json, "docs": [...]}; stdout: JSON [fieldErrors(schema, doc), ...].
import { fieldErrors } from "../offline/validation.js";

let input = "";
for await (const chunk of process.stdin) {
  input += chunk;
}
const { schema, docs } = JSON.parse(input);
process.stdout.write(JSON.stringify(docs.map((doc) => fieldErrors(schema, doc))));
