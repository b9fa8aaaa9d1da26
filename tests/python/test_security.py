"""Users, TLS, WebSocket and access rules with clients nobody here wrote: paho-mqtt over
TCP, TLS, WebSocket and secure WebSocket (MQTT 3.1.1 and 5), and nats-py with user/pass,
token and TLS. Users are added with `ferry passwd`, certificates made with openssl."""

import asyncio
import os
import queue
import ssl

import nats
import paho.mqtt.client as mqtt
import pytest

from conftest import Ferry, add_user, make_pki

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5

RULES = """
[[acl]]
user = "alice"
filter = "secret/#"
action = "subscribe"
allow = false
"""


@pytest.fixture
def secure(tmp_path):
    """ferry with every MQTT transport, NATS TLS optional, users alice and bob, and a
    rule that keeps secret/# from alice."""
    binary = os.environ["FERRY_BIN"]
    ca, cert, key = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    add_user(binary, passwd, "alice", "wonderland")
    add_user(binary, passwd, "bob", "builder")
    extra = (
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        f'[auth]\npassword_file = "{passwd}"\nnats_token = "t0ken-of-the-gateway"\n' + RULES
    )
    mqtt_extra = (
        'tls_listen = "127.0.0.1:0"\nws_listen = "127.0.0.1:0"\n'
        'wss_listen = "127.0.0.1:0"\nws_path = "/mqtt"\n'
    )
    f = Ferry(tmp_path, extra, mqtt_extra=mqtt_extra, nats_extra='tls = "optional"\n')
    f.ca = ca
    yield f
    f.stop()


class Client:
    """A paho client on one transport, its messages in a queue."""

    def __init__(self, ferry, transport, client_id, user, password, protocol=V311):
        address = {"tcp": ferry.mqtt, "tls": ferry.mqtt_tls, "ws": ferry.mqtt_ws, "wss": ferry.mqtt_wss}[transport]
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport="websockets" if transport in ("ws", "wss") else "tcp",
        )
        if transport in ("ws", "wss"):
            self.c.ws_set_options(path="/mqtt")
        if transport in ("tls", "wss"):
            self.c.tls_set(ca_certs=str(ferry.ca))
        if user is not None:
            self.c.username_pw_set(user, password)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, flags, rc, p: self.connack.put(rc)
        # paho wants the name in the certificate: localhost, not 127.0.0.1.
        self.c.connect("localhost", address[1], keepalive=30)
        self.c.loop_start()
        self.rc = self.connack.get(timeout=10)

    def subscribe(self, topic, qos=1):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        self.c.subscribe(topic, qos)
        return done.get(timeout=10)

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("protocol", [V311, V5])
def test_every_transport_with_passwords(secure, protocol):
    clients = {}
    for transport in ("tcp", "tls", "ws", "wss"):
        c = Client(secure, transport, f"py-{transport}", "bob", "builder", protocol)
        assert c.rc == 0, (transport, c.rc)
        c.subscribe("room/#")
        clients[transport] = c
    # Each transport publishes; every transport receives all four, in order per publisher.
    for transport, c in clients.items():
        c.publish(f"room/{transport}", f"via {transport}".encode())
    for transport, c in clients.items():
        got = sorted(c.messages.get(timeout=10).payload.decode() for _ in range(4))
        assert got == ["via tcp", "via tls", "via ws", "via wss"], transport
        assert c.messages.empty()
    for c in clients.values():
        c.close()


@pytest.mark.parametrize("transport", ["tcp", "ws", "wss"])
def test_refusals_over_each_transport(secure, transport):
    bad = Client(secure, transport, "py-bad", "alice", "nope", V311)
    assert bad.rc == 135  # CONNACK 5, which paho reports as reason code 0x87
    bad.close()
    anon = Client(secure, transport, "py-anon", None, None, V5)
    assert anon.rc == 135  # 0x87 not authorized
    anon.close()
    wrong = Client(secure, transport, "py-wrong", "mallory", "x", V5)
    assert wrong.rc == 134  # 0x86 bad user name or password
    wrong.close()


def test_a_wide_subscription_over_websocket_never_gets_a_denied_topic(secure):
    alice = Client(secure, "ws", "py-alice", "alice", "wonderland", V5)
    assert alice.subscribe("#")[0].value == 1
    denied = alice.subscribe("secret/x")
    assert denied[0].value == 0x87
    bob = Client(secure, "wss", "py-bob", "bob", "builder", V5)
    for topic in ("secret/x", "open/x", "secret/y", "open/end"):
        bob.publish(topic, topic.encode())
    assert alice.messages.get(timeout=10).topic == "open/x"
    assert alice.messages.get(timeout=10).topic == "open/end"
    alice.close()
    bob.close()


def test_nats_py_user_pass_token_and_tls(secure):
    host, port = secure.nats
    ctx = ssl.create_default_context(cafile=str(secure.ca))

    async def run():
        plain = await nats.connect(f"nats://{host}:{port}", user="alice", password="wonderland")
        sub = await plain.subscribe("py.x")
        token = await nats.connect(f"nats://{host}:{port}", token="t0ken-of-the-gateway")
        await token.publish("py.x", b"by token")
        msg = await sub.next_msg(timeout=10)
        assert msg.data == b"by token"
        secure_client = await nats.connect(f"tls://localhost:{port}", user="bob", password="builder", tls=ctx)
        await secure_client.publish("py.x", b"over tls")
        msg = await sub.next_msg(timeout=10)
        assert msg.data == b"over tls"
        errors = []

        async def on_error(e):
            errors.append(e)

        with pytest.raises(Exception) as refused:
            await nats.connect(
                f"nats://{host}:{port}", user="alice", password="nope",
                allow_reconnect=False, max_reconnect_attempts=0, error_cb=on_error,
                connect_timeout=5,
            )
        assert "authorization violation" in (str(refused.value) + repr(errors)).lower()
        for c in (plain, token, secure_client):
            await c.close()

    asyncio.run(run())
