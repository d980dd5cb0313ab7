"""The one redaction filter for logs.

Libraries we use log request headers and bodies at DEBUG (requests-oauthlib logs the bearer
token). Redacting at record creation covers every handler, including ones added later (pytest's
caplog, gunicorn's). Two nets: patterns that look like credentials, and literal secrets the bot
has handled (settings, tokens loaded or issued), remembered in a bounded set.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MASK = "[redacted]"
_PATTERNS = [
    re.compile(r"xoxe\.xox[abposr]-[A-Za-z0-9.-]+"),  # a rotating Slack token
    re.compile(r"xox[abposre]-[A-Za-z0-9-]+"),  # xoxe-: a rotating token's refresh token
    re.compile(r"xapp-[A-Za-z0-9-]+"),
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret|code|token)[\"']?\s*[=:]\s*\[?\s*[\"']?)"
        r"([^\"&\s,;}'\]]{6,})"
    ),
    # OAuth states (Slack's and Intuit's): long random values; a short word after "state" is not one.
    # Bolt logs a failed callback's query as a dict of lists: {'code': ['…'], 'state': ['…']}.
    # Sign in with Slack's nonce goes with its state.
    re.compile(r"(?i)([\"']?(?:oauth_state|state|nonce)[\"']?\s*[=:]\s*\[?\s*[\"']?)([^\"&\s,;}'\]]{16,})"),
    # A connect link's id, in the path of zqbo's link (bot/signin.py).
    re.compile(r"(/qbo/connect/)([A-Za-z0-9_-]{16,})"),
]
_MAX_REMEMBERED = 4096


class Redactor:
    def __init__(self) -> None:
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, *secrets: str | None) -> None:
        with self._lock:
            for secret in secrets:
                if secret and len(secret) >= 6:
                    self._secrets[secret] = None
                    self._secrets.move_to_end(secret)
            while len(self._secrets) > _MAX_REMEMBERED:
                self._secrets.popitem(last=False)

    def __call__(self, text: str) -> str:
        with self._lock:
            known = list(self._secrets)
        for secret in known:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text


def _mask_match(match: re.Match[str]) -> str:
    if match.lastindex and match.lastindex >= 2 and match.group(1) is not None:
        return match.group(1) + MASK
    if match.lastindex == 1:  # bearer/basic
        return f"{match.group(1)} {MASK}"
    return MASK


REDACTOR = Redactor()
remember = REDACTOR.remember
_installed = False


def install() -> None:
    """Redact every log record as it is created. Idempotent."""
    global _installed
    if _installed:
        return
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg, record.args = REDACTOR(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = REDACTOR(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def configure_logging(level: str = "INFO") -> None:
    install()
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Libraries' INFO lines are chatter beside zqbo's own: APScheduler announces each job it adds
    # and each run of the scheduler's tick ("Running job …", "… executed successfully", every few
    # seconds in every process), matplotlib its font cache. Their warnings and errors stay; asked
    # for DEBUG, they say everything again.
    quiet = logging.NOTSET if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in LIBRARY_CHATTER:
        logging.getLogger(name).setLevel(quiet)


LIBRARY_CHATTER = ("apscheduler", "matplotlib")
