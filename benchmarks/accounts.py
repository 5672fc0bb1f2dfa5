"""First-spawn account setup for a burst of new users: what LocalGemSpawner does now against
how it did it before (issue 16).

Each new user needs a unix account and membership of their workspace's group. Now
(``per-name``): the group is made, then the account joins it in the same ``useradd``, with
locks per account/group name and up to ``accounts.MAX_COMMANDS`` commands at once. Before
(``one-lock``): ``useradd``, ``groupadd``, ``usermod --append`` one command at a time for
the whole hub. Both run the real commands through ``gemhub.spawner.local.accounts.Accounts``
(the baseline with one command at a time and the old order), alternating, fresh names every
time; everything made is deleted. Needs root.

    .venv/bin/python benchmarks/accounts.py            # 30 users, 2 rounds
    .venv/bin/python benchmarks/accounts.py --quick    # 10 users, 1 round

The load average is printed with each burst (the commands wait on /etc/.pwd.lock and fsync,
so a busy machine slows both). Last line: JSON {"users", "per_name_s", "one_lock_s",
"speedup"} (medians over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from gemhub.spawner.local import accounts

PER_NAME = "per-name"
ONE_LOCK = "one-lock"


async def _per_name(acc: accounts.Accounts, name: str, home: Path, group: str) -> None:
    await acc.ensure_group(group)
    await acc.ensure_user(name, home, groups=(group,))
    await acc.ensure_member(group, name)


async def _one_lock(acc: accounts.Accounts, name: str, home: Path, group: str) -> None:
    await acc.ensure_user(name, home)
    await acc.ensure_member(group, name)


async def burst(kind: str, n: int) -> float:
    acc = accounts.Accounts()
    if kind == ONE_LOCK:
        acc._commands = asyncio.Semaphore(1)  # one command at a time, hub-wide
    work = Path(tempfile.mkdtemp(prefix="gemhub-bench-accounts-"))
    work.chmod(0o755)
    tag = uuid.uuid4().hex[:6]
    names = [f"gembench-{tag}-{i}" for i in range(n)]
    groups = [f"gemwsbench-{tag}-{i}" for i in range(n)]
    steps = _per_name if kind == PER_NAME else _one_lock
    t = time.monotonic()
    try:
        await asyncio.gather(*[steps(acc, u, work / u, g) for u, g in zip(names, groups)])
        return time.monotonic() - t
    finally:
        for u, g in zip(names, groups):
            accounts.remove_user(u)
            accounts.remove_empty_groups([g])
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 users, 1 round")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (it creates and deletes unix accounts)")
    n = args.users or (10 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 2)
    times: dict[str, list[float]] = {PER_NAME: [], ONE_LOCK: []}
    print(f"{n} new users' accounts and workspace groups at once; root, cpus={os.cpu_count()}")
    print(f"{'kind':<10}{'round':>6}{'seconds':>10}{'load avg':>10}")
    for r in range(rounds):
        for kind in (ONE_LOCK, PER_NAME) if r % 2 == 0 else (PER_NAME, ONE_LOCK):
            load = os.getloadavg()[0]
            seconds = asyncio.run(burst(kind, n))
            times[kind].append(seconds)
            print(f"{kind:<10}{r + 1:>6}{seconds:>10.1f}{load:>10.1f}", flush=True)
    per_name, one_lock = statistics.median(times[PER_NAME]), statistics.median(times[ONE_LOCK])
    print(json.dumps({"users": n, "per_name_s": round(per_name, 2), "one_lock_s": round(one_lock, 2),
                      "speedup": round(one_lock / per_name, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
