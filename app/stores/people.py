"""Who ran a run or a node, as Dify's console names them: `created_by_account` (id, name, email) and
`created_by_end_user` (id, type, is_anonymous, session_id), read from Dify's PostgreSQL.

Only with Dify's database (STATS_DIFY_DATABASE_URL, or the embedded demo split into both
sources): the LogStore holds no names. Without it both are null. One statement per answer
(queries/people.py), never one per row; ids that are not UUIDs are not looked up (null).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from app.stores.backend import Backend
from queries.people import people
from queries.rows import PersonRow
from schemas.nodes import SimpleAccount, SimpleEndUser

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class People(msgspec.Struct, frozen=True):
    """The accounts and end users an answer names, by id."""

    accounts: dict[str, SimpleAccount] = {}
    end_users: dict[str, SimpleEndUser] = {}

    def account(self, role: str, user_id: str) -> SimpleAccount | None:
        return self.accounts.get(user_id.lower()) if role == "account" else None

    def end_user(self, role: str, user_id: str) -> SimpleEndUser | None:
        return self.end_users.get(user_id.lower()) if role == "end_user" else None


NOBODY = People()


class PeopleReader:
    """Reads the people an answer names from Dify's database (`backend`; None: not configured)."""

    def __init__(self, backend: Backend | None) -> None:
        self.backend = backend

    async def read(self, creators: Iterable[tuple[str, str]]) -> People:
        """The accounts and end users among `creators` ((created_by_role, created_by) pairs), in one
        statement; NOBODY without Dify's database, or when there is nobody to look up."""
        if self.backend is None:
            return NOBODY
        wanted: dict[str, set[str]] = {"account": set(), "end_user": set()}
        for role, user_id in set(creators):
            if role in wanted and _UUID.fullmatch(user_id.lower()):
                wanted[role].add(user_id.lower())
        if not (wanted["account"] or wanted["end_user"]):
            return NOBODY
        query = people(sorted(wanted["account"]), sorted(wanted["end_user"]))
        accounts, end_users = {}, {}
        for row in await self.backend.fetch(query, PersonRow):
            if row.role == "account":
                accounts[row.id] = SimpleAccount(id=row.id, name=row.name or "", email=row.email or "")
            else:
                end_users[row.id] = SimpleEndUser(
                    id=row.id,
                    type=row.type or "",
                    is_anonymous=bool(row.is_anonymous),
                    session_id=row.session_id or "",
                )
        return People(accounts=accounts, end_users=end_users)
