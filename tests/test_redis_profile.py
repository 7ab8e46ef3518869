"""bench.redis_profile's pure parts: perf's report read into groups, and Lua 5.1's string
hash, whose sampling is why the zone's names intern slowly in Redis's Lua."""

from __future__ import annotations

from bench.redis_profile import group_of, lua_string_hash, parse_report, summarise
from services.core import names

REPORT = """\
# Overhead  Shared Object      Symbol
# ........  .................  ..............
#
    16.04%  redis-server       [.] luaS_newlstr
     4.95%  redis-server       [.] dictFind
     4.10%  redis-server       [.] dictScan
     3.40%  redis-server       [.] sweeplist
     2.21%  redis-server       [.] lzf_compress
     1.67%  redis-server       [.] json_next_token
     1.33%  libc.so.6          [.] malloc
     1.02%  [kernel.kallsyms]  [k] iowrite16
     0.50%  redis-server       [.] someNewFunction
"""


def test_every_line_of_the_report_is_counted_in_its_group() -> None:
    rows = parse_report(REPORT)
    assert len(rows) == 9 and rows[0] == (16.04, "redis-server", ".", "luaS_newlstr")
    groups = summarise(rows)["groups_pct"]
    assert groups == {
        "Lua strings (creation, interning)": 16.0,
        "Redis hash lookups and writes": 5.0,
        "clean-up's scans (HSCAN)": 4.1,
        "Lua garbage collector": 3.4,
        "append-only file and its rewrite": 2.2,
        "cjson": 1.7,
        "memory allocation": 1.3,
        "kernel (sockets, the append-only file's writes and fsync)": 1.0,
        "other": 0.5,
    }
    assert group_of("[kernel.kallsyms]", "k", "dictFind").startswith("kernel")


def test_lua_hashes_strings_of_one_length_by_every_other_byte_from_40_bytes() -> None:
    # 40 bytes: step 2, so the hash reads bytes 40, 38, ..., 2 (counting from 1) and no other.
    a = "100000099990.ddb.us-east-1.amazonaws.com"
    skipped = "100000099900.ddb.us-east-1.amazonaws.com"  # differs in byte 11: not read
    read = "100000099991.ddb.us-east-1.amazonaws.com"  # differs in byte 12: read
    assert len(a) == len(skipped) == len(read) == 40
    assert lua_string_hash(a) == lua_string_hash(skipped)
    assert lua_string_hash(a) != lua_string_hash(read)
    # Short strings are read whole.
    assert lua_string_hash("cell-1") != lua_string_hash("cell-2")


def test_the_cells_account_ids_are_distinct_and_their_names_spread_over_lua_hashes() -> None:
    """Cell ids counting up from one value had 993 distinct Lua hashes for 100,000 names (one
    interning chain per ~100 strings in Redis's Lua); the ids spread as real account ids are:
    every id distinct, of 12 digits, and most names a hash of their own."""
    cells = names.endpoints(100_000)[3:]
    ids = [cell.split(".", 1)[0] for cell in cells]
    assert len(set(ids)) == len(ids) and all(len(i) == 12 and i.isdigit() for i in ids)
    assert len({lua_string_hash(cell) for cell in cells}) > 0.75 * len(cells)
