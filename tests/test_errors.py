"""One exception root: every error the project defines is a DnsraceError, and keeps its meaning."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from dns_server.errors import FormatError, MalformedReason, QueryError, ZoneSyncError
from dns_server.protocol import Rcode
from services.config import ConfigError, load
from services.control.client import ControlError
from services.control.requests import FaultRequestError
from services.core.records import Rejected, RejectReason
from services.errors import DnsraceError
from services.runtime.netns import IsolationError
from services.runtime.service import PortInUse
from services.tools.scenario import ScenarioError

PACKAGES = ("services", "dns_server", "loadgen", "bench")
NOT_ERRORS = {"services.explorer.scheduler.Retired"}
"""Control flow, not an error: a BaseException on purpose (see its docstring)."""


def project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [name] + [m.name for m in pkgutil.walk_packages(package.__path__, f"{name}.")
                            if not m.name.endswith("__main__")]
        for module_name in modules:
            module = importlib.import_module(module_name)
            for value in vars(module).values():
                if (inspect.isclass(value) and issubclass(value, BaseException)
                        and value.__module__ == module_name):
                    found[f"{module_name}.{value.__qualname__}"] = value
    return [cls for qualified, cls in sorted(found.items()) if qualified not in NOT_ERRORS]


def test_every_exception_the_project_defines_derives_from_the_one_root() -> None:
    exceptions = project_exceptions()
    assert len(exceptions) >= 20  # the walk found them, not nothing
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in exceptions
              if not issubclass(cls, DnsraceError)]
    assert strays == []


@pytest.mark.parametrize(("error", "builtin"), [
    (ConfigError, ValueError), (FaultRequestError, ValueError), (ScenarioError, ValueError),
    (IsolationError, OSError), (ControlError, RuntimeError), (PortInUse, RuntimeError),
])
def test_errors_keep_the_builtin_base_their_callers_catch(error: type[Exception],
                                                          builtin: type[Exception]) -> None:
    assert issubclass(error, DnsraceError) and issubclass(error, builtin)


def test_a_bad_setting_is_still_a_config_error_with_its_fix_and_a_dnsrace_error() -> None:
    with pytest.raises(DnsraceError, match="DNSRACE_PLAN_INTERVAL_S") as caught:
        load({"DNSRACE_PLAN_INTERVAL_S": "soon"})
    assert isinstance(caught.value, ConfigError)


def test_errors_still_carry_their_rcode_and_reason() -> None:
    formerr = FormatError(MalformedReason.FORMERR, "bad label")
    assert isinstance(formerr, QueryError) and formerr.rcode is Rcode.FORMERR
    rejected = Rejected(RejectReason.CREATE_EXISTS, 1, "exists")
    assert rejected.reason is RejectReason.CREATE_EXISTS and isinstance(rejected, DnsraceError)
    assert issubclass(ZoneSyncError, DnsraceError)
