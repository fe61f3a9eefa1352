// The configuration a test harness gets from Python (tests/node_process.py): the path of a JSON file, or (for a
// small one, bench/sync_replication.py) the JSON itself. A file, because the UI text in both languages alone is past
// the 128 KiB one command-line argument may hold (Linux MAX_ARG_STRLEN).
import { readFileSync } from "node:fs";

export function loadConfig(argument) {
  return JSON.parse(argument.trimStart().startsWith("{") ? argument : readFileSync(argument, "utf8"));
}
