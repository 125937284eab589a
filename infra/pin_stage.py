"""Pin a packaged template to the stage it was packaged for.

``chalice package --stage dev`` bakes the dev stage's environment (table names, queue,
token parameter) into the functions, while the merged ``infra/template.yaml`` names its
resources from the ``Stage`` parameter. Pinning makes the parameter default to that
stage and accept nothing else, so a dev package can never be deployed as prod with
functions pointing at dev's tables.

    python -m infra.pin_stage build/dev/sam.yaml dev
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml


def pin_stage(template: dict[str, Any], stage: str) -> dict[str, Any]:
    parameter = template["Parameters"]["Stage"]
    if stage not in parameter["AllowedValues"]:
        allowed = parameter["AllowedValues"]
        raise SystemExit(f"unknown stage {stage!r}; the template allows {allowed}")
    parameter["AllowedValues"] = [stage]
    parameter["Default"] = stage
    return template


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared objects out in full: CloudFormation reads no YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.pin_stage", description=__doc__)
    parser.add_argument("template", type=Path, help="the packaged template (sam.yaml)")
    parser.add_argument("stage")
    args = parser.parse_args(argv)
    # `chalice package` writes intrinsic functions in their long form (Fn::Sub...), so
    # the template is plain YAML.
    template = yaml.safe_load(args.template.read_text())
    pinned = pin_stage(template, args.stage)
    args.template.write_text(yaml.dump(pinned, Dumper=_NoAliasDumper, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
