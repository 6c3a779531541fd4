"""Checks of the Mosquitto test broker (tools/mqttservers.py) with paho-mqtt 2.x: the delivery
guarantees the issue-16 sync job relies on (QoS 1, persistent sessions, broker restarts)."""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from skyplug.catalog.mqttloop import SelectorLoop
from tests.servers.mqtt_services import hold_files
from tests.servers.s3_services import services

pytestmark = pytest.mark.mqtt
WAIT = 10.0  # seconds for any one broker round trip


class Client:
    """A paho client running its network loop, recording CONNACK, SUBACK and received messages."""

    def __init__(self, broker: Any, client_id: str = "", clean_session: bool = True) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.connack: Any = None
        self.granted: list[int] = []
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.published = threading.Event()
        self.acked: set[int] = set()
        self.paho.on_publish = self._on_publish
        self.paho.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload, msg.qos))
        self.paho.connect_async(broker.host, broker.port, keepalive=30)
        self.loop = SelectorLoop(self.paho).start()  # paho's loop_start fails for fds >= 1024
        assert self.connected.wait(WAIT), "no CONNACK"
        assert not self.connack.is_failure, self.connack

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self.acked.add(mid)
        self.published.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        self.granted = [r.value for r in reasons]
        self.subscribed.set()

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self.subscribed.wait(WAIT), "no SUBACK"
        assert self.granted == [1], f"broker granted QoS {self.granted}"

    def publish(self, topic: str, payloads: list[bytes]) -> None:
        """Publish at QoS 1, waiting for each PUBACK."""
        for payload in payloads:
            self.published.clear()
            info = self.paho.publish(topic, payload, qos=1)
            assert self.published.wait(WAIT) and info.mid in self.acked, "no PUBACK"

    def received(self, n: int) -> list[bytes]:
        return [self.messages.get(timeout=WAIT)[1] for _ in range(n)]

    def close(self) -> None:
        self.loop.stop()


@pytest.fixture
def topic() -> str:
    return f"skyplug/test/{uuid.uuid4().hex}"


def _away_subscriber(broker: Any, topic: str) -> str:
    """Subscribe a persistent-session client (fixed id, clean_session=False) at QoS 1, then leave."""
    client_id = f"skyplug-sync-{uuid.uuid4().hex[:12]}"
    sub = Client(broker, client_id, clean_session=False)
    sub.subscribe(topic)
    sub.close()
    return client_id


def _publish(broker: Any, topic: str, payloads: list[bytes]) -> None:
    pub = Client(broker)
    try:
        pub.publish(topic, payloads)
    finally:
        pub.close()


def test_round_trip(mqtt_broker: Any, topic: str) -> None:
    assert mqtt_broker.url == f"mqtt://127.0.0.1:{mqtt_broker.port}"
    sub = Client(mqtt_broker)
    try:
        sub.subscribe(topic)
        _publish(mqtt_broker, topic, [b"hello"])
        assert sub.messages.get(timeout=WAIT) == (topic, b"hello", 1)
    finally:
        sub.close()


def test_persistent_session_receives_what_was_sent_while_away(mqtt_broker: Any, topic: str) -> None:
    client_id = _away_subscriber(mqtt_broker, topic)
    payloads = [f"n{i}".encode() for i in range(5)]
    _publish(mqtt_broker, topic, payloads)
    sub = Client(mqtt_broker, client_id, clean_session=False)  # no new SUBSCRIBE
    try:
        assert sub.session_present
        assert sub.received(len(payloads)) == payloads
    finally:
        sub.close()


def test_queued_messages_survive_a_broker_restart(fresh_mqtt_broker: Any, topic: str) -> None:
    broker = fresh_mqtt_broker
    client_id = _away_subscriber(broker, topic)
    payloads = [f"n{i}".encode() for i in range(5)]
    _publish(broker, topic, payloads)
    port, old_pids = broker.port, list(broker.pids)
    broker.restart()
    assert broker.port == port and broker.pids != old_pids and broker.alive()
    assert (Path(broker.workdir) / "data" / "mosquitto.db").stat().st_size > 0
    sub = Client(broker, client_id, clean_session=False)
    try:
        assert sub.session_present
        assert sub.received(len(payloads)) == payloads
    finally:
        sub.close()


def test_config_stays_in_its_work_dir(fresh_mqtt_broker: Any) -> None:
    conf = (Path(fresh_mqtt_broker.workdir) / "mosquitto.conf").read_text()
    assert f"listener {fresh_mqtt_broker.port} 127.0.0.1\n" in conf
    assert "/etc/" not in conf and "include_dir" not in conf
    assert (Path(fresh_mqtt_broker.workdir) / "logs" / "mosquitto.log").exists()


def test_stop_leaves_no_process(fresh_mqtt_broker: Any) -> None:
    broker = fresh_mqtt_broker
    pids = list(broker.pids)
    broker.stop()
    assert not any(services.svcbase.alive(p) for p in pids)
    assert not services.svcbase.port_open(broker.port)
    assert not Path(broker.workdir).exists()


def test_clients_work_in_a_process_holding_many_files(mqtt_broker: Any, topic: str) -> None:
    """The full-suite failure of the first broker (no CONNACK, publish blocked): paho's own loop
    selects with select(), which fails for fds >= 1024; skyplug's selector loop does not."""
    held = contextlib.ExitStack()
    held.enter_context(hold_files(1100))
    try:
        sub = Client(mqtt_broker)
        try:
            assert sub.paho.socket().fileno() >= 1024
            sub.subscribe(topic)
            _publish(mqtt_broker, topic, [b"many-fds"])
            assert sub.messages.get(timeout=WAIT)[1] == b"many-fds"
        finally:
            sub.close()
    finally:
        held.close()


def test_services_script_up_and_down_start_a_broker(tmp_path: Path, topic: str) -> None:
    """``services.py up --mqtt`` leaves a broker up (STATE/mqtt.json); ``down`` stops it."""
    import json
    import subprocess
    import sys

    script = Path(services.__file__)
    state = tmp_path / "state"
    up = subprocess.run(
        [sys.executable, str(script), "up", "--backend", "moto", "--mqtt", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    broker = services.MqttService(**json.loads((state / "mqtt.json").read_text()))
    try:
        sub = Client(broker)
        try:
            sub.subscribe(topic)
            _publish(broker, topic, [b"up"])
            assert sub.received(1) == [b"up"]
        finally:
            sub.close()
    finally:
        down = subprocess.run(
            [sys.executable, str(script), "down", "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
    assert not any(services.svcbase.alive(p) for p in broker.pids) and not (state / "mqtt.json").exists()
