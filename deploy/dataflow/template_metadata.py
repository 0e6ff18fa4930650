"""The flex template's metadata.json, derived from the job's own flags (ArchiveOptions):
one parameter per flag, its help text as helpText, a regex where a flag's values
have a shape (choices, true/false, numbers, run ids, Pub/Sub names).

    ArchiveOptions._add_argparse_args ─ parameters() ─ metadata() ─> deploy/dataflow/metadata.json

    python deploy/dataflow/template_metadata.py > deploy/dataflow/metadata.json

tests/test_dataflow.py fails when the committed file differs from what this prints,
so a new or changed flag cannot be forgotten in the template.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from pipeline.options import _RUN_ID, ArchiveOptions, _flag  # noqa: E402

NAME = "message-archiver"
DESCRIPTION = ("Archives every outbound campaign message (email, push, SMS, WhatsApp, MMS) as one "
               "compressed JSON object in the customer's bucket (CleverTap or Braze layout). Batch "
               "backfill from --input files, or a stream from --kafka_topic or --pubsub_subscription.")

_TRUE_FALSE = r"(?i)^(true|false|yes|no|on|off|1|0)$"
_INTEGER = r"^[0-9]+$"
_SECONDS = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
# Values with a shape of their own, beyond their type.
_SHAPES = {
    "run_id": "^" + _RUN_ID.pattern + "$",
    "pubsub_subscription": r"^projects/[^/]+/subscriptions/[^/]+$",
    "default_region": r"^[A-Za-z]{2}$",
    "storage_options": r"^\{[\s\S]*\}$",
    "expansion_service": r"^\S+:[0-9]+$",
}


def job_flags() -> list[argparse.Action]:
    """ArchiveOptions' flags, in the order --help lists them."""
    parser = argparse.ArgumentParser(add_help=False)
    ArchiveOptions._add_argparse_args(parser)
    return list(parser._actions)


def regexes(action: argparse.Action) -> list[str]:
    if action.dest in _SHAPES:
        return [_SHAPES[action.dest]]
    if action.choices:
        return ["^(" + "|".join(re.escape(str(c)) for c in action.choices) + ")$"]
    if action.type is _flag:
        return [_TRUE_FALSE]
    if action.type is int:
        return [_INTEGER]
    if action.type is float:
        return [_SECONDS]
    return []


def parameters() -> list[dict]:
    found = []
    for action in job_flags():
        parameter = {"name": action.dest, "label": action.dest.replace("_", " ").capitalize(),
                     "helpText": action.help, "isOptional": True}
        if regexes(action):
            parameter["regexes"] = regexes(action)
        found.append(parameter)
    return found


def metadata() -> dict:
    return {"name": NAME, "description": DESCRIPTION, "parameters": parameters()}


def render() -> str:
    return json.dumps(metadata(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
