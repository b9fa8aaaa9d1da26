"""Bursts with real clients nobody here wrote (issue 11, case 1, as tests/bursts.rs does it
with rumqttc and async-nats): one publisher writes 200,000 messages of 64 B as fast as
its client allows, and one subscriber must receive every one of them, in order, with
nothing dropped by ferry (`ferry_events_dropped_total{reason="slow_subscriber"}` stays
0), because ferry holds a fast publisher back (`limits.publisher_stall`) instead of
dropping. The clients are paho-mqtt, nats-py and mosquitto_sub (mosquitto-clients).

Each payload is its index, ten decimal digits, padded with dots to 64 bytes (text, so
that mosquitto_sub prints one message per line). Every wait polls a condition under a
deadline and fails with how many messages had arrived.
"""

import asyncio
import shutil
import subprocess
import sys
import threading
import time

import nats
import paho.mqtt.client as mqtt
import pytest

from conftest import Ferry, wait_until

BURST = 200_000
SIZE = 64
# Limit of each wait for a whole burst (a guard against hangs: on this 2-core machine a
# burst takes 10-50 s through Python); a wait also fails after STALL seconds without one
# more message, which is how a loss shows.
LIMIT = 120.0
STALL = 10.0
# Unacknowledged QoS 1 messages (in flight and queued in paho) one publisher may have.
WINDOW = 60_000
DROPPED = 'ferry_events_dropped_total{reason="slow_subscriber"}'


def payload(i):
    return b"%010d" % i + b"." * (SIZE - 10)


@pytest.fixture
def ferry(tmp_path):
    f = Ferry(tmp_path, '[metrics]\nlisten = "127.0.0.1:0"\n')
    yield f
    f.stop()


class Tally:
    """Counts arrivals; each must be the payload of the next index."""

    def __init__(self):
        self.count = 0
        self.wrong = 0
        self.first_wrong = None

    def add(self, data):
        i = self.count
        if data != payload(i):
            self.wrong += 1
            if self.first_wrong is None:
                self.first_wrong = (i, bytes(data[:20]), len(data))
        self.count = i + 1

    def check(self, n):
        assert self.count == n, f"{self.count} of {n} messages arrived (extra ones)"
        assert self.wrong == 0, (
            f"{self.wrong} of {n} out of order or altered; first: expected index "
            f"{self.first_wrong[0]}, got {self.first_wrong[1]!r} ({self.first_wrong[2]} B)"
        )


class Progress:
    """The deadline of a burst: `LIMIT` in all, `STALL` without progress. With `ferry`, a
    failure also tells what ferry counted as dropped and stalled."""

    def __init__(self, what, n, ferry=None, limit=LIMIT):
        self.what, self.n, self.ferry, self.limit = what, n, ferry, limit
        self.start = self.moved = time.monotonic()
        self.last = -1

    def done(self, got):
        now = time.monotonic()
        if got >= self.n:
            return True
        if got != self.last:
            self.last, self.moved = got, now
        if now - self.start > self.limit or now - self.moved > STALL:
            raise AssertionError(
                f"{self.what}: {got} of {self.n} messages arrived after "
                f"{now - self.start:.1f} s (limit {self.limit:.0f} s, or {STALL:.0f} s without one more)"
                + (self.ferry_counts() if self.ferry else "")
            )
        return False

    def ferry_counts(self):
        m = self.ferry.metric
        return (
            f"; ferry: {m(DROPPED):.0f} dropped (slow_subscriber), "
            f"{m('ferry_publisher_stalls_total'):.0f} publisher stalls, "
            f"{m('ferry_publisher_stall_timeouts_total'):.0f} stall timeouts"
        )

    def wait(self, count):
        while not self.done(count()):
            time.sleep(0.02)

    async def wait_async(self, count):
        while not self.done(count()):
            await asyncio.sleep(0.02)


def assert_nothing_dropped(ferry):
    assert ferry.metric(DROPPED) == 0, "ferry dropped deliveries to a slow subscriber"


