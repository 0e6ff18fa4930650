"""JSON Schemas (draft 2020-12) of the input envelope and of each profile's archived payload.

    envelope   what archive.envelope.decode accepts (docs/envelope.md)
    clevertap  the object the clevertap profile archives
    braze      the object the braze profile archives

The files ship as package data ("archive/schemas/*.json"). jsonschema is only
needed by `validator`, so it is imported there.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

NAMES = ("envelope", "clevertap", "braze")
_SUFFIX = ".schema.json"


def load(name: str) -> dict:
    """The schema called `name` ("clevertap" or "clevertap.schema.json"), as a fresh dict."""
    return json.loads(_text(name.removesuffix(_SUFFIX)))


def validator(name: str):
    """A jsonschema Draft202012Validator for the schema called `name`."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load(name))


@lru_cache(maxsize=None)
def _text(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r} (expected one of {', '.join(NAMES)})")
    return resources.files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")
