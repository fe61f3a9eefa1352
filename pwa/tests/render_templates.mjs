// Renders server templates with Nunjucks for the parity test (tests/test_template_parity.py).
// argv[2]: a file holding JSON {"templates": dir, "timeZone": ..., "messages": {lang: {...}}}.
// stdin: one JSON {"template", "lang", "context"} per line; stdout: one JSON {"html"} or {"error"} per line.
import { createInterface } from "node:readline";
import nunjucks from "nunjucks";
import { pageContext, templateEnvironment } from "../render.js";
import { config } from "./harness_config.mjs";

const env = templateEnvironment(nunjucks, new nunjucks.FileSystemLoader(config.templates), { ...config, strict: true });

for await (const line of createInterface({ input: process.stdin })) {
  const { template, lang, context } = JSON.parse(line);
  let answer;
  try {
    answer = { html: env.render(template, pageContext({ lang }, config.messages[lang], context)) };
  } catch (error) {
    answer = { error: String(error.message || error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
