"""Apps and their functions: making an app, registering its functions (a run or a deploy),
heartbeats, listing apps and their history, looking a function up, and variants."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...wire import ids
from ...wire.spec import DEFAULTS
from .errors import ApiError, invalid, not_found
from .functions import FunctionRecord, web_entries
from .objects import in_environment
from .ownership import check_refs
from .specs import check_options, check_spec
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane


class Deployer(NamedTuple):
    """What the history shows of who deployed a version: the client's firebox version and the
    app's git commit (a "*" after it: with uncommitted changes)."""

    client_version: str = ""
    commit: str = ""


async def create(cp: ControlPlane, who: Identity, name: str | None, mode: str
                 ) -> tuple[str, bool]:
    """A new app in the caller's environment, or for a deploy the deployed app of that name
    there: its id, and whether it is new."""
    if mode == "deploy" and not name:
        raise invalid("A deployed app needs a name: App('my-app') or `firebox deploy --name`.")
    now = time.time()
    if mode == "deploy":
        found = await cp.db.read(
            sa.select(s.apps.c.id).where(
                s.apps.c.workspace_id == who.workspace_id,
                s.apps.c.environment == who.environment,
                s.apps.c.name == name,
                s.apps.c.state == "deployed",
            )
        )
        if found:
            return found[0][0], False
    app_id = ids.new_app_id()
    state = "deployed" if mode == "deploy" else "ephemeral"
    await cp.db.write(
        lambda conn: conn.execute(
            s.apps.insert().values(
                id=app_id,
                workspace_id=who.workspace_id,
                environment=who.environment,
                name=name,
                state=state,
                created_at=now,
                heartbeat_at=now,
            )
        )
    )
    await cp.app_event(app_id, "created", {"mode": mode})
    return app_id, True


async def app_row(cp: ControlPlane, who: Identity, ref: str) -> sa.Row[Any]:
    """An app of the caller's workspace by id, or the newest one with that name in the
    caller's environment."""
    q = sa.select(s.apps).where(s.apps.c.workspace_id == who.workspace_id)
    if ref.startswith(ids.APP):
        rows = await cp.db.read(q.where(s.apps.c.id == ref))
    else:
        rows = await cp.db.read(
            q.where(s.apps.c.environment == who.environment, s.apps.c.name == ref).order_by(
                (s.apps.c.state == "stopped").asc(), s.apps.c.created_at.desc()
            )
        )
    if not rows:
        raise not_found(f"No app '{ref}' in this workspace{in_environment(who)}; `firebox app "
                        "list` shows the apps.")
    return rows[0]


