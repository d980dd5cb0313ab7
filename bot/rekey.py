"""`zqbo rekey`: every stored token sealed again under the newest key of ZQBO_ENCRYPTION_KEY.

Rotating the key is: put the new key first (`ZQBO_ENCRYPTION_KEY=new,old`) in every process, run
`zqbo rekey`, then drop the old key. MultiFernet decrypts with any key and seals with the first;
this rewrites the QBO tokens of every company, the Slack installations' tokens and the token
journal's pending lines, each under the lock its usual writer takes, so nothing rotated meanwhile
is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.services import Services
from bot.tenancy.installations import StoreInstallations


@dataclass
class Rekeyed:
    companies: int = 0
    installations: int = 0
    journal_lines: int = 0
    unreadable: list[str] = field(default_factory=list)  # what no key given opens: name them

    def summary(self) -> str:
        parts = [
            _count(self.companies, "company's QuickBooks tokens", "companies' QuickBooks tokens"),
            _count(self.installations, "Slack installation", "Slack installations"),
            _count(self.journal_lines, "token journal line", "token journal lines"),
        ]
        return f"re-sealed under the newest key: {', '.join(parts)}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def rekey(services: Services) -> Rekeyed:
    done = Rekeyed()
    connections = services.connections
    connections.replay_journal()  # what waits in the journal goes to the store first
    journal = connections.journal
    if journal is not None:
        done.journal_lines = journal.reseal()
    for realm_id in services.store.realm_ids():
        if connections.reseal(realm_id):
            done.companies += 1
        elif services.store.get_connection(realm_id) is not None:
            done.unreadable.append(f"company {realm_id}")
    installations = services.installations or StoreInstallations(services.store, services.store.cipher)
    done.installations, unreadable = installations.reseal()
    done.unreadable += [f"Slack installation {scope}" for scope in unreadable]
    return done
