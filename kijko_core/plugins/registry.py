"""The installed skill and reflex types, found through their entry-point groups (docs/plugins.md).

:func:`load` reads the groups ``kijko.skill_types`` and ``kijko.reflex_types`` once per process
(``Kijko.start`` calls it, so the API, the worker and the CLI all load at start-up). Each entry
point is checked — its class derives from the group's base, has a ``name`` (the entry point's own
name) and a ``version``, was written for this :data:`~kijko_core.plugins.API_VERSION`, carries a
pydantic ``Config`` with a JSON schema, and can be instantiated — and a plugin that fails any
check is *skipped*: one structured log line with the reason, an entry in :func:`report`, and the
server goes on. Chunker plugins (``kijko.chunkers``, loaded by the ingestion when a project uses
them) are checked the same way for the report only.

Names: a built-in type (declared by the ``kijko`` distribution itself) can never be replaced —
a plugin declaring its name is skipped; two plugins declaring the same name are both skipped
(which one would run is not the operator's choice to guess; decision 0122).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, Literal

from pydantic import BaseModel

from kijko_core.logging import get_logger
from kijko_core.plugins import API_VERSION, PluginError, ReflexType, SkillType

Group = Literal["kijko.skill_types", "kijko.reflex_types", "kijko.chunkers"]
SKILL_TYPES_GROUP: Final = "kijko.skill_types"
REFLEX_TYPES_GROUP: Final = "kijko.reflex_types"
CHUNKERS_GROUP: Final = "kijko.chunkers"
#: The distribution whose entry points are the built-in types.
BUILTIN_DISTRIBUTION = "kijko"
NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
MAX_VERSION_LENGTH = 64
#: A reason quotes an exception's message, cut here (it ends up in logs and on the API).
MAX_REASON_LENGTH = 300

log = get_logger(__name__)

Status = Literal["loaded", "skipped"]


@dataclass(frozen=True, slots=True)
class PluginReport:
    """What happened to one entry point at load time."""

    group: Group
    name: str
    #: The entry point's target (``module:Class``).
    target: str
    status: Status
    #: Why it was skipped (None when loaded).
    reason: str | None = None
    #: The distribution that declared it, and its version (None: registered at run time).
    distribution: str | None = None
    distribution_version: str | None = None
    #: The type's own ``version`` and ``description`` (when it got that far).
    version: str | None = None
    description: str = ""
    builtin: bool = False


@dataclass
class Loaded:
    """The outcome of one :func:`discover`: the usable types by name, and the whole report."""

    skill_types: dict[str, SkillType] = field(default_factory=dict)
    reflex_types: dict[str, ReflexType] = field(default_factory=dict)
    report: list[PluginReport] = field(default_factory=list)

    def reported(self, group: Group, name: str) -> PluginReport | None:
        """The loaded entry of ``name`` in ``group`` (None: none loaded under that name)."""
        for item in self.report:
            if item.group == group and item.name == name and item.status == "loaded":
                return item
        return None


class _Skip(Exception):
    """One check failed: the entry point is skipped with this reason."""


def _reason_of(error: BaseException) -> str:
    # The type and message only: never a traceback (whose frames' locals may hold secrets).
    message = " ".join(str(error).split())
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:MAX_REASON_LENGTH]


def _distribution(entry: EntryPoint) -> tuple[str | None, str | None]:
    dist = entry.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _canonical(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def _builtin(entry: EntryPoint) -> bool:
    return _canonical(_distribution(entry)[0]) == BUILTIN_DISTRIBUTION


def _check_type(entry: EntryPoint, loaded: Any, base: type[SkillType] | type[ReflexType]) -> Any:
    """The checks every skill or reflex type passes; returns the instance."""
    if not (isinstance(loaded, type) and issubclass(loaded, base)):
        raise _Skip(f"{entry.value} is not a subclass of kijko_core.plugins.{base.__name__}")
    name = getattr(loaded, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _Skip("its name must be a string matching [a-z][a-z0-9_.-]* (at most 64 characters)")
    if name != entry.name:
        raise _Skip(f"its name {name!r} differs from the entry point's name {entry.name!r}")
    version = getattr(loaded, "version", None)
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_LENGTH:
        raise _Skip("it has no version (a non-empty string of at most 64 characters)")
    api_version = getattr(loaded, "api_version", None)
    if api_version != API_VERSION:
        raise _Skip(f"it was written for plugin API version {api_version!r}; this Kijko offers {API_VERSION}")
    if not isinstance(getattr(loaded, "description", ""), str):
        raise _Skip("its description is not a string")
    config = getattr(loaded, "Config", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise _Skip("its Config is not a pydantic model (a subclass of pydantic.BaseModel)")
    try:
        config.model_json_schema()
    except Exception as error:
        raise _Skip(f"its Config has no JSON schema ({_reason_of(error)})") from None
    try:
        return loaded()
    except (Exception, SystemExit) as error:
        raise _Skip(f"creating it failed ({_reason_of(error)})") from None


def _check_chunker(entry: EntryPoint, loaded: Any) -> None:
    # The same rule as kijko_core.ingestion.chunkers.load_custom_chunker, without keeping it.
    try:
        chunker = loaded() if isinstance(loaded, type) else loaded
    except Exception as error:
        raise _Skip(f"creating it failed ({_reason_of(error)})") from None
    if not callable(getattr(chunker, "chunk", None)):
        raise _Skip(f"{entry.value} does not provide a chunk method")


def _entries(group: Group) -> list[EntryPoint]:
    # Built-ins first, then by distribution and name: the report reads the same on every start.
    found = list(entry_points(group=group))
    return sorted(
        found,
        key=lambda e: (
            _canonical(_distribution(e)[0]) != BUILTIN_DISTRIBUTION,
            _canonical(_distribution(e)[0]),
            e.name,
        ),
    )


def _discover_group(
    group: Group, base: type[SkillType] | type[ReflexType] | None, into: Loaded, log_outcome: bool
) -> dict[str, Any]:
    passed: list[tuple[PluginReport, Any]] = []  # entries that passed every check, in order
    reports: list[PluginReport] = []
    builtins: set[str] = set()
    for entry in _entries(group):
        distribution, distribution_version = _distribution(entry)
        builtin = _builtin(entry)
        item = PluginReport(
            group=group,
            name=entry.name,
            target=entry.value,
            status="skipped",
            distribution=distribution,
            distribution_version=distribution_version,
            builtin=builtin,
        )
        try:
            if entry.name in builtins:
                raise _Skip(f"{entry.name!r} is a built-in type's name; a plugin cannot replace it")
            try:
                loaded = entry.load()
            except (Exception, SystemExit) as error:  # a module that exits at import is broken too
                raise _Skip(f"importing it failed ({_reason_of(error)})") from None
            if base is None:
                _check_chunker(entry, loaded)
                instance, version, description = None, distribution_version, ""
            else:
                instance = _check_type(entry, loaded, base)
                version, description = loaded.version, loaded.description
        except _Skip as skip:
            reports.append(replace(item, reason=str(skip)))
            continue
        if builtin:
            builtins.add(entry.name)
        item = replace(item, status="loaded", version=version, description=description)
        reports.append(item)
        passed.append((item, instance))
    # Two plugins under one name: neither runs (which one would is not for the operator to guess).
    declared: dict[str, list[PluginReport]] = {}
    for item, _ in passed:
        declared.setdefault(item.name, []).append(item)
    instances: dict[str, Any] = {}
    for item, instance in passed:
        if len(declared[item.name]) > 1:
            names = ", ".join(sorted(str(other.distribution) for other in declared[item.name]))
            reason = f"{item.name!r} is declared by more than one plugin ({names})"
            reports[reports.index(item)] = replace(item, status="skipped", reason=reason)
        else:
            instances[item.name] = instance
    # Only what went wrong is logged: the loaded ones are what `kijko plugins` and the API list,
    # and a line per plugin on every start would land in CLI commands' output too.
    for item in reports if log_outcome else ():
        if item.status == "skipped":
            log.warning(
                "plugin_skipped",
                group=group,
                name=item.name,
                target=item.target,
                distribution=item.distribution,
                distribution_version=item.distribution_version,
                reason=item.reason,
            )
    into.report.extend(reports)
    return instances


def discover(*, log_outcome: bool = True) -> Loaded:
    """Read the three entry-point groups now, check every entry and log the outcome, without
    touching the process's registry (tests call it on a ``sys.path`` they prepared)."""
    found = Loaded()
    found.skill_types = _discover_group(SKILL_TYPES_GROUP, SkillType, found, log_outcome)
    found.reflex_types = _discover_group(REFLEX_TYPES_GROUP, ReflexType, found, log_outcome)
    _discover_group(CHUNKERS_GROUP, None, found, log_outcome)
    return found


