"""Hold what an emulator sends to what the real service sends: at least the keys, and their types.

Not equality: values differ (ids, times, text) and an emulator may send more. What fails:
- a key of the real sample that the emulator's output lacks (`message.team: missing`);
- a different JSON type at the same place (`message.team: string in the sample, object here`).
A null in the sample accepts anything. Lists compare their elements' shapes: an element with a
`type` against the sample's element of the same type, else against the keys every kind of element
in the sample has. Blocks (anything under a `blocks` list) are the app's own content: there only
what Slack adds to them is required (block ids and text defaults), types are checked everywhere.
`state.values` is a map keyed by the app's block and action ids: its leaves compare by type.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
# In blocks, what Slack itself puts there (or requires): the rest is whatever the app sent.
SLACK_ADDS_IN_BLOCKS = frozenset({"type", "block_id", "emoji", "verbatim", "optional", "dispatch_action"})


def sample(name: str) -> Any:
    """A real sample by its path under tests/conformance/ (without .json)."""
    return json.loads((HERE / f"{name}.json").read_text())


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shape_problems(real: Any, ours: Any, optional: tuple[str, ...] = (), path: str = "") -> list[str]:
    """Where `ours` lacks a key of `real` or has another JSON type there. `optional` holds path
    patterns (fnmatch, lists as `[*]`) that the real service sends only in some contexts: there a
    missing key or a null is accepted (say why next to each, in the test)."""
    return _Walk(optional).compare(real, ours, path)


def type_problems(union: Any, ours: Any, path: str = "") -> list[str]:
    """Where `ours` has a key that a union-of-fields sample (every key ever seen, blank values)
    also has, with another JSON type. Missing keys are fine: a union is no one real payload."""
    problems: list[str] = []
    if union is None or ours is None:
        return problems
    if json_type(union) != json_type(ours):
        return [f"{path or '(top)'}: {json_type(union)} in the sample, {json_type(ours)} here"]
    if isinstance(union, dict):
        for key, value in union.items():
            if key in ours:
                problems += type_problems(value, ours[key], _join(path, key))
    elif isinstance(union, list) and union:
        for i, item in enumerate(ours):
            match = _same_type(union, item) or union[0]
            problems += type_problems(match, item, f"{path}[{i}]")
    return problems


class _Walk:
    def __init__(self, optional: tuple[str, ...]) -> None:
        self.optional = optional

    def _optional(self, path: str) -> bool:
        generic = _generic(path)
        return any(fnmatch.fnmatchcase(generic, p.replace("[*]", "<i>")) for p in self.optional)

    def compare(self, real: Any, ours: Any, path: str) -> list[str]:
        if real is None:
            return []
        if ours is None and self._optional(path):
            return []
        if json_type(real) != json_type(ours):
            return [f"{path or '(top)'}: {json_type(real)} in the sample, {json_type(ours)} here"]
        if isinstance(real, dict):
            if _in_blocks(path) and "type" in real and real.get("type") != ours.get("type"):
                real = {"type": real["type"]}  # another kind of object: only its type is common
            if path.endswith("state.values"):
                return self._state_values(real, ours, path)
            problems = []
            for key, value in real.items():
                where = _join(path, key)
                if key in ours:
                    problems += self.compare(value, ours[key], where)
                elif not self._optional(where) and (not _in_blocks(where) or key in SLACK_ADDS_IN_BLOCKS):
                    problems.append(f"{where}: missing")
            return problems
        if isinstance(real, list):
            return self._list(real, ours, path)
        return []

    def _list(self, real: list[Any], ours: list[Any], path: str) -> list[str]:
        if not real:
            return []
        problems = []
        for i, item in enumerate(ours):
            where = f"{path}[{i}]"
            if all(isinstance(r, dict) and "type" in r for r in real) and isinstance(item, dict):
                match = _same_type(real, item)
                if match is None:
                    match = _common(real)
                problems += self.compare(match, item, where)
            else:
                problems += self.compare(real[0], item, where)
        return problems

    def _state_values(self, real: dict[str, Any], ours: dict[str, Any], path: str) -> list[str]:
        leaves = [leaf for block in real.values() if isinstance(block, dict) for leaf in block.values()]
        problems = []
        for block_id, actions in ours.items():
            if not isinstance(actions, dict):
                problems.append(f"{path}.{block_id}: object in the sample, {json_type(actions)} here")
                continue
            for action_id, leaf in actions.items():
                match = _same_type(leaves, leaf) if isinstance(leaf, dict) else None
                problems += self.compare(match or {"type": ""}, leaf, f"{path}.{block_id}.{action_id}")
        return problems


def _same_type(items: list[Any], item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    return next((r for r in items if isinstance(r, dict) and r.get("type") == item.get("type")), None)


def _common(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The keys every kind of element has. With one kind in the sample there is no telling which
    keys belong to the kind: then only `type` (and, for blocks, `block_id`)."""
    kinds = {str(r.get("type")) for r in items}
    if len(kinds) < 2:
        return {k: v for k, v in items[0].items() if k in ("type", "block_id")}
    keys = set.intersection(*(set(r) for r in items))
    return {k: items[0][k] for k in items[0] if k in keys}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _generic(path: str) -> str:
    """messages[3].blocks[0] -> messages<i>.blocks<i>, which an optional pattern's `[*]` matches
    (fnmatch would read `[*]` as a character class)."""
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
            out.append("<i>")
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _in_blocks(path: str) -> bool:
    return ".blocks[" in path or path.startswith("blocks[")


