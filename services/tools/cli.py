"""``dnsrace``: run one process of the cluster, the whole cluster, or a tool against it.

Every command imports its own part inside its handler, on purpose: ``dnsrace enactor`` starts
once per AZ and on every restart, and must not load the report, the explorer, aiohttp clients
or the benchmarks it never uses (and their Prometheus metrics must not appear in its /metrics).
These are the only function-level imports of project modules, with the resolver's in
``watch`` and the cluster processes' own in ``services.tools.serve``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from services import config, envfile, resources
from services.config import ConfigError, Mode, Settings
from services.errors import DnsraceError
from services.tools import containers_args, serve

log = logging.getLogger("dnsrace")
Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    width = max(len(name) for name, _, _ in config.describe())
    for name, default, doc in config.describe():
        print(f"{name:<{width}}  {default or '(empty)':<12}  {doc}")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Procfile under the project's supervisor until Ctrl-C (services/tools/up.py)."""
    from services.tools.up import run_up

    return run_up(settings, args.mode, args.loadgen,
                  args.prometheus_port if args.with_prometheus else None, args.isolate,
                  containers_args.options(args), args.with_outage)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.watch import run

    return run(args, settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.demo import run_demo

    modes: tuple[Mode, ...] = ("legacy",) if args.legacy_only else ("legacy", "safe")
    from services.tools import fleet_args

    if (fleet := fleet_args.prepare(args, settings, "demo")) is None:
        return 2
    if (boxed := containers_args.options(args)) is not None:
        from services.tools.containers_demo import run_container_demo

        return run_container_demo(fleet, args.rate, modes, boxed.image, boxed.engine)
    return run_demo(fleet, rate=args.rate, modes=modes)


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. point=after_check)")
    return key, int(value) if value.isdigit() else value


