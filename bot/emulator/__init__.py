"""Local stand-ins for Slack, Intuit OAuth and the QBO API, served over real HTTP on 127.0.0.1.

One set of emulators serves the tests, `zqbo demo` and `zqbo emulator`; the bot reaches them only
through SLACK_API_URL, QBO_ENVIRONMENT (the discovery URL) and QBO_API_URL.
"""

from bot.emulator.intuit import IntuitEmulator
from bot.emulator.slack import SlackEmulator

__all__ = ["IntuitEmulator", "SlackEmulator"]
