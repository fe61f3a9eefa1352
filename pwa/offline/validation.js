// The checks of server/domain/declaration.py `validate` that a form can break, from the one declaration
// (/schema.json): required fields, text lengths, choices. Errors are the server's (server/domain/errors.py):
// {field: {key, params}}, rendered by templates/_errors.html. tests/vectors/validation.json pins that both sides
// give the same answers (tests/test_error_vectors.py runs it here and in Python). The sync gateway checks
// everything again when the document arrives.

export const fieldError = (key, params = {}) => ({ key, params });

const notAChoice = (f, value) => fieldError("err_not_choice", { value, choices: f.choices.join(", ") });

export function fieldErrors(schema, doc) {
  const errors = {};
  for (const [name, f] of Object.entries(schema.types[doc.type].fields)) {
    const value = doc[name];
    if (value === undefined || value === null) {
      if (f.required) errors[name] = fieldError("err_required");
    } else if (f.kind === "text" && typeof value === "string" && value.length > f.max_length) {
      errors[name] = fieldError("err_too_long", { max: f.max_length });
    } else if (f.kind === "enum" && !f.choices.includes(value)) {
      errors[name] = notAChoice(f, value);
    } else if (f.kind === "list" && f.choices && Array.isArray(value) && value.some((v) => !f.choices.includes(v))) {
      errors[name] = notAChoice(f, value.find((v) => !f.choices.includes(v)));
    }
  }
  return errors;
}
