"""Marker rules and classification: what counts as the integration's entry."""

from __future__ import annotations

import pytest

from bot.audit.classify import classify, classify_all, find
from bot.audit.markers import MarkerError, parse_markers
from bot.config import ConfigError, load_settings
from tests.conftest import DEDICATED_QBO_ID, JANE_QBO_ID

PAYMENT = {
    "Id": "123",
    "DocNumber": "ZP-0042",
    "TotalAmt": 99.5,
    "PrivateNote": "Created by Zomentum Payments",
    "PaymentMethodRef": {"value": "7", "name": "Zomentum Payments"},
    "DepositToAccountRef": {"value": "35"},
    "MetaData": {
        "CreateTime": "2026-11-25T01:00:00-08:00",
        "LastUpdatedTime": "2026-11-25T01:00:00-08:00",
        "LastModifiedByRef": {"value": JANE_QBO_ID},
    },
}


@pytest.mark.parametrize(
    ("rule", "hit"),
    [
        ("PrivateNote~zomentum", True),
        ("PaymentMethodRef.name=Zomentum Payments", True),
        ("PaymentMethodRef.name=Zomentum", False),
        ("DepositToAccountRef.value=35", True),
        ("DocNumber^ZP-", True),
        ("DocNumber^XX-", False),
        ("Payment:DocNumber^ZP-", True),
        ("Deposit:DocNumber^ZP-", False),
        ("Missing.Field=1", False),
        ("PaymentMethodRef~Zomentum", False),  # an object, not a value
    ],
)
def test_rules(rule, hit):
    [marker] = parse_markers(rule)
    assert marker.matches("Payment", PAYMENT) is hit


def test_several_rules_any_matches():
    markers = parse_markers("DocNumber^XX-;\nPrivateNote~zomentum")
    assert classify("Payment", PAYMENT, markers).automated


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ("PrivateNote", "no operator"),
        ("~Zomentum", "the field before `~` is missing"),
        ("DocNumber^", "the value after `^` is missing"),
        ("Private Note~x", "`Private Note` is not a field path"),
        ("PrivateNote~a; Doc-Number=1", "rule 2"),
    ],
)
def test_bad_rules_point_at_the_bad_part(text, pointer):
    with pytest.raises(MarkerError) as err:
        parse_markers(text)
    assert pointer in str(err.value)


def test_bad_markers_stop_the_bot_at_start_with_the_variable_named():
    with pytest.raises(ConfigError) as err:
        load_settings(
            _env_file=None,
            SLACK_BOT_TOKEN="x",
            SLACK_SIGNING_SECRET="s",
            ZQBO_PUBLIC_URL="https://z.example",
            QBO_CLIENT_ID="i",
            QBO_CLIENT_SECRET="c",
            ZQBO_MARKERS="DocNumber^",
        )
    assert "ZQBO_MARKERS" in str(err.value) and "value after `^`" in str(err.value)


def test_classification_keeps_the_latest_version_and_drops_deletions():
    older = {**PAYMENT, "MetaData": {**PAYMENT["MetaData"], "LastModifiedByRef": {"value": DEDICATED_QBO_ID}}}
    newer = {
        **PAYMENT,
        "MetaData": {**PAYMENT["MetaData"], "LastUpdatedTime": "2026-11-25T02:00:00-08:00"},
    }
    gone = {"Id": "5", "status": "Deleted", "MetaData": {"LastUpdatedTime": "2026-11-25T02:00:00-08:00"}}
    entries = classify_all(
        [("Payment", newer), ("Payment", older), ("Deposit", gone)], parse_markers("PrivateNote~Zomentum")
    )
    [entry] = entries
    assert entry.modified_by == JANE_QBO_ID and entry.amount == 99.5 and entry.label == "Payment ZP-0042"
    findings = find(entries, dedicated_id=DEDICATED_QBO_ID)
    assert list(findings.offending) == [JANE_QBO_ID]
    assert find(entries, dedicated_id="").offending == {}  # unknown dedicated id: nothing to judge
