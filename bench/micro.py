"""One scenario under pyperf: ``python -m bench.micro --scenario KEY --data DIR [pyperf options]``.

pyperf spawns the worker processes, calibrates ``loops`` and runs the warm-ups.
The benchmark function is a round-robin: each variant serves ``loops`` requests
in turn (the order reversed on every call), timed by CPU time and wall clock;
pyperf gets the CPU time of the whole pass, ``DIR/KEY.jsonl`` each variant's share.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pyperf

from .scenarios import BUILDERS, Scenario


class RoundRobin:
    def __init__(self, runner: pyperf.Runner, key: str, data: Path) -> None:
        self.args, self.key, self.data = runner.args, key, data
        self.scenario: Scenario | None = None
        self.calls = 0

    def __call__(self, loops: int) -> float:
        if self.scenario is None:  # built in the worker, and checked before its first timing
            self.scenario = BUILDERS[self.key](self.data)
            self.check()
        variants = self.scenario.timed()
        cpu, wall = {}, {}
        for v in variants if self.calls % 2 == 0 else reversed(variants):
            call, first = v.call, self.calls * loops
            assert call is not None
            c0, w0 = time.process_time_ns(), time.perf_counter_ns()
            for i in range(first, first + loops):
                call(i)
            w1, c1 = time.perf_counter_ns(), time.process_time_ns()
            cpu[v.key], wall[v.key] = c1 - c0, w1 - w0
        self.calls += 1
        self.check()  # and after every timing
        calibrating = self.args.calibrate_loops or self.args.recalibrate_loops
        if not calibrating and self.calls > self.args.warmups:  # a value, not a warm-up: keep its shares
            with open(self.data / f"{self.key}.jsonl", "a") as out:
                out.write(json.dumps({"pid": os.getpid(), "loops": loops, "cpu": cpu, "wall": wall}) + "\n")
        return sum(cpu.values()) / 1e9

    def check(self) -> None:
        if self.scenario and (problems := self.scenario.problems()):
            raise SystemExit("; ".join(problems))


def main() -> None:
    def forward(cmd: list[str], args: argparse.Namespace) -> None:
        cmd += ["--scenario", args.scenario, "--data", args.data]

    runner = pyperf.Runner(add_cmdline_args=forward, program_args=("-m", "bench.micro"))
    runner.argparser.add_argument("--scenario", required=True, choices=sorted(BUILDERS))
    runner.argparser.add_argument("--data", required=True)
    args = runner.parse_args()
    timer = RoundRobin(runner, args.scenario, Path(args.data))
    runner.bench_time_func(args.scenario, timer)
    if timer.scenario:
        timer.scenario.close()


if __name__ == "__main__":
    main()
