"""The package's own files, read the same way from a checkout and from an installed wheel.

``importlib.resources`` finds them inside the installed package (``services/data``), so
``dnsrace demo`` or ``dnsrace run scenarios/race.toml`` works from any directory after a plain
``pip install``.
"""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

DATA = "services.data"


def procfile_text() -> str:
    """The Procfile: the one list of the cluster's processes."""
    return resources.files(DATA).joinpath("Procfile").read_text()


def scenario_names() -> list[str]:
    """The scenarios shipped with the package (``race.toml``, ``nemesis.toml`` ...)."""
    folder = resources.files(DATA).joinpath("scenarios")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".toml"))


def scenario_text(path: Path) -> str | None:
    """A shipped scenario's text when ``path`` names one (``scenarios/race.toml`` or
    ``race.toml``) and no such file is in the working directory; None otherwise."""
    if path.exists() or path.name not in scenario_names():
        return None
    if path.parent not in (Path(), Path("scenarios")):
        return None
    return resources.files(DATA).joinpath("scenarios", path.name).read_text()


def version() -> str:
    """The installed distribution's version (``dnsrace --version``)."""
    try:
        return metadata.version("dnsrace")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def alerts_text() -> str:
    """The Prometheus alerting rules (dashboards/alerts.yml)."""
    return resources.files(DATA).joinpath("alerts.yml").read_text()
