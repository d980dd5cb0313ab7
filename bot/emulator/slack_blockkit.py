"""Slack's Block Kit limits, judged as Slack judges them: messages (chat.*, response_url), Home
views and modals. Each check walks the raw JSON for the limits slack_sdk does not enforce and runs
every block through slack_sdk's own models as well, so a payload Slack would refuse fails here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

# Block Kit limits: what real Slack refuses (API_FACTS.md, "Slack: text, escaping and limits") --------
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ID = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_MODAL_TITLE = 24  # title, submit and close of a modal (plain_text)
MAX_CALLBACK_ID = 255
MAX_EXTERNAL_ID = 255
MAX_PRIVATE_METADATA = 3000
MAX_INPUT_LABEL = 2000
MAX_INPUT_HINT = 2000
MAX_PLACEHOLDER = 150
MAX_TEXT_INPUT_LENGTH = 3000
TEXT_TYPES = ("mrkdwn", "plain_text")
INTERACTIVE_TYPES = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "overflow",
        "radio_buttons",
        "timepicker",
        "workflow_button",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
# What an input block may hold (a modal's form fields).
INPUT_TYPES = frozenset(
    {
        "plain_text_input",
        "number_input",
        "email_text_input",
        "url_text_input",
        "rich_text_input",
        "file_input",
        "checkboxes",
        "radio_buttons",
        "datepicker",
        "timepicker",
        "datetimepicker",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
# Errors that mean "the bot built a message Slack will not take" (see refused_calls()).
BAD_MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "invalid_arguments",
        "invalid_metadata_format",
        "invalid_metadata_schema",
    }
)


@dataclass
class MessageRefusal:
    """Why Slack would refuse a message: the error code and, for invalid_blocks, each problem."""

    error: str
    problems: list[str] = field(default_factory=list)

    def as_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.problems:
            body["errors"] = list(self.problems)
            body["response_metadata"] = {"messages": [f"[ERROR] {p}" for p in self.problems]}
        return body


def check_message(payload: dict[str, Any], *, max_blocks: int = MAX_BLOCKS) -> MessageRefusal | None:
    """A chat.* / response_url payload as Slack judges it: None when Slack would take it."""
    text = payload.get("text")
    blocks = payload.get("blocks")
    if not text and not blocks:
        return MessageRefusal("no_text")
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return MessageRefusal("msg_too_long")
    if blocks is None:
        return None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return MessageRefusal("invalid_blocks_format")
    problems = block_kit_problems(blocks, "/blocks", max_blocks)
    return MessageRefusal("invalid_blocks", problems) if problems else None


def check_modal(view: Any) -> MessageRefusal | None:
    """A views.open / views.update / response_action view as Slack judges it: None when taken.
    View-level problems answer invalid_arguments, block problems invalid_blocks."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return MessageRefusal(
            "invalid_arguments", ["a modal must be an object of type modal [json-pointer:/view/type]"]
        )
    checker = _BlockChecker()
    checker.text(view.get("title"), MAX_MODAL_TITLE, "title", "/view/title", plain_only=True)
    for key in ("submit", "close"):
        if view.get(key) is not None:
            checker.text(view[key], MAX_MODAL_TITLE, key, f"/view/{key}", plain_only=True)
    for key, limit in (
        ("callback_id", MAX_CALLBACK_ID),
        ("external_id", MAX_EXTERNAL_ID),
        ("private_metadata", MAX_PRIVATE_METADATA),
    ):
        value = view.get(key)
        if value is not None and not isinstance(value, str):
            checker.problem(f"{key} must be a string", f"/view/{key}")
        checker.too_long(value, limit, key, f"/view/{key}")
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return MessageRefusal("invalid_blocks_format")
    if view.get("submit") is None and any(b.get("type") == "input" for b in blocks):
        checker.problem("a modal with input blocks needs a submit button", "/view/submit")
    if checker.problems:
        return MessageRefusal("invalid_arguments", checker.problems)
    problems = block_kit_problems(blocks, "/view/blocks", MAX_VIEW_BLOCKS)
    return MessageRefusal("invalid_blocks", problems) if problems else None