async def register_functions(cp: ControlPlane, who: Identity, app: sa.Row[Any],
                             entries: list[tuple[str, dict[str, Any]]], tag: str,
                             rollback_of: int | None = None,
                             deployer: Deployer = Deployer()) -> dict[str, Any]:
    """Register (or replace) an app's functions by name and spec: each is checked, stored,
    warmed, scheduled and its web endpoints routed; a deployed app keeps what each deploy
    registered as a new version. Returns their ids, web URLs and call keys (and the version)."""
    if app.state == "stopped":
        raise invalid(f"The app '{app.name or app.id}' is stopped; run or deploy it again.")
    functions: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    for name, raw in entries:
        spec = check_spec(name, raw)
        problem = cp.scheduler.capacity.never_fits(
            float(spec.get("cpu") or DEFAULTS["cpu"]),
            int(spec.get("memory") or DEFAULTS["memory"]), spec.get("gpu"))
        if problem:
            raise invalid(f"Function '{name}' can never run here: {problem}; ask for less.")
        absent = cp.scheduler.capacity.lacks_gpu(spec.get("gpu"))
        if absent:
            notes.append(f"Function '{name}' cannot start yet: {absent}. Its calls wait until "
                         "a node with it joins; the app's other functions serve meanwhile.")
        problem = await cp.resolve_image(who.workspace_id, spec)
        if problem:
            raise invalid(f"Function '{name}' cannot be registered: {problem}.")
        await check_refs(cp, who, f"Function '{name}'", spec)
        functions.append((name, spec))
    existing = {
        r.name: r.id
        for r in await cp.db.read(
            sa.select(s.functions.c.id, s.functions.c.name).where(
                s.functions.c.app_id == app.id, s.functions.c.parent_id.is_(None)
            )
        )
    }
    fids: dict[str, str] = {}
    replaced: list[str] = []
    # What the app had and this registration leaves out is gone from it, as in Modal: a deploy
    # (or rollback, or serve's reload) is the whole app.
    left_out = {fid for name, fid in existing.items() if name not in dict(functions)}
    now = time.time()
    version: list[int] = []
    async def op(conn: AsyncConnection) -> None:
        if app.state == "deployed":
            version.append(await _record_version(conn, app.id, functions, tag, rollback_of, now,
                                                 deployer, who.workspace_id))
        if left_out:
            await conn.execute(s.functions.update().where(s.functions.c.id.in_(left_out))
                               .values(active=False))
        for name, fields in functions:
            spec = json.dumps(fields)
            if name in existing:
                fids[name] = existing[name]
                replaced.append(existing[name])
                await conn.execute(
                    s.functions.update()
                    .where(s.functions.c.id == existing[name])
                    .values(spec=spec, active=True)
                )
            else:
                fid = fids[name] = ids.function_id(app.id, name)
                await conn.execute(
                    s.functions.insert().values(
                        id=fid, app_id=app.id, name=name, spec=spec, active=True, created_at=now
                    )
                )

    await cp.db.write(op)
    if left_out:
        await cp.retire_functions(left_out)
    for fid in replaced:
        await cp.replace_function(fid)
    web_urls: dict[str, str] = {}
    for name, fid in fids.items():
        fn = await cp.load_function(fid)
        if fn is not None:
            cp.scheduler.ensure_warm(fn)
            cp.schedules.register(fn)
            urls = await cp.web_endpoints.publish(fn, app.name, app.state == "deployed")
            for method, url in urls.items():
                web_urls[name if method is None else f"{name}.{method}"] = url
    if version:
        detail: dict[str, Any] = {"version": version[0], "functions": sorted(fids)}
        if tag:
            detail["tag"] = tag
        if rollback_of is not None:
            detail["rollback_of"] = rollback_of
        await cp.app_event(app.id, "rolled back" if rollback_of else "deployed", detail)
    keys = {name: cp.vault.call_key(fid) for name, fid in fids.items()}
    return {"ids": fids, "web_urls": web_urls, "call_keys": keys,
            "version": version[0] if version else None, "notes": notes}


async def _record_version(conn: AsyncConnection, app_id: str,
                          functions: list[tuple[str, dict[str, Any]]], tag: str,
                          rollback_of: int | None, now: float, deployer: Deployer,
                          workspace_id: str) -> int:
    """Store what a deploy registered as the app's next version, in the deploy's transaction;
    deployed by the workspace's name."""
    deployed_by = (await conn.execute(
        sa.select(s.workspaces.c.name).where(s.workspaces.c.id == workspace_id))).scalar_one()
    last = (await conn.execute(
        sa.select(sa.func.max(s.app_versions.c.version)).where(s.app_versions.c.app_id == app_id)
    )).scalar()
    version = (last or 0) + 1
    await conn.execute(s.app_versions.insert().values(
        app_id=app_id, version=version, created_at=now, tag=tag, rollback_of=rollback_of,
        client_version=deployer.client_version, deployed_by=deployed_by,
        commit=deployer.commit or None,
        functions=json.dumps([[name, spec] for name, spec in functions]),
    ))
    return version


async def versions(cp: ControlPlane, app: sa.Row[Any]) -> list[dict[str, Any]]:
    """The app's deployed versions, oldest first."""
    rows = await cp.db.read(
        sa.select(s.app_versions).where(s.app_versions.c.app_id == app.id)
        .order_by(s.app_versions.c.version)
    )
    return [{"version": r.version, "created_at": r.created_at, "tag": r.tag,
             "rollback_of": r.rollback_of, "client_version": r.client_version,
             "deployed_by": r.deployed_by, "commit": r.commit,
             "functions": sorted(name for name, _ in json.loads(r.functions))} for r in rows]


async def rollback(cp: ControlPlane, who: Identity, app: sa.Row[Any], to: int | None,
                   deployer: Deployer = Deployer()) -> dict[str, Any]:
    """Deploy one of the app's earlier versions again (by default the one before the current),
    as a new version: its functions get back the specs, code and images they had then."""
    if app.state != "deployed":
        raise invalid(f"Only a deployed app can be rolled back; '{app.name or app.id}' is "
                      f"{app.state}. Deploy it with `firebox deploy`.")
    kept = [r[0] for r in await cp.db.read(
        sa.select(s.app_versions.c.version)
        .where(s.app_versions.c.app_id == app.id).order_by(s.app_versions.c.version)
    )]
    if not kept:
        raise invalid(f"App '{app.name}' has no recorded versions to roll back to (it was "
                      "deployed before firebox kept them); deploy it again first.")
    current = kept[-1]
    target = to if to is not None else current - 1
    if target == current:
        raise invalid(f"v{current} is the current version of '{app.name}'; name an earlier one "
                      f"(`firebox app history {app.name}` lists them).")
    if target not in kept:
        known = ", ".join(f"v{v}" for v in kept)
        what = (f"'{app.name}' has only one version (v{current})" if target < 1 and to is None
                else f"'{app.name}' has no version v{target} (it has: {known})")
        raise not_found(f"Cannot roll back: {what}.")
    stored = (await cp.db.read(sa.select(s.app_versions.c.functions).where(
        s.app_versions.c.app_id == app.id, s.app_versions.c.version == target)))[0][0]
    entries = [(name, spec) for name, spec in json.loads(stored)]
    result = await register_functions(cp, who, app, entries, "", rollback_of=target,
                                      deployer=deployer)
    return {**result, "rollback_of": target}