def paho_client(ferry, client_id):
    """A connected paho-mqtt 3.1.1 client (clean session) with its loop in a thread."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connack = []
    c.on_connect = lambda _c, _u, _flags, rc, _p: connack.append(rc)
    c.connect(*ferry.mqtt, keepalive=60)
    c.loop_start()
    wait_until(lambda: connack, f"CONNACK for {client_id}")
    assert not connack[0].is_failure, connack[0]
    return c


def paho_subscriber(ferry, client_id, qos):
    """A paho-mqtt subscriber to burst/# whose messages go to a Tally."""
    tally = Tally()
    c = paho_client(ferry, client_id)
    c.on_message = lambda _c, _u, m: tally.add(m.payload)
    granted = []
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.extend(codes)
    c.subscribe("burst/#", qos)
    wait_until(lambda: granted, "SUBACK")
    assert granted[0].value == qos, granted
    return c, tally


def paho_publish(address, client_id, topic, qos, n=BURST, ferry=None):
    """Publishes the burst with paho-mqtt to `address` (host, port), as fast as the client
    takes it (QoS 1: 1,000 in flight, at most WINDOW unacknowledged), then waits until
    every message was written (QoS 0) or acknowledged (QoS 1). With `ferry`, a failed wait
    also tells ferry's drop and stall counts."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(1000)
    done = [0]

    def on_publish(_c, _u, _mid, _rc, _p):
        done[0] += 1

    c.on_publish = on_publish
    connack = []
    c.on_connect = lambda _c, _u, _flags, rc, _p: connack.append(rc)
    c.connect(*address, keepalive=60)
    c.loop_start()
    try:
        wait_until(lambda: connack, f"CONNACK for {client_id}")
        for i in range(n):
            if qos and i - done[0] >= WINDOW:
                # MQTT packet ids are 16 bits: paho refuses (MQTT_ERR_QUEUE_SIZE) a
                # message whose id is still unacknowledged, so wait for half the window.
                Progress(f"paho publisher, PUBACKs after {i} sent", i - WINDOW // 2, ferry).wait(lambda: done[0])
            info = c.publish(topic, payload(i), qos=qos)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS, (i, info.rc)
        what = "written" if qos == 0 else "acknowledged (PUBACK)"
        Progress(f"paho publisher, messages {what}", n, ferry).wait(lambda: done[0])
    finally:
        c.disconnect()
        c.loop_stop()


class Publisher:
    """`paho_publish` in a process of its own, beside a Python subscriber: a publisher's
    tight loop in the same interpreter holds the GIL against the subscriber's network
    thread, which then stops reading its socket for longer than `limits.publisher_stall`
    (a pause no device on a network makes; it lost a third of a QoS 0 burst once in CI).
    `join` waits for it and fails with what it printed."""

    def __init__(self, ferry, client_id, topic, qos):
        host, port = ferry.mqtt
        self.proc = subprocess.Popen(
            [sys.executable, __file__, host, str(port), client_id, topic, str(qos)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def join(self):
        try:
            out, _ = self.proc.communicate(timeout=LIMIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0, out.decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_paho_qos0_burst_reaches_a_paho_subscriber_whole(ferry):
    sub, tally = paho_subscriber(ferry, "burst-sub0", 0)
    publisher = Publisher(ferry, "burst-pub0", "burst/a", 0)
    try:
        Progress("paho QoS 0 -> paho QoS 0", BURST, ferry).wait(lambda: tally.count)
        publisher.join()
        tally.check(BURST)
    finally:
        publisher.stop()
        sub.disconnect()
        sub.loop_stop()
    assert_nothing_dropped(ferry)


def test_paho_qos1_burst_reaches_a_paho_qos1_subscriber_whole(ferry):
    sub, tally = paho_subscriber(ferry, "burst-sub1", 1)
    publisher = Publisher(ferry, "burst-pub1", "burst/b", 1)
    try:
        Progress("paho QoS 1 -> paho QoS 1", BURST, ferry).wait(lambda: tally.count)
        publisher.join()
        tally.check(BURST)
    finally:
        publisher.stop()
        sub.disconnect()
        sub.loop_stop()
    assert_nothing_dropped(ferry)


async def nats_connect(ferry, errors):
    async def error_cb(e):
        errors.append(repr(e))

    return await nats.connect(ferry.nats_url, error_cb=error_cb, allow_reconnect=False)


# The nats-py publisher of `test_nats_burst_reaches_a_paho_subscriber_whole`, run in a
# process of its own: nats-py writes the burst in a tight asyncio loop that, in the same
# interpreter, would hold the GIL against paho's network thread (paho then read some
# 10,000 messages a second and stopped reading for longer than the stall, which no
# device on a network does to its subscriber).
NATS_PUBLISHER = """
import asyncio, sys
import nats

