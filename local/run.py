"""``make run``: the whole service on one machine, offline.

Parts, in start order: the AWS emulator (moto server on loopback); the DynamoDB tables,
the send queue and its dead-letter queue (created when absent) and a development API
key; the fake provider (unless ``SENDER_URL`` is set); the HTTP API (Chalice's local
server, see ``local/api_server.py``); the schedule firing the dispatcher every
``TICK_SECONDS``; and the queue pollers feeding the sender, the fan-out workers and the
bulk imports (``local/lambda_runner.py``; the emulator's S3 tells the import queue of
each uploaded file, as S3 does in AWS).
Ctrl-C or SIGTERM stops them all. ``--no-api`` (``make emulator``) starts all of it but
the HTTP API, for ``chalice local --stage local`` to serve it.

Environment: ``PORT`` (API port, default 8000), ``MOTO_PORT`` (emulator port, default
4800, the one the ``local`` stage of ``.chalice/config.json`` names; ``make run`` takes a
free one when 4800 is busy), ``API_KEY`` (the development key to accept; generated when unset),
``SENDER_URL`` and ``SENDER_TOKEN`` (the provider; the fake one when unset),
``TICK_SECONDS`` (default 5), ``SENDER_CONCURRENCY`` (queue pollers, default 4),
``FANOUT_WORKERS`` (fan-out queue pollers, default 1),
``FAKE_PROVIDER_PORT``, ``FAKE_PROVIDER_LATENCY_MS`` and ``FAKE_PROVIDER_FAILURE_RATE``,
``LOG_LEVEL``, ``LOG_STYLE`` (``pretty`` by default here, ``json`` as in Lambda),
``FRESH`` (``1``: discard the data kept from earlier runs and start empty).

The data (tables and queued jobs) and the generated development key are kept across
restarts in the run folder (``local/state.py``), outside the project; see
``local/journal.py`` for how.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping

from chalicelib.bootstrap import bootstrap
from chalicelib.domain.api_keys import KEY_PREFIX
from local.fake_provider import FakeProvider, FakeProviderState
from local.lambda_runner import QueueRunner, ScheduleRunner, StreamRunner
from local.resources import ensure_resources
from local.state import data_dir, development_key_file, emulator_url_file, state_dir
from local.supervisor import (
    ROOT,
    ChildProcess,
    Part,
    PortInUse,
    Supervisor,
    check_ports,
    free_port,
)

STAGE = "local"
# The emulator's port unless MOTO_PORT says otherwise: the `local` stage's
# AWS_ENDPOINT_URL in .chalice/config.json, so that plain `chalice local` finds it.
DEFAULT_MOTO_PORT = 4800


def stage_environment(stage: str = STAGE) -> dict[str, str]:
    """The stage's environment from ``.chalice/config.json`` (what ``chalice local`` uses)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = config["stages"][stage].get("environment_variables", {})
    return {str(k): str(v) for k, v in env.items()}


def count_audience_once() -> None:
    """Kept data may hold clients from before the preview's counters existed: count them
    once (tools/recount_audience.py); the stage is then marked, and writes keep it exact."""
    from chalicelib.storage import audience  # noqa: PLC0415 - bound by ensure_resources

    if not audience.counted():
        counts = audience.recount(now_ms=int(time.time() * 1000))
        print(f"[bootstrap] audience counters rebuilt: {len(counts)} counters")


class Bootstrap:
    """Creates tables and queues, registers the development key; then has nothing to run."""

    name = "tables, queues and development key"

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def start(self) -> None:
        services = bootstrap()
        created = ensure_resources(services)
        print(f"[bootstrap] tables created: {', '.join(created) or 'none (all present)'}")
        count_audience_once()
        services.api_keys.ensure("development", self.api_key)

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


