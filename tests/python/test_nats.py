"""ferry's NATS listener with the official Python client (nats-py), and MQTT (paho)."""

import asyncio
import json
import threading

import nats
import nats.errors
import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until

TIMEOUT = 10


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_connect_pub_sub(ferry):
    async def main():
        nc = await nats.connect(ferry.nats_url)
        assert nc.connected_server_version.major >= 2
        assert nc._server_info["server_name"] == "ferry"
        sub = await nc.subscribe("py.>")
        star = await nc.subscribe("py.*")
        await nc.flush()
        await nc.publish("py.a", b"1")
        await nc.publish("py.b.c", b"2")
        await nc.flush()
        got = [await sub.next_msg(timeout=TIMEOUT) for _ in range(2)]
        assert [(m.subject, m.data) for m in got] == [("py.a", b"1"), ("py.b.c", b"2")]
        m = await star.next_msg(timeout=TIMEOUT)
        assert (m.subject, m.data) == ("py.a", b"1")
        await nc.close()

    run(main())


def test_request_reply(ferry):
    async def main():
        responder = await nats.connect(ferry.nats_url)

        async def handle(msg):
            await msg.respond(msg.data.upper())

        await responder.subscribe("svc.upper", cb=handle)
        await responder.flush()
        nc = await nats.connect(ferry.nats_url)
        reply = await nc.request("svc.upper", b"hello", timeout=TIMEOUT)
        assert reply.data == b"HELLO"
        await nc.close()
        await responder.close()

    run(main())


def test_queue_group(ferry):
    async def main():
        a = await nats.connect(ferry.nats_url)
        b = await nats.connect(ferry.nats_url)
        counts = {"a": 0, "b": 0}

        def counter(name):
            async def cb(_msg):
                counts[name] += 1

            return cb

        await a.subscribe("jobs", queue="workers", cb=counter("a"))
        await b.subscribe("jobs", queue="workers", cb=counter("b"))
        await a.flush()
        await b.flush()
        pub = await nats.connect(ferry.nats_url)
        for i in range(40):
            await pub.publish("jobs", str(i).encode())
        await pub.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while counts["a"] + counts["b"] < 40:
            assert loop.time() < deadline, counts
            await asyncio.sleep(0.01)
        await a.flush()
        await b.flush()
        assert counts["a"] + counts["b"] == 40
        assert counts["a"] > 0 and counts["b"] > 0
        for c in (a, b, pub):
            await c.close()

    run(main())


def test_headers(ferry):
    async def main():
        nc = await nats.connect(ferry.nats_url)
        sub = await nc.subscribe("hdr.x")
        await nc.flush()
        await nc.publish("hdr.x", b"body", headers={"X-Id": "7", "Trace": "abc"})
        m = await sub.next_msg(timeout=TIMEOUT)
        assert m.data == b"body"
        assert m.headers == {"X-Id": "7", "Trace": "abc"}
        await nc.close()

    run(main())


def test_no_responders(ferry):
    async def main():
        nc = await nats.connect(ferry.nats_url)
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("nobody.home", b"?", timeout=TIMEOUT)
        await nc.close()

    run(main())


def test_durable_reply(ferry_forwarding):
    async def main():
        nc = await nats.connect(ferry_forwarding.nats_url)
        seqs = []
        for i in range(3):
            reply = await nc.request(f"sensors.{i}", b"v", timeout=TIMEOUT)
            ack = json.loads(reply.data)
            assert reply.data == f'{{"stream":"ferry","seq":{ack["seq"]}}}'.encode()
            seqs.append(ack["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        await nc.close()

    run(main())


def test_mqtt_nats_cross(ferry):
    received = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="py-cross")
    client.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe("sensors/+/1", qos=0)
    client.connect(*ferry.mqtt)
    client.loop_start()
    try:
        assert subscribed.wait(TIMEOUT), "no SUBACK"

        async def main():
            nc = await nats.connect(ferry.nats_url)
            sub = await nc.subscribe("sensors.>")
            await nc.flush()
            # MQTT -> NATS
            client.publish("sensors/temp/1", b"21.5", qos=1).wait_for_publish(TIMEOUT)
            m = await sub.next_msg(timeout=TIMEOUT)
            assert (m.subject, m.data) == ("sensors.temp.1", b"21.5")
            # NATS -> MQTT
            await nc.publish("sensors.hum.1", b"40")
            await nc.flush()
            await nc.close()

        run(main())
        wait_until(lambda: ("sensors/hum/1", b"40") in received, "MQTT delivery")
    finally:
        client.loop_stop()
        client.disconnect()
