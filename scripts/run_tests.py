#!/usr/bin/env python3
"""Runs the workspace's test binaries several at a time.

`cargo test` runs one test binary after another; ours mostly wait (on compressed business
clocks, on servers), so running a few binaries side by side takes the suite's wall time down
without loading the two cores more than a test binary alone does at its busiest. Each binary
runs as cargo would run it (from its package's folder, its own tests two at a time); its output
is printed whole when it ends, with cargo's `Running` line before it. The slowest binaries start
first. The exit status is 1 if any binary failed, and the failed ones are named at the end.

Usage: run_tests.py --jobs N ARTIFACTS.json   (the output of
`cargo test --no-run --message-format=json-render-diagnostics`)
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

# Started first, slowest first (measured); the rest follow in cargo's order.
SLOWEST = [
    "bounded",
    "lifecycle",
    "reliability",
    "guarantees",
    "generated",
    "outages",
    "compliance",
    "insight",
    "two_week",
    "versions",
]


def binaries(artifacts_path):
    found = []
    with open(artifacts_path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
                continue
            if not msg.get("profile", {}).get("test"):
                continue
            target = msg["target"]
            found.append(
                {
                    "name": target["name"],
                    "kind": target["kind"][0],
                    "src": target["src_path"],
                    "exe": msg["executable"],
                    "cwd": os.path.dirname(msg["manifest_path"]),
                }
            )
    rank = {name: i for i, name in enumerate(SLOWEST)}
    found.sort(key=lambda b: rank.get(b["name"], len(SLOWEST)))
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("artifacts")
    args = parser.parse_args()
    todo = binaries(args.artifacts)
    lock = threading.Lock()
    results = []

    def run(b):
        start = time.monotonic()
        proc = subprocess.run(
            [b["exe"]], cwd=b["cwd"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        took = time.monotonic() - start
        rel = os.path.relpath(b["src"], os.path.dirname(b["cwd"]))
        with lock:
            print(f"     Running {rel} ({os.path.relpath(b['exe'])}) — {took:.0f} s", flush=True)
            sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
            sys.stdout.flush()
            results.append((rel, proc.returncode, took))

    wall = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run, todo))
    failed = [rel for rel, code, _ in results if code != 0]
    print(
        f"\n{len(results)} test binaries in {time.monotonic() - wall:.0f} s, "
        f"{args.jobs} at a time; {len(failed)} failed",
        flush=True,
    )
    for rel in failed:
        print(f"  failed: {rel}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