def cmd_fault(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import fault_command

    return fault_command(args, settings)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import status_command

    return status_command(args, settings)


def cmd_ec2(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools import ec2

    handler = {"status": ec2.status_command, "throttle": ec2.throttle_command,
               "launches": ec2.launches_command, "restart": ec2.restart_command}[args.action]
    try:
        return handler(args, settings)
    except ec2.Ec2UsageError as e:
        print(f"dnsrace ec2 {args.action}: {e}", file=sys.stderr)
        return 2


def cmd_cascade(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools import cascade, ec2

    try:
        return cascade.cascade_command(args, settings)
    except ec2.Ec2UsageError as e:
        print(f"dnsrace cascade: {e}", file=sys.stderr)
        return 2


def cmd_repair(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import repair_command

    return repair_command(args, settings)


def cmd_automation(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import automation_command

    return automation_command(args, settings)


def cmd_race(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import race_command

    return race_command(args, settings)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import check_command

    return check_command(args, settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools import fleet_args
    from services.tools.commands import run_command

    if (fleet := fleet_args.prepare(args, settings, "run")) is None:
        return 2
    if args.as_json:
        from services.tools.fleet_outcome import json_command

        return json_command(args, fleet)
    return run_command(args, fleet)


def cmd_matrix(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import matrix_command

    return matrix_command(args, settings)


def cmd_repeat(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.repeat import repeat_command

    return repeat_command(args, settings)


def cmd_soak(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.commands import soak_command

    return soak_command(args, settings)


def run_explore(argv: list[str]) -> int:
    """'dnsrace explore ...': the explorer's own parser (it imports the enactor, so only here)."""
    from services.explorer.command import add_arguments, run

    parser = argparse.ArgumentParser(
        prog="dnsrace explore",
        description="Run the real planner and enactors under a seeded scheduler that picks "
                    "who moves at every store round-trip, checking I1-I3 after every step.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run_model_check(argv: list[str]) -> int:
    """'dnsrace model-check ...': Spin on the model, over the explorer's own matrix rows."""
    from services.explorer.search import MATRIX_ROWS
    from services.modelcheck.command import main as model_check_main
    from services.tools.spin_trails import replay_trails

    return model_check_main(argv, MATRIX_ROWS, replay_trails)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnsrace",
        description="A real local reproduction of the October 2025 DynamoDB DNS race.",
        epilog="Settings come from DNSRACE_* environment variables; 'dnsrace config' lists them.",
    )
    parser.add_argument("--version", action="version", version=f"dnsrace {resources.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    add("demo", cmd_demo, "bring the cluster up with load and show what happens (main job)")
    demo = sub.choices["demo"]
    demo.add_argument("--rate", type=float, default=200.0, help="requests/s (default 200)")
    demo.add_argument("--legacy-only", action="store_true", help="skip the safe-mode part")
    from services.tools import fleet_args

    fleet_args.add_arguments(demo)
    containers_args.add_arguments(demo)
    up = add("up", cmd_up, "run the whole cluster in the foreground; a process that exits "
                           "is started again")
    up.add_argument("--mode", choices=("legacy", "safe"), help="enactor mode for this run")
    up.add_argument("--loadgen", type=int, help="number of load generators; they split the "
                    "rate and the clients (default: one per DNSRACE_LOAD_RATE_PER_PROCESS)")
    up.add_argument("--with-prometheus", action="store_true",
                    help="also run Prometheus (Debian package 'prometheus') scraping every process")
    up.add_argument("--prometheus-port", type=int, default=9090)
    up.add_argument("--with-outage", action="store_true",
                    help="also run issue 15's processes (Network Manager, the instances of each "
                         "AZ, the NLB and its service's clients), so that 'dnsrace watch' and "
                         "the dashboard show the network stages")
    up.add_argument("--isolate", action="store_true",
                    help="one network namespace per AZ and one for the region (needs root; "
                         "docs/isolation.md)")
    containers_args.add_arguments(up)
    watch_parser = add("watch", cmd_watch,
                       "live view of the numbers that tell the story (reads /metrics)")
    from services.tools import watch

    watch.add_arguments(watch_parser)
    fault = add("fault", cmd_fault, "add, list, remove or reset faults through the control API")
    fault_sub = fault.add_subparsers(dest="action", required=True, metavar="ACTION")
    fault_add = fault_sub.add_parser("add", help="start a timed fault")
    fault_add.add_argument("type", help="enactor_stall, lock_delay, enactor_pause, lb_health "
                                        "or az_partition")
    fault_add.add_argument("target", help="an AZ (use1-az1 ...), 'all', or a load balancer")
    fault_add.add_argument("--duration", type=float, required=True, metavar="SECONDS",
                           help="the fault ends by itself after this long")
    fault_add.add_argument("--param", type=_param, action="append", default=[],
                           metavar="KEY=VALUE", help="e.g. point=after_check (repeatable)")
    fault_sub.add_parser("list", help="list active faults")
    fault_rm = fault_sub.add_parser("rm", help="end one fault now")
    fault_rm.add_argument("id")
    fault_sub.add_parser("reset", help="end every fault now")
    status = add("status", cmd_status, "every endpoint: plan, alias, tree, rollback, lock, DNS")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true", help="include every cell endpoint")
    ec2 = add("ec2", cmd_ec2, "EC2's DWFM hosts: droplet leases, lease work queue, throttle")
    ec2_sub = ec2.add_subparsers(dest="action", required=True, metavar="ACTION")
    ec2_status = ec2_sub.add_parser(
        "status", help="leases held per AZ and host, queue depth, oldest item's age, goodput, "
                       "throttle")
    ec2_status.add_argument("--json", action="store_true", help="machine-readable output")
    ec2_throttle = ec2_sub.add_parser(
        "throttle", help="limit lease work admitted by every DWFM host (retries included)")
    ec2_throttle.add_argument("rate", metavar="RATE|off", help="items per second per host")
    ec2_launches = ec2_sub.add_parser(
        "launches", help="limit instance launches ec2_api accepts (RequestLimitExceeded beyond)")
    ec2_launches.add_argument("rate", metavar="RATE|off", help="launches per second")
    ec2_restart = ec2_sub.add_parser(
        "restart", help="selectively restart one DWFM host: queue lost, rebuilt from droplets")
    ec2_restart.add_argument("host", metavar="HOST", help="1 to DNSRACE_DWFM_HOSTS, or dwfm_N")
    from services.tools import cascade_args

    cascade_args.add_arguments(add("cascade", cmd_cascade,
                                   "the race, then what the empty name did to EC2 (DWFM leases)"))
    from services.tools import outage_args

    outage_args.register(add)
    add("repair", cmd_repair, "the operators' manual fix: restore every broken endpoint")
    automation = add("automation", cmd_automation,
                     "turn the DNS automation off (the enactors stop applying plans) or on")
    automation.add_argument("state", choices=("off", "on"))
    race = add("race", cmd_race, "drive the 2025 race choreography against the running cluster")
    race.add_argument("--observe", type=float, default=3.0, metavar="SECONDS",
                      help="how long to watch the automation afterwards (default 3)")
    check = add("check", cmd_check, "report violations of I1-I3 found in the history")
    check.add_argument("--since-ms", type=int, default=0, help="only events from this time on")
    run = add("run", cmd_run, "run a scenario file against a fresh cluster")
    run.add_argument("scenario", type=Path, help="e.g. scenarios/race.toml")
    run.add_argument("--mode", choices=("legacy", "safe"), action="append",
                     help="mode(s) to run (default: every mode the file has expectations for)")
    fleet_args.add_run_arguments(run)
    matrix = add("matrix", cmd_matrix, "the race once per protection set: which ones suffice")
    matrix.add_argument("--scenario", type=Path, default=Path("scenarios/race.toml"))
    matrix.add_argument("--only", action="append", help="run only rows whose name has this")
    repeat = add("repeat", cmd_repeat,
                 "run the demo, a scenario, the matrix or the explorer's README rows N times; "
                 "every run's figures to JSON")
    # Declared here: importing services.tools.repeat would load the demo (and the load
    # clients' metrics) into every process this parser starts.
    repeat.add_argument("kind", choices=("demo", "run", "matrix", "explore"))
    repeat.add_argument("scenario", type=Path, nargs="?", default=Path("scenarios/race.toml"),
                        help="the scenario of 'run' and 'matrix' (default scenarios/race.toml)")
    repeat.add_argument("--runs", type=int, default=10, help="how many times (default 10)")
    repeat.add_argument("--mode", choices=("legacy", "safe"), action="append")
    repeat.add_argument("--only", action="append", help="matrix rows whose name has this")
    repeat.add_argument("--rate", type=float, default=200.0, help="demo requests/s")
    repeat.add_argument("--out", type=Path, required=True, help="the JSON result to write")
    fleet_args.add_arguments(repeat)  # the demo's 1,000 clients unless --clients says else
    soak = add("soak", cmd_soak, "random process faults under load, then a correctness report")
    soak.add_argument("--mode", choices=("legacy", "safe"), default="safe")
    soak.add_argument("--duration", type=float, default=120.0, metavar="SECONDS",
                      help="how long to inject faults (default 120)")
    soak.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    soak.add_argument("--faults", help="comma-separated fault types (default: all)")
    # 'dnsrace bench ...' hands its arguments to bench.run (benchmarks: a script, not tests).
    sub.add_parser("bench", add_help=False,
                   help="benchmarks against dnslib, NSD and Knot ('dnsrace bench --help')")
    # 'dnsrace explore ...' hands its arguments to the explorer's parser (run_explore).
    sub.add_parser("explore", add_help=False,
                   help="the real enactors under a seeded scheduler, I1-I3 checked every step "
                        "(options: 'dnsrace explore --help')")
    # 'dnsrace model-check ...' hands its arguments to its own parser (run_model_check).
    sub.add_parser("model-check", add_help=False,
                   help="Spin checks the Promela model of the race exhaustively, for every "
                        "protection set of 'explore --matrix' (options: 'dnsrace model-check "
                        "--help')")
    add("config", cmd_config, "list every DNSRACE_* setting with its default and meaning")
    serve.add_commands(add)
    # 'dnsrace loadgen ...' hands every argument to the load generator's own parser (main).
    sub.add_parser("loadgen", add_help=False,
                   help="run a load generator (options: 'dnsrace loadgen --help')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    envfile.apply()  # .env in the working directory, for every command (services/envfile.py)
    if argv[:1] == ["--version"]:
        print(f"dnsrace {resources.version()}")
        return 0
    if argv[:1] == ["explore"]:
        return run_explore(argv[1:])
    if argv[:1] == ["model-check"]:
        return run_model_check(argv[1:])
    if argv[:1] == ["bench"]:
        from bench.run import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["loadgen"]:
        from loadgen.__main__ import main as loadgen_main

        try:
            return loadgen_main(argv[1:])
        except ConfigError as e:
            print(f"dnsrace: {e}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = config.load()
        return int(args.handler(args, settings))
    except ConfigError as e:
        print(f"dnsrace: {e}", file=sys.stderr)
        return 2
    except DnsraceError as e:  # every error of ours says what went wrong: no traceback
        print(f"dnsrace: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
