"""One contract, three backends: every test runs on real Redis, real PostgreSQL and a real SQLite
file."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

from bot.models import (
    CheckResult,
    Connection,
    ConnectionStatus,
    FlaggedEntry,
    HistoryRow,
    Identity,
    OAuthState,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def make_connection(realm: str = "123", **kw) -> Connection:
    values = dict(
        realm_id=realm,
        company_name="Acme & Sons <Ltd>",
        access_token="access-secret-" + realm,
        refresh_token="refresh-secret-" + realm,
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=100),
        identity=Identity(email="jane@acme.example", name="Jane Doe", sub="guid-1", email_verified=True),
        connected_at=NOW,
        connected_by="U0ADMIN",
        team_id="T0EMU",
    )
    values.update(kw)
    return Connection(**values)


def test_connection_round_trip_keeps_every_field(store):
    conn = make_connection(refreshed_at=NOW, token_generation=3)
    store.save_connection(conn)
    assert store.get_connection("123") == conn


def test_connections_are_keyed_by_realm_and_listed_in_order(store):
    store.save_connection(make_connection("200"))
    store.save_connection(make_connection("100"))
    store.save_connection(make_connection("200", company_name="Renamed"))
    listed = store.list_connections()
    assert [c.realm_id for c in listed] == ["100", "200"]
    assert listed[1].company_name == "Renamed"
    store.delete_connection("100")
    assert store.get_connection("100") is None
    assert store.get_connection("nope") is None


def test_status_change_is_persisted(store):
    conn = make_connection()
    store.save_connection(conn)
    conn.status, conn.status_reason = ConnectionStatus.LOST, "invalid_grant"
    store.save_connection(conn)
    again = store.get_connection("123")
    assert again.status is ConnectionStatus.LOST and again.status_reason == "invalid_grant"


def test_tokens_are_never_stored_in_clear(store, redis_client, tmp_path):
    store.save_connection(make_connection())
    if store.backend == "redis":
        raw = b"".join(
            v
            for k in redis_client.scan_iter(f"{store._p}:*")
            if redis_client.type(k) == b"hash"
            for v in redis_client.hgetall(k).values()
        )
    elif store.backend == "postgres":
        raw = "".join(row for table in pg_tables(store) for row in pg_rows(store, table)).encode()
    else:
        store._db.execute("PRAGMA wal_checkpoint(FULL)")
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"access-secret-123" not in raw
    assert b"refresh-secret-123" not in raw
    assert b"Acme" in raw or store.backend == "sqlite"  # the rest stays readable for debugging


def pg_tables(store) -> list[str]:
    """Every table of a PostgresStore's schema."""
    with store._connection() as conn:  # (migrated first)
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (store.schema,)
        ).fetchall()
    return [name for (name,) in rows]


def pg_rows(store, table: str) -> list[str]:
    """A table's rows as PostgreSQL prints them: what is really stored."""
    from psycopg import sql

    with store._connection() as conn:  # (migrated first)
        query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
        return [row for (row,) in conn.execute(query).fetchall()]


def test_oauth_state_is_taken_once(store):
    state = OAuthState("s1", "U1", "T1", NOW, NOW + timedelta(minutes=10), "connect", "C1")
    store.put_oauth_state(state)
    assert store.take_oauth_state("s1") == (state, True)
    record, first = store.take_oauth_state("s1")
    assert record == state and first is False


def test_unknown_oauth_state_is_none_and_writes_nothing(store, redis_client):
    def size() -> int:
        if store.backend == "redis":
            return len(list(redis_client.scan_iter(f"{store._p}:*")))
        if store.backend == "postgres":
            return sum(len(pg_rows(store, table)) for table in pg_tables(store))
        return store._db.execute("SELECT count(*) FROM kv").fetchone()[0]

    before = size()
    for i in range(50):  # anyone can send /qbo/callback?state=…: none of it may fill the store
        assert store.take_oauth_state(f"forged-{i}") == (None, False)
    assert size() == before
    # and a forged name is not "burnt": had zqbo issued it, its first use would still be first
    state = OAuthState("forged-1", "U1", "T1", NOW, NOW + timedelta(minutes=10))
    store.put_oauth_state(state)
    assert store.take_oauth_state("forged-1") == (state, True)