_loaded: Loaded | None = None


def load() -> Loaded:
    """Load the plugins of this process once (``Kijko.start`` calls it; every accessor below
    does too, for code that runs without a started Kijko)."""
    global _loaded
    if _loaded is None:
        _loaded = discover()
    return _loaded


def report() -> list[PluginReport]:
    """Every entry point seen at load time, loaded or skipped, and every type registered since."""
    return list(load().report)


def skill_types() -> dict[str, SkillType]:
    return dict(load().skill_types)


def reflex_types() -> dict[str, ReflexType]:
    return dict(load().reflex_types)


def skill_type(name: str) -> SkillType:
    """The installed skill type ``name``; :class:`PluginError` (422, field ``skillType``) if none."""
    found = skill_types().get(name)
    if found is None:
        raise PluginError("This skill type is not available", field="skillType")
    return found


def reflex_type(name: str) -> ReflexType:
    """The installed reflex type ``name``; :class:`PluginError` (422, field ``triggerType``)."""
    found = reflex_types().get(name)
    if found is None:
        raise PluginError("This trigger type is not available", field="triggerType", code="TRIGGER_TYPE_UNAVAILABLE")
    return found


def _registered(group: Group, instance: SkillType | ReflexType, into: Loaded) -> None:
    into.report[:] = [
        r for r in into.report if not (r.group == group and r.name == instance.name and r.status == "loaded")
    ]
    into.report.append(
        PluginReport(
            group=group,
            name=instance.name,
            target=f"{type(instance).__module__}:{type(instance).__qualname__}",
            status="loaded",
            version=instance.version,
            description=instance.description,
        )
    )


def register_skill_type(instance: SkillType) -> None:
    """Add (or replace) a type at run time (tests; embedding applications). No checks: the
    caller is Kijko's own code, not an installed distribution."""
    loaded = load()
    loaded.skill_types[instance.name] = instance
    _registered(SKILL_TYPES_GROUP, instance, loaded)


def register_reflex_type(instance: ReflexType) -> None:
    """Add (or replace) a reflex type at run time (tests; embedding applications)."""
    loaded = load()
    loaded.reflex_types[instance.name] = instance
    _registered(REFLEX_TYPES_GROUP, instance, loaded)


def loaded_skill_types() -> list[tuple[PluginReport, SkillType]]:
    """The loaded skill types with their report entries, by name."""
    current = load()
    return [
        (item, kind)
        for name, kind in sorted(current.skill_types.items())
        if (item := current.reported(SKILL_TYPES_GROUP, name))
    ]


def loaded_reflex_types() -> list[tuple[PluginReport, ReflexType]]:
    """The loaded reflex types with their report entries, by name."""
    current = load()
    return [
        (item, kind)
        for name, kind in sorted(current.reflex_types.items())
        if (item := current.reported(REFLEX_TYPES_GROUP, name))
    ]
