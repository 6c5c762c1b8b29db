"""`python -m bench`: compare thingcore with a private Mosquitto; see bench/README.md."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from bench.runner import parse_brokers, run
from bench.workloads import WORKLOADS, Options

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    workloads = "\n".join(f"  {w.name:<11} {w.summary}" for w in WORKLOADS.values())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark thingcore against a private Mosquitto, side by side, on 127.0.0.1.\n"
            "Each broker is started fresh per workload on a free port, pinned to one CPU;\n"
            "the load generators (raw asyncio MQTT clients) run on another CPU. Results go to\n"
            "bench/results/latest.md and .json (latest-quick.* with --quick, latest-v5.* with\n"
            "--protocol 5; plus dated copies).\n"
            "Benchmarks report, they never fail: exit code 0 unless the harness itself breaks."
        ),
        epilog=f"workloads:\n{workloads}\n\nexample: python -m bench --quick --only latency,idle",
    )
    parser.add_argument(
        "--brokers",
        default="mosquitto,thingcore",
        help="comma-separated brokers; the first is the baseline of every ratio "
        "(default: %(default)s; 'mosquitto,mosquitto' checks the harness itself)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 s ramp steps, no bisection, 3 s latency, 2 s connection rate",
    )
    parser.add_argument(
        "--only",
        metavar="WORKLOAD[,WORKLOAD]",
        help=f"run only these workloads (of: {', '.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--protocol",
        type=int,
        choices=(4, 5),
        default=4,
        help="MQTT protocol level of the fan-in, fan-out and latency clients: 4 (3.1.1) or 5 "
        "(MQTT 5, every PUBLISH with a Content Type and two User Properties; results go to "
        "latest-v5.*). idle and connrate always use 3.1.1 (default: %(default)s)",
    )
    parser.add_argument("--step-seconds", type=float, help="length of a ramp step")
    parser.add_argument(
        "--idle-connections", type=int, help="connections in the idle workload (default 10000)"
    )
    parser.add_argument("--broker-cpu", type=int, default=0, help="CPU for the broker (0)")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for load generators (1)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each workload (and before repeating a measurement that other processes "
        "disturbed), wait up to SECONDS for them to use less than 10%% of a core (default 0: "
        "do not wait; disturbed measurements are still repeated up to twice and flagged)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where to write the results"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        brokers = parse_brokers(args.brokers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.only.split(",")] if args.only else list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(
            f"error: unknown workload(s) {unknown}; choose from {list(WORKLOADS)}", file=sys.stderr
        )
        return 2
    overrides: dict[str, Any] = {
        "broker_cpu": args.broker_cpu,
        "load_cpu": args.load_cpu,
        "quiet_wait": args.wait_quiet,
        "protocol": args.protocol,
    }
    if args.step_seconds:
        overrides["step_seconds"] = args.step_seconds
    if args.idle_connections:
        overrides["idle_connections"] = args.idle_connections
    opts = Options.quick(**overrides) if args.quick else Options(**overrides)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through every context manager, stopping the brokers

    signal.signal(signal.SIGTERM, on_sigterm)
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report, paths = run(
            brokers,
            [WORKLOADS[n] for n in names],
            opts,
            mode="quick" if args.quick else "full",
            command="python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
            results_dir=args.results_dir,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except KeyboardInterrupt:
        print("interrupted; brokers and load generators stopped", file=sys.stderr)
        return 130
    print(report.markdown())
    print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
