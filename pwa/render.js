// The server's templates (server/web/templates/) rendered in the browser with Nunjucks,
// configured to produce byte-identical HTML to Jinja2 as server/web/app.py sets it up.
// Used by the service worker offline and by the parity test (tests/test_template_parity.py).
// `nunjucks` is passed in: the service worker has it as a global from /vendor/, Node imports it.

// markupsafe's escaping (Jinja2), not Nunjucks' own ("&quot;", and it escapes backslashes).
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;" };
const escapeHTML = (text) => text.replace(/[&<>"']/g, (ch) => ESCAPES[ch]);

// Jinja2's urlencode quotes like Python's urllib.parse.quote(safe="/").
const urlencode = (value) =>
  encodeURIComponent(String(value ?? "")).replace(/%2F/g, "/")
    .replace(/[!'()*]/g, (ch) => "%" + ch.charCodeAt(0).toString(16).toUpperCase());

// server/web/app.py's `localtime` filter: an ISO timestamp as local "YYYY-MM-DD HH:MM" (LINLI_TIMEZONE).
export function localTime(timeZone) {
  const format = new Intl.DateTimeFormat("en-CA", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  return (iso) => {
    if (!iso) {
      return "";
    }
    const parts = Object.fromEntries(format.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
  };
}

// server/domain/i18n.py's translator: a missing key shows the key; `t("k", name=v)` (Nunjucks passes keyword
// arguments as an object) or `t("k", {name: v})` (an error's params, server/domain/errors.py) fills "{name}".
export function translator(messages) {
  return (key, params) => {
    const text = messages[key] ?? key;
    if (!params || typeof params !== "object") {
      return text;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  };
}

// A Nunjucks environment rendering like Jinja2 does on the server.
// `loader` is a Nunjucks loader of the template files; `timeZone` is LINLI_TIMEZONE.
// `strict` (tests only): printing an undefined variable is an error, as for Jinja2 in tests (tests/conftest.py).
export function templateEnvironment(nunjucks, loader, { timeZone, strict = false }) {
  nunjucks.lib.escape = escapeHTML; // the runtime escapes output through lib.escape
  if (strict) { // Nunjucks' own check refuses null too, which Jinja2 prints as "" (app.py _finalize_none)
    nunjucks.runtime.ensureDefined = (value, line, column) => {
      if (value === undefined) {
        throw new nunjucks.lib.TemplateError("undefined value printed", line + 1, column + 1);
      }
      return value;
    };
  }
  const env = new nunjucks.Environment(loader, { autoescape: true, throwOnUndefined: strict });
  env.addFilter("urlencode", urlencode);
  env.addFilter("localtime", localTime(timeZone));
  env.addTest("none", (value) => value === null || value === undefined);
  return env;
}

// The context every page gets (server/web/app.py `_template_context`), then the page's own.
export function pageContext(common, messages, context) {
  return { ...common, t: translator(messages), ...context };
}

// What every offline page knows of the signed-in user, from /pwa/session.json (server/web/pwa_routes.py).
export function sessionContext(session) {
  return { lang: session.lang, csrf_token: session.csrf_token, user: session.user, display: session.display,
           time_zone: session.time_zone, works_offline: session.works_offline, assets: session.assets };
}
