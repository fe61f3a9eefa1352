// The JSON configuration a test harness is started with, read from the file named by argv[2]
// (tests/node_process.py writes it: one command-line argument may hold at most 128 KiB, and the UI
// messages the template renderer needs are more than that).
import { readFileSync } from "node:fs";

export const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