def block_kit_problems(blocks: list[dict[str, Any]], pointer: str, max_blocks: int) -> list[str]:
    """Every limit `blocks` breaks, each as '<what> [json-pointer:/blocks/<i>/…]' like Slack's."""
    checker = _BlockChecker()
    if len(blocks) > max_blocks:
        checker.problem(f"at most {max_blocks} blocks allowed, got {len(blocks)}", pointer)
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                checker.problem(f"block_id {block_id!r} is used by an earlier block", f"{where}/block_id")
            block_ids.add(block_id)
        before = len(checker.problems)
        checker.block(block, where)
        if len(checker.problems) == before:  # slack_sdk knows more element types; one report per block
            checker.slack_sdk(block, where)
    return checker.problems


class _BlockChecker:
    """The per-element limits, walked over the raw JSON; slack_sdk's own checks run as well."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, what: str, pointer: str) -> None:
        self.problems.append(f"{what} [json-pointer:{pointer}]")

    def slack_sdk(self, block: dict[str, Any], where: str) -> None:
        try:
            parsed = Block.parse(block)
            if parsed is None:
                self.problem(f"unknown block type {block.get('type')!r}", f"{where}/type")
            else:
                parsed.to_dict()
        except SlackObjectFormationError as exc:
            self.problem(f"slack_sdk: {exc}", where)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:  # malformed beyond its checks
            self.problem(f"slack_sdk cannot read the block: {exc}", where)

    def too_long(self, value: Any, limit: int | None, what: str, pointer: str) -> None:
        if limit is not None and isinstance(value, str) and len(value) > limit:
            self.problem(f"{what} must be at most {limit} characters, got {len(value)}", pointer)

    def text(self, obj: Any, limit: int | None, what: str, pointer: str, plain_only: bool = False) -> None:
        allowed = ("plain_text",) if plain_only else TEXT_TYPES
        if not isinstance(obj, dict) or obj.get("type") not in allowed:
            self.problem(f"{what} must be a text object of type {' or '.join(allowed)}", pointer)
            return
        if not isinstance(obj.get("text"), str):
            self.problem(f"{what} has no text", f"{pointer}/text")
            return
        self.too_long(obj["text"], limit, what, f"{pointer}/text")

    def block(self, block: dict[str, Any], where: str) -> None:
        kind = block.get("type")
        self.too_long(block.get("block_id"), MAX_ID, "block_id", f"{where}/block_id")
        if kind == "section":
            if "text" in block:
                self.text(block["text"], MAX_SECTION_TEXT, "section text", f"{where}/text")
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                    self.problem(f"a section holds at most {MAX_FIELDS} fields", f"{where}/fields")
                for j, item in enumerate(fields if isinstance(fields, list) else []):
                    self.text(item, MAX_FIELD_TEXT, "section field", f"{where}/fields/{j}")
            if isinstance(block.get("accessory"), dict):
                self.element(block["accessory"], f"{where}/accessory")
        elif kind == "header":
            self.text(block.get("text"), MAX_HEADER_TEXT, "header text", f"{where}/text", plain_only=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or len(elements) > MAX_CONTEXT_ELEMENTS:
                self.problem(
                    f"a context block holds at most {MAX_CONTEXT_ELEMENTS} elements", f"{where}/elements"
                )
            for j, item in enumerate(elements if isinstance(elements, list) else []):
                if not (isinstance(item, dict) and item.get("type") == "image"):
                    self.text(item, None, "context element", f"{where}/elements/{j}")
        elif kind == "input":
            self.text(block.get("label"), MAX_INPUT_LABEL, "input label", f"{where}/label", plain_only=True)
            if block.get("hint") is not None:
                self.text(block["hint"], MAX_INPUT_HINT, "input hint", f"{where}/hint", plain_only=True)
            element = block.get("element")
            if not isinstance(element, dict) or element.get("type") not in INPUT_TYPES:
                self.problem("an input block holds one input element", f"{where}/element")
            else:
                self.element(element, f"{where}/element")
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or len(elements) > MAX_ACTIONS_ELEMENTS:
                self.problem(
                    f"an actions block holds at most {MAX_ACTIONS_ELEMENTS} elements", f"{where}/elements"
                )
            action_ids: set[str] = set()
            for j, item in enumerate(elements if isinstance(elements, list) else []):
                pointer = f"{where}/elements/{j}"
                if not isinstance(item, dict) or item.get("type") not in INTERACTIVE_TYPES:
                    self.problem("an actions block holds interactive elements only", pointer)
                    continue
                action_id = item.get("action_id")
                if isinstance(action_id, str):
                    if action_id in action_ids:
                        self.problem(
                            f"action_id {action_id!r} is used twice in this block", f"{pointer}/action_id"
                        )
                    action_ids.add(action_id)
                self.element(item, pointer)

    def element(self, element: dict[str, Any], where: str) -> None:
        self.too_long(element.get("action_id"), MAX_ID, "action_id", f"{where}/action_id")
        if element.get("placeholder") is not None:
            self.text(
                element["placeholder"],
                MAX_PLACEHOLDER,
                "placeholder",
                f"{where}/placeholder",
                plain_only=True,
            )
        if element.get("type") == "plain_text_input":
            max_length = element.get("max_length")
            if max_length is not None and (
                not isinstance(max_length, int) or not 0 < max_length <= MAX_TEXT_INPUT_LENGTH
            ):
                self.problem(f"max_length must be 1 to {MAX_TEXT_INPUT_LENGTH}", f"{where}/max_length")
        if element.get("type") == "button":
            self.text(element.get("text"), MAX_BUTTON_TEXT, "button text", f"{where}/text", plain_only=True)
            self.too_long(element.get("value"), MAX_BUTTON_VALUE, "button value", f"{where}/value")
            self.too_long(element.get("url"), MAX_URL, "button url", f"{where}/url")
        confirm = element.get("confirm")
        if confirm is not None:
            self.confirm(confirm, f"{where}/confirm")

    def confirm(self, confirm: Any, where: str) -> None:
        if not isinstance(confirm, dict):
            self.problem("confirm must be a confirmation dialog object", where)
            return
        self.text(confirm.get("title"), MAX_CONFIRM_TITLE, "confirm title", f"{where}/title", plain_only=True)
        self.text(confirm.get("text"), MAX_CONFIRM_TEXT, "confirm text", f"{where}/text")
        for key in ("confirm", "deny"):
            self.text(
                confirm.get(key), MAX_CONFIRM_BUTTON, f"confirm {key}", f"{where}/{key}", plain_only=True
            )


# A submitted value's key in view.state.values, by input element type (Slack's view_submission).
_STATE_KEYS = {
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "users_select": "selected_user",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
    "multi_users_select": "selected_users",
    "static_select": "selected_option",
    "external_select": "selected_option",
    "radio_buttons": "selected_option",
    "multi_static_select": "selected_options",
    "multi_external_select": "selected_options",
    "checkboxes": "selected_options",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
    "file_input": "files",
}


def submission_state(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`view.state.values` of a view_submission: every input block, by block_id then action_id,
    holding `values[action_id]` (an option's value picks that option; absent: empty)."""
    state: dict[str, Any] = {}
    seen: set[str] = set()
    for block in view.get("blocks") or []:
        element = block.get("element") if block.get("type") == "input" else None
        if not isinstance(element, dict):
            continue
        action_id, kind = str(element.get("action_id", "")), str(element.get("type", ""))
        seen.add(action_id)
        key = _STATE_KEYS.get(kind, "value")
        value = values.get(action_id)
        if key in ("selected_option", "selected_options"):
            options = _options(element)
            picked = [value] if key == "selected_option" else list(value or [])
            chosen = [_option(options, kind, v) for v in picked if v is not None]
            value = chosen if key == "selected_options" else (chosen[0] if chosen else None)
        elif key in ("selected_conversations", "selected_channels", "selected_users", "files"):
            value = list(value or [])
        state.setdefault(str(block.get("block_id", "")), {})[action_id] = {"type": kind, key: value}
    unknown = set(values) - seen
    if unknown:
        raise ValueError(f"the view has no input with action_id {sorted(unknown)}")
    return state


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def _option(options: list[dict[str, Any]], kind: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    for option in options:
        if option.get("value") == value:
            return option
    if "external" in kind:
        return {"text": {"type": "plain_text", "text": str(value)}, "value": str(value)}
    raise ValueError(f"no option with value {value!r} to pick")
