"""Who may use the served store, from deploy/clickhouse's users, and how the engine enforces it. Pure + files.

chDB signs every connection in as its `default` user and cannot switch users (no SQL access
storage, no impersonation in clickhouse-local). So the engine's users.xml gives `default` the
writer's grants (everything but reading files, URLs and remote servers) and carries every
provincial analyst's row policies, each gated on a marker the server sets on that analyst's
connections: `log_comment = 'surplus:<user>'`, locked by a settings profile whose constraint
makes it const. An analyst's connection then gets the settings of its deploy profile
(`readonly = 2` last: no writes, no DDL, `readonly` itself cannot change; max_execution_time and
friends within the profile's constraints). Policies are ClickHouse's own row policies, so they
hold through views, subqueries, `merge()` and every other way of reading a table; relations a
provincial analyst is not granted get a policy that returns no rows to it.

Passwords: the writer `surplus` from SURPLUS_WRITER_PASSWORD (else generated and kept in the
state directory), the national `analyst` from SURPLUS_ANALYST_PASSWORD (no login when unset),
every other user of users.d/*.xml from the variable its `<password from_env=…>` names.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from surplus.errors import UserError

WRITER = "surplus"
ANALYST = "analyst"
MARKER_SETTING = "log_comment"
_GRANT = re.compile(r"^GRANT\s+SELECT\s+ON\s+(\w+)\.(\*|\w+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class User:
    """A login of the served store and what its connections are set to."""

    name: str
    password: str
    writer: bool = False
    profile: str | None = None  # the deploy profile (constraints come from it)
    settings: tuple[tuple[str, str], ...] = ()  # the profile's settings, readonly last
    grants: frozenset[str] | None = None  # relations of the database it may read; None: all
    filters: Mapping[str, str] = field(default_factory=dict)  # relation -> row filter

    @property
    def marker(self) -> str:
        return "" if self.writer else f"surplus:{self.name}"

    def setup(self) -> list[str]:
        """The statements that make a fresh engine connection this user's (empty for the writer)."""
        if self.writer:
            return []
        out = [f"SET {MARKER_SETTING} = '{self.marker}'", f"SET profile = '{served_profile(self.profile)}'"]
        out += [f"SET {k} = {_literal(v)}" for k, v in self.settings]
        return out

    def check_password(self, given: str) -> bool:
        return hmac.compare_digest(self.password.encode(), given.encode())


def served_profile(profile: str | None) -> str:
    return f"surplus_served_{profile or 'analyst'}"


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    settings: tuple[tuple[str, str], ...]
    constraints: ET.Element | None


def writer_password(state_dir: Path, env: Mapping[str, str]) -> str:
    """SURPLUS_WRITER_PASSWORD, else the one generated on a first start and kept (mode 0600)."""
    if env.get("SURPLUS_WRITER_PASSWORD"):
        return env["SURPLUS_WRITER_PASSWORD"]
    kept = state_dir / "writer-password"
    if kept.exists():
        return kept.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(18)
    kept.touch(mode=0o600)
    kept.write_text(password + "\n", encoding="utf-8")
    return password


def _profiles(roots: Iterable[ET.Element]) -> dict[str, Profile]:
    found: dict[str, Profile] = {}
    for root in roots:
        for element in root.findall("profiles/*"):
            settings = [(c.tag, (c.text or "").strip()) for c in element if c.tag != "constraints"]
            settings.sort(key=lambda kv: kv[0] == "readonly")  # readonly last: it locks the rest
            found[element.tag] = Profile(element.tag, tuple(settings), element.find("constraints"))
    return found


def load_users(users_dir: Path | None, database: str, state_dir: Path,
               env: Mapping[str, str] | None = None) -> tuple[dict[str, User], dict[str, Profile]]:
    """The logins: the writer, then every user of users_dir/*.xml whose password is set.

    Relations in the files are named `cpn.<relation>`; a store served under another database
    name gets them renamed. Raises UserError for a users file that is not ClickHouse XML.
    """
    env = os.environ if env is None else env
    roots = _roots(users_dir)
    profiles = _profiles(roots)
    users = {WRITER: User(WRITER, writer_password(state_dir, env), writer=True)}
    for root in roots:
        for element in root.findall("users/*"):
            name = element.tag
            if name in (WRITER, "default"):
                continue
            source = element.find("password")
            var = "SURPLUS_ANALYST_PASSWORD" if name == ANALYST else (
                source.get("from_env") if source is not None else None)
            password = env.get(var or "") or ""
            if not password:
                continue  # no password set: no login for this user
            users[name] = _user(element, password, profiles, database)
    return users, profiles


