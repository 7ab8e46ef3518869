"""``.env`` in the working directory, read by every ``dnsrace`` command.

honcho reads ``.env`` for ``dnsrace up`` only; without this, ``dnsrace status``, ``fault``,
``demo`` and ``run`` would talk to the default ports while the cluster listens on the ones
``.env`` set. A variable already in the environment wins over the file, as with honcho.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from honcho.environ import parse


def read(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of ``path`` ({} when there is no such file)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(parse(text))


def apply(path: Path = Path(".env"),
          environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put the file's variables into ``environ`` where not already set; those it set."""
    added = {k: v for k, v in read(path).items() if k not in environ}
    environ.update(added)
    return added
