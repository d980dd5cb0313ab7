"""App Home with several companies: the portfolio, a page at a time, problems first."""

from __future__ import annotations

from typing import Any

from bot.blocks.message import (
    DIVIDER,
    Block,
    Mrkdwn,
    actions,
    button,
    context,
    home_view,
    md,
    section,
)
from bot.blocks.status import _channel_warning, _counts, _integrations_lines, company_line
from bot.portfolio import FILTERS, PAGE_SIZE, PortfolioPage
from bot.status import CompanyStatus, StatusReport

REPORT_ACTION = "zqbo_report"  # value: the realm id (bot/reports answers it)
COMPANY_SETTINGS_ACTION = "zqbo_company_settings"  # value: the realm id
FILTER_ACTION = "zqbo_home_filter"  # a static_select; option values are FILTERS' keys
PREVIOUS_ACTION = "zqbo_home_previous"  # value: "<filter>:<page>"
NEXT_ACTION = "zqbo_home_next"


def company_lines(company: CompanyStatus, report: StatusReport) -> list[Mrkdwn]:
    """What the portfolio says of one company: its state line, then (when known) a line per
    integration (✓ under its user / ✗ under whom / no entries seen yet). The one seam for what a
    company's row shows."""
    lines = [company_line(company, report)]
    if company.integrations:
        lines.append(_integrations_lines(company))
    return lines


def _option(value: str, counts: dict[str, int]) -> dict[str, Any]:
    label = f"{FILTERS[value][0]} ({counts.get(value, 0):,})"
    return {"text": {"type": "plain_text", "text": label[:75]}, "value": value}


def _filter(page: PortfolioPage) -> Block:
    options = [_option(value, page.counts) for value in FILTERS]
    current = next(o for o in options if o["value"] == page.filter)
    return {
        "type": "static_select",
        "action_id": FILTER_ACTION,
        "placeholder": {"type": "plain_text", "text": "Show"},
        "options": options,
        "initial_option": current,
    }


def _company(company: CompanyStatus, report: StatusReport) -> list[Block]:
    row = section(
        Mrkdwn("\n").join(company_lines(company, report)),
        button("Report", REPORT_ACTION, value=company.realm_id),
    )
    elements = [button("Company settings", COMPANY_SETTINGS_ACTION, value=company.realm_id)]
    if company.needs_reconnect and company.reconnect is None:
        elements.insert(
            0, button("Start guided reconnect", "zqbo_reconnect", value=company.realm_id, style="primary")
        )
    return [row, actions(*elements)]


def portfolio_home(page: PortfolioPage, setup: list[Block] | None = None) -> dict[str, Any]:
    """Setup state (with many workspaces), the companies' counts and the filter, a page of
    companies (two blocks each: 25 x 2 + a dozen stays under Slack's 100 per view), the pager."""
    report = page.report
    head = md("*Your QuickBooks companies* — {} companies: {}", f"{page.total:,}", _counts(report))
    blocks: list[Block] = [*(setup or []), section(head), actions(_filter(page)), DIVIDER]
    if not report.companies:
        blocks.append(section(md("No company is *{}* right now.", FILTERS[page.filter][0].lower())))
    for company in report.companies:
        blocks.extend(_company(company, report))
    first = page.page * PAGE_SIZE + 1 if page.matching else 0
    last = page.page * PAGE_SIZE + len(report.companies)
    blocks.append(
        context(
            md("Companies {}–{} of {} · page {} of {}", first, last, page.matching, page.page + 1, page.pages)
        )
    )
    pager = []
    if page.page > 0:
        pager.append(button("Previous", PREVIOUS_ACTION, value=f"{page.filter}:{page.page - 1}"))
    if page.page + 1 < page.pages:
        pager.append(button("Next", NEXT_ACTION, value=f"{page.filter}:{page.page + 1}"))
    if pager:
        blocks.append(actions(*pager))
    return home_view(blocks + _channel_warning(report))
