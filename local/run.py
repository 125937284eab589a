"""``make run``: the whole service on one machine, offline.

Parts, in start order: the AWS emulator (moto server on loopback), the DynamoDB tables
(created from the PynamoDB models when absent), and the HTTP API (``chalice local``).
Ctrl-C or SIGTERM stops them all.

Environment: ``PORT`` (API port, default 8000), ``MOTO_PORT`` (emulator port, default a
free one), ``LOG_LEVEL``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from chalicelib.bootstrap import bootstrap
from chalicelib.storage import models
from local.supervisor import ROOT, ChildProcess, Part, Supervisor, free_port

STAGE = "local"
LOG_DIR = ROOT / ".run"


def stage_environment(stage: str = STAGE) -> dict[str, str]:
    """The stage's environment from ``.chalice/config.json`` (what ``chalice local`` uses)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = config["stages"][stage].get("environment_variables", {})
    return {str(k): str(v) for k, v in env.items()}


class Tables:
    """Creates the tables in the emulator; nothing to run afterwards."""

    name = "dynamodb tables"

    def start(self) -> None:
        services = bootstrap()
        created = models.create_tables()
        print(f"[tables] created: {', '.join(created) or 'none (all present)'}")
        del services

    def stop(self) -> None:
        return None

    def alive(self) -> bool:
        return True


def build_environment(base: Mapping[str, str], emulator_url: str) -> dict[str, str]:
    env = dict(base)
    env.update(stage_environment())
    env.update(
        {
            "AWS_ENDPOINT_URL": emulator_url,
            # The emulator accepts any credentials; never pick up a real profile locally.
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": base.get("AWS_DEFAULT_REGION", "us-east-1"),
            "AWS_REGION": base.get("AWS_REGION", base.get("AWS_DEFAULT_REGION", "us-east-1")),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    if base.get("LOG_LEVEL"):
        env["LOG_LEVEL"] = base["LOG_LEVEL"]
    return env


def main() -> int:
    api_port = int(os.environ.get("PORT", "8000"))
    moto_port = int(os.environ.get("MOTO_PORT") or free_port())
    emulator_url = f"http://127.0.0.1:{moto_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = build_environment(os.environ, emulator_url)
    # In-process parts read the same settings as the children.
    os.environ.clear()
    os.environ.update(env)

    bin_dir = os.path.dirname(sys.executable)
    parts: list[Part] = [
        ChildProcess(
            "aws emulator (moto)",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            env,
            ready_url=f"{emulator_url}/moto-api/",
            # Its access log is noise next to the service's own lines.
            log_file=LOG_DIR / "emulator.log",
        ),
        Tables(),
        ChildProcess(
            "http api (chalice local)",
            [
                os.path.join(bin_dir, "chalice"),
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--stage",
                STAGE,
                "--no-autoreload",
            ],
            env,
            ready_url=f"{api_url}/api/health",
        ),
    ]

    def ready() -> None:
        print(
            "\n".join(
                [
                    "",
                    "Notification service is running (Ctrl-C stops it):",
                    f"  API          {api_url}/api/",
                    f"  health       {api_url}/api/health",
                    f"  AWS emulator {emulator_url} (log: {LOG_DIR / 'emulator.log'})",
                    "",
                ]
            ),
            flush=True,
        )

    return Supervisor(parts).run(ready)


if __name__ == "__main__":
    sys.exit(main())
