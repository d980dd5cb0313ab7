"""One company's report for a period: totals, a chart of entries per day stacked by writer
(flagged ones marked) and a CSV of the flagged entries with a link to each in QuickBooks."""

from __future__ import annotations

import calendar
import csv
import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import quote

from bot.audit.classify import QUICKBOOKS, UNKNOWN
from bot.commands import CommandError
from bot.models import FlaggedEntry, HistoryRow
from bot.reports import chart
from bot.store.base import HISTORY_DAYS, Store

PERIOD_DAYS = {"7d": 7, "30d": 30, "90d": 90}
DEFAULT_PERIOD = "30d"
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_PERIODISH = re.compile(r"[0-9]+[dwmy]|[0-9]{4}-[0-9]+")
PEOPLE, BY_QUICKBOOKS, NO_WRITER = "People", "QuickBooks itself", "No recorded writer"
# Where an entry opens in QuickBooks Online: the page of its type, `?txnId=` its id. (The pages
# of the transaction forms as QBO's own address bar shows them; Intuit documents no deep links.)
QBO_APP = {
    "production": "https://app.qbo.intuit.com/app/",
    "sandbox": "https://app.sandbox.qbo.intuit.com/app/",
}
QBO_PAGES = {
    "Payment": "recvpayment",
    "Deposit": "deposit",
    "SalesReceipt": "salesreceipt",
    "RefundReceipt": "refundreceipt",
    "Invoice": "invoice",
    "CreditMemo": "creditmemo",
    "JournalEntry": "journal",
    "Transfer": "transfer",
    "Purchase": "expense",
    "BillPayment": "billpayment",
}
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "day",
    "integration",
    "type",
    "id",
    "doc number",
    "amount",
    "transaction date",
    "written by (QBO user id)",
    "writer",
    "link",
)


@dataclass(frozen=True)
class Period:
    since: date
    until: date
    label: str

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


def looks_like_period(token: str) -> bool:
    token = token.lower()
    """Whether a word was meant as a period (so a malformed one gets the period's sentence)."""
    return (
        token in PERIOD_DAYS or token == "month" or bool(re.fullmatch(r"[0-9]+[dwmy]|[0-9]{4}-[0-9]+", token))
    )


def parse_period(token: str, today: date) -> Period:
    """`7d`, `30d`, `90d` (the last days up to today), `month` (this month so far) or `YYYY-MM`
    (that month; not in the future, and within the HISTORY_DAYS zqbo keeps)."""
    token = token.lower() or DEFAULT_PERIOD
    if token in PERIOD_DAYS:
        days = PERIOD_DAYS[token]
        return Period(today - timedelta(days=days - 1), today, f"the last {days} days")
    if token == "month":
        return Period(today.replace(day=1), today, today.strftime("%B %Y so far"))
    match = _MONTH.fullmatch(token)
    if match and 1 <= int(match.group(2)) <= 12:
        first = date(int(match.group(1)), int(match.group(2)), 1)
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
        if first > today:
            raise CommandError(f"{token} has not started yet: name a month up to this one.")
        if last < today - timedelta(days=HISTORY_DAYS):
            raise CommandError(f"zqbo keeps {HISTORY_DAYS} days of history: {token} is older than that.")
        return Period(first, min(last, today), first.strftime("%B %Y"))
    raise CommandError(
        "A report covers `7d`, `30d`, `90d`, `month` (this month so far) or a month as `YYYY-MM` "
        "(e.g. `/zqbo report 30d`)."
    )


def writer_label(writer: str, dedicated: Mapping[str, str]) -> str:
    """Who a writer is, for the chart: an integration's dedicated user, QuickBooks, or people."""
    if writer == QUICKBOOKS:
        return BY_QUICKBOOKS
    if writer == UNKNOWN:
        return NO_WRITER
    if writer in dedicated:
        return f"{dedicated[writer]}'s dedicated user"
    return PEOPLE


@dataclass
class Report:
    realm_id: str
    company: str
    period: Period
    seen: int = 0
    automated: int = 0
    flagged: int = 0
    by_writer: dict[str, int] = field(default_factory=dict)  # label -> entries, in stacking order
    flagged_entries: list[FlaggedEntry] = field(default_factory=list)
    png: bytes = b""
    csv: bytes = b""

    @property
    def slug(self) -> str:
        return f"zqbo-{self.realm_id}-{self.period.since:%Y%m%d}-{self.period.until:%Y%m%d}"


def build_report(
    store: Store,
    realm_id: str,
    company: str,
    period: Period,
    dedicated: Mapping[str, str],
    environment: str = "production",
) -> Report:
    """Two store reads (the roll-ups, the flagged entries), one chart, one CSV."""
    rows = store.history([realm_id], period.since, period.until)
    flagged = store.flagged_entries(realm_id, period.since, period.until)
    report = Report(realm_id, company, period, flagged_entries=flagged)
    days = period.days
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    flagged_per_day = [0] * len(days)
    for row in rows:
        if row.day not in index:
            continue
        series[writer_label(row.writer, dedicated)][index[row.day]] += row.seen
        flagged_per_day[index[row.day]] += row.flagged
        report.seen += row.seen
        report.automated += row.automated
        report.flagged += row.flagged
    ordered = _stacking_order(series)
    report.by_writer = {label: sum(series[label]) for label in ordered}
    title = f"{company} — entries per day, {period.label}"
    report.png = chart.stacked_days(title, days, {label: series[label] for label in ordered}, flagged_per_day)
    report.csv = flagged_csv(flagged, dedicated, environment)
    return report


def _stacking_order(series: Mapping[str, list[int]]) -> list[str]:
    others = (BY_QUICKBOOKS, NO_WRITER, PEOPLE)
    return sorted(label for label in series if label not in others) + [o for o in others if o in series]


def safe_cell(value: object) -> str:
    """A cell from QuickBooks (untrusted): one a spreadsheet would run as a formula is kept as
    text by a leading apostrophe (OWASP's advice for CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def qbo_link(entity: str, entry_id: str, environment: str = "production") -> str:
    base = QBO_APP["sandbox" if "sandbox" in environment else "production"]  # a name or a discovery URL
    page = QBO_PAGES.get(entity, entity.lower())
    return f"{base}{quote(page, safe='')}?txnId={quote(entry_id, safe='')}"


def flagged_csv(entries: list[FlaggedEntry], dedicated: Mapping[str, str], environment: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        amount = "" if e.amount is None else f"{e.amount:.2f}"  # ours: a number, never a formula
        from_qbo = [e.integration, e.entity, e.entry_id, e.doc_number]
        writer.writerow(
            [
                e.day.isoformat(),
                *map(safe_cell, from_qbo),
                amount,
                safe_cell(e.txn_date),
                safe_cell(e.writer),
                writer_label(e.writer, dedicated),
                qbo_link(e.entity, e.entry_id, environment),
            ]
        )
    return out.getvalue().encode("utf-8-sig")  # the BOM: spreadsheets then read UTF-8 names right


def summarise(rows: list[HistoryRow]) -> tuple[int, int, int]:
    """(entries, automated, flagged) of roll-up rows."""
    return sum(r.seen for r in rows), sum(r.automated for r in rows), sum(r.flagged for r in rows)
