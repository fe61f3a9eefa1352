"""A Node script the tests talk to in JSON lines: one message per line on its stdin, one answer per line on its
stdout. The phones (sync_harness.Phone), the offline pages (test_page_parity.Offline) and the Nunjucks renderer
(test_template_parity.Nunjucks) are each one such process, started once and asked many times."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from server.store.config import PROJECT_ROOT


class NodeProcess:
    def __init__(self, script: Path, config: dict[str, Any]) -> None:
        # In a file (pwa/tests/config.mjs): one argument holds at most 128 KiB (Linux MAX_ARG_STRLEN), and the UI text
        # in both languages (the renderers' `messages`) is past that.
        self.config = tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8")  # noqa: SIM115 - kept open
        json.dump(config, self.config, ensure_ascii=False)
        self.config.flush()
        self.process = subprocess.Popen(["node", str(script), self.config.name],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self, timeout: float = 10) -> None:
        self.config.close()
        if self.process.poll() is not None:
            return
        assert self.process.stdin
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # e.g. a live replication keeps Node's event loop busy
            self.process.kill()
            self.process.wait()
