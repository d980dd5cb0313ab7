"""The Intuit/QBO emulator, driven through the real clients (intuit-oauth, python-quickbooks).

These pin the emulator to API_FACTS.md, so the bot's tests are only as kind as Intuit is.
"""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import AuthorizationException, QuickbooksException
from quickbooks.objects.company_info import CompanyInfo
from quickbooks.objects.deposit import Deposit
from quickbooks.objects.payment import Payment

from bot.emulator.intuit import QUICKBOOKS
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, JANE_QBO_ID, REALM

SCOPES = [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL, Scopes.PROFILE]
REDIRECT = "http://127.0.0.1:9/qbo/callback"


def client(intuit, **kw) -> AuthClient:
    return AuthClient(intuit.client_id, intuit.client_secret, REDIRECT, intuit.discovery_url, **kw)


def grant(intuit, as_user: str = DEDICATED) -> AuthClient:
    ac = client(intuit)
    callback = intuit.authorize(ac.get_authorization_url(SCOPES, state_token="s" * 32), as_user=as_user)
    query = parse_qs(urlparse(callback).query)
    ac.get_bearer_token(query["code"][0], realm_id=query["realmId"][0])
    return ac


def quickbooks(intuit, ac: AuthClient) -> QuickBooks:
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    qb = QuickBooks(auth_client=ac, refresh_token=ac.refresh_token, company_id=REALM, minorversion=75)
    qb.api_url_v3 = qb.sandbox_api_url_v3 = intuit.api_url
    return qb


def test_discovery_points_intuit_oauth_at_the_emulator(intuit):
    ac = client(intuit)
    assert ac.token_endpoint.startswith(intuit.url)
    assert ac.revoke_endpoint.startswith(intuit.url) and ac.user_info_url.startswith(intuit.url)
    assert intuit.count("discovery") == 1


def test_authorize_redirects_with_code_state_and_realm(intuit):
    url = client(intuit).get_authorization_url(SCOPES, state_token="abc123")
    query = parse_qs(urlparse(intuit.authorize(url, as_user=JANE)).query)
    assert query["state"] == ["abc123"] and query["realmId"] == [REALM] and query["code"][0]


def test_decline_redirects_with_access_denied(intuit):
    url = client(intuit).get_authorization_url(SCOPES, state_token="abc123")
    query = parse_qs(urlparse(intuit.authorize(url, decline=True)).query)
    assert query == {"error": ["access_denied"], "state": ["abc123"]}


def test_authorize_without_accounting_scope_is_refused(intuit):
    url = client(intuit).get_authorization_url([Scopes.OPENID], state_token="abc123")
    resp = requests.get(url + "&user=" + JANE, allow_redirects=False, timeout=5)
    assert resp.status_code == 400


def test_authorize_without_a_chosen_user_shows_a_consent_page(intuit):
    url = client(intuit).get_authorization_url(SCOPES, state_token="abc123")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and JANE in page.text and DEDICATED in page.text


def test_code_exchange_gives_tokens_without_id_token(intuit):
    ac = grant(intuit)
    assert ac.access_token and ac.refresh_token
    assert int(ac.expires_in) == 3600
    assert int(ac.x_refresh_token_expires_in) == 100 * 86400
    assert ac.id_token is None


def test_code_is_single_use(intuit):
    ac = client(intuit)
    callback = intuit.authorize(ac.get_authorization_url(SCOPES, state_token="x" * 32), as_user=JANE)
    code = parse_qs(urlparse(callback).query)["code"][0]
    ac.get_bearer_token(code, realm_id=REALM)
    with pytest.raises(AuthClientError) as err:
        client(intuit).get_bearer_token(code, realm_id=REALM)
    assert err.value.status_code == 400 and b"invalid_grant" in err.value.content


def test_code_expires(intuit, clock):
    ac = client(intuit)
    callback = intuit.authorize(ac.get_authorization_url(SCOPES, state_token="x" * 32), as_user=JANE)
    clock.advance(6 * 60)
    with pytest.raises(AuthClientError) as err:
        ac.get_bearer_token(parse_qs(urlparse(callback).query)["code"][0], realm_id=REALM)
    assert b"invalid_grant" in err.value.content


def test_wrong_client_secret_is_invalid_client(intuit):
    ac = AuthClient(intuit.client_id, "wrong", REDIRECT, intuit.discovery_url)
    with pytest.raises(AuthClientError) as err:
        ac.refresh(refresh_token="anything")
    assert err.value.status_code == 401 and b"invalid_client" in err.value.content