async def main(url, n, size):
    nc = await nats.connect(url, allow_reconnect=False)
    for i in range(n):
        await nc.publish("burst.c", b"%010d" % i + b"." * (size - 10))
    await nc.flush(timeout=60)
    await nc.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_nats_burst_reaches_a_paho_subscriber_whole(ferry):
    """The publisher far outruns the subscriber here: nats-py writes the 200,000 messages
    in about a second, paho reads them at its own pace; ferry holds the publisher back."""
    sub, tally = paho_subscriber(ferry, "burst-sub2", 0)
    try:
        publisher = subprocess.run(
            [sys.executable, "-c", NATS_PUBLISHER, ferry.nats_url, str(BURST), str(SIZE)],
            capture_output=True,
            timeout=LIMIT,
        )
        assert publisher.returncode == 0, publisher.stderr.decode(errors="replace")
        Progress("nats-py -> paho QoS 0", BURST, ferry).wait(lambda: tally.count)
        tally.check(BURST)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert_nothing_dropped(ferry)


def test_paho_burst_reaches_a_nats_subscriber_whole(ferry):
    errors = []
    tally = Tally()

    async def main():
        nc = await nats_connect(ferry, errors)

        async def cb(msg):
            tally.add(msg.data)

        await nc.subscribe("burst.>", cb=cb)
        await nc.flush()
        publisher = Publisher(ferry, "burst-pub3", "burst/d", 0)
        try:
            await Progress("paho QoS 0 -> nats-py", BURST, ferry).wait_async(lambda: tally.count)
            publisher.join()
        finally:
            publisher.stop()
        await nc.flush()
        await nc.close()

    asyncio.run(asyncio.wait_for(main(), 2 * LIMIT))
    tally.check(BURST)
    assert errors == [], "nats-py reported errors (a slow consumer?)"
    assert_nothing_dropped(ferry)
    assert ferry.metric("ferry_nats_slow_consumers_total") == 0


def test_paho_burst_reaches_mosquitto_sub_whole(ferry, tmp_path):
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        pytest.skip("mosquitto_sub not installed (Debian: mosquitto-clients; tests/run.sh installs it)")
    out_path = tmp_path / "mosquitto_sub.out"
    host, port = ferry.mqtt
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-h", host, "-p", str(port), "-i", "burst-msub", "-t", "burst/#", "-C", str(BURST)],
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:
        # mosquitto_sub says nothing when subscribed; ferry's client-state use tells.
        wait_until(
            lambda: proc.poll() is not None or ferry.metric('ferry_memory_used_bytes{part="client_state"}') > 0,
            "mosquitto_sub's subscription",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        paho_publish(ferry.mqtt, "burst-pub4", "burst/e", 0, ferry=ferry)

        def arrived():
            # One line per message, while it runs; once it exited, the checks below count.
            return BURST if proc.poll() is not None else out_path.stat().st_size // (SIZE + 1)

        Progress("paho QoS 0 -> mosquitto_sub", BURST, ferry).wait(arrived)
        assert proc.wait(timeout=10) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tally = Tally()
    for line in out_path.read_bytes().splitlines():
        tally.add(line)
    tally.check(BURST)
    assert_nothing_dropped(ferry)


if __name__ == "__main__":
    # `Publisher`'s process: host port client_id topic qos.
    host, port, client_id, topic, qos = sys.argv[1:6]
    paho_publish((host, int(port)), client_id, topic, int(qos))
