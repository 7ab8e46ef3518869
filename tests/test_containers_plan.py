"""--containers without an engine: who sits on which network, the commands, what dig saw."""

from __future__ import annotations

from services.config import Settings
from services.containers.engine import run_args
from services.containers.partition import partitioned
from services.containers.plan import LABEL, mac_of, plan
from services.core.faults import Fault, FaultType
from services.core.names import AZS
from services.resources import procfile_text
from services.runtime.cluster import OUTAGE_PROCESSES
from services.tools.containers_demo import classify, repaired_after_empty

LAYOUT = plan(Settings(), procfile_text())


def test_every_procfile_process_has_a_container_and_each_enactor_only_its_az_network() -> None:
    """Every process 'dnsrace up' runs; issue 15's (run by 'dnsrace outage') are left out."""
    procfile = {line.split(":")[0] for line in procfile_text().splitlines() if ":" in line}
    assert {c.name for c in LAYOUT.processes()} == procfile - set(OUTAGE_PROCESSES)
    for az in AZS:
        enactor = LAYOUT.container("enactor_" + az.removeprefix("use1-"))
        network = LAYOUT.az_network(az)
        assert [n for n, _ in enactor.networks] == [network.name]
        # It resolves through our DNS server on its own network and reaches Redis there.
        assert enactor.dns == LAYOUT.container("dns").address_on(network.name)
        redis = LAYOUT.container("redis").address_on(network.name)
        assert enactor.env["DNSRACE_REDIS_URL"] == f"redis://{redis}:6390/0"
    assert {c.name for c in LAYOUT.shared()} == {"redis", "dns"}


def test_run_command_labels_the_container_and_pins_its_address() -> None:
    enactor = LAYOUT.container("enactor_az1")
    args = run_args("podman", LAYOUT, enactor, "img", {"DNSRACE_MODE": "legacy"})
    assert f"{LABEL}=1" in args
    assert "--network=dnsrace-use1-az1:ip=198.19.1.11,mac=02:00:c6:13:01:0b" in args
    assert args[args.index("--dns") + 1] == "198.19.1.2"
    assert args[-4:] == ["dnsrace", "enactor", "--az", "use1-az1"]
    assert "DNSRACE_MODE=legacy" in args
    loadgen = run_args("docker", LAYOUT, LAYOUT.container("loadgen"), "img", {})
    assert "--network=container:dnsrace-dataplane" in loadgen and "--replace" not in loadgen


def test_every_container_has_a_mac_of_its_own_that_survives_a_reconnect() -> None:
    """A partition takes Redis and DNS off an AZ's network and puts them back: with the same
    MAC each time, the AZ's neighbour caches stay right (a new one kept them unreachable for
    24-45 s after the heal)."""
    macs = [mac_of(address) for c in LAYOUT.containers for address in c.addresses]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)  # local, unicast
    assert mac_of("198.19.1.2") == "02:00:c6:13:01:02"


def test_dig_output_is_read_as_addresses_empty_or_no_answer() -> None:
    header = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: {}, id: 1\n"
    answer = "dynamodb.us-east-1.amazonaws.com. 5 IN A 127.0.10.1\n"
    assert classify(header.format("NOERROR") + answer)[0] == "answers"
    assert classify(header.format("NOERROR"))[0] == "empty"
    assert classify(header.format("SERVFAIL"))[0] == "no answer"
    assert classify(";; communications error: timed out\n")[0] == "no answer"
    assert repaired_after_empty(["answers", "empty", "no answer", "answers"])
    assert not repaired_after_empty(["answers", "empty"])
    assert not repaired_after_empty(["empty", "answers"])


def test_partitioned_azs_are_those_of_active_faults() -> None:
    one = Fault("f1", FaultType.AZ_PARTITION, "use1-az1", 0, 10_000)
    every = Fault("f2", FaultType.AZ_PARTITION, "all", 0, 5_000)
    assert partitioned([one, every], 1_000) == frozenset(AZS)
    assert partitioned([one, every], 6_000) == {"use1-az1"}
    assert partitioned([one], 10_000) == frozenset()
