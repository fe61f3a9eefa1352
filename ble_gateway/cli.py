"""`linli-gateway run`: the BLE gateway as a long-running program (systemd, or a terminal on the tablet).

    LINLI_GATEWAY_TOKEN_FILE=/etc/linli/token LINLI_GATEWAY_BIND_KEYS_FILE=/etc/linli/bind-keys.json \\
    LINLI_GATEWAY_INSTALLATION_KEY=<printed by linli device-token issue> \\
      linli-gateway run --sync-url https://linli.example/sync/main --gateway gateway:c1-hall

Secrets come from the environment or files (`credentials.py`), never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .credentials import SecretError, bind_keys, device_token, installation_key
from .gateway import Gateway, GatewayConfig
from .rules import AlertDraft
from .uplink import Uplink

log = logging.getLogger("ble_gateway")


def _alarm_command(command: str | None) -> Callable[[AlertDraft], None]:
    def on_alarm(draft: AlertDraft) -> None:
        log.critical("LOCAL ALARM: %s from %s (%s)", draft.kind, draft.device.doc_id, draft.device.resident)
        if command:
            # A buzzer or a speaker on the tablet: the command learns what happened, never any health detail.
            env = {**os.environ, "LINLI_ALARM_KIND": draft.kind, "LINLI_ALARM_DEVICE": draft.device.doc_id,
                   "LINLI_ALARM_RESIDENT": draft.device.resident}
            subprocess.Popen(command, shell=True, env=env)  # noqa: S602 - the operator's own command
    return on_alarm


def cmd_run(args: argparse.Namespace) -> int:
    try:
        token, keys, pinned = device_token(), bind_keys(), installation_key()
    except SecretError as error:
        print(f"linli-gateway: {error}", file=sys.stderr)
        return 2
    config = GatewayConfig(gateway=args.gateway, data_dir=Path(args.data_dir), installation_key=pinned,
                           timezone=os.environ.get("LINLI_TIMEZONE", "Asia/Shanghai"),
                           stall_seconds=args.stall_seconds)
    uplink = Uplink(args.sync_url, token)
    gateway = Gateway(config, keys, uplink, on_alarm=_alarm_command(args.alarm_command))

    async def main() -> None:
        try:
            await gateway.run()
        finally:
            await uplink.close()

    log.info("gateway %s: %d devices known from the last configuration", args.gateway, len(gateway.registry))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    gateway.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linli-gateway", description="Linli's Bluetooth gateway: wristbands and "
                                     "meters → readings and alerts, through the sync gateway. Secrets: "
                                     "LINLI_GATEWAY_TOKEN(_FILE), LINLI_GATEWAY_BIND_KEYS(_FILE); pinned: "
                                     "LINLI_GATEWAY_INSTALLATION_KEY(_FILE).")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="scan, decode, apply the rules and deliver, until stopped")
    run.add_argument("--sync-url", default=os.environ.get("LINLI_GATEWAY_SYNC_URL"), required=
                     "LINLI_GATEWAY_SYNC_URL" not in os.environ, help="the sync gateway's database URL, "
                     "e.g. https://linli.example/sync/main (or LINLI_GATEWAY_SYNC_URL)")
    run.add_argument("--gateway", default=os.environ.get("LINLI_GATEWAY_ID"), required=
                     "LINLI_GATEWAY_ID" not in os.environ, help="this gateway's document id (or LINLI_GATEWAY_ID)")
    run.add_argument("--data-dir", default=os.environ.get("LINLI_GATEWAY_DATA_DIR", "data/gateway"),
                     help="where the outbox lives (default data/gateway, or LINLI_GATEWAY_DATA_DIR)")
    run.add_argument("--alarm-command", help="run on SOS and fall, with LINLI_ALARM_KIND/DEVICE/RESIDENT set")
    run.add_argument("--stall-seconds", type=float, default=120.0,
                     help="restart scanning after this long without any advertisement (default 120)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
