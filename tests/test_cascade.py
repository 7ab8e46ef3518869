"""``dnsrace cascade --stage dwfm`` on the real cluster, as a user runs it (issue 14's Must-hold).

Each test runs the command in a process of its own on ports of its own and reads its one JSON
object; then ``dnsrace check`` reads the run's history (the cluster's Redis keeps its
append-only file in the run's state directory, so a fresh Redis on it sees the same history).

- legacy, the collapse watched for 90 s with nobody acting: leases fall by >= 50 % in the
  outage and launches fail with InsufficientInstanceCapacity; after the DNS repair goodput
  stays below 10 % of its healthy rate for the whole watch, with DNS answering; the operators'
  procedure ends it; C1 is broken.
- safe with queue_throttle alone (the race still empties the name): >= 95 % of the leases
  held within 20 s of the repair, no work started on an expired item, no operator action.
- safe (every protection): no DNS outage, no lease lost.

Metastability (the same code heals a short outage by itself and never a long one) is shown
in the discrete-event model (tests/test_cascade_model.py) plus the legacy run here: a real run
with a short outage would add a minute of CI for what the model shows exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.config import Settings
from services.ec2.work import in_time_capacity
from services.runtime.cluster import REPO, cluster_env
from tests.conftest import cluster_settings

pytestmark = pytest.mark.cluster

WATCH_S = 90.0


def cascade(tmp_path: Path, *args: str, **settings: Any) -> tuple[dict[str, Any], str, float]:
    """Run ``dnsrace cascade --stage dwfm --json ARGS``; (its JSON, its live lines, wall s)."""
    s = cluster_settings(tmp_path, **settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(cluster_env(s))
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.tools.cli",
            "cascade",
            "--stage",
            "dwfm",
            "--json",
            "--report-dir",
            str(tmp_path / "reports"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=REPO,
    )
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    summary = json.loads(done.stdout)
    print(json.dumps({k: v for k, v in summary.items() if k != "launches"}, indent=1))
    # a wait the story counts on that timed out ("waited in vain for ..." in the text summary)
    assert summary["waits_missed"] == [], (summary["waits_missed"], done.stderr[-4000:])
    return summary, done.stderr, wall


@pytest.mark.timeout(420)
def test_legacy_collapses_after_the_repair_until_the_operators_act(tmp_path: Path) -> None:
    summary, live, wall = cascade(
        tmp_path, "--mode", "legacy", "--collapse-watch", f"{WATCH_S:.0f}"
    )
    total = summary["leases_total"]
    assert summary["mode"] == "legacy" and summary["protections"] == []
    assert summary["problems"] == []
    # The outage: leases run out, launches find no leased droplet.
    assert summary["dns_outage_s"] > 5
    assert summary["leases_min_held"] <= 0.5 * total
    assert summary["launches"]["during"]["insufficient_capacity"] > 0
    assert summary["launch_success_ratio"]["before"] == 1.0
    # The collapse: goodput < 10 % of healthy with DNS answering, for the whole watch.
    assert summary["collapse"] is True
    assert summary["collapse_s"] >= WATCH_S - 10  # less only the resolvers' negative caching
    repaired = summary["marks_s"]["dns_repaired"]
    acted = summary["marks_s"]["operators"]
    assert acted - repaired >= WATCH_S
    assert summary["work_void"] > 0 and summary["work_started_late"] > 0
    # DynamoDB healthy all along the collapse (once the clients' cached empty answer expired):
    # no call failed; the work was done, too late.
    assert summary["dynamodb_failures_in_collapse"] == 0
    s = Settings()
    in_time = in_time_capacity(
        s.dwfm_workers, s.dwfm_deadline_s, s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s
    )
    assert summary["queue_depth_max"] > 2 * s.dwfm_hosts * in_time  # past the tipping point
    # The operators' procedure ends it: every lease back, in the time the throttle allows.
    actions = [a["action"] for a in summary["operator_actions"]]
    assert actions == ["dns_repair", "throttle", "restart", "restart"]
    assert summary["lease_recovery_s"] is not None
    assert repaired + summary["lease_recovery_s"] > acted  # not before anyone acted
    status = summary["ec2_status"]  # 'dnsrace ec2 status --json' at the end
    assert all(h["operator_throttle_per_s"] and h["admission_limit"] is None for h in status)
    assert summary["launches"]["after"]["ok"] > 0
    assert "dns EMPTY" in live and "leases" in live
    # dnsrace check on the run's history: the race's I1-I3, and C1 broken.
    assert summary["violations"]["C1"] == 1 and summary["violations"]["I3"] >= 1
    assert "were lost at the DNS repair" in summary["c1"][0]
    # The report: DNS empty shaded, every operator action marked.
    page = Path(summary["report"]).read_text()
    assert 'class="fault"' in page and page.count('class="operator"') == 2 * len(actions)
    print(f"legacy cascade with a {WATCH_S:.0f} s watch: {wall:.1f} s wall")


def test_queue_throttle_alone_recovers_within_20_s_with_no_late_work(tmp_path: Path) -> None:
    summary, _, wall = cascade(
        tmp_path, "--mode", "safe", mode="safe", protections=("queue_throttle",)
    )
    total = summary["leases_total"]
    assert summary["protections"] == ["queue_throttle"] and summary["problems"] == []
    assert summary["dns_outage_s"] > 5  # no DNS protection: the race still empties the name
    assert summary["leases_min_held"] <= 0.5 * total
    assert summary["collapse"] is False
    assert summary["lease_recovery_s"] is not None and summary["lease_recovery_s"] <= 20.0
    assert summary["work_started_late"] == 0  # no work spent on an expired item
    # An item started in time can still overrun its deadline (a slow first call after the
    # outage): rare, and counted as void.
    assert summary["work_void"] <= 0.05 * total
    assert [a["action"] for a in summary["operator_actions"]] == ["dns_repair"]
    assert summary["launch_success_ratio"]["after"] > 0.5
    assert summary["violations"]["C1"] == 0
    # Admission by queue size: no host let more wait than its workers finish in time.
    s = Settings()
    in_time = in_time_capacity(
        s.dwfm_workers, s.dwfm_deadline_s, s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s
    )
    assert 0 < summary["queue_depth_max"] <= s.dwfm_hosts * in_time
    # What 'dnsrace ec2 status --json' said at the end: every lease held, queue_throttle on.
    status = summary["ec2_status"]
    assert [h["host"] for h in status] == ["dwfm_1", "dwfm_2"]
    assert all(sum(h["leases_held"].values()) == h["droplets"] == s.dwfm_droplets for h in status)
    assert all(h["admission_limit"] and h["operator_throttle_per_s"] is None for h in status)
    print(f"queue_throttle cascade: {wall:.1f} s wall")


def test_safe_loses_no_lease(tmp_path: Path) -> None:
    summary, _, _ = cascade(tmp_path, "--mode", "safe", mode="safe")
    assert summary["problems"] == []
    assert "queue_throttle" in summary["protections"] and "fenced_commit" in summary["protections"]
    assert summary["dns_outage_s"] == 0.0
    assert summary["leases_min_held"] == summary["leases_total"]
    assert summary["operator_actions"] == [] and summary["collapse"] is False
    ratios = summary["launch_success_ratio"]
    assert ratios["before"] == ratios["during"] == ratios["after"] == 1.0
    assert set(summary["violations"].values()) == {0}
