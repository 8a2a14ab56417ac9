#!/usr/bin/python3
"""Alerts per second and latency from a camera's final "." to the MQTT
message at a subscriber, for camgate on this machine.

Starts a Mosquitto broker and camgate (the built binary, build/camgate
unless CAMGATE_BIN says otherwise) on free loopback ports, then runs K
concurrent camera sessions, each AUTH LOGIN once and then sending its
share of N alert mails (fixture 05: three JPEG snapshots) over the same
connection, with RSET between messages as cameras that keep a session
open do. Each subject carries a token; an MQTT subscriber matches
`camgate/<camera>/event` messages by it.

Prints: alerts/s (first "." to last 250), and p50/p90/p99/max of
"." -> 250 and of "." -> MQTT arrival.

Usage: bench/alerts_e2e.py [N] [K]     (defaults 2000 and 10)
"""

import base64
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("CAMGATE_BIN", os.path.join(HERE, "..", "build",
                                                  "camgate"))
os.environ.setdefault("CAMGATE_FIXTURES",
                      os.path.join(HERE, "..", "tests", "fixtures"))

import camgate_testlib as lib  # noqa: E402


def pct(values, p):
  if not values:
    return float("nan")
  s = sorted(values)
  return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def message(token):
  with open(lib.fixture_path("05_hikvision_nvr_motion_3jpeg.eml"),
            "rb") as f:
    raw = f.read()
  raw = raw.replace(b"Subject: Network Video Recorder: Motion Detected",
                    b"Subject: bench " + token.encode()
                    + b" Motion Detected", 1)
  lines = raw.split(b"\r\n")
  return b"\r\n".join(b"." + l if l.startswith(b".") else l
                      for l in lines)


class Camera(threading.Thread):
  def __init__(self, port, user, password, count, start_evt, results):
    super().__init__(daemon=True)
    self.port, self.user, self.password = port, user, password
    self.count, self.start_evt, self.results = count, start_evt, results
    self.error = None

  def reply(self, f):
    line = f.readline()
    while line[3:4] == b"-":
      line = f.readline()
    return line

  def run(self):
    try:
      s = socket.create_connection((lib.HOST, self.port), timeout=30)
      s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      f = s.makefile("rb")
      self.reply(f)
      for cmd in (b"EHLO bench", b"AUTH LOGIN",
                  base64.b64encode(self.user.encode()),
                  base64.b64encode(self.password.encode())):
        s.sendall(cmd + b"\r\n")
        r = self.reply(f)
      if not r.startswith(b"235"):
        raise RuntimeError("login failed: %r" % r)
      self.start_evt.wait(30)
      for i in range(self.count):
        token = "%s-%d" % (self.user, i)
        body = message(token)
        s.sendall(b"MAIL FROM:<%s@example.com>\r\nRCPT TO:<a@example.net>"
                  b"\r\nDATA\r\n" % self.user.encode())
        for _ in range(3):
          r = self.reply(f)
        s.sendall(body)
        t0 = time.monotonic()
        s.sendall(b".\r\n")
        r = self.reply(f)
        t1 = time.monotonic()
        if not r.startswith(b"250"):
          raise RuntimeError("DATA refused: %r" % r)
        self.results[token] = (t0, t1)
        s.sendall(b"RSET\r\n")
        self.reply(f)
      s.sendall(b"QUIT\r\n")
      s.close()
    except Exception as e:  # reported by the main thread
      self.error = e


def main():
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
  k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
  tmp = lib.make_tmpdir("bench")
  mosq = lib.Mosquitto(tmp)
  mosq.start()
  watcher = lib.MqttWatcher(mosq.port, topics=("camgate/+/event",)).start()
  smtp_port = lib.free_port()
  users = ["cam%02d" % i for i in range(k)]
  cams = [lib.camera(u, password="pw-" + u) for u in users]
  cfg = lib.base_config(tmp, smtp_port, mosq.port, cams)
  cfg["log"] = {"level": "warn"}
  cfg["smtp"]["max_size"] = "32M"
  gw = lib.Camgate(tmp, cfg)
  gw.start()
  try:
    results = {}
    go = threading.Event()
    threads = [Camera(smtp_port, u, "pw-" + u, n // k, go, results)
               for u in users]
    for t in threads:
      t.start()
    time.sleep(1)
    go.set()
    for t in threads:
      t.join(600)
    errors = [t.error for t in threads if t.error]
    if errors:
      raise SystemExit("client errors: %r" % errors[:3])
    total = len(results)
    arrived = {}
    deadline = time.monotonic() + 30
    while len(arrived) < total and time.monotonic() < deadline:
      for m in watcher.snapshot():
        ev = lib.event_json(m)
        tok = (ev.get("title") or "").split(" ")
        if len(tok) > 1 and tok[1] in results:
          arrived.setdefault(tok[1], m.t)
      time.sleep(0.2)
    first = min(t0 for t0, _ in results.values())
    last = max(t1 for _, t1 in results.values())
    acks = [(t1 - t0) * 1000 for t0, t1 in results.values()]
    e2e = [(arrived[tk] - results[tk][0]) * 1000 for tk in arrived]
    print("alerts=%d sessions=%d arrived_on_mqtt=%d" % (total, k,
                                                         len(arrived)))
    print("alerts_per_s=%.0f" % (total / (last - first)))
    for name, v in (("dot_to_250_ms", acks), ("dot_to_mqtt_ms", e2e)):
      print("%s p50=%.2f p90=%.2f p99=%.2f max=%.2f" % (
        name, pct(v, 50), pct(v, 90), pct(v, 99), max(v) if v else 0))
  finally:
    gw.stop()
    watcher.stop()
    mosq.stop()
    lib.remove_tmpdir(tmp)


if __name__ == "__main__":
  main()
