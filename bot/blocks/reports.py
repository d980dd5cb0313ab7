"""What `/zqbo report` and the weekly digest say in Slack (their files are in bot/reports/)."""

from __future__ import annotations

from typing import Any

from bot.blocks.message import Message, Mrkdwn, context, md, section


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def report_text(report: Any) -> Mrkdwn:
    """The summary of a report (its ephemeral answer and the files' comment)."""
    writers = Mrkdwn(", ").join(md("{} {}", label, f"{n:,}") for label, n in report.by_writer.items())
    return md(
        "*{}* — {} ({} to {}): {}, {} automated, *{}*.{}",
        report.company,
        report.period.label,
        f"{report.period.since:%d %b %Y}",
        f"{report.period.until:%d %b %Y}",
        _count(report.seen, "entry", "entries"),
        f"{report.automated:,}",
        _count(report.flagged, "flagged"),
        md("\nBy writer: {}", writers) if writers else Mrkdwn("\nNo entries seen in this period."),
    )


def report_posted(report: Any, where: Mrkdwn) -> Message:
    return Message(
        f"Report for {report.company}",
        [
            section(Mrkdwn(":bar_chart: ") + report_text(report)),
            context(md("Chart and CSV of the flagged entries posted in {}.", where)),
        ],
    )


SECTION_CHARS = 2900
MAX_SECTIONS = 45


def digest_line(line: Any) -> Mrkdwn:
    return md(
        "{} *{}* — {}: {}, {} flagged{}",
        line.icon,
        line.company,
        line.state,
        _count(line.seen, "entry", "entries"),
        f"{line.flagged:,}",
        md(" ({})", line.trend) if line.trend else Mrkdwn(""),
    )


def digest_message(digest: Any) -> Message:
    """A head, then one line per company (problems first) packed into sections within Slack's
    limits; what does not fit is counted."""
    head = md(
        ":calendar: *zqbo weekly digest* — {} to {}: {} across {}, {} flagged.",
        f"{digest.since:%d %b}",
        f"{digest.until:%d %b %Y}",
        _count(digest.seen, "entry", "entries"),
        _count(len(digest.lines), "company", "companies"),
        f"{digest.flagged:,}",
    )
    sections: list[list[Mrkdwn]] = [[]]
    shown = 0
    for line in map(digest_line, digest.lines):
        chunk = sections[-1]
        if sum(len(x) + 1 for x in chunk) + len(line) > SECTION_CHARS:
            if len(sections) == MAX_SECTIONS:
                break
            sections.append(chunk := [])
        chunk.append(line)
        shown += 1
    body = [section(Mrkdwn("\n").join(chunk)) for chunk in sections if chunk]
    more = len(digest.lines) - shown
    tail = [context(md("…and {} more companies.", f"{more:,}"))] if more else []
    return Message(f"zqbo weekly digest: {len(digest.lines):,} companies", [section(head), *body, *tail])