def reader(users_dir: Path | None, database: str, name: str = ANALYST) -> tuple[User, dict[str, Profile]]:
    """One analyst of users_dir/*.xml as a local process signs in to the embedded store: the
    same profile settings (readonly last), grants and row policies as on the served store, no
    password (whoever can open the store's files needs none).

    Raises UserError when users_dir has no such user, or names the writer."""
    if name in (WRITER, "default"):
        raise UserError(f"{name!r} is the writer: SQL here runs as an analyst (`{ANALYST}` by default)")
    roots = _roots(users_dir)
    profiles = _profiles(roots)
    for root in roots:
        for element in root.findall("users/*"):
            if element.tag == name:
                return _user(element, "", profiles, database), profiles
    known = sorted({e.tag for r in roots for e in r.findall("users/*")} - {WRITER, "default"})
    raise UserError(f"no user {name!r} in {users_dir}/*.xml (there: {', '.join(known) or 'none'})")


def _roots(users_dir: Path | None) -> list[ET.Element]:
    roots: list[ET.Element] = []
    for path in sorted(users_dir.glob("*.xml")) if users_dir and users_dir.is_dir() else []:
        try:
            roots.append(ET.parse(path).getroot())  # noqa: S314 - the operator's own deploy files
        except ET.ParseError as exc:
            raise UserError(f"users file {path}: not XML ({exc})") from None
    return roots


def _user(element: ET.Element, password: str, profiles: Mapping[str, Profile], database: str) -> User:
    """An analyst's User from its `<users>` element (read-only whatever its profile says)."""
    profile = element.findtext("profile")
    settings = profiles[profile].settings if profile is not None and profile in profiles else ()
    if not any(k == "readonly" for k, _ in settings):
        settings = (*settings, ("readonly", "2"))  # an analyst never writes
    grants: set[str] | None = set()
    for query in element.iterfind("grants/query"):
        match = _GRANT.match(" ".join((query.text or "").split()))
        if match and match.group(1) == "cpn":
            if match.group(2) == "*":
                grants = None
            elif grants is not None:
                grants.add(match.group(2))
    filters = {t.tag: _rename(" ".join((t.findtext("filter") or "").split()), database)
               for t in element.iterfind("databases/cpn/*")}
    return User(element.tag, password, profile=profile, settings=tuple(settings),
                grants=None if grants is None else frozenset(grants), filters=filters)


def _rename(sql: str, database: str) -> str:
    return re.sub(r"\bcpn\.", f"{database}.", sql) if database != "cpn" else sql


def policies(users: Iterable[User], relations: Iterable[str]) -> dict[str, str]:
    """relation -> the `default` user's row filter: every provincial analyst's, gated on its marker."""
    out: dict[str, list[str]] = {}
    relations = sorted(set(relations))
    for user in users:
        if user.writer or (user.grants is None and not user.filters):
            continue
        gate = f"getSetting('{MARKER_SETTING}') != '{user.marker}'"
        for relation in relations:
            if relation in user.filters:
                out.setdefault(relation, []).append(f"({gate} OR ({user.filters[relation]}))")
            elif user.grants is not None and relation not in user.grants:
                out.setdefault(relation, []).append(f"({gate})")
    return {relation: " AND ".join(conds) for relation, conds in out.items()}


def engine_config(where: Path, database: str, users: Iterable[User], profiles: Mapping[str, Profile],
                  relations: Iterable[str]) -> Path:
    """Write the engine's config.xml and users.xml into `where`; return config.xml's path."""
    users = list(users)
    root = ET.Element("clickhouse")
    profiles_el = ET.SubElement(root, "profiles")
    ET.SubElement(profiles_el, "default")
    for name in sorted({u.profile for u in users if not u.writer} | {None}, key=str):
        served = ET.SubElement(profiles_el, served_profile(name))
        constraints = ET.SubElement(served, "constraints")
        source = profiles[name].constraints if name is not None and name in profiles else None
        for child in source if source is not None else []:
            constraints.append(child)
        ET.SubElement(ET.SubElement(constraints, MARKER_SETTING), "const")
    ET.SubElement(ET.SubElement(root, "quotas"), "default")
    default = ET.SubElement(ET.SubElement(root, "users"), "default")
    ET.SubElement(default, "password")
    ET.SubElement(ET.SubElement(default, "networks"), "ip").text = "::/0"
    ET.SubElement(default, "profile").text = "default"
    ET.SubElement(default, "quota").text = "default"
    grants = ET.SubElement(default, "grants")
    ET.SubElement(grants, "query").text = "GRANT ALL ON *.*"
    ET.SubElement(grants, "query").text = "REVOKE SOURCES ON *.*"  # file(), url(), remote(), …
    filters = policies(users, relations)
    if filters:
        tables = ET.SubElement(ET.SubElement(default, "databases"), database)
        for relation, condition in sorted(filters.items()):
            ET.SubElement(ET.SubElement(tables, relation), "filter").text = condition
    where.mkdir(parents=True, exist_ok=True)
    users_xml = where / "users.xml"
    ET.indent(root)
    users_xml.write_bytes(ET.tostring(root, xml_declaration=True, encoding="utf-8"))
    config = where / "config.xml"
    config.write_text("<clickhouse><user_directories><users_xml><path>"
                      f"{users_xml}</path></users_xml></user_directories></clickhouse>\n",
                      encoding="utf-8")
    return config
