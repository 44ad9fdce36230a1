"""The peer of bench/queues: the same producer → consumer measurement with
huey on SQLite (a durable queue in native CPython): N tasks stamped with the
send time; a consumer process records each task's latency."""

import json
import os
import time

from huey import SqliteHuey

huey = SqliteHuey(filename=os.environ["HUEY_DB"])
STATS = os.environ["HUEY_STATS"]


@huey.task()
def handle(sent_ms):
    now = time.time() * 1000
    with open(STATS, "a") as f:
        f.write(f"{now - sent_ms:.2f} {now:.2f}\n")


def produce(n: int) -> None:
    """Enqueue `n` tasks (run as `python -c 'import huey_queue; huey_queue.produce(N)'`,
    so the task is named `huey_queue.handle` as in the consumer)."""
    for _ in range(n):
        handle(time.time() * 1000)
    print(json.dumps({"sent": n}))
