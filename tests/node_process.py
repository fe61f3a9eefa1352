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
        # The configuration goes in a file (pwa/tests/harness_config.mjs reads it): a command-line argument may
        # hold at most 128 KiB, less than the UI messages the template renderer is given.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as file:
            json.dump(config, file)
        self.config_file = Path(file.name)
        self.process = subprocess.Popen(["node", str(script), str(self.config_file)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self, timeout: float = 10) -> None:
        self.config_file.unlink(missing_ok=True)
        if self.process.poll() is not None:
            return
        assert self.process.stdin
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # e.g. a live replication keeps Node's event loop busy
            self.process.kill()
            self.process.wait()
