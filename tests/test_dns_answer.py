"""The answer function alone: hand-built zones in, answers out (no sockets, no Redis)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dns_server.answer import (
    RFC8482_HINFO,
    AnswerPolicy,
    ARdata,
    NsRdata,
    Question,
    Resolution,
    SoaRdata,
    TxtRdata,
    choose_variant,
    cumulative_weights,
    resolve,
    weighted_variants,
)
from dns_server.protocol import QType, Rcode
from dns_server.zone import Zone
from services.core import names
from services.core.records import (
    Alias,
    Lock,
    RecordSet,
    WeightedAddress,
    ZoneSnapshot,
    a_records,
    alias_record,
    lock_record,
)
from services.store.zone import zone_apex_batch

POLICY = AnswerPolicy(ttl_s=5)
APEX = tuple(change.rrset for change in zone_apex_batch(ttl_s=5, negative_ttl_s=3).changes)
TREE = names.tree_name(7, names.REGIONAL)
CELL = names.cell_endpoint(0)


def make_zone(*rrsets: RecordSet, serial: int = 42) -> Zone:
    return Zone.from_snapshot(ZoneSnapshot(serial, {r.key: r.value for r in APEX + rrsets}))


def regional(*addresses: WeightedAddress, tree: str = TREE, generation: int = 7) -> Zone:
    return make_zone(a_records(tree, addresses),
                     alias_record(names.REGIONAL, Alias(tree, generation)))


def ask(zone: Zone, name: str, qtype: int = QType.A) -> Resolution:
    return resolve(zone, Question.of(name, qtype), POLICY)


def first_ips(resolution: Resolution) -> list[str]:
    return [_ip(v.answer[0].rdata) for v in resolution.variants]


def _ip(rdata: object) -> str:
    assert isinstance(rdata, ARdata)
    return rdata.ip


def assert_negative_with_soa(resolution: Resolution, rcode: Rcode, serial: int = 42) -> None:
    assert resolution.rcode is rcode
    assert resolution.authoritative
    assert [v.answer for v in resolution.variants] == [()]
    (soa,) = resolution.authority
    assert soa.name == names.ZONE
    assert isinstance(soa.rdata, SoaRdata)
    assert soa.rdata.serial == serial
    assert soa.ttl == 3  # min(SOA minimum 3, TTL 5): how long resolvers cache the emptiness


def test_endpoint_follows_its_alias_to_the_tree_with_one_variant_per_address() -> None:
    zone = regional(WeightedAddress("127.0.10.1", 10), WeightedAddress("127.0.10.2", 30))
    answer = ask(zone, names.REGIONAL)
    assert answer.rcode is Rcode.NOERROR and answer.authoritative
    assert first_ips(answer) == ["127.0.10.1", "127.0.10.2"]
    assert [v.weight for v in answer.variants] == [10, 30]
    for variant in answer.variants:
        assert sorted(_ip(r.rdata) for r in variant.answer) == ["127.0.10.1", "127.0.10.2"]
        assert {r.ttl for r in variant.answer} == {5}
        assert {r.name for r in variant.answer} == {names.REGIONAL}
    assert (answer.generation, answer.address_count, answer.empty_alias) == (7, 2, False)
    assert answer.authority == ()


def test_alias_to_a_deleted_tree_is_noerror_with_no_answer_and_the_soa() -> None:
    """The October 2025 answer: the name exists, its plan does not."""
    zone = make_zone(alias_record(names.REGIONAL, Alias(TREE, 7)))
    answer = ask(zone, names.REGIONAL)
    assert_negative_with_soa(answer, Rcode.NOERROR)
    assert answer.empty_alias and answer.generation == 7 and answer.address_count == 0


def test_alias_to_a_tree_without_records_is_the_same_empty_answer() -> None:
    answer = ask(regional(), names.REGIONAL)
    assert_negative_with_soa(answer, Rcode.NOERROR)
    assert answer.empty_alias


def test_name_that_does_not_exist_is_nxdomain_with_the_soa() -> None:
    assert_negative_with_soa(ask(regional(WeightedAddress("127.0.10.1", 1)),
                                 f"nothing-here.{names.ZONE}"), Rcode.NXDOMAIN)


def test_name_without_the_asked_type_is_nodata() -> None:
    zone = regional(WeightedAddress("127.0.10.1", 1))
    assert_negative_with_soa(ask(zone, names.REGIONAL, QType.AAAA), Rcode.NOERROR)
    assert_negative_with_soa(ask(zone, names.REGIONAL, 15), Rcode.NOERROR)  # MX
    assert_negative_with_soa(ask(zone, TREE, QType.TXT), Rcode.NOERROR)
    assert_negative_with_soa(ask(zone, names.ZONE, QType.A), Rcode.NOERROR)


def test_empty_non_terminal_is_nodata_not_nxdomain() -> None:
    zone = make_zone(a_records(names.tree_name(1, CELL), [WeightedAddress("127.0.10.3", 1)]),
                     alias_record(CELL, Alias(names.tree_name(1, CELL), 1)))
    assert_negative_with_soa(ask(zone, f"ddb.{names.ZONE}"), Rcode.NOERROR)
    assert_negative_with_soa(ask(zone, f"other.ddb.{names.ZONE}"), Rcode.NXDOMAIN)


@pytest.mark.parametrize("name", ["example.com", "amazonaws.com", "evilus-east-1.amazonaws.com",
                                  "", f"{names.ZONE}.evil.com"])
def test_outside_the_zone_is_refused_without_data(name: str) -> None:
    answer = ask(regional(WeightedAddress("127.0.10.1", 1)), name)
    assert answer.rcode is Rcode.REFUSED and not answer.authoritative
    assert [v.answer for v in answer.variants] == [()] and answer.authority == ()


def test_other_class_and_zone_transfer_are_refused() -> None:
    zone = regional(WeightedAddress("127.0.10.1", 1))
    assert resolve(zone, Question.of(names.REGIONAL, QType.A, qclass=3), POLICY).rcode \
        is Rcode.REFUSED
    assert ask(zone, names.ZONE, QType.AXFR).rcode is Rcode.REFUSED


def test_apex_answers_soa_with_the_zone_serial_and_ns_with_glue() -> None:
    zone = make_zone(serial=9)
    soa = ask(zone, names.ZONE, QType.SOA)
    (record,) = soa.variants[0].answer
    assert isinstance(record.rdata, SoaRdata)
    assert record.rdata.serial == 9 and record.rdata.soa.mname == f"ns1.{names.ZONE}"
    ns = ask(zone, names.ZONE, QType.NS)
    assert [r.rdata for r in ns.variants[0].answer] == [NsRdata(f"ns1.{names.ZONE}")]
    assert [(r.name, r.rdata) for r in ns.additional] == [(f"ns1.{names.ZONE}",
                                                          ARdata("127.0.0.1"))]


def test_tree_names_answer_their_addresses_directly() -> None:
    zone = regional(WeightedAddress("127.0.10.2", 5), WeightedAddress("127.0.10.1", 1))
    answer = ask(zone, TREE)
    assert len(answer.variants) == 1
    assert [_ip(r.rdata) for r in answer.variants[0].answer] == ["127.0.10.1", "127.0.10.2"]
    assert answer.generation is None


def test_lock_answers_its_json_as_txt() -> None:
    lock = lock_record(names.lock_name(names.REGIONAL), Lock("use1-az1", 1234))
    answer = ask(make_zone(lock), lock.name, QType.TXT)
    (record,) = answer.variants[0].answer
    assert record.rdata == TxtRdata((lock.value.encode(),))


def test_any_gets_the_rfc8482_minimal_answer_and_nxdomain_when_absent() -> None:
    zone = regional(WeightedAddress("127.0.10.1", 1))
    (record,) = ask(zone, names.REGIONAL, QType.ANY).variants[0].answer
    assert record.rdata == RFC8482_HINFO
    assert ask(zone, f"absent.{names.ZONE}", QType.ANY).rcode is Rcode.NXDOMAIN


def test_a_label_holding_dots_never_matches_a_real_name() -> None:
    zone = regional(WeightedAddress("127.0.10.1", 1))
    question = Question((f"plan-7.{names.REGIONAL.split('.')[0]}", "us-east-1", "amazonaws",
                         "com"), QType.A)
    assert resolve(zone, question, POLICY).rcode is Rcode.NXDOMAIN


def test_weighted_choice_spreads_first_addresses_by_weight() -> None:
    addresses = [WeightedAddress("127.0.10.1", 10), WeightedAddress("127.0.10.2", 30),
                 WeightedAddress("127.0.10.3", 60)]
    variants = weighted_variants(names.REGIONAL, addresses, 5)
    cumulative = cumulative_weights(variants)
    rng = random.Random(20251019)
    draws = 20_000
    firsts = Counter(_ip(variants[choose_variant(cumulative, rng.random())].answer[0].rdata)
                     for _ in range(draws))
    for address in addresses:
        assert firsts[address.ip] / draws == pytest.approx(address.weight / 100, abs=0.015)


def test_zero_weight_is_never_first_unless_all_are_zero() -> None:
    some = weighted_variants("x", [WeightedAddress("127.0.10.1", 0),
                                   WeightedAddress("127.0.10.2", 3)], 5)
    assert [_ip(v.answer[0].rdata) for v in some] == ["127.0.10.2"]
    assert len(some[0].answer) == 2
    none = weighted_variants("x", [WeightedAddress("127.0.10.1", 0),
                                   WeightedAddress("127.0.10.2", 0)], 5)
    assert [v.weight for v in none] == [1, 1]
