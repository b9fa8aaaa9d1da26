"""The $SYS topics (issue 14), read with mosquitto_sub and nats-py.

ferry publishes them every [sys] interval (1 s here) as retained messages: mosquitto's
names where mosquitto has them, and ferry's own per upstream. They obey the ACL (a rule
denying $SYS/ferry/# leaves a $SYS/# subscriber only the broker topics), a first-level
`#` never matches them, clients may not publish to them, and NATS clients get them as
$SYS.>.
"""

import asyncio
import subprocess
import time

import nats
import paho.mqtt.client as mqtt

from conftest import Ferry, forward_config, free_port, wait_until

ACL = (
    '[sys]\ninterval = "1s"\n'
    '[[acl]]\nfilter = "$SYS/ferry/#"\naction = "subscribe"\nallow = false\n'
)


def mosquitto_sub(ferry, topic, count, *extra):
    """mosquitto_sub -C count: topic and payload of each message, as it printed them."""
    host, port = ferry.mqtt
    out = subprocess.run(
        ["mosquitto_sub", "-h", host, "-p", str(port), "-t", topic, "-v", "-C", str(count),
         "-W", "10", *extra],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    return [line.split(" ", 1) for line in out.stdout.splitlines()]


def test_sys_topics_for_mqtt_and_nats(tmp_path):
    f = Ferry(tmp_path, forward_config(free_port()) + '[sys]\ninterval = "1s"\n')
    try:
        # Retained: a new subscriber gets the last value of each at once.
        got = dict(mosquitto_sub(f, "$SYS/#", 11))
        assert got["$SYS/broker/version"].startswith("ferry ")
        assert got["$SYS/broker/uptime"].endswith(" seconds")
        assert int(got["$SYS/broker/clients/connected"]) >= 0
        assert "$SYS/broker/messages/received" in got
        assert "$SYS/broker/load/messages/received/1min" in got
        assert got["$SYS/ferry/upstream/cloud/state"] == "down"
        assert got["$SYS/ferry/upstream/cloud/backlog"] == "0"
        assert "$SYS/ferry/upstream/cloud/oldest_age" in got

        async def over_nats():
            nc = await nats.connect(f.nats_url)
            sub = await nc.subscribe("$SYS.ferry.upstream.cloud.state")
            msg = await sub.next_msg(timeout=5)
            await nc.close()
            return msg.data

        assert asyncio.run(asyncio.wait_for(over_nats(), 20)) == b"down"

        # A first-level `#` sees none of it, and a client's publish to $SYS is refused.
        seen = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hash")
        c.on_message = lambda _c, _u, m: seen.append(m.topic)
        c.connect(f.mqtt[0], f.mqtt[1])
        c.loop_start()
        c.subscribe("#")
        time.sleep(0.2)  # the SUBACK; the proof below does not rely on it
        c.publish("$SYS/broker/version", b"forged")
        before = dict(mosquitto_sub(f, "$SYS/broker/uptime", 1))["$SYS/broker/uptime"]
        # Two intervals pass (uptime moves): $SYS was published while `#` listened.
        wait_until(
            lambda: dict(mosquitto_sub(f, "$SYS/broker/uptime", 1))["$SYS/broker/uptime"] != before,
            "a later $SYS publish", 10,
        )
        # Published while the `#` client was connected: it counts.
        connected = dict(mosquitto_sub(f, "$SYS/broker/clients/connected", 1))
        assert int(connected["$SYS/broker/clients/connected"]) >= 1
        c.publish("plain/after", b"x")
        wait_until(lambda: "plain/after" in seen, "the plain message", 10)
        assert seen == ["plain/after"], seen
        c.loop_stop()
        c.disconnect()
        assert dict(mosquitto_sub(f, "$SYS/broker/version", 1))["$SYS/broker/version"] != "forged"
    finally:
        f.stop()


def test_sys_topics_obey_the_acl(tmp_path):
    f = Ferry(tmp_path, forward_config(free_port()) + ACL)
    try:
        # $SYS/# is partly allowed: the 8 broker topics come, the upstream ones never.
        got = mosquitto_sub(f, "$SYS/#", 8)
        topics = [t for t, _ in got]
        assert all(t.startswith("$SYS/broker/") for t in topics), topics
        host, port = f.mqtt
        out = subprocess.run(
            ["mosquitto_sub", "-h", host, "-p", str(port), "-t", "$SYS/ferry/#", "-v",
             "-C", "1", "-W", "3"],
            capture_output=True, text=True, timeout=20,
        )
        assert out.stdout == "", out.stdout
    finally:
        f.stop()