def test_refresh_rotates_and_the_old_token_dies(intuit):
    ac = grant(intuit)
    first = ac.refresh_token
    ac.refresh(refresh_token=first)
    assert ac.refresh_token != first
    assert intuit.current_refresh_token(REALM) == ac.refresh_token
    with pytest.raises(AuthClientError) as err:
        client(intuit).refresh(refresh_token=first)
    assert b"invalid_grant" in err.value.content


def test_refreshes_in_flight_are_counted_until_answered(intuit):
    """A refresh the caller never sees answered still rotates the token (the chaos suite's bound)."""
    import threading
    import time

    ac = grant(intuit)
    first = ac.refresh_token
    intuit.set_latency(0.5, "token")
    caller = threading.Thread(target=ac.refresh, kwargs={"refresh_token": first})
    caller.start()
    deadline = time.monotonic() + 5
    while intuit.refresh_counts()["received"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert intuit.refresh_counts() == {"received": 1, "answered": 0}
    assert list(intuit.refreshes_in_flight().values()) == [REALM]
    caller.join()
    assert intuit.refresh_counts() == {"received": 1, "answered": 1}
    assert intuit.refreshes_in_flight() == {}
    assert intuit.current_refresh_token(REALM) != first


def test_refresh_token_expires_after_100_idle_days(intuit, clock):
    ac = grant(intuit)
    clock.advance(101 * 86400)
    with pytest.raises(AuthClientError) as err:
        ac.refresh(refresh_token=ac.refresh_token)
    assert b"invalid_grant" in err.value.content


def test_refresh_lifetime_is_capped_at_five_years(intuit, clock):
    ac = grant(intuit)
    for _ in range(20):  # 1800 days of diligent refreshing
        clock.advance(90 * 86400)
        ac.refresh(refresh_token=ac.refresh_token)
    assert int(ac.x_refresh_token_expires_in) == (5 * 365 - 1800) * 86400
    clock.advance(26 * 86400)
    with pytest.raises(AuthClientError):
        ac.refresh(refresh_token=ac.refresh_token)


def test_revoke_disconnects_the_company(intuit):
    ac = grant(intuit)
    access, refresh = ac.access_token, ac.refresh_token
    assert ac.revoke(token=refresh) is True
    with pytest.raises(AuthClientError):
        client(intuit).refresh(refresh_token=refresh)
    with pytest.raises(AuthClientError) as err:
        client(intuit).get_user_info(access)
    assert err.value.status_code == 401


def test_userinfo_names_who_authorised(intuit):
    ac = grant(intuit, as_user=JANE)
    info = ac.get_user_info(ac.access_token).json()
    assert info["email"] == JANE and info["emailVerified"] is True
    assert info["givenName"] == "Jane" and info["sub"]


def test_companyinfo_through_python_quickbooks(intuit):
    qb = quickbooks(intuit, grant(intuit))
    info = CompanyInfo.get(REALM, qb=qb)
    assert info.CompanyName == "Acme Payments Ltd"


def test_expired_access_token_is_401_authorization_exception(intuit, clock):
    qb = quickbooks(intuit, grant(intuit))
    clock.advance(3601)
    with pytest.raises(AuthorizationException):
        CompanyInfo.get(REALM, qb=qb)


def test_token_of_another_company_is_refused(intuit):
    intuit.add_company("4620816365238497", "Other Co", users={DEDICATED: "4620816365238497113"})
    qb = quickbooks(intuit, grant(intuit))
    qb.company_id = "4620816365238497"
    with pytest.raises(AuthorizationException):
        CompanyInfo.get("4620816365238497", qb=qb)


def test_injected_429_carries_retry_after(intuit):
    ac = grant(intuit)
    intuit.fail_next("companyinfo", 429, retry_after=7)
    resp = requests.get(
        f"{intuit.api_url}/company/{REALM}/companyinfo/{REALM}?minorversion=75",
        headers={"Authorization": f"Bearer {ac.access_token}", "Accept": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.json()["Fault"]["Error"][0]["code"] == "3001"


def test_injected_5xx_is_a_quickbooks_exception(intuit):
    qb = quickbooks(intuit, grant(intuit))
    intuit.fail_next("companyinfo", 503)
    with pytest.raises(QuickbooksException):
        CompanyInfo.get(REALM, qb=qb)
    assert CompanyInfo.get(REALM, qb=qb).CompanyName == "Acme Payments Ltd"


def test_query_post_and_get(intuit):
    intuit.add_entry(REALM, "Payment", by=DEDICATED, amount=120.5, private_note="Zomentum payment")
    intuit.add_entry(REALM, "Payment", by=JANE, amount=80)
    ac = grant(intuit)
    qb = quickbooks(intuit, ac)
    payments = Payment.all(qb=qb)
    assert [p.TotalAmt for p in payments] == [120.5, 80]
    assert payments[0].MetaData.LastModifiedByRef["value"] == DEDICATED_QBO_ID
    resp = requests.get(
        f"{intuit.api_url}/company/{REALM}/query",
        params={"query": "select * from Payment where TotalAmt = '80' maxresults 10", "minorversion": 75},
        headers={"Authorization": f"Bearer {ac.access_token}"},
        timeout=5,
    )
    [row] = resp.json()["QueryResponse"]["Payment"]
    assert row["MetaData"]["LastModifiedByRef"] == {"value": JANE_QBO_ID}


def test_cdc_returns_changes_with_who_and_tombstones(intuit, clock):
    since = clock.now()
    clock.advance(60)
    kept = intuit.add_entry(REALM, "Payment", by=JANE, amount=10)
    gone = intuit.add_entry(REALM, "Deposit", by=DEDICATED, amount=20)
    clock.advance(60)
    intuit.update_entry(REALM, "Payment", kept["Id"], by=DEDICATED, TotalAmt=11)
    intuit.delete_entry(REALM, "Deposit", gone["Id"])
    qb = quickbooks(intuit, grant(intuit))
    result = change_data_capture([Payment, Deposit], since, qb=qb)
    [payment] = result.Payment
    assert payment.TotalAmt == 11 and payment.MetaData.LastModifiedByRef["value"] == DEDICATED_QBO_ID
    [tomb] = qb.change_data_capture("Deposit", since.isoformat())["CDCResponse"][0]["QueryResponse"][0][
        "Deposit"
    ]
    assert tomb["status"] == "Deleted" and tomb["Id"] == gone["Id"]


def test_cdc_caps_each_entity_at_1000_objects(intuit, clock):
    since = clock.now()
    for _ in range(1005):
        clock.advance(1)
        intuit.add_entry(REALM, "Payment", by=DEDICATED)
    qb = quickbooks(intuit, grant(intuit))
    body = qb.change_data_capture("Payment", since.isoformat())
    page = body["CDCResponse"][0]["QueryResponse"][0]
    assert len(page["Payment"]) == 1000
    times = [p["MetaData"]["LastUpdatedTime"] for p in page["Payment"]]
    assert times == sorted(times)  # oldest first: the caller splits the window after the last one


def test_cdc_refuses_more_than_30_days_back(intuit, clock):
    qb = quickbooks(intuit, grant(intuit))
    with pytest.raises(QuickbooksException):
        qb.change_data_capture("Payment", (clock.now() - timedelta(days=31)).isoformat())


def test_entries_by_quickbooks_itself_or_by_nobody_known(intuit, clock):
    """QuickBooks' own writes carry LastModifiedByRef "0"; some real entries carry none at all."""
    system = intuit.add_entry(REALM, "Payment", by="quickbooks")
    anonymous = intuit.add_entry(REALM, "Deposit", by=None)
    assert system["MetaData"]["LastModifiedByRef"] == {"value": QUICKBOOKS}
    assert "LastModifiedByRef" not in anonymous["MetaData"]
    clock.advance(60)
    intuit.update_entry(REALM, "Payment", system["Id"], by=None, TotalAmt=3)
    intuit.update_entry(REALM, "Deposit", anonymous["Id"], by=JANE, TotalAmt=4)
    qb = quickbooks(intuit, grant(intuit))
    result = change_data_capture([Payment, Deposit], clock.now() - timedelta(seconds=90), qb=qb)
    # python-quickbooks then has no LastModifiedByRef attribute at all (not None): read it with getattr
    assert not hasattr(result.Payment[0].MetaData, "LastModifiedByRef")
    [raw] = qb.change_data_capture("Deposit", (clock.now() - timedelta(seconds=90)).isoformat())[
        "CDCResponse"
    ][0]["QueryResponse"][0]["Deposit"]
    assert raw["MetaData"]["LastModifiedByRef"] == {"value": JANE_QBO_ID} and result.Deposit