def test_oauth_state_taken_once_under_concurrency(store):
    store.put_oauth_state(OAuthState("race", "U1", "T1", NOW, NOW + timedelta(minutes=10)))
    firsts: list[bool] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        firsts.append(store.take_oauth_state("race")[1])

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert firsts.count(True) == 1


def test_last_check_per_realm_and_kind(store):
    first = CheckResult("123", "probe", NOW, True, "ok")
    later = CheckResult("123", "probe", NOW + timedelta(minutes=1), False, "HTTP 503", error_id="ab12")
    store.record_check(first)
    store.record_check(later)
    store.record_check(CheckResult("123", "audit", NOW, True, "clean", entries_scanned=7))
    assert store.last_check("123", "probe") == later
    assert store.last_check("123", "audit").entries_scanned == 7
    assert store.last_check("999", "probe") is None


def test_docs_put_get_list_delete(store):
    store.put_doc("checklist", "123", {"step": 2, "ts": "1.2"})
    store.put_doc("checklist", "456", {"step": 1})
    assert store.get_doc("checklist", "123") == {"step": 2, "ts": "1.2"}
    assert set(store.list_docs("checklist")) == {"123", "456"}
    store.delete_doc("checklist", "123")
    assert store.get_doc("checklist", "123") is None
    assert store.list_docs("other") == {}


def test_deleting_a_companys_checks_leaves_other_companies_checks(store):
    for realm in ("123", "1234", "77"):
        store.record_check(CheckResult(realm, "probe", NOW, True, "ok"))
        store.record_check(CheckResult(realm, "audit", NOW, True, "clean"))
    marker = store.change_marker()
    store.delete_checks("123")
    assert store.last_check("123", "probe") is None and store.last_check("123", "audit") is None
    assert store.last_check("1234", "probe") is not None  # a realm id that starts the same
    assert store.last_check("77", "audit") is not None
    assert store.change_marker() != marker  # status shows checks: a cached card is stale now


def test_overview_reads_the_index_head_with_its_checks_and_docs(store):
    from bot.standing import ranker

    store.save_connection(make_connection("456"))
    store.save_connection(make_connection("123"))
    store.save_connection(make_connection("789", status=ConnectionStatus.LOST))
    store.record_check(CheckResult("123", "probe", NOW, True, "ok"))
    store.put_doc("scheduler", "heartbeat", {"at": "2026-11-25T09:00:00+00:00"})
    store.put_doc("reconnect", "123", {"step": 2})
    store.put_doc("reconnect", "999", {"step": 1})  # not a shown company: not read
    view = store.overview(realm_doc_kinds=("reconnect",), global_doc_kinds=("scheduler",), limit=2)
    # problem companies first (lost), then by realm id; only `limit` of them are read
    assert [c.realm_id for c in view.connections] == ["789", "123"]
    assert view.counts == {"lost": 1, "connected": 2} and view.total == 3
    assert view.check("123", "probe").ok
    assert view.doc("scheduler", "heartbeat") == {"at": "2026-11-25T09:00:00+00:00"}
    assert view.docs["reconnect"] == {"123": {"step": 2}}
    assert ranker("")(make_connection("1", status=ConnectionStatus.LOST)) == ("lost", 0)


def test_status_index_follows_saves_and_deletes(store):
    store.save_connection(make_connection("1"))
    store.save_connection(make_connection("2"))
    assert store.overview().counts == {"connected": 2}
    store.save_connection(make_connection("2", status=ConnectionStatus.DISCONNECTED))
    assert store.overview().counts == {"connected": 1, "disconnected": 1}
    store.delete_connection("2")
    assert store.overview().counts == {"connected": 1}
    store.delete_connection("1")
    view = store.overview()
    assert view.counts == {} and view.connections == [] and view.total == 0
    assert store.realm_ids() == []