def port_available(port: int) -> bool:
    """Whether a server could listen on ``port`` now (connections in TIME-WAIT do not count,
    as they do not for the emulator, which sets SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def choose_moto_port(requested: str | None, *, strict: bool) -> int:
    """MOTO_PORT when set; else the default, or (``make run`` only) a free port if it is busy."""
    if requested:
        return int(requested)
    if port_available(DEFAULT_MOTO_PORT):
        return DEFAULT_MOTO_PORT
    if strict:
        raise SystemExit(
            f"port {DEFAULT_MOTO_PORT} (the emulator of `chalice local --stage local`) is in use:"
            " stop what holds it (another `make run`/`make emulator`?)"
        )
    port = free_port()
    print(
        f"[run] port {DEFAULT_MOTO_PORT} is in use: the emulator takes {port}"
        " (plain `chalice local` will not find it)",
        flush=True,
    )
    return port


def development_key(requested: str | None) -> tuple[str, str]:
    """``API_KEY`` when set; else the key generated on an earlier run; else a new one,
    kept (readable by its owner only) so that scripts and shells keep working after a
    restart. Returns the key and where it came from."""
    if requested:
        return requested, "API_KEY"
    kept = development_key_file()
    if kept.exists():
        key = kept.read_text().strip()
        if key.startswith(KEY_PREFIX):
            return key, f"kept in {kept}"
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.touch(mode=0o600)
    kept.chmod(0o600)  # before the key is in it, whatever the file was before
    kept.write_text(key + "\n")
    return key, f"new, kept in {kept}"


def fresh_requested(value: str | None) -> bool:
    return (value or "").strip().lower() not in {"", "0", "no", "false"}


def data_line(fresh: bool) -> str:
    """The banner's word on the data: kept from earlier runs (how much), or started empty."""
    folder = data_dir()
    if fresh:
        return f"started empty (FRESH=1), kept from now on in {folder}"
    try:
        restored = json.loads((folder / "restored.json").read_text())
    except (OSError, ValueError):
        return f"kept across restarts in {folder}"
    if not any(restored.get(figure) for figure in ("items", "jobs", "records")):
        return f"started empty (nothing kept yet), kept across restarts in {folder}"
    return (
        f"restored {restored['items']} items and {restored['jobs']} queued jobs"
        f" in {restored['seconds']:g}s from {folder}; FRESH=1 starts empty"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.run", description=__doc__)
    parser.add_argument(
        "--no-api",
        action="store_true",
        help="everything but the HTTP API (make emulator; serve it with chalice local)",
    )
    args = parser.parse_args(argv)
    with_api = not args.no_api
    api_port = int(os.environ.get("PORT", "8000"))
    moto_port = choose_moto_port(os.environ.get("MOTO_PORT"), strict=not with_api)
    emulator_url = f"http://127.0.0.1:{moto_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    api_key, key_origin = development_key(os.environ.get("API_KEY"))
    fresh = fresh_requested(os.environ.get("FRESH"))
    tick = float(os.environ.get("TICK_SECONDS") or 5)
    concurrency = int(os.environ.get("SENDER_CONCURRENCY") or 4)
    # One: the emulator is CPU-bound, so more workers add no speed here (docs/performance.md,
    # "Fan-out"), only jobs ahead of a mailing started later.
    fanout_workers = int(os.environ.get("FANOUT_WORKERS") or 1)
    env = build_environment(os.environ, emulator_url)
    env.pop("API_KEY", None)  # the key lives in the table, not in the children's env
    env.pop("FRESH", None)
    env.setdefault("LOG_STYLE", "pretty")  # a person reads these; LOG_STYLE=json for CloudWatch's
    provider_port = int(os.environ.get("FAKE_PROVIDER_PORT") or 0)
    fake = not os.environ.get("SENDER_URL")
    provider: FakeProvider | None = None
    try:
        # Before anything starts: another process on one of these ports (a stack killed
        # with its children left running, say) would otherwise answer in their place.
        check_ports(
            {
                **({api_port: "the API, PORT"} if with_api else {}),
                moto_port: "the AWS emulator, MOTO_PORT",
                **({provider_port: "the fake provider, FAKE_PROVIDER_PORT"} if fake else {}),
            }
        )
    except PortInUse as error:
        print(f"[supervisor] start-up failed: {error}", file=sys.stderr)
        return 1
    if fake:
        try:
            provider = FakeProvider(
                port=provider_port,
                state=FakeProviderState(
                    latency_ms=float(os.environ.get("FAKE_PROVIDER_LATENCY_MS") or 0),
                    failure_rate=float(os.environ.get("FAKE_PROVIDER_FAILURE_RATE") or 0),
                    token=env.setdefault("SENDER_TOKEN", "local-sender-token"),
                ),
            )
        except OSError as error:  # taken between the check and the bind
            print(
                f"[supervisor] start-up failed: port {provider_port} (the fake provider,"
                f" FAKE_PROVIDER_PORT): {error.strerror}",
                file=sys.stderr,
            )
            return 1
        env["SENDER_URL"] = provider.url
    # In-process parts read the same settings as the children.
    os.environ.clear()
    os.environ.update(env)
    run_dir = state_dir()
    url_file = emulator_url_file()

    if not fresh and (data_dir() / "snapshot.jsonl").exists():
        print(f"[run] restoring the data kept in {data_dir()}", flush=True)
    parts: list[Part] = [
        ChildProcess(
            "aws emulator (moto)",
            [
                *(sys.executable, "-m", "local.emulator", "-H", "127.0.0.1", "-p", str(moto_port)),
                *("--data", str(data_dir())),
                *(["--fresh"] if fresh else []),
            ],
            env,
            ready_url=f"{emulator_url}/moto-api/",
            # Replaying the kept data takes time in proportion to it (docs/performance.md).
            ready_timeout=600,
            # Its access log is noise next to the service's own lines.
            log_file=run_dir / "emulator.log",
            ports=[moto_port],
        ),
        Bootstrap(api_key),
        *([provider] if provider else []),
        *([api_server(env, api_port, api_url)] if with_api else []),
        ScheduleRunner(tick_seconds=tick),
        QueueRunner(concurrency=concurrency),
        QueueRunner(fanout_workers, handler="fan_out", batch_size=1, timeout_seconds=60),
        # One import at a time, with the import function's timeout (.chalice/config.json).
        QueueRunner(1, handler="import_files", batch_size=1, timeout_seconds=300),
        StreamRunner(),
    ]

    def ready() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        url_file.write_text(emulator_url)
        if with_api:
            head = [
                "Notification service is running (Ctrl-C stops it):",
                f"  API          {api_url}/api/",
                f"  health       {api_url}/api/health",
            ]
        else:
            head = [
                "The local stack but its HTTP API is running (Ctrl-C stops it).",
                "Serve the API in another terminal: .venv/bin/chalice local --stage local"
                + ("" if api_port == 8000 else f" --port {api_port}"),
            ]
        print(
            "\n".join(
                [
                    "",
                    *head,
                    f"  API key      {api_key} ({key_origin})",
                    f"  try          curl -H 'Authorization: Bearer {api_key}' \\",
                    f"                    {api_url}/api/clients/",
                    f"  AWS emulator {emulator_url}",
                    f"  run files    {run_dir} (emulator.log)",
                    f"  data         {data_line(fresh)}",
                    f"  provider     {env['SENDER_URL']}"
                    + (" (built-in fake: GET /calls lists the sends)" if provider else ""),
                    f"  schedule     every {tick:g}s; {concurrency} queue pollers",
                    "",
                ]
            ),
            flush=True,
        )

    try:
        return Supervisor(parts).run(ready)
    finally:
        url_file.unlink(missing_ok=True)


def api_server(env: Mapping[str, str], api_port: int, api_url: str) -> ChildProcess:
    return ChildProcess(
        "http api (chalice local server)",
        [
            sys.executable,
            "-m",
            "local.api_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--stage",
            STAGE,
        ],
        env,
        ready_url=f"{api_url}/api/health",
        ports=[api_port],
    )


if __name__ == "__main__":
    sys.exit(main())
