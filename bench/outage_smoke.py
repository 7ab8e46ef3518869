"""Smoke run of issue 15's processes (not a test, not yet dnsrace outage): an embedded Redis,
`dnsrace netmgr`, `dnsrace nlb serve`, `dnsrace instances --az` x3; 30 launches appended to
ec2_api's launch stream by hand; prints the propagation backlog and the NLB name's A records
once a second, then the history's event counts. Run: .venv/bin/python bench/outage_smoke.py"""
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from services.runtime.ports import metrics_port_base
from services.runtime.redis_server import EmbeddedRedis

AZS = ("use1-az1", "use1-az2", "use1-az4")
NAME_KEY = "api.elb.us-east-1.amazonaws.com|A"

r = EmbeddedRedis(Path(tempfile.mkdtemp())).start()
base = str(metrics_port_base())
env = dict(os.environ, DNSRACE_REDIS_URL=r.url, DNSRACE_METRICS_PORT_BASE=base)
bin_ = str(Path(sys.executable).with_name("dnsrace"))
commands = [["netmgr"], ["nlb", "serve"], *(["instances", "--az", az] for az in AZS)]
procs = [subprocess.Popen([bin_, *command], env=env) for command in commands]
c = redis.Redis.from_url(r.url, decode_responses=True)
try:
    time.sleep(4)  # the processes start (a smoke run, not a test)
    for n in range(30):
        c.xadd("dnsrace:ec2:launches",
               {"instance_id": f"i-{n}", "az": AZS[n % 3], "droplet": "d", "at_ms": "0"})
    for t in range(12):
        time.sleep(1)
        print(t, "backlog", c.get("dnsrace:netmgr:backlog"),
              "propagated", c.hlen("dnsrace:netmgr:propagated"),
              "name", c.hget("dnsrace:zone:rrsets", NAME_KEY), flush=True)
    print(Counter(json.loads(f["e"])["kind"] for _, f in c.xrange("dnsrace:history")))
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        print("rc", p.wait(10))
    r.stop()
