"""Named objects of a workspace (Dicts, Queues, Volumes): create, look up, list, rename, delete."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...wire import ids
from .errors import ApiError, invalid, not_found
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise invalid(
            f"'{name}' is not a valid {kind} name; use up to 64 letters, digits, '.', '-' or "
            "'_', starting with a letter or digit."
        )
    return name


def already_exists(message: str) -> ApiError:
    return ApiError(409, "AlreadyExistsError", message)


def named(table: sa.Table, who: Identity, name: str) -> list[sa.ColumnElement[bool]]:
    """Where table's row of that name is: names are per workspace and environment."""
    return [table.c.workspace_id == who.workspace_id, table.c.environment == who.environment,
            table.c.name == name]


def in_environment(who: Identity) -> str:
    """ " in environment 'dev'" for an environment other than main, which goes unsaid."""
    return "" if who.environment == "main" else f" in environment '{who.environment}'"


# An object's size as listed, by id, for the ids given (a missing id has the sizes' defaults).
Sizes = Callable[["ControlPlane", list[str]], Awaitable[dict[str, dict[str, Any]]]]


def counted(column: sa.Column[Any]) -> Sizes:
    """Sizes as "len": how many rows of column's table each object has."""

    async def sizes(cp: ControlPlane, object_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await cp.db.read(
            sa.select(column, sa.func.count()).where(column.in_(object_ids)).group_by(column)
        )
        return {r[0]: {"len": r[1]} for r in rows}

    return sizes


class Objects:
    """One kind of named object, stored in `table` (id, workspace_id, name, created_at, ...),
    and the cache of which workspace owns which of its ids."""

    def __init__(self, kind: str, prefix: str, table: sa.Table, children: list[sa.Column[Any]],
                 sizes: Sizes, empty: dict[str, Any], *, extra: dict[str, Any] | None = None,
                 looked_up: Sequence[str] = ("id", "name"),
                 deleted: Callable[[ControlPlane, str], None] | None = None) -> None:
        self.kind, self.prefix, self.table = kind, prefix, table
        self.children = children  # columns of child tables that hold this object's id
        self.sizes = sizes
        self.empty = empty  # the sizes of an object sizes has nothing for
        self.extra = extra or {}  # the columns' values a new object starts with
        self.looked_up = looked_up  # the columns a lookup answers with
        self.deleted = deleted  # called after a delete, with the id
        # Which workspace owns an object id, remembered so hot paths skip a database read.
        self.owner: dict[str, str] = {}

    async def create(self, cp: ControlPlane, who: Identity, name: str | None,
                     exist_ok: bool) -> tuple[str, bool]:
        """The object's id and whether it was made now; name None makes an ephemeral one."""
        t = self.table
        if name is not None:
            check_name(self.kind, name)
        new_id = ids.new_object_id(self.prefix)
        now = time.time()

        async def op(conn: AsyncConnection) -> tuple[str, bool]:
            if name is not None:
                found = (await conn.execute(
                    sa.select(t.c.id).where(*named(t, who, name))
                )).first()
                if found is not None:
                    if not exist_ok:
                        raise already_exists(f"A {self.kind} named '{name}' exists already"
                                             f"{in_environment(who)}.")
                    return str(found[0]), False
            await conn.execute(t.insert().values(
                id=new_id, workspace_id=who.workspace_id, environment=who.environment, name=name,
                created_at=now, **self.extra
            ))
            return new_id, True

        result: tuple[str, bool] = await cp.db.write(op)
        return result

    async def find(self, cp: ControlPlane, who: Identity, ref: str) -> sa.Row[Any]:
        """The caller's object by id or by name; NotFoundError for anything else."""
        t = self.table
        if ref.startswith(self.prefix):  # an id names one object in any environment
            q = sa.select(t).where(t.c.workspace_id == who.workspace_id, t.c.id == ref)
        else:
            q = sa.select(t).where(*named(t, who, ref))
        rows = await cp.db.read(q)
        if not rows:
            raise not_found(
                f"No {self.kind} '{ref}' in this workspace{in_environment(who)}; create it with "
                f"{self.kind.capitalize()}.from_name('{ref}', create_if_missing=True) or "
                f"`firebox {self.kind} create {ref}`."
            )
        return rows[0]

    async def resolve(self, cp: ControlPlane, who: Identity, ref: str) -> str:
        """The id of the caller's object ref names (by id or by name)."""
        if self.owner.get(ref) == who.workspace_id:
            return ref
        row = await self.find(cp, who, ref)
        self.owner[str(row.id)] = who.workspace_id
        return str(row.id)

    async def lookup(self, cp: ControlPlane, who: Identity, ref: str) -> dict[str, Any]:
        row = await self.find(cp, who, ref)
        return {column: getattr(row, column) for column in self.looked_up}

    async def listing(self, cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
        """The workspace's named objects by name, each with its size."""
        t = self.table
        rows = await cp.db.read(
            sa.select(t).where(t.c.workspace_id == who.workspace_id,
                               t.c.environment == who.environment, t.c.name.is_not(None))
            .order_by(t.c.name)
        )
        sizes = await self.sizes(cp, [r.id for r in rows]) if rows else {}
        return [{"id": r.id, "name": r.name, "created_at": r.created_at,
                 **sizes.get(r.id, self.empty)}
                for r in rows]

    async def delete(self, cp: ControlPlane, who: Identity, ref: str) -> str:
        row = await self.find(cp, who, ref)

        async def op(conn: AsyncConnection) -> None:
            for column in self.children:
                await conn.execute(sa.delete(column.table).where(column == row.id))
            await conn.execute(sa.delete(self.table).where(self.table.c.id == row.id))

        await cp.db.write(op)
        object_id = str(row.id)
        self.owner.pop(object_id, None)
        if self.deleted is not None:
            self.deleted(cp, object_id)
        return object_id

    async def rename(self, cp: ControlPlane, who: Identity, ref: str, new_name: str) -> None:
        row = await self.find(cp, who, ref)
        check_name(self.kind, new_name)
        t = self.table

        async def op(conn: AsyncConnection) -> None:
            taken = (await conn.execute(
                sa.select(t.c.id).where(*named(t, who, new_name))
            )).first()
            if taken is not None:
                raise already_exists(f"A {self.kind} named '{new_name}' exists already"
                                     f"{in_environment(who)}.")
            await conn.execute(t.update().where(t.c.id == row.id).values(name=new_name))

        await cp.db.write(op)