# The Web API spec (Swagger 2.0) ------------------------------------------------------------------
JSON_ARGS = frozenset({"blocks", "attachments", "view", "metadata"})  # JSON in a string parameter
SPEC = HERE / "slack" / "openapi" / "slack_web_openapi_v2.json"
# Arguments Slack added after its OpenAPI spec was published (2021) that zqbo sends; each is in
# Slack's method docs today. (No method zqbo calls is newer than the spec.)
NEWER_THAN_SPEC: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"metadata"}),  # message metadata, 2022
    "chat.update": frozenset({"metadata"}),
    "conversations.history": frozenset({"include_all_metadata"}),
    # token rotation (2021, after the spec): a refresh sends these instead of a code
    "oauth.v2.access": frozenset({"grant_type", "refresh_token"}),
}
# Bolt's per-request WebClient sends team_id with every call (slack_bolt.App: `team_id=
# req.context.team_id`); Slack takes it on any method and org-wide installs need it.
ANY_METHOD_NEWER = frozenset({"team_id"})
# Methods Slack published after the spec (Sign in with Slack's OpenID Connect): the arguments
# docs.slack.dev lists for each (client credentials go in HTTP Basic auth, tokens in a header).
NEWER_METHODS: dict[str, frozenset[str]] = {
    "openid.connect.token": frozenset(
        {"client_id", "client_secret", "code", "redirect_uri", "grant_type", "refresh_token"}
    ),
    "openid.connect.userInfo": frozenset(),
    # docs.slack.dev/reference/methods/auth.teams.list: cursor, include_icon, limit (2020)
    "auth.teams.list": frozenset({"cursor", "include_icon", "limit"}),
    # files_upload_v2's two calls (2024): docs.slack.dev/reference/methods/files.getUploadURLExternal
    # and …/files.completeUploadExternal
    "files.getUploadURLExternal": frozenset({"filename", "length", "alt_txt", "snippet_type"}),
    "files.completeUploadExternal": frozenset(
        {"files", "channel_id", "channels", "initial_comment", "thread_ts", "blocks"}
    ),
}
# What the emulator records beside Web API calls (a refused view_submission response_action).
NOT_WEB_API = frozenset({"view_submission"})
_spec_cache: list[dict[str, Any]] = []


def slack_spec() -> dict[str, Any]:
    if not _spec_cache:
        _spec_cache.append(json.loads(SPEC.read_text()))
    return _spec_cache[0]


def calls_off_spec(emulator: Any) -> list[str]:
    """Every Web API call recorded by a SlackEmulator that does not fit the spec."""
    problems: list[str] = []
    for call in list(emulator.calls):
        if call.method in NOT_WEB_API:
            continue
        if call.method in NEWER_METHODS:
            extra = sorted(set(call.args) - NEWER_METHODS[call.method] - {"token"})
            problems += [f"{call.method}: {name} is not an argument of {call.method}" for name in extra]
            continue
        newer = NEWER_THAN_SPEC.get(call.method, frozenset()) | ANY_METHOD_NEWER
        found = spec_problems(slack_spec(), call.method, call.args, newer)
        if call.method == "oauth.v2.access" and call.args.get("grant_type") == "refresh_token":
            found = [p for p in found if p != "oauth.v2.access: required code missing"]
        problems += found
    return sorted(set(problems))


def spec_problems(
    spec: dict[str, Any], method: str, args: dict[str, Any], newer: frozenset[str]
) -> list[str]:
    """Why a recorded call does not fit Slack's OpenAPI spec: an unknown method, a required
    argument missing, an argument the spec does not have (unless listed in `newer`: arguments
    Slack added after the spec was published), or one of the wrong type. `token` goes in the
    Authorization header (slack_sdk), which the emulator checks on every call it records as made."""
    operations = spec["paths"].get(f"/{method}")
    if operations is None:
        return [f"{method}: not in the spec"]
    params = {p["name"]: p for op in operations.values() for p in op.get("parameters", [])}
    problems = []
    for name, param in params.items():
        if param.get("required") and name != "token" and name not in args:
            problems.append(f"{method}: required {name} missing")
    for name, value in args.items():
        if name in newer:
            continue
        param = params.get(name)
        if param is None:
            problems.append(f"{method}: {name} is not an argument of {method}")
        elif not _fits(param.get("type", "string"), name, value):
            problems.append(f"{method}: {name}={value!r:.60} is not a {param.get('type')}")
    return problems


def _fits(kind: str, name: str, value: Any) -> bool:
    text = str(value).lower() if not isinstance(value, dict | list) else ""
    if kind == "boolean":
        return isinstance(value, bool) or text in ("0", "1", "true", "false")
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or text.lstrip("-").isdigit()
    if kind == "number":
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return not isinstance(value, bool)
    if kind == "string":
        # the emulator decodes JSON arguments (blocks, view…) that slack_sdk sends as JSON text
        return isinstance(value, str) or (name in JSON_ARGS and isinstance(value, dict | list))
    return True
