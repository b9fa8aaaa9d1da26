"""Test harness: the built ferry binary (path in FERRY_BIN) on ephemeral loopback ports.

Like tests/common/mod.rs: a temp config with port 0, then the listener addresses are
read from ferry's log ("MQTT listener ready addr=..." / "NATS listener ready addr=...").
Every wait has a deadline.
"""

import os
import re
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forward_config(port):
    """An upstream on `port` and a rule forwarding sensors/# to it as site-a/{topic}."""
    return (
        '[[upstream]]\nname = "cloud"\n'
        f'url = "mqtt://127.0.0.1:{port}"\nclient_id = "gw-py"\n'
        'backoff_min = "50ms"\nbackoff_max = "500ms"\n'
        '[[forward]]\nupstream = "cloud"\nfilter = "sensors/#"\n'
        'topic = "site-a/{topic}"\nqos = 1\n'
    )


class Ferry:
    def __init__(self, directory, extra="", mqtt_extra="", nats_extra=""):
        binary = os.environ.get("FERRY_BIN")
        if not binary:
            pytest.skip("FERRY_BIN is not set (path of the built ferry binary)")
        config = directory / "ferry.toml"
        config.write_text(
            f'[mqtt]\nlisten = "127.0.0.1:0"\n{mqtt_extra}\n[nats]\nlisten = "127.0.0.1:0"\n{nats_extra}\n'
            f'[store]\ndir = "{directory / "store"}"\n' + extra
        )
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [binary, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.log = []
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()
        self.mqtt = self.nats = None
        deadline = time.monotonic() + 20
        while self.mqtt is None or self.nats is None:
            if self.proc.poll() is not None:
                raise RuntimeError("ferry exited early:\n" + "\n".join(self.log))
            if time.monotonic() > deadline:
                raise TimeoutError("ferry listeners not ready:\n" + "\n".join(self.log))
            self.mqtt = self._addr("MQTT listener ready")
            self.nats = self._addr("NATS listener ready")
            time.sleep(0.01)
        # The optional listeners, when configured (None otherwise).
        self.mqtt_tls = self._addr("MQTT TLS listener ready")
        self.mqtt_ws = self._addr("MQTT WebSocket listener ready")
        self.mqtt_wss = self._addr("MQTT secure WebSocket listener ready")
        # The metrics endpoint, when `[metrics] listen` is configured (None otherwise).
        self.metrics = None
        if "[metrics]" in extra:
            wait_until(lambda: self._addr("metrics endpoint ready"), "the metrics endpoint", 20)
            self.metrics = self._addr("metrics endpoint ready")

    def _drain(self):
        for line in self.proc.stderr:
            with self._lock:
                self.log.append(ANSI.sub("", line.rstrip("\n")))

    def _addr(self, marker):
        with self._lock:
            for line in self.log:
                if marker in line and "addr=" in line:
                    host, port = line.split("addr=", 1)[1].split()[0].rsplit(":", 1)
                    return host, int(port)
        return None

    @property
    def nats_url(self):
        return f"nats://{self.nats[0]}:{self.nats[1]}"

    def metric(self, series):
        """The value of one series of /metrics (`name{labels}` exactly as rendered)."""
        if self.metrics is None:
            raise RuntimeError("no [metrics] listen in this ferry's config")
        host, port = self.metrics
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        raise KeyError(f"{series} not in /metrics:\n{text}")

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def ferry(tmp_path):
    f = Ferry(tmp_path)
    yield f
    f.stop()


@pytest.fixture
def ferry_forwarding(tmp_path):
    """Ferry with a forwarding rule for sensors/# (the upstream need not be up)."""
    f = Ferry(tmp_path, forward_config(free_port()))
    yield f
    f.stop()


def wait_until(cond, what, limit=10.0):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit}s waiting for {what}")
        time.sleep(0.01)


def openssl(directory, *args):
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_pki(directory):
    """A CA and a server certificate for localhost/127.0.0.1, made with the openssl CLI.
    Returns (ca, cert, key) paths."""
    d = str(directory)
    openssl(d, "req", "-x509", "-days", "2", "-subj", "/CN=ferry py CA", *EC,
            "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl(d, "req", "-subj", "/CN=localhost", *EC, "-keyout", "server.key", "-out", "server.csr")
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-days", "2", "-in", "server.csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-extfile", "ext.cnf")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def add_user(binary, passwd, user, password):
    """`ferry passwd FILE USER`, the password on stdin, as an operator's script would."""
    subprocess.run([binary, "passwd", str(passwd), user], input=password + "\n",
                   text=True, check=True, capture_output=True)
