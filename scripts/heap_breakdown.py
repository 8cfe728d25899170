#!/usr/bin/env python3
"""Sums a dhat heap profile's bytes still live when it was written, by who holds them.

Usage: scripts/heap_breakdown.py tests/dhat-heap.json PROMOTIONS

The profile comes from the in-flight bench (`cargo bench -p promo-tests --bench in_flight
--features dhat-heap`), written the moment every promotion waits for approval. Each allocation
site is put in the first group whose marker appears in its backtrace (innermost rules first), and
each group is divided by the number of promotions. The connection and poller group is a cost per
worker, not per promotion: it is divided too, so that the total matches the bench's own figure.
"""

import collections
import json
import sys

# (group, a substring of a frame of the allocation's backtrace); the first match wins.
RULES = [
    ("ours: workflow state, futures, messages", "promo_workflows"),
    ("SDK core: history events held by the cached run", "HistoryEvent"),
    ("SDK core: history events held by the cached run", "PostActivateHook"),
    ("SDK core: metrics instruments per run", "Instruments"),
    ("SDK core: command queue (capacity kept)", "CommandAndMachine"),
    ("SDK core: state-machine slots (preallocated)", "slotmap"),
    ("SDK core: local-activity machines and their inputs", "local_activit"),
    ("SDK core: run cache entry, jobs", "managed_run"),
    ("connections and pollers (per worker)", "h2::"),
    ("connections and pollers (per worker)", "tonic"),
    ("connections and pollers (per worker)", "pollers"),
    ("connections and pollers (per worker)", "wft_poller"),
    ("SDK core: other", "temporalio_sdk_core"),
    ("SDK (lang side): activation channels, run loop", "temporalio_sdk::"),
    ("SDK (lang side): activation channels, run loop", "temporalio_workflow"),
]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    profile = json.load(open(sys.argv[1]))
    promotions = int(sys.argv[2])
    frames = profile["ftbl"]
    groups: collections.Counter = collections.Counter()
    for site in profile["pps"]:
        live = site.get("eb", 0)
        if not live:
            continue
        trace = " | ".join(frames[i] for i in site["fs"])
        group = next((name for name, marker in RULES if marker in trace), "other")
        groups[group] += live
    for group, live in groups.most_common():
        print(f"{live / 1024 / promotions:8.1f} KiB per promotion  {group}")
    print(f"{sum(groups.values()) / 1024 / promotions:8.1f} KiB per promotion in all")


if __name__ == "__main__":
    main()
