"""
A writer for test/integration/clients.test.ts: an application using redis-py's cluster client
with its default settings, as Debian's python3-redis ships it. The protocol (arguments, heartbeat
and result lines on stdout, stop on stdin's end, SIGTERM or the time limit) is the one of
test/support/clients/writer.ts; see there for why each part is what it is.

Usage: /usr/bin/python3 redis_py_writer.py HOST:PORT PREFIX MAX_SECONDS
"""
import json
import logging
import os
import random
import signal
import sys
import threading
import time

from redis.cluster import RedisCluster

HEARTBEAT_S = 0.1
KEEP_ERRORS = 5
GRACE_S = 20


class Redirects(logging.Handler):
    """
    redis-py logs each redirect or error it handles itself (log.exception) before retrying. The
    one logged during a failed operation tells what the client was following when it failed: its
    AttributeError comes right after an AskError towards a node it does not know (#4015).
    """

    def __init__(self):
        super().__init__()
        self.handled = []

    def emit(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            self.handled.append(record.exc_info[1])


redirects = Redirects()
# In place of Python's last-resort handler, which printed each of them with its traceback.
logging.getLogger("redis.cluster").addHandler(redirects)


def describe(err):
    text = f"{type(err).__name__}: {err}"
    cause = err.__cause__ or err.__context__
    if cause is not None:
        text += f" (while handling {type(cause).__name__}: {cause})"
    # redis-py logs the error it is about to raise too.
    before = [e for e in redirects.handled if e is not err]
    if before:
        text += f" (after redis-py handled {type(before[-1]).__name__}: {before[-1]})"
    return text


def main():
    seed, prefix, max_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    host, port = seed.rsplit(":", 1)
    stop = threading.Event()
    # The operation in flight and since when, as in writer.ts.
    pending = ("", 0.0)

    def stdin_closed():
        for _ in sys.stdin:
            pass
        stop.set()

    threading.Thread(target=stdin_closed, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # The time limit, and an end for an operation that never returns (redis-py has no socket
    # timeout by default), as in writer.ts.
    done = threading.Event()

    def watchdog():
        stop.wait(max_seconds)
        stop.set()
        if not done.wait(GRACE_S):
            op, since = pending
            stuck = f": stuck in {op} for {round((time.monotonic() - since) * 1000)} ms" if op else ""
            print(f"writer stopped {GRACE_S} s ago and still not done{stuck}; exiting", file=sys.stderr, flush=True)
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    client = RedisCluster(host=host, port=int(port))
    state = {"ops": 0, "acked": 0, "failed": 0, "readWrong": 0, "errors": [], "kinds": {}}
    acked = []

    # The heartbeat thread reads what the loop writes.
    lock = threading.Lock()

    def failed(err):
        with lock:
            state["failed"] += 1
            kind = type(err).__name__
            state["kinds"][kind] = state["kinds"].get(kind, 0) + 1
            state["lastError"] = describe(err)
            if len(state["errors"]) < KEEP_ERRORS:
                state["errors"].append(state["lastError"])

    # A timer, not a count of operations, as in writer.ts: a writer stuck inside one operation
    # keeps beating with the same count.
    beating = threading.Event()

    def heartbeat():
        seq = 0
        while not beating.wait(HEARTBEAT_S):
            seq += 1
            with lock:
                beat = {"hb": seq, **state}
                op, since = pending
                if op:
                    beat.update(pending=op, pendingMs=round((time.monotonic() - since) * 1000))
                line = json.dumps(beat)
            print(line, flush=True)

    beater = threading.Thread(target=heartbeat, daemon=True)
    beater.start()
    i = 0
    while not stop.is_set():
        state["ops"] += 1
        pending = (f"SET {prefix}{i}", time.monotonic())
        redirects.handled.clear()
        try:
            client.set(f"{prefix}{i}", str(i))
            acked.append(i)
            state["acked"] += 1
        except Exception as err:  # noqa: BLE001 - every error an application would see counts
            failed(err)
        if acked:
            j = random.choice(acked)
            state["ops"] += 1
            pending = (f"GET {prefix}{j}", time.monotonic())
            redirects.handled.clear()
            try:
                if client.get(f"{prefix}{j}") != str(j).encode():
                    state["readWrong"] += 1
            except Exception as err:  # noqa: BLE001
                failed(err)
        pending = ("", 0.0)
        i += 1
    beating.set()
    beater.join()

    missing = wrong = read_errors = 0
    for k in range(0, len(acked), 500):
        chunk = acked[k:k + 500]
        try:
            values = client.mget_nonatomic([f"{prefix}{j}" for j in chunk])
        except Exception as err:  # noqa: BLE001
            read_errors += len(chunk)
            if len(state["errors"]) < KEEP_ERRORS:
                state["errors"].append("read-back: " + describe(err))
            continue
        for j, v in zip(chunk, values):
            if v is None:
                missing += 1
            elif v != str(j).encode():
                wrong += 1
    client.close()
    result = dict(state)
    result.update(missing=missing, wrong=wrong, readErrors=read_errors)
    print(json.dumps({"result": result}), flush=True)
    done.set()


if __name__ == "__main__":
    main()