async def heartbeat(cp: ControlPlane, app: sa.Row[Any]) -> None:
    """The app's client is alive: an ephemeral app lives on while these come."""
    now = time.time()
    await cp.db.write(
        lambda conn: conn.execute(
            s.apps.update().where(s.apps.c.id == app.id).values(heartbeat_at=now)
        )
    )


async def list_apps(cp: ControlPlane, who: Identity, limit: int) -> list[dict[str, Any]]:
    """The newest apps of the caller's environment, with how many functions and containers
    each has. A stopped app that never registered a function (a run that failed to start) is
    left out."""
    has_functions = sa.exists().where(s.functions.c.app_id == s.apps.c.id)
    rows = await cp.db.read(
        sa.select(s.apps)
        .where(s.apps.c.workspace_id == who.workspace_id,
               s.apps.c.environment == who.environment,
               sa.or_(s.apps.c.state != "stopped", has_functions))
        .order_by(s.apps.c.created_at.desc())
        .limit(limit)
    )
    counts: dict[str, int] = {}
    for c in cp.scheduler.containers.values():
        counts[c.pool.function.app_id] = counts.get(c.pool.function.app_id, 0) + 1
    fn_rows = await cp.db.read(
        sa.select(s.functions.c.app_id, sa.func.count())
        .where(s.functions.c.parent_id.is_(None), s.functions.c.active,
               s.functions.c.app_id.in_([r.id for r in rows]))
        .group_by(s.functions.c.app_id)
    )
    fn_counts = {r[0]: r[1] for r in fn_rows}
    return [
        {
            "app_id": r.id,
            "name": r.name,
            "state": r.state,
            "created_at": r.created_at,
            "stopped_at": r.stopped_at,
            "functions": fn_counts.get(r.id, 0),
            "containers": counts.get(r.id, 0),
        }
        for r in rows
    ]


async def history(cp: ControlPlane, app: sa.Row[Any]) -> list[dict[str, Any]]:
    """The app's events, oldest first."""
    rows = await cp.db.read(
        sa.select(s.app_events).where(s.app_events.c.app_id == app.id).order_by(s.app_events.c.id)
    )
    return [{"ts": r.ts, "kind": r.kind, "detail": json.loads(r.detail)} for r in rows]


def is_live(cp: ControlPlane, app: sa.Row[Any]) -> bool:
    """Whether the app may still log: it is not stopped, or containers of it still run."""
    return app.state != "stopped" or bool(cp.scheduler.containers_of(app.id))


async def lookup_function(cp: ControlPlane, who: Identity, name: str, app_id: str,
                          app_name: str, version: int | None = None) -> dict[str, Any]:
    """A function or class of an app (by id, or the deployed app of that name), as it is now or
    as a deployed version of the app had it: what a client needs to call it."""
    if app_id:
        app = await app_row(cp, who, app_id)
    else:
        rows = await cp.db.read(
            sa.select(s.apps).where(
                s.apps.c.workspace_id == who.workspace_id,
                s.apps.c.environment == who.environment,
                s.apps.c.name == app_name,
                s.apps.c.state == "deployed",
            )
        )
        if not rows:
            raise not_found(
                f"No deployed app named '{app_name}'{in_environment(who)}; deploy it with "
                "`firebox deploy`."
            )
        app = rows[0]
    pinned = await _pinned(cp, who, app, name, version) if version is not None else None
    fn = pinned
    if fn is None:
        rows = await cp.db.read(
            sa.select(s.functions).where(
                s.functions.c.app_id == app.id, s.functions.c.parent_id.is_(None),
                s.functions.c.active,
            )
        )
        by_name = {r.name: r for r in rows}
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise not_found(
                f"App '{app.name or app.id}' has no function or class '{name}' (it has: {known})."
            )
        fn = await cp.load_function(by_name[name].id)
        if fn is None:
            raise unusable(cp, by_name[name].id, name)
    spec = fn.spec
    urls: dict[str | None, str] = {}
    # A past version's web endpoints are not served: its URLs are the current version's.
    if web_entries(spec) and pinned is None:
        for method in web_entries(spec):
            urls[method] = (await cp.web_endpoints.url_for(fn, app.name, app.state == "deployed",
                                                           method)).url
    return {
        "function_id": fn.id,
        "app_id": app.id,
        "kind": spec.get("kind", "function"),
        "is_generator": bool(spec.get("is_generator")),
        "methods": spec.get("methods", {}),
        "parameters": spec.get("parameters", {}),
        "is_async": bool(spec.get("is_async")),
        "web": spec.get("web"),
        "web_url": urls.pop(None, None),
        "method_urls": urls,
        "call_key": cp.vault.call_key(fn.id),
    }


