"""The HTTP API on loopback: ``chalice local`` with API Gateway's error shapes.

It loads the app exactly as ``chalice local --stage local --no-autoreload`` does and
serves it with Chalice's local server; only the gateway's own answers differ (see
``local/gateway.py``).

Usage: ``python -m local.api_server --port 8000 [--host 127.0.0.1] [--stage local]``
"""

from __future__ import annotations

import argparse
import logging
import sys

from chalice.cli.factory import CLIFactory
from chalice.deploy.validate import validate_routes
from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer

from local.gateway import SpecRequestHandler
from local.supervisor import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="local")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials..." noise
    factory = CLIFactory(project_dir=str(ROOT))
    config = factory.create_config_obj(chalice_stage_name=args.stage)
    app = config.chalice_app
    validate_routes(app.routes)  # what `chalice deploy` would refuse, refuse here too
    # As `chalice local` does (chalice.local.create_local_server): the server answers on
    # many threads, so ``app.current_request`` must be per thread, or concurrent requests
    # read each other's bodies and headers.
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    server = LocalDevServer(app, config, args.host, args.port, handler_cls=SpecRequestHandler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