def test_wrong_identity_is_counted_as_such(store, cipher, tmp_path):
    from bot.standing import ranker
    from bot.store.postgres import PostgresStore
    from bot.store.redis import RedisStore
    from bot.store.sqlite import SQLiteStore
    from tests.conftest import DATABASE_URL, REDIS_URL

    rank = ranker("zomentum.integration@acme.example")
    if store.backend == "redis":
        other = RedisStore(REDIS_URL, cipher, prefix=store._p, ranker=rank)
    elif store.backend == "postgres":
        other = PostgresStore(DATABASE_URL, cipher, rank, schema=store.schema)
    else:
        other = SQLiteStore(store.path, cipher, rank)
    other.save_connection(make_connection("1"))  # jane: not the dedicated user
    other.save_connection(make_connection("2", status=ConnectionStatus.LOST))
    view = other.overview()
    assert view.counts == {"wrong identity": 1, "lost": 1}
    assert [c.realm_id for c in view.connections] == ["2", "1"]
    other.close()


def test_schedules_hand_out_due_companies_earliest_first(store):
    for realm, at in (("a", 30.0), ("b", 10.0), ("c", 20.0), ("d", 99.0)):
        store.schedule_set("audit", realm, at)
    store.schedule_set("refresh", "a", 5.0)
    assert store.schedule_due("audit", until=25) == [("b", 10.0), ("c", 20.0)]
    assert store.schedule_due("audit", until=100, limit=2) == [("b", 10.0), ("c", 20.0)]
    store.schedule_set("audit", "b", 50.0)  # moved on by one interval
    assert store.schedule_due("audit", until=30) == [("c", 20.0), ("a", 30.0)]
    store.schedule_remove("audit", "c")
    assert store.schedule_members("audit") == {"a", "b", "d"}
    store.save_connection(make_connection("a"))
    store.delete_connection("a")  # deleting a company clears all its schedules
    assert store.schedule_members("audit") == {"b", "d"} and store.schedule_members("refresh") == set()


def test_claimed_reads_a_claim_without_making_one(store):
    assert not store.claimed("done", "r1")
    assert not store.claimed("done", "r1")  # asking twice does not claim
    assert store.claim_once("done", "r1", 60)
    assert store.claimed("done", "r1")


def test_seen_reads_without_marking(store):
    assert store.seen("entries", ["a", "b"]) == set()
    store.mark_seen("entries", ["a"])
    assert store.seen("entries", ["a", "b"]) == {"a"}
    assert store.seen("entries", (f"k{i}" for i in range(2000))) == set()
    assert store.mark_seen("entries", ["b"]) == {"b"}


def test_mark_seen_returns_only_new_keys(store):
    assert store.mark_seen("entries", ["a", "b"]) == {"a", "b"}
    assert store.mark_seen("entries", ["b", "c"]) == {"c"}
    assert store.mark_seen("other", ["a"]) == {"a"}
    assert store.mark_seen("entries", []) == set()


