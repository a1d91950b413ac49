"""Profiles, as a user with two servers meets them: `firebox token set --profile`, `firebox
profile list / activate / current`, FIREBOX_PROFILE, and an old flat config.toml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from other_workspace import run_cli

NOWHERE = "http://127.0.0.1:9"  # nothing listens there: a server that is off


def _laptop(server, config_dir: Path, **extra: str) -> dict[str, str]:
    """A client machine's environment: only its own config directory says where to go."""
    return server.env() | {"FIREBOX_CONFIG_DIR": str(config_dir)} | extra


def test_two_profiles_activate_and_override(server, tmp_path: Path):
    env = _laptop(server, tmp_path)
    saved = run_cli(env, "token", "set", "--server", server.url, "--token", server.token,
                    "--profile", "work")
    assert saved.returncode == 0, saved.stderr
    assert "as profile 'work'" in saved.stdout and "activated it" in saved.stdout
    other = run_cli(env, "token", "set", "--server", NOWHERE, "--token", "fb-x", "--profile",
                    "home", "--no-verify", "--no-activate")
    assert other.returncode == 0, other.stderr
    assert "`firebox profile activate home` uses it" in other.stdout
    stored = tomllib.loads((tmp_path / "config.toml").read_text())
    assert stored == {"work": {"server_url": server.url, "token": server.token, "active": True},
                      "home": {"server_url": NOWHERE, "token": "fb-x"}}
    assert (tmp_path / "config.toml").stat().st_mode & 0o777 == 0o600

    listed = run_cli(env, "profile", "list")
    assert listed.returncode == 0, listed.stderr
    work, home = (next(line for line in listed.stdout.splitlines() if f" {name} " in line)
                  for name in ("work", "home"))
    assert "•" in work and server.url in work
    assert "•" not in home and NOWHERE in home
    assert run_cli(env, "app", "list").returncode == 0

    # Activating the other profile sends commands there.
    activated = run_cli(env, "profile", "activate", "home")
    assert activated.returncode == 0 and NOWHERE in activated.stdout
    assert run_cli(env, "profile", "current").stdout.strip() == "home"
    off = run_cli(env, "app", "list")
    assert off.returncode == 1 and f"Nothing is listening at {NOWHERE}" in off.stderr
    rows = json.loads(run_cli(env, "profile", "list", "--json").stdout)
    assert [r["name"] for r in rows if r["active"]] == ["home"]

    # FIREBOX_PROFILE picks one for a command, over the active one.
    assert run_cli(env | {"FIREBOX_PROFILE": "work"}, "app", "list").returncode == 0
    unknown = run_cli(env | {"FIREBOX_PROFILE": "nope"}, "app", "list")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (f"Error: No profile 'nope' in {tmp_path / 'config.toml'} "
                                      "(the profiles: home, work).")
    missing = run_cli(env, "profile", "activate", "nope")
    assert missing.returncode == 1 and "(the profiles: home, work)" in missing.stderr
    # Saving the profile FIREBOX_PROFILE names, before it exists, is how it comes to exist.
    first = run_cli(env | {"FIREBOX_PROFILE": "ci"}, "token", "set", "--server", server.url,
                    "--token", server.token, "--profile", "ci", "--no-activate")
    assert first.returncode == 0, first.stderr
    assert "FIREBOX_PROFILE set in this shell overrides the file; unset it" in first.stderr
    assert run_cli(env, "profile", "current").stdout.strip() == "home"


def test_an_old_flat_config_is_the_default_profile(server, tmp_path: Path):
    (tmp_path / "config.toml").write_text(
        f'server_url = "{server.url}"\ntoken = "{server.token}"\n')
    env = _laptop(server, tmp_path)
    listed = run_cli(env, "app", "list")
    assert listed.returncode == 0, listed.stderr
    assert run_cli(env, "profile", "current").stdout.strip() == "default"
    # Saving a second profile keeps the old one, now as a table of its own, still in use.
    saved = run_cli(env, "token", "set", "--server", NOWHERE, "--token", "fb-x", "--profile",
                    "home", "--no-verify", "--no-activate")
    assert saved.returncode == 0, saved.stderr
    stored = tomllib.loads((tmp_path / "config.toml").read_text())
    assert stored["default"] == {"server_url": server.url, "token": server.token}
    assert run_cli(env, "profile", "current").stdout.strip() == "default"
    assert run_cli(env, "app", "list").returncode == 0
