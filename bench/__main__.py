"""`python -m bench`: compare thingcore with a private Mosquitto; see bench/README.md."""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from bench import deliveryload
from bench.brokers import LAUNCHERS
from bench.report import METRICS
from bench.runner import parse_brokers, run
from bench.workloads import WORKLOADS, Options

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in WORKLOADS)
    workloads = "\n".join(f"  {w.name:<{width}} {w.summary}" for w in WORKLOADS.values())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark thingcore against a private Mosquitto, side by side, on 127.0.0.1.\n"
            "Each broker is started fresh per workload on a free port, pinned to one CPU;\n"
            "the load generators (raw asyncio MQTT clients) run on another CPU. Results go to\n"
            "bench/results/latest.md and .json (latest-quick.* with --quick, latest-v5.* with\n"
            "--protocol 5, latest-NAME.* with --results-name NAME; plus dated copies).\n"
            "The mutual-TLS workloads issue and register client certificates first (a few\n"
            "seconds per thousand); policy-throughput always compares thingcore with itself,\n"
            "shadow-updates always thingcore with amqtt's shadow plugin, rules-throughput\n"
            "thingcore with 1,000 rules against none, rules-delivery Mosquitto against\n"
            "thingcore rules that republish or queue through the durable outbox.\n"
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
        "--mtls-idle-connections",
        type=int,
        help="connections (one client certificate each) in mtls-idle (default 2000, quick 500)",
    )
    parser.add_argument(
        "--mtls-processes",
        type=int,
        help="load-generator processes for mtls-connect, sharing the load CPU (default 1)",
    )
    parser.add_argument(
        "--mtls-concurrency",
        type=int,
        help="mutual-TLS connect cycles in progress at once in mtls-connect (default 32)",
    )
    parser.add_argument(
        "--mtls-key-type",
        choices=("ec", "rsa"),
        help="client certificate keys: ec (P-256, default) or rsa (2048 bits)",
    )
    parser.add_argument(
        "--shadow-windows",
        metavar="N[,N]",
        help="shadow-updates: closed-loop runs with N updates outstanding per device (at most "
        "one per thing, so at most 10); the best run counts (default 1,8)",
    )
    parser.add_argument(
        "--shadow-rate",
        type=float,
        metavar="UPDATES_PER_S",
        help="shadow-updates: total rate offered for the latency run (default 100)",
    )
    parser.add_argument(
        "--delivery-messages",
        type=int,
        metavar="N",
        help="rules-delivery: messages in the closed-loop run, all devices together "
        "(default 100000, quick 20000)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where to write the results"
    )
    parser.add_argument(
        "--results-name",
        metavar="NAME",
        default="",
        help="name the result files latest-NAME.md/.json (and dated ...-NAME copies), so this "
        "run replaces no other run's latest results (e.g. 'identity')",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # rules-delivery brings broker kinds of its own (bench.deliveryload.LAUNCHERS)...
    LAUNCHERS.update(deliveryload.LAUNCHERS)
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
    for option in ("mtls_idle_connections", "mtls_processes", "mtls_concurrency"):
        value = getattr(args, option)
        if value is not None:
            if value < 1:
                print(f"error: --{option.replace('_', '-')} must be at least 1", file=sys.stderr)
                return 2
            overrides[option] = value
    if args.mtls_key_type:
        overrides["mtls_key_type"] = args.mtls_key_type
    if args.shadow_windows:
        try:
            windows = tuple(int(w) for w in args.shadow_windows.split(",") if w.strip())
        except ValueError:
            windows = ()
        if not windows or min(windows) < 1:
            print("error: --shadow-windows takes positive integers, e.g. 1,8", file=sys.stderr)
            return 2
        overrides["shadow_windows"] = windows
    if args.shadow_rate is not None:
        if args.shadow_rate <= 0:
            print("error: --shadow-rate must be positive", file=sys.stderr)
            return 2
        overrides["shadow_rate"] = args.shadow_rate
    if args.delivery_messages is not None:
        if args.delivery_messages < 1:
            print("error: --delivery-messages must be at least 1", file=sys.stderr)
            return 2
        overrides["delivery_messages"] = args.delivery_messages
    if args.results_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.results_name):
        print("error: --results-name takes letters, digits, '.', '_' and '-'", file=sys.stderr)
        return 2
    opts = Options.quick(**overrides) if args.quick else Options(**overrides)
    # ...and rows of its own in the report, labelled with the run's message count and rate.
    METRICS.update(deliveryload.report_metrics(opts))

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
            results_name=args.results_name,
        )
    except KeyboardInterrupt:
        print("interrupted; brokers and load generators stopped", file=sys.stderr)
        return 130
    print(report.markdown())
    print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
