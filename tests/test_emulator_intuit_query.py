"""The QBO emulator's query API (WHERE / ORDERBY / STARTPOSITION / MAXRESULTS on
MetaData.LastUpdatedTime) and CDC's full pages, driven through python-quickbooks: the query API is
how a busy window is read completely, because CDC does not say which 1000 changes it returns.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
import requests
from quickbooks.exceptions import ValidationException

from bot.emulator.intuit import parse_qbo_time
from tests.conftest import DEDICATED, REALM
from tests.test_emulator_intuit import grant, quickbooks


def rows(body: dict, entity: str = "Payment") -> list[dict]:
    return body["QueryResponse"].get(entity, [])


def stamp(row: dict):
    return parse_qbo_time(row["MetaData"]["LastUpdatedTime"]), int(row["Id"])


def test_orderby_last_updated_time_with_ties_in_id_order(intuit, clock):
    a = intuit.add_entry(REALM, "Payment", by=DEDICATED)
    b = intuit.add_entry(REALM, "Payment", by=DEDICATED)  # same instant as a
    clock.advance(60)
    c = intuit.add_entry(REALM, "Payment", by=DEDICATED)
    clock.advance(60)
    intuit.update_entry(REALM, "Payment", a["Id"], by=DEDICATED, TotalAmt=1)  # a is now the newest
    qb = quickbooks(intuit, grant(intuit))

    def ids(query: str) -> list[str]:
        return [r["Id"] for r in rows(qb.query(query))]

    assert ids("select * from Payment") == [a["Id"], b["Id"], c["Id"]]  # no ORDERBY: Id order
    assert ids("select * from Payment orderby MetaData.LastUpdatedTime") == [b["Id"], c["Id"], a["Id"]]
    assert ids("SELECT * FROM Payment ORDERBY MetaData.LastUpdatedTime ASC") == [b["Id"], c["Id"], a["Id"]]
    assert ids("select * from Payment orderby MetaData.LastUpdatedTime desc") == [a["Id"], c["Id"], b["Id"]]
    assert ids("select * from Payment orderby Id desc") == [c["Id"], b["Id"], a["Id"]]
    d = intuit.add_entry(REALM, "Payment", by=DEDICATED)  # same instant as a's update: ties by Id
    assert ids("select * from Payment orderby MetaData.LastUpdatedTime desc")[:2] == [a["Id"], d["Id"]]


def test_where_on_last_updated_time_compares_instants_across_offsets(intuit, clock):
    start = clock.now()
    made = []
    for _ in range(4):
        clock.advance(60)
        made.append(intuit.add_entry(REALM, "Payment", by=DEDICATED)["Id"])
    qb = quickbooks(intuit, grant(intuit))
    second = start + timedelta(seconds=120)  # when made[1] was written
    india = second.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    utc = second.isoformat().replace("+00:00", "Z")

    def ids(where: str) -> list[str]:
        return [r["Id"] for r in rows(qb.query(f"select * from Payment where {where} orderby Id"))]

    field = "MetaData.LastUpdatedTime"
    assert ids(f"{field} >= '{india}'") == made[1:]
    assert ids(f"{field} > '{india}'") == made[2:]
    assert ids(f"{field} < '{utc}'") == made[:1]
    assert ids(f"{field} <= '{utc}'") == made[:2]
    assert ids(f"{field} > '{start.isoformat()}' AND {field} < '{utc}'") == made[:1]


def test_a_busy_window_is_read_completely_in_pages_of_1000(intuit, clock):
    since = clock.now()
    outside = intuit.add_entry(REALM, "Payment", by=DEDICATED)  # written at `since`: `>` leaves it out
    for i in range(2600):
        if i % 3 == 0:  # three entries a second: page edges fall inside runs of equal times
            clock.advance(1)
        intuit.add_entry(REALM, "Payment", by=DEDICATED)
    until = clock.now()
    clock.advance(1)
    intuit.add_entry(REALM, "Payment", by=DEDICATED)  # after the window
    qb = quickbooks(intuit, grant(intuit))
    window = (
        f"where MetaData.LastUpdatedTime > '{since.isoformat()}' "
        f"and MetaData.LastUpdatedTime <= '{until.isoformat()}' orderby MetaData.LastUpdatedTime"
    )
    pages = [
        rows(qb.query(f"select * from Payment {window} startposition {start} maxresults 1000"))
        for start in (1, 1001, 2001, 3001)
    ]
    assert [len(p) for p in pages] == [1000, 1000, 600, 0]
    read = [r for page in pages for r in page]
    assert [stamp(r) for r in read] == sorted(stamp(r) for r in read)
    assert len({r["Id"] for r in read}) == 2600 and outside["Id"] not in {r["Id"] for r in read}
    body = qb.query(f"select * from Payment {window} startposition 1001 maxresults 1000")
    assert body["QueryResponse"]["startPosition"] == 1001 and body["QueryResponse"]["maxResults"] == 1000
    count = qb.query(f"select count(*) from Payment {window}")
    assert count["QueryResponse"]["totalCount"] == 2600


def test_get_query_answers_like_post(intuit, clock):
    for _ in range(3):
        clock.advance(1)
        intuit.add_entry(REALM, "Payment", by=DEDICATED)
    ac = grant(intuit)
    query = "select * from Payment orderby MetaData.LastUpdatedTime desc startposition 2 maxresults 1"
    posted = rows(quickbooks(intuit, ac).query(query))
    got = requests.get(
        f"{intuit.api_url}/company/{REALM}/query",
        params={"query": query, "minorversion": 75},
        headers={"Authorization": f"Bearer {ac.access_token}", "Accept": "application/json"},
        timeout=5,
    )
    assert got.status_code == 200 and rows(got.json()) == posted and len(posted) == 1


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("select * from Payment maxresults 1001", "value 1001 is too large. Max allowed value is 1000"),
        ("select * from Payment where MetaData.LastUpdatedTime >= 'yesterday'", "QueryParserError"),
        ("select * from Payment orderby", "QueryParserError"),
    ],
)
def test_bad_queries_are_validation_faults(intuit, query, detail):
    qb = quickbooks(intuit, grant(intuit))
    with pytest.raises(ValidationException) as err:
        qb.query(query)
    assert detail in err.value.detail
    assert [c.status for c in intuit.calls if c.endpoint == "query"] == [400]


def cdc_page(qb, since) -> list[dict]:
    body = qb.change_data_capture("Payment", since.isoformat())
    return body["CDCResponse"][0]["QueryResponse"][0]["Payment"]


def test_cdc_full_page_can_be_any_1000(intuit, clock):
    since = clock.now()
    for _ in range(1500):
        clock.advance(1)
        intuit.add_entry(REALM, "Payment", by=DEDICATED)
    qb = quickbooks(intuit, grant(intuit))
    oldest = cdc_page(qb, since)
    intuit.set_cdc_order("arbitrary", seed=7)
    page = cdc_page(qb, since)
    assert len(page) == 1000 and [stamp(r) for r in page] == sorted(stamp(r) for r in page)
    newest_seen = max(stamp(r) for r in page)
    skipped = {r["Id"] for r in oldest} - {r["Id"] for r in page}
    assert skipped  # not the oldest 1000: some older changes than the page's newest are missing
    assert all(stamp(r) < newest_seen for r in oldest if r["Id"] in skipped)
    intuit.set_cdc_order("arbitrary", seed=7)
    assert [r["Id"] for r in cdc_page(qb, since)] == [r["Id"] for r in page]  # seeded: reproducible
    intuit.set_cdc_order("oldest")
    assert [r["Id"] for r in cdc_page(qb, since)] == [r["Id"] for r in oldest]
    with pytest.raises(ValueError):
        intuit.set_cdc_order("newest")


def test_cdc_under_1000_is_complete_in_either_order(intuit, clock):
    since = clock.now()
    for _ in range(30):
        clock.advance(1)
        intuit.add_entry(REALM, "Payment", by=DEDICATED)
    intuit.set_cdc_order("arbitrary", seed=1)
    page = cdc_page(quickbooks(intuit, grant(intuit)), since)
    assert len(page) == 30 and [stamp(r) for r in page] == sorted(stamp(r) for r in page)