def test_mark_seen_is_atomic_across_threads(store):
    keys = [f"k{i}" for i in range(300)]
    results: list[set[str]] = []
    barrier = threading.Barrier(4)

    def mark() -> None:
        barrier.wait()
        results.append(store.mark_seen("race", keys))

    threads = [threading.Thread(target=mark) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    union = set().union(*results)
    assert union == set(keys)
    assert sum(len(r) for r in results) == len(keys)  # each key new exactly once


def test_claim_once(store):
    assert store.claim_once("webhook", "evt-1", 60) is True
    assert store.claim_once("webhook", "evt-1", 60) is False
    assert store.claim_once("webhook", "evt-2", 60) is True


def test_lock_excludes_other_holders(store):
    with store.lock("refresh:123", ttl=5, wait=1) as got:
        assert got
        outcome: list[bool] = []

        def try_lock() -> None:
            with store.lock("refresh:123", ttl=5, wait=0.2) as other:
                outcome.append(other)

        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        assert outcome == [False]
    with store.lock("refresh:123", ttl=5, wait=0.2) as again:
        assert again


def test_ping(store):
    assert store.ping() is True


def test_wrong_key_fails_without_leaking(store, tmp_path):
    from cryptography.fernet import Fernet

    from bot.store.crypto import TokenCipher

    original = make_connection()
    store.save_connection(original)
    right_key = store._cipher
    store._cipher = TokenCipher([Fernet.generate_key().decode()])
    conn = store.get_connection("123")  # loads, as lost, with why: status must still answer
    assert conn.status is ConnectionStatus.LOST and "ZQBO_ENCRYPTION_KEY" in conn.status_reason
    assert conn.access_token == conn.refresh_token == ""
    assert original.refresh_token not in repr(conn) and original.refresh_token not in conn.status_reason
    store.save_connection(conn)  # saving it (e.g. a status change) must not destroy the tokens
    store._cipher = right_key  # the operator puts the old key back
    assert store.get_connection("123").refresh_token == original.refresh_token


def test_key_rotation_reads_old_tokens(store):
    from cryptography.fernet import Fernet

    from bot.store.crypto import TokenCipher

    store.save_connection(make_connection())
    old = store._cipher
    new_key = Fernet.generate_key().decode()
    store._cipher = TokenCipher([new_key, *old_keys(old)])
    assert store.get_connection("123").access_token == "access-secret-123"


def old_keys(cipher) -> list[str]:
    from tests.conftest import TEST_KEY

    return [TEST_KEY]


def _another_process(store, cipher):
    """A second store on the same data, as another worker process would open it."""
    from bot.store.postgres import PostgresStore
    from bot.store.redis import RedisStore
    from bot.store.sqlite import SQLiteStore
    from tests.conftest import DATABASE_URL, REDIS_URL

    if store.backend == "redis":
        return RedisStore(REDIS_URL, cipher, prefix=store._p)
    if store.backend == "postgres":
        return PostgresStore(DATABASE_URL, cipher, schema=store.schema, prefix=store.prefix)
    return SQLiteStore(store.path, cipher)


def test_change_marker_moves_with_every_write_any_process_commits(store, cipher):
    other = _another_process(store, cipher)
    seen = {store.change_marker()}
    writes = [
        lambda: other.save_connection(make_connection("1")),
        lambda: other.record_check(CheckResult("1", "audit", NOW, True, "ok")),
        lambda: other.put_doc("alert", "a", {"state": "firing"}),
        lambda: other.delete_doc("alert", "a"),
        lambda: other.delete_connection("1"),
    ]
    for write in writes:
        write()
        marker = store.change_marker()
        assert marker not in seen  # this process sees the other's write at once
        seen.add(marker)
    other.close()


def test_overview_carries_the_marker_of_its_own_data(store):
    store.save_connection(make_connection("1"))
    view = store.overview(global_doc_kinds=("alert",))
    assert view.marker == store.change_marker()
    store.put_doc("alert", "x", {"state": "firing"})
    assert store.overview(global_doc_kinds=("alert",)).marker == store.change_marker() != view.marker


def test_a_workspaces_marker_moves_only_with_writes_that_can_change_its_status(store, cipher):
    """With many workspaces a write of one must not make every other's cached card stale: each
    has its own marker, moved by writes to its companies (connections, checks, their documents)
    and by writes not tied to one company (every workspace's then). The global marker still moves
    with every write. Seen from another process, as a second web worker would."""
    store.save_connection(make_connection("11", team_id="TONE"))
    store.save_connection(make_connection("22", team_id="TTWO"))
    other = _another_process(store, cipher)

    def markers() -> tuple[str, str, str]:
        return store.change_marker(), store.change_marker("TONE"), store.change_marker("TTWO")

    writes = [  # (write, moves TONE's, moves TTWO's)
        (lambda: other.record_check(CheckResult("22", "probe", NOW, True, "ok")), False, True),
        (lambda: other.put_doc("reconnect", "11", {"status": "active"}), True, False),
        (lambda: other.delete_doc("reconnect", "11"), True, False),
        (
            lambda: other.save_connection(make_connection("11", team_id="TONE", company_name="New")),
            True,
            False,
        ),
        (lambda: other.put_doc("scheduler", "heartbeat", {"at": "now"}), True, True),
        (lambda: other.put_doc("alert_channel", "problem:TONE", {"problem": "x"}), True, True),
        (lambda: other.delete_checks("22"), False, True),
        (lambda: other.save_connection(make_connection("33", team_id="TTWO")), False, True),
        (lambda: other.delete_connection("22"), False, True),
    ]
    for number, (write, one_moves, two_moves) in enumerate(writes):
        before = markers()
        write()
        after = markers()
        assert after[0] != before[0], number  # the global marker moves with every write
        assert (after[1] != before[1]) is one_moves, number
        assert (after[2] != before[2]) is two_moves, number
    assert store.overview(team="TONE").marker == store.change_marker("TONE")
    assert store.overview().marker == store.change_marker()
    other.close()


def test_a_forgotten_seen_set_is_empty_and_others_stay(store):
    store.mark_seen("alerted:11", ["Payment:1", "Payment:2"])
    store.mark_seen("alerted:22", ["Payment:1"])
    store.forget_seen("alerted:11")
    assert store.seen("alerted:11", ["Payment:1", "Payment:2"]) == set()
    assert store.seen("alerted:22", ["Payment:1"]) == {"Payment:1"}
    assert store.mark_seen("alerted:11", ["Payment:1"]) == {"Payment:1"}  # new again


def test_reads_and_bookkeeping_do_not_move_the_marker(store):
    store.save_connection(make_connection("1"))
    marker = store.change_marker()
    store.overview(global_doc_kinds=("alert",))
    store.list_connections()
    store.mark_seen("alerted:1", ["Payment:1"])
    store.claim_once("webhook", "ev1", 60)
    assert store.change_marker() == marker


def test_a_round_tally_is_counted_and_dropped(store):
    for realm in ("1", "2", "3"):
        store.put_doc("round:check-x", realm, {"realm_id": realm, "ok": realm != "2"})
    store.put_doc("round:check-y", "1", {"ok": True})
    assert store.count_docs("round:check-x") == 3
    store.drop_docs("round:check-x")
    assert store.count_docs("round:check-x") == 0 and store.list_docs("round:check-x") == {}
    assert store.count_docs("round:check-y") == 1


def test_each_workspace_has_its_own_index_and_list(store):
    store.save_connection(make_connection("1", team_id="T1"))
    store.save_connection(make_connection("2", team_id="T2"))
    store.save_connection(make_connection("3", team_id="T1", status=ConnectionStatus.LOST))
    assert store.realm_ids("T1") == ["1", "3"] and store.realm_ids("T2") == ["2"]
    assert [c.realm_id for c in store.list_connections("T2")] == ["2"]
    assert store.list_connections("T9") == [] and store.realm_ids() == ["1", "2", "3"]
    view = store.overview(team="T1")
    assert view.counts == {"lost": 1, "connected": 1} and [c.realm_id for c in view.connections] == ["3", "1"]
    assert store.overview(team="T2").counts == {"connected": 1}
    assert store.overview().counts == {"lost": 1, "connected": 2}
    store.save_connection(make_connection("2", team_id="T1"))  # moved workspace: counted only there
    assert store.overview(team="T2").counts == {} and store.overview(team="T1").total == 3
    store.delete_connection("3")
    assert store.overview(team="T1").counts == {"connected": 2} and store.realm_ids("T1") == ["1", "2"]


def test_ranks_of_every_company_or_one_workspaces_in_one_read(store):
    store.save_connection(make_connection("1", team_id="T1"))
    store.save_connection(make_connection("2", team_id="T2", status=ConnectionStatus.DISCONNECTED))
    store.save_connection(make_connection("3", team_id="T1", status=ConnectionStatus.LOST))
    assert store.ranks("T1") == {"1": 4, "3": 0} and store.ranks("T2") == {"2": 1}
    assert store.ranks() == {"1": 4, "2": 1, "3": 0} and store.ranks("T9") == {}
    store.delete_connection("3")
    assert store.ranks("T1") == {"1": 4}


def test_keys_from_outside_may_hold_any_character(store):
    """A forged OAuth state or a delivery id with a NUL byte is just an unknown key (PostgreSQL
    text cannot hold NUL: the store must not turn it into an error)."""
    odd = "forged\x00<>&\u2028é"
    assert store.take_oauth_state(odd) == (None, False)
    assert store.claim_once("webhook", odd, 60) and not store.claim_once("webhook", odd, 60)
    assert store.claimed("webhook", odd) and not store.claimed("webhook", "forged")
    assert store.mark_seen("alerted:1", [odd, "plain"]) == {odd, "plain"}
    assert store.seen("alerted:1", [odd, "forged"]) == {odd}
    assert store.get_doc("checklist", odd) is None and store.get_connection(odd) is None


# --- history ---------------------------------------------------------------------------------
DAY = date(2026, 11, 25)


def sighting(
    entry: str,
    writer: str = "9130347769252966",
    integration: str = "Stripe",
    *,
    automated=1,
    flagged=0,
    day: date = DAY,
    realm: str = "123",
) -> HistoryRow:
    return HistoryRow(day, realm, integration, writer, 1, automated, flagged, entry=entry)


def flagged_entry(entry_id: str, day: date = DAY, realm: str = "123", **kw) -> FlaggedEntry:
    values = dict(
        realm_id=realm,
        day=day,
        integration="Stripe",
        entity="Payment",
        entry_id=entry_id,
        doc_number=f'=HYPERLINK("x")<{entry_id}>',
        amount=12.5,
        txn_date="2026-11-24",
        writer="9130347769252966",
    )
    values.update(kw)
    return FlaggedEntry(**values)


def test_history_counts_each_entry_once_per_day_however_often_it_is_read(store):
    first = [
        sighting("Payment:1", flagged=1),
        sighting("Payment:2"),
        sighting("Invoice:9", "77", "", automated=0),
    ]
    store.add_history("123", first, [flagged_entry("1")])
    # the next check re-reads its overlap: the same entries again, one of them now flagged
    again = [sighting("Payment:1", flagged=1), sighting("Payment:2", flagged=1), sighting("Payment:3")]
    store.add_history("123", again, [flagged_entry("1"), flagged_entry("2")])
    store.add_history("123", again, [flagged_entry("1"), flagged_entry("2")])
    rows = store.history(["123"], DAY, DAY)
    assert rows == [
        HistoryRow(DAY, "123", "", "77", 1, 0, 0),
        HistoryRow(DAY, "123", "Stripe", "9130347769252966", 3, 3, 2),
    ]
    kept = store.flagged_entries("123", DAY, DAY)
    assert [f.entry_id for f in kept] == ["1", "2"]
    assert kept[0] == flagged_entry("1")  # every field, the doc number as QBO had it


def test_history_of_another_day_counts_again_and_plain_counts_add_up(store):
    next_day = DAY + timedelta(days=1)
    store.add_history("123", [sighting("Payment:1")], [])
    store.add_history("123", [sighting("Payment:1", day=next_day)], [])
    plain = HistoryRow(DAY, "123", "Stripe", "9130347769252966", 10, 4, 1)
    store.add_history("123", [plain, plain], [])
    assert [(r.day, r.seen, r.automated, r.flagged) for r in store.history(["123"], DAY, next_day)] == [
        (DAY, 21, 9, 2),
        (next_day, 1, 1, 0),
    ]
    assert store.history(["123"], DAY + timedelta(days=2), DAY + timedelta(days=9)) == []


def test_history_is_per_company_and_read_for_several(store):
    store.add_history("123", [sighting("Payment:1")], [flagged_entry("1")])
    store.add_history(
        "456",
        [sighting("Payment:1", realm="456"), sighting("Payment:2", realm="456")],
        [flagged_entry("5", realm="456")],
    )
    rows = store.history(["123", "456", "789"], DAY - timedelta(days=7), DAY)
    assert [(r.realm_id, r.seen) for r in rows] == [("123", 1), ("456", 2)]
    assert [f.entry_id for f in store.flagged_entries("456", DAY, DAY)] == ["5"]
    store.forget_history("456")
    assert store.history(["456"], DAY, DAY) == [] and store.flagged_entries("456", DAY, DAY) == []
    assert store.history(["123"], DAY, DAY) != []


def test_history_is_pruned_by_day(store):
    old, kept = DAY - timedelta(days=401), DAY - timedelta(days=400)
    for realm in ("123", "456"):
        store.add_history(
            realm, [sighting("Payment:1", day=old, realm=realm)], [flagged_entry("1", old, realm)]
        )
        store.add_history(
            realm, [sighting("Payment:1", day=kept, realm=realm)], [flagged_entry("1", kept, realm)]
        )
    assert store.prune_history(kept) == 2  # (company, day) roll-ups
    assert [r.day for r in store.history(["123", "456"], old, DAY)] == [kept, kept]
    assert [f.day for f in store.flagged_entries("123", old, DAY)] == [kept]
    # an entry of a pruned day is a new sighting if that day's history is written again
    store.add_history("123", [sighting("Payment:1", day=old)], [])
    assert store.history(["123"], old, old)[0].seen == 1
    assert store.prune_history(kept) == 1
