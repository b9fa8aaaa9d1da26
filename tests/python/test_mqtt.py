"""MQTT 3.1.1 and 5.0 with paho-mqtt 2.x: retained, wills, persistent sessions, QoS 2 and
the MQTT 5 properties, against the real ferry binary."""

import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import wait_until

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5


class Client:
    """A paho client running its network loop in a thread; messages land in a queue."""

    def __init__(self, ferry, client_id, protocol=V311, clean=True, will=None, props=None):
        kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2, "client_id": client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, flags, rc, p: self.connack.put((flags, rc, p))
        if will:
            self.c.will_set(*will)
        host, port = ferry.mqtt
        if protocol == V5:
            self.c.connect(host, port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        self.flags, self.rc, self.props = self.connack.get(timeout=10)

    def subscribe(self, *args, **kwargs):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        self.c.subscribe(*args, **kwargs)
        return done.get(timeout=10)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def next(self, limit=10):
        return self.messages.get(timeout=limit)

    def marker(self, publisher, topic):
        """Publishes a marker and returns every message received before it."""
        publisher.publish(topic, b"marker")
        before = []
        while True:
            m = self.next()
            if m.topic == topic:
                return before
            before.append(m)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

    def kill(self):
        """Drops the TCP connection without DISCONNECT."""
        self.c.loop_stop()
        self.c.socket().close()


def test_retained_set_receive_clear(ferry):
    pub = Client(ferry, "py-pub")
    pub.publish("py/r/a", b"kept", qos=1, retain=True)
    sub = Client(ferry, "py-sub")
    sub.subscribe("py/r/+", qos=1)
    m = sub.next()
    assert (m.topic, m.payload, m.retain, m.qos) == ("py/r/a", b"kept", True, 1)
    pub.publish("py/r/a", b"", qos=1, retain=True)
    late = Client(ferry, "py-late")
    late.subscribe("py/r/#", qos=1)
    assert late.marker(pub, "py/r/marker") == []


def test_will_on_abrupt_disconnect_only(ferry):
    watcher = Client(ferry, "py-watcher")
    watcher.subscribe("py/will/#", qos=1)
    polite = Client(ferry, "py-polite", will=("py/will/polite", b"bye", 1, False))
    polite.close()
    rude = Client(ferry, "py-rude", will=("py/will/rude", b"gone", 1, False))
    rude.kill()
    m = watcher.next()
    assert (m.topic, m.payload) == ("py/will/rude", b"gone")


def test_persistent_session_queues_qos1(ferry):
    a = Client(ferry, "py-durable", clean=False)
    a.subscribe("py/ps/#", qos=1)
    a.close()
    pub = Client(ferry, "py-pub2")
    for i in range(5):
        pub.publish("py/ps/x", str(i).encode(), qos=1)
    a = Client(ferry, "py-durable", clean=False)
    assert a.flags.session_present
    assert [a.next().payload for _ in range(5)] == [str(i).encode() for i in range(5)]


def test_qos2_exactly_once(ferry):
    sub = Client(ferry, "py-q2sub")
    sub.subscribe("py/q2", qos=2)
    sub.subscribe("py/q2-marker", qos=0)
    pub = Client(ferry, "py-q2pub")
    for i in range(50):
        pub.publish("py/q2", str(i).encode(), qos=2)
    got = [sub.next() for _ in range(50)]
    assert [m.payload for m in got] == [str(i).encode() for i in range(50)]
    assert {m.qos for m in got} == {2}
    assert sub.marker(pub, "py/q2-marker") == []


def test_v5_properties_pass_through_with_subscription_identifier(ferry):
    sub = Client(ferry, "py-v5sub", protocol=V5)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 42
    sub.subscribe("py/v5/#", options=SubscribeOptions(qos=1), properties=sp)
    pub = Client(ferry, "py-v5pub", protocol=V5)
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("site", "a"), ("unit", "C")]
    pp.ContentType = "text/plain"
    pp.ResponseTopic = "py/replies"
    pp.CorrelationData = b"\x00\x01"
    pp.PayloadFormatIndicator = 1
    pub.publish("py/v5/t", b"21.5", qos=1, properties=pp)
    m = sub.next()
    p = m.properties
    assert m.payload == b"21.5"
    assert p.UserProperty == [("site", "a"), ("unit", "C")]
    assert (p.ContentType, p.ResponseTopic, p.CorrelationData, p.PayloadFormatIndicator) == (
        "text/plain",
        "py/replies",
        b"\x00\x01",
        1,
    )
    assert p.SubscriptionIdentifier == [42]


def test_v5_connack_assigned_id_and_shared_subscription(ferry):
    c = Client(ferry, "", protocol=V5)
    assert c.props.AssignedClientIdentifier.startswith("ferry-auto-")
    assert c.props.SharedSubscriptionAvailable == 1
    a = Client(ferry, "py-sa", protocol=V5)
    b = Client(ferry, "py-sb", protocol=V5)
    a.subscribe("$share/g/py/jobs", options=SubscribeOptions(qos=0))
    b.subscribe("$share/g/py/jobs", options=SubscribeOptions(qos=0))
    pub = Client(ferry, "py-jobs", protocol=V5)
    for i in range(40):
        pub.publish("py/jobs", str(i).encode())
    counts = [0, 0]

    def drained():
        for k, cl in enumerate((a, b)):
            while not cl.messages.empty():
                cl.messages.get()
                counts[k] += 1
        return sum(counts) >= 40

    wait_until(drained, "40 shared deliveries")
    time.sleep(0.2)
    drained()
    assert sum(counts) == 40 and min(counts) > 0, counts


def test_v5_message_expiry(ferry):
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    a = Client(ferry, "py-exp", protocol=V5, clean=True, props=props)
    a.subscribe("py/exp/#", options=SubscribeOptions(qos=1))
    a.close()
    pub = Client(ferry, "py-exp-pub", protocol=V5)
    for topic, secs in (("py/exp/short", 1), ("py/exp/long", 100)):
        pp = Properties(PacketTypes.PUBLISH)
        pp.MessageExpiryInterval = secs
        pub.publish(topic, b"x", qos=1, properties=pp)
    time.sleep(2.1)  # the short one's lifetime runs out while the session is offline
    a = Client(ferry, "py-exp", protocol=V5, clean=False, props=props)
    m = a.next()
    assert m.topic == "py/exp/long"
    assert 97 <= m.properties.MessageExpiryInterval <= 98