async def _pinned(cp: ControlPlane, who: Identity, app: sa.Row[Any], name: str, version: int
                  ) -> FunctionRecord | None:
    """The function as the app's deployed version had it (Modal's from_name(version=)), with
    that version's spec, code and image and containers of its own; None for the current
    version, which is the function as it is."""
    kept = [r[0] for r in await cp.db.read(
        sa.select(s.app_versions.c.version)
        .where(s.app_versions.c.app_id == app.id).order_by(s.app_versions.c.version))]
    if version not in kept:
        known = ", ".join(f"v{v}" for v in kept) or "none"
        raise not_found(f"App '{app.name}' has no version v{version} (it has: {known}); "
                        f"`firebox app history {app.name}` lists them.")
    if version == kept[-1]:
        return None
    stored = (await cp.db.read(sa.select(s.app_versions.c.functions).where(
        s.app_versions.c.app_id == app.id, s.app_versions.c.version == version)))[0][0]
    specs = dict((n, spec) for n, spec in json.loads(stored))
    if name not in specs:
        raise not_found(f"App '{app.name}' had no function or class '{name}' in v{version} "
                        f"(it had: {', '.join(sorted(specs)) or 'none'}).")
    spec = check_spec(name, specs[name])
    problem = await cp.resolve_image(who.workspace_id, spec)
    if problem:
        raise invalid(f"Function '{name}' of v{version} cannot run: {problem}.")
    fid = ids.function_id(app.id, f"{name}@v{version}")
    # Its parent is its app: not a variant of the current function, and left out of what
    # lists, counts and replaces an app's functions.
    await cp.db.write(lambda conn: conn.execute(cp.db.insert_ignore(s.functions).values(
        id=fid, app_id=app.id, name=name, spec=json.dumps(spec), parent_id=app.id,
        active=True, created_at=time.time())))
    fn = await cp.load_function(fid)
    if fn is None:
        raise unusable(cp, fid, name)
    return fn


def unusable(cp: ControlPlane, function_id: str, name: str) -> ApiError:
    problem = cp.bad_functions.get(function_id, ("", "", "it could not be loaded"))[2]
    return ApiError(409, "InvalidError", f"Function '{name}' cannot be used: its stored spec "
                                         f"is not valid ({problem}); deploy the app again.")


async def create_variant(cp: ControlPlane, who: Identity, parent_id: str,
                         options: dict[str, Any]) -> dict[str, Any]:
    """A function with other options (with_options): its own id, and so its own pools."""
    parent = await cp.load_function(parent_id)
    if parent is None or parent.workspace_id != who.workspace_id:
        raise not_found("No such function.")
    options = check_options({k: v for k, v in options.items() if v is not None})
    problem = cp.scheduler.capacity.never_fits(
        float(options.get("cpu", parent.get("cpu"))),
        int(options.get("memory", parent.get("memory"))),
        options.get("gpu", parent.get("gpu")),
    )
    if problem:
        raise invalid(f"This variant of '{parent.name}' can never run here: {problem}.")
    await check_refs(cp, who, f"This variant of '{parent.name}'", options)
    key = json.dumps(options, sort_keys=True)
    fid = ids.function_id(parent.id, key)
    now = time.time()
    await cp.db.write(
        lambda conn: conn.execute(
            cp.db.insert_ignore(s.functions).values(
                id=fid,
                app_id=parent.app_id,
                name=parent.name,
                spec=json.dumps({"options": options}),
                parent_id=parent.id,
                active=True,
                created_at=now,
            )
        )
    )
    return {"function_id": fid, "call_key": cp.vault.call_key(fid)}
