"""The conformance corpus: real payloads from published sources (README.md here), each with its
provenance in `<name>.source.yml`. Tests load samples by name and rewrite only ids, tokens, URLs
and text to reach zqbo's own data; shapes stay as the vendor sent them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
SPECS = ("openapi", "asyncapi")


@dataclass(frozen=True)
class Sample:
    name: str  # path below tests/conformance, without .json
    body: Any
    source: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.source.get("kind", ""))

    @property
    def context(self) -> str:
        return str(self.source.get("context", ""))

    @property
    def union(self) -> bool:
        """A union-of-fields catalogue (placeholder values): for shapes, never to replay as is."""
        return self.name.endswith("java_sdk_all_fields")


def load(name: str) -> Sample:
    path = HERE / f"{name}.json"
    source = yaml.safe_load(path.with_suffix(".source.yml").read_text())
    return Sample(name, json.loads(path.read_text()), source)


def names(folder: str) -> list[str]:
    return sorted(
        str(p.relative_to(HERE).with_suffix(""))
        for p in (HERE / folder).glob("*.json")
        if not any(part in SPECS for part in p.parts)
    )


def sample_files() -> list[Path]:
    """Every sample and spec (JSON, and the XML some QBO faults only come as)."""
    return sorted(p for ext in ("*.json", "*.xml") for p in HERE.rglob(ext))


def samples(folder: str) -> list[Sample]:
    return [load(n) for n in names(folder)]


def rewrite(body: Any, **paths: Any) -> Any:
    """A copy of `body` with dotted paths set (`user__id` sets user.id; `actions__0__value` the
    first action's value). Only values change: a path that is not in the sample fails, so a
    rewrite cannot add a field the vendor did not send."""
    out = copy.deepcopy(body)
    for dotted, value in paths.items():
        steps = dotted.split("__")
        node = out
        for step in steps[:-1]:
            node = node[int(step)] if isinstance(node, list) else node[step]
        last = steps[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            assert last in node, f"{dotted} is not in the sample"
            node[last] = value
    return out
