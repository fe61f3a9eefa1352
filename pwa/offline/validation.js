// The checks of server/domain/declaration.py `validate` that a form can break, from the one declaration
// (/schema.json): required fields, text lengths, choices. Errors are the server's (server/domain/errors.py):
// {field: {key, params}}, rendered by templates/_errors.html. tests/vectors/validation.json pins that both sides
// give the same answers (tests/test_error_vectors.py runs it here and in Python). The sync gateway checks
// everything again when the document arrives.

export const fieldError = (key, params = {}) => ({ key, params });

// Text as Python counts and cuts it (len, [:n]): in characters (code points), not JavaScript's UTF-16 units, in
// which an emoji is two: the phone then refuses or cuts nothing the server would keep.
export const characters = (text) => [...text].length;
export const firstCharacters = (text, n) => [...text].slice(0, n).join("");

const notAChoice = (f, value) => fieldError("err_not_choice", { value, choices: f.choices.join(", ") });

export function fieldErrors(schema, doc) {
  const errors = {};
  for (const [name, f] of Object.entries(schema.types[doc.type].fields)) {
    const value = doc[name];
    if (value === undefined || value === null) {
      if (f.required) errors[name] = fieldError("err_required");
    } else if (f.kind === "text" && typeof value === "string" && characters(value) > f.max_length) {
      errors[name] = fieldError("err_too_long", { max: f.max_length });
    } else if (f.kind === "enum" && !f.choices.includes(value)) {
      errors[name] = notAChoice(f, value);
    } else if (f.kind === "list" && f.choices && Array.isArray(value) && value.some((v) => !f.choices.includes(v))) {
      errors[name] = notAChoice(f, value.find((v) => !f.choices.includes(v)));
    }
  }
  return errors;
}

// server/services/service_requests.py check_attributes: the answers to a category's questions (Open311
// attributes, `attribute.<code>` fields), the first mistake as {"attribute[<code>]": {key, params}}, else {}.
export function attributeErrors(category, answers) {
  const definitions = new Map((category.attributes || []).map((a) => [a.code, a]));
  const wrong = (code, key, params) => ({ [`attribute[${code}]`]: fieldError(key, params) });
  const unknown = Object.keys(answers).filter((code) => !definitions.has(code)).sort();
  if (unknown.length) {
    return wrong(unknown[0], "err_not_a_question", { service: category.code });
  }
  for (const [code, definition] of definitions) {
    const value = answers[code];
    if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) {
      if (definition.required) {
        return wrong(code, "err_required");
      }
      continue;
    }
    const problem = answerProblem(definition, value);
    if (problem) {
      return wrong(code, ...problem);
    }
  }
  return {};
}

const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
const NOT_FINITE = /^\s*[+-]?(inf|infinity|nan)\s*$/i;
// The common shapes of Python's datetime.fromisoformat (which also takes rarer ISO forms, e.g. week dates).
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

function answerProblem(definition, value) {
  const allowed = [...(definition.values || [])].sort();
  const notAChoice = (v) => ["err_not_choice", { value: String(v), choices: allowed.join(", ") }];
  switch (definition.datatype) {
    case "number": // as Python's float(): decimal notation, or inf / nan (not finite)
      if (NOT_FINITE.test(String(value))) return ["err_not_finite", {}];
      return DECIMAL.test(String(value)) ? null : ["err_not_number", { got: Array.isArray(value) ? "list" : "str" }];
    case "datetime":
      return ISO_DATETIME.test(String(value)) ? null : ["err_not_datetime_input", {}];
    case "multivaluelist": {
      const bad = (Array.isArray(value) ? value : [value]).find((v) => !allowed.includes(v));
      return bad === undefined ? null : notAChoice(bad);
    }
    case "singlevaluelist":
      return allowed.includes(value) ? null : notAChoice(value);
    default:
      return typeof value === "string" && characters(value) <= 500 ? null : ["err_too_long", { max: 500 }];
  }
}
