"""Manage API keys: create (prints the key once), list, revoke.

    python -m local.keys create NAME           # prints the new key; it is never shown again
    python -m local.keys list
    python -m local.keys revoke KEY_ID

``--stage local`` (the default) talks to ``AWS_ENDPOINT_URL`` when set, else to the emulator
of a running ``make run`` or ``make emulator``; ``--stage dev`` or ``--stage prod`` talk to
AWS with your usual credentials (``AWS_PROFILE``...), using the stage's table names from
``.chalice/config.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

import requests

from chalicelib.bootstrap import bootstrap
from chalicelib.errors import ServiceError
from chalicelib.settings import Settings
from local.run import stage_environment
from local.state import emulator_url_file


def answers(url: str) -> bool:
    try:
        requests.get(f"{url}/moto-api/", timeout=2)
    except requests.RequestException:
        return False
    return True


def settings_for(stage: str) -> Settings:
    env = dict(os.environ)
    env.update(stage_environment(stage))
    if stage == "local":
        # AWS_ENDPOINT_URL when set; else the emulator of a running `make run` or
        # `make emulator`; else the stage's default (.chalice/config.json).
        url_file = emulator_url_file()
        if os.environ.get("AWS_ENDPOINT_URL"):
            env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
        elif url_file.exists():
            url = url_file.read_text().strip()
            if not answers(url):  # left behind by a stack killed outright
                raise SystemExit(
                    f"no running emulator: {url_file} names {url}, which does not answer;"
                    " start `make run` or set AWS_ENDPOINT_URL"
                )
            env["AWS_ENDPOINT_URL"] = url
        elif not env.get("AWS_ENDPOINT_URL"):
            raise SystemExit("no running emulator: start `make run` or set AWS_ENDPOINT_URL")
        # The emulator takes any credentials; never send real ones to it.
        os.environ["AWS_ACCESS_KEY_ID"] = "local"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "local"  # noqa: S105 - emulator dummy
        os.environ.pop("AWS_PROFILE", None)
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return Settings.from_env(env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.keys", description="Manage the service's API keys."
    )
    parser.add_argument("--stage", default="local", help="local (default), dev or prod")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a new key and print it once")
    create.add_argument("name", help="who or what the key is for")
    commands.add_parser("list", help="list keys (ids and names, never the keys)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    services = bootstrap(settings_for(args.stage))
    try:
        if args.command == "create":
            issued = services.api_keys.issue(args.name)
            print(f"key_id: {issued.info.key_id}")
            print(f"key:    {issued.key}")
            print("Store the key now: only its SHA-256 is kept, it cannot be shown again.")
        elif args.command == "list":
            print(f"{'KEY_ID':<34}{'STATUS':<9}{'CREATED':<27}NAME")
            for key in sorted(services.api_keys.list(), key=lambda k: k.created_at):
                status = "revoked" if key.revoked else "active"
                created = key.created_at.isoformat(timespec="seconds")
                print(f"{key.key_id:<34}{status:<9}{created:<27}{key.name}")
        else:
            key = services.api_keys.revoke(args.key_id)
            print(f"revoked {key.key_id} ({key.name})")
    except ServiceError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
