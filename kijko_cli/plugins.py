"""``kijko plugins``: the skill types, reflex types and chunkers this installation loads, and the
plugins it skips, with the reason (docs/plugins.md#what-loading-reports). Reads the installed
distributions' entry points exactly as the server does at start-up; needs no database."""

from __future__ import annotations

import json

import click

from kijko_core.plugins import API_VERSION
from kijko_core.plugins.registry import CHUNKERS_GROUP, REFLEX_TYPES_GROUP, SKILL_TYPES_GROUP, PluginReport

TITLES = {SKILL_TYPES_GROUP: "skill types", REFLEX_TYPES_GROUP: "reflex types", CHUNKERS_GROUP: "chunkers"}


def _camel(item: PluginReport) -> dict[str, object]:
    return {
        "group": item.group,
        "name": item.name,
        "status": item.status,
        "reason": item.reason,
        "version": item.version,
        "description": item.description,
        "distribution": item.distribution,
        "distributionVersion": item.distribution_version,
        "builtin": item.builtin,
        "target": item.target,
    }


def _line(item: PluginReport) -> str:
    source = (
        "built-in" if item.builtin else f"{item.distribution or 'registered'} {item.distribution_version or ''}".strip()
    )
    state = item.status if item.reason is None else f"{item.status}: {item.reason}"
    return f"  {item.name}\t{item.version or '-'}\t{source}\t{state}"


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the listing.")
@click.option("--strict", is_flag=True, help="Exit with 1 when a plugin was skipped.")
def plugins(as_json: bool, strict: bool) -> None:
    """List the loaded and skipped plugins with their versions (and why one was skipped)."""
    from kijko_core.plugins import registry

    report = registry.discover(log_outcome=False)  # the listing is the outcome; stdout stays clean
    items = sorted(report.report, key=lambda i: (list(TITLES).index(i.group), i.status != "loaded", i.name))
    if as_json:
        click.echo(json.dumps({"apiVersion": API_VERSION, "plugins": [_camel(item) for item in items]}, indent=2))
    else:
        click.echo(f"plugin API version {API_VERSION}")
        for group, title in TITLES.items():
            click.echo(f"{title}:")
            lines = [_line(item) for item in items if item.group == group]
            click.echo("\n".join(lines) if lines else "  (none)")
    if strict and any(item.status == "skipped" for item in items):
        raise click.exceptions.Exit(1)
