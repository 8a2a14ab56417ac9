"""camgate_testlib - what camgate's integration tests share.

The tests run the real daemon against real peers on loopback only: a
Mosquitto broker started here with a written config, SMTP clients (swaks,
curl, smtplib and the raw client below), and an MQTT v5 client of our own
that records every message with its retain flag (it subscribes with
"retain as published", so a live message keeps the flag the publisher set).

Everything that waits is bounded in count and time, and every process
started here is killed at exit, even when a test fails or the runner gets
SIGTERM. Python standard library only; run with Debian's /usr/bin/python3.

Environment:
  CAMGATE_BIN       the camgate binary under test (required for the daemon)
  CAMGATE_FIXTURES  the camera fixtures (default tests/fixtures)
  CAMGATE_IT_KEEP   if set, temporary directories (configs, logs, spools)
                    are kept and their paths printed
"""

import atexit
import base64
import collections
import email
import email.policy
import json
import os
import pwd
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

FIXTURES = os.environ.get("CAMGATE_FIXTURES", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
SMTP_FIXTURES = os.path.join(FIXTURES, "smtp")
HOST = "127.0.0.1"
HOSTNAME = "gateway.example.net"

# Logins used by the fixtures (checked against the dialogs' base64 in
# test_dialog_parser) plus our own for cameras no fixture logs in as.
PASSWORDS = {
    "cam-shed": "s3cret-shed",
    "cam-door": "d00r-pass",
    "cam-lobby": "lobby-pass",
    "trailcam": "trail-pass",
    "dafang-1": "dafang-pass",
    "nvr-gate": "gate-pass",
    "nvr-yard": "yard-pass",
}

# The Hikvision channel pattern of the brief: "CAMERA NAME(NUM): Driveway(D4)"
NVR_CHANNEL_RE = r"CAMERA NAME\(NUM\):\s*[^(]*\(([^)]+)\)"


# ---------------------------------------------------------------- processes

_LIVE = []
_LIVE_LOCK = threading.Lock()


def _register(proc):
  with _LIVE_LOCK:
    _LIVE.append(proc)
  return proc


def _kill_all():
  with _LIVE_LOCK:
    procs = list(_LIVE)
  for p in procs:
    if p.poll() is None:
      try:
        p.kill()
        p.wait(5)
      except Exception:
        pass


atexit.register(_kill_all)


def _on_sigterm(signum, frame):
  # Turn SIGTERM (ctest timeout) into a normal exit so atexit runs.
  raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
  signal.signal(signal.SIGTERM, _on_sigterm)


def wait_until(pred, timeout, interval=0.05):
  """Calls pred() until it returns something true or timeout seconds pass.
  Returns the last value pred() returned (falsy on timeout)."""
  deadline = time.monotonic() + timeout
  while True:
    value = pred()
    if value:
      return value
    if time.monotonic() >= deadline:
      return value
    time.sleep(interval)


def free_port():
  return free_ports(1)[0]


def free_ports(n):
  """n distinct free loopback TCP ports (all held bound while choosing)."""
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind((HOST, 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def port_open(port, host=HOST, timeout=0.3):
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


def start_broker(cls):
  """Starts a Mosquitto (cls.mosq) and a subscriber to everything on it
  (cls.watcher) for a test class, stopped by its class cleanups; cls.tmp
  must be set."""
  cls.mosq = Mosquitto(cls.tmp)
  cls.mosq.start()
  cls.addClassCleanup(cls.mosq.stop)
  cls.watcher = MqttWatcher(cls.mosq.port).start()
  cls.addClassCleanup(cls.watcher.stop)


def make_tmpdir(tag):
  path = tempfile.mkdtemp(prefix="camgate-it-%s-" % tag)
  if os.environ.get("CAMGATE_IT_KEEP"):
    sys.stderr.write("[keeping %s]\n" % path)
  return path


def remove_tmpdir(path):
  if path and not os.environ.get("CAMGATE_IT_KEEP"):
    shutil.rmtree(path, ignore_errors=True)


def tail(text, n=40):
  return "\n".join(text.splitlines()[-n:])


# ------------------------------------------------------------------- broker

class Mosquitto:
  """A real mosquitto on a free loopback port. persistence=True keeps
  sessions and queued messages across stop/start (in workdir), which the
  durability tests need so that a watcher's persistent session survives a
  broker outage; everyone else runs without persistence."""

  def __init__(self, workdir, port=None, persistence=False):
    self.workdir = workdir
    self.port = port or free_port()
    self.persistence = persistence
    self.conf = os.path.join(workdir, "mosquitto.conf")
    self.log_path = os.path.join(workdir, "mosquitto.log")
    self.proc = None

  def _write_conf(self):
    lines = [
        "listener %d %s" % (self.port, HOST),
        "allow_anonymous true",
        "persistence %s" % ("true" if self.persistence else "false"),
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "max_queued_messages 10000",
        # As root mosquitto would switch to "mosquitto", which cannot
        # write our temporary directory.
        "user %s" % pwd.getpwuid(os.getuid()).pw_name,
    ]
    if self.persistence:
      pdir = os.path.join(self.workdir, "mosq-db")
      os.makedirs(pdir, exist_ok=True)
      lines += [
          "persistence_location %s/" % pdir,
          "autosave_interval 1",
          "queue_qos0_messages true",
      ]
    with open(self.conf, "w") as f:
      f.write("\n".join(lines) + "\n")

  def start(self, timeout=10):
    if self.running():
      return
    self._write_conf()
    log = open(self.log_path, "ab")
    try:
      self.proc = _register(subprocess.Popen(
          ["mosquitto", "-c", self.conf], stdin=subprocess.DEVNULL,
          stdout=log, stderr=log))
    finally:
      log.close()
    ok = wait_until(lambda: self.proc.poll() is not None
                    or port_open(self.port), timeout)
    if not ok or self.proc.poll() is not None:
      raise RuntimeError("mosquitto did not start on %d:\n%s"
                         % (self.port, tail(self.log())))

  def stop(self, timeout=10):
    if self.proc is None or self.proc.poll() is not None:
      return
    self.proc.send_signal(signal.SIGTERM)
    try:
      self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait(5)
    wait_until(lambda: not port_open(self.port), 5)

  def restart(self):
    self.stop()
    self.start()

  def running(self):
    return self.proc is not None and self.proc.poll() is None

  def log(self):
    try:
      with open(self.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")
    except OSError:
      return ""


# ------------------------------------------------------------ MQTT (v5)

MqttMsg = collections.namedtuple("MqttMsg", "topic payload retain qos t")


def _varint(n):
  out = bytearray()
  while True:
    b = n % 128
    n //= 128
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _mqtt_str(s):
  b = s.encode("utf-8")
  return struct.pack("!H", len(b)) + b


class MqttWatcher:
  """Records every message on the subscribed filters. MQTT v5 over a raw
  socket: QoS 1 subscriptions with retain-as-published, so msg.retain is
  the flag the publisher set (also for live messages). persistent=True
  uses a fixed client id, clean start off and a session expiry, and keeps
  reconnecting while the broker is down, so messages queued for it during
  an outage arrive when it comes back (broker must persist or stay up)."""

  def __init__(self, port, topics=("#",), client_id=None, persistent=False,
               reconnect=None):
    self.port = port
    self.topics = list(topics)
    self.client_id = client_id or "it-%d-%d" % (os.getpid(),
                                               int(time.time() * 1e6) % 10**9)
    self.persistent = persistent
    self.reconnect = persistent if reconnect is None else reconnect
    self.messages = []
    self.cond = threading.Condition()
    self.subscribed = threading.Event()
    self.errors = []
    self._stop = threading.Event()
    self._sock = None
    self._thread = None
    self.connects = 0

  # -- life cycle
  def start(self, timeout=10):
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    if not self.subscribed.wait(timeout):
      self.stop()
      raise RuntimeError("MQTT watcher could not subscribe on port %d: %s"
                         % (self.port, self.errors[-3:]))
    return self

  def stop(self):
    self._stop.set()
    s = self._sock
    if s is not None:
      try:
        s.sendall(b"\xe0\x00")   # DISCONNECT, normal
      except OSError:
        pass
      try:
        s.close()
      except OSError:
        pass
    if self._thread is not None:
      self._thread.join(5)

  def _run(self):
    attempts = 0
    while not self._stop.is_set() and attempts < 100000:
      attempts += 1
      try:
        self._session()
      except (OSError, ValueError, EOFError) as e:
        self.errors.append(repr(e))
      self.subscribed.clear() if self.reconnect else None
      if not self.reconnect or self._stop.is_set():
        break
      self._stop.wait(0.1)

  def _session(self):
    s = socket.create_connection((HOST, self.port), timeout=2)
    self._sock = s
    self._buf = b""
    try:
      s.settimeout(0.3)
      props = b""
      flags = 0x02
      if self.persistent:
        flags = 0x00
        props = b"\x11" + struct.pack("!I", 3600)   # session expiry
      body = (_mqtt_str("MQTT") + b"\x05" + bytes([flags])
              + struct.pack("!H", 0) + _varint(len(props)) + props
              + _mqtt_str(self.client_id))
      s.sendall(b"\x10" + _varint(len(body)) + body)
      ptype, _, body = self._read_packet(5)
      if ptype != 2 or len(body) < 2 or body[1] != 0:
        raise ValueError("CONNACK refused: %r" % body[:4])
      session_present = body[0] & 1
      self.connects += 1
      if not session_present or not self.persistent:
        payload = b""
        for t in self.topics:
          payload += _mqtt_str(t) + bytes([0x01 | 0x08])  # QoS1, RAP
        sub = struct.pack("!H", 1) + b"\x00" + payload
        s.sendall(b"\x82" + _varint(len(sub)) + sub)
        while True:
          ptype, fl, body = self._read_packet(5)
          if ptype == 9:
            break
          self._handle(ptype, fl, body)
      self.subscribed.set()
      while not self._stop.is_set():
        pkt = self._read_packet(None)
        if pkt is None:
          continue
        self._handle(*pkt)
    finally:
      self._sock = None
      try:
        s.close()
      except OSError:
        pass

  def _fill(self, n, deadline):
    while len(self._buf) < n:
      if self._stop.is_set():
        raise EOFError("stopped")
      if deadline is not None and time.monotonic() > deadline:
        raise OSError("MQTT read timeout")
      try:
        d = self._sock.recv(65536)
      except socket.timeout:
        if deadline is None and not self._buf:
          return False
        continue
      if not d:
        raise EOFError("broker closed")
      self._buf += d
    return True

  def _read_packet(self, timeout):
    """(type, flags, body); None if nothing arrived within a poll."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if not self._fill(2, deadline):
      return None
    mult, length, i = 1, 0, 1
    while True:
      self._fill(i + 1, deadline or time.monotonic() + 5)
      b = self._buf[i]
      length += (b & 0x7F) * mult
      mult *= 128
      i += 1
      if not b & 0x80:
        break
      if i > 4:
        raise ValueError("bad remaining length")
    self._fill(i + length, deadline or time.monotonic() + 5)
    first = self._buf[0]
    body = self._buf[i:i + length]
    self._buf = self._buf[i + length:]
    return first >> 4, first & 0x0F, body

  def _handle(self, ptype, flags, body):
    if ptype != 3:
      return
    qos = (flags >> 1) & 3
    retain = bool(flags & 1)
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen].decode("utf-8", "replace")
    pos = 2 + tlen
    pid = None
    if qos:
      pid = struct.unpack("!H", body[pos:pos + 2])[0]
      pos += 2
    mult, plen = 1, 0
    while True:
      b = body[pos]
      pos += 1
      plen += (b & 0x7F) * mult
      mult *= 128
      if not b & 0x80:
        break
    pos += plen
    payload = bytes(body[pos:])
    if qos == 1:
      self._sock.sendall(b"\x40\x02" + struct.pack("!H", pid))
    elif qos == 2:
      self._sock.sendall(b"\x50\x02" + struct.pack("!H", pid))
    with self.cond:
      self.messages.append(MqttMsg(topic, payload, retain, qos,
                                   time.monotonic()))
      self.cond.notify_all()

  # -- queries
  def mark(self):
    with self.cond:
      return len(self.messages)

  def snapshot(self, since=0):
    with self.cond:
      return list(self.messages[since:])

  def all(self, topic, since=0):
    return [m for m in self.snapshot(since) if m.topic == topic]

  def wait_for(self, topic, pred=None, timeout=10, since=0):
    """The first message on topic (exact, or a callable on the topic) since
    index `since` for which pred(msg) is true; None after timeout."""
    deadline = time.monotonic() + timeout
    tmatch = topic if callable(topic) else (lambda t: t == topic)
    with self.cond:
      while True:
        for m in self.messages[since:]:
          if tmatch(m.topic) and (pred is None or pred(m)):
            return m
        left = deadline - time.monotonic()
        if left <= 0:
          return None
        self.cond.wait(min(left, 0.2))

  def wait_count(self, topic, n, pred=None, timeout=10, since=0):
    """Waits until n matching messages arrived; returns those found."""
    tmatch = topic if callable(topic) else (lambda t: t == topic)

    def found():
      return [m for m in self.snapshot(since)
              if tmatch(m.topic) and (pred is None or pred(m))]
    wait_until(lambda: len(found()) >= n, timeout)
    return found()

  def __enter__(self):
    return self.start()

  def __exit__(self, *a):
    self.stop()


def retained(port, topics=("#",), quiet=0.7, timeout=5):
  """Retained messages right now: {topic: payload} from a fresh
  subscription (the broker sends retained messages with retain=1)."""
  w = MqttWatcher(port, topics).start()
  try:
    last = [w.mark(), time.monotonic()]

    def settled():
      n = w.mark()
      if n != last[0]:
        last[0], last[1] = n, time.monotonic()
      return time.monotonic() - last[1] >= quiet
    wait_until(settled, timeout)
  finally:
    w.stop()
  return {m.topic: m.payload for m in w.snapshot() if m.retain}


def event_json(msg):
  return json.loads(msg.payload.decode("utf-8"))


def topic_id(camera):
  """A camera id as it appears in topics."""
  return re.sub(r"[^A-Za-z0-9_-]", "_", camera)


# ------------------------------------------------------------- TLS, hashes

def make_cert(workdir, cn=HOSTNAME):
  """Self-signed RSA certificate (RSA so that TLS_RSA_* legacy suites are
  possible); the key file gets mode 0600. Returns (cert, key)."""
  cert = os.path.join(workdir, "cert.pem")
  key = os.path.join(workdir, "key.pem")
  subprocess.run(
      ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=" + cn,
       "-addext", "subjectAltName=DNS:" + cn],
      check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      timeout=60)
  os.chmod(key, 0o600)
  return cert, key


def camgate_bin():
  path = os.environ.get("CAMGATE_BIN")
  if not path:
    raise RuntimeError("CAMGATE_BIN is not set (the camgate binary)")
  if not os.access(path, os.X_OK):
    raise RuntimeError("CAMGATE_BIN=%s is not executable" % path)
  return path


def crypt_fn():
  """crypt.crypt (libxcrypt, so yescrypt) or None where unavailable."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
      import crypt
    except ImportError:
      return None
  return crypt.crypt


_HASHES = {}


def hash_password(password):
  """A `camgate passwd` hash for password (cached per process)."""
  if password not in _HASHES:
    r = subprocess.run([camgate_bin(), "passwd"], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    lines = [l.strip() for l in r.stdout.splitlines() if l.strip()]
    if r.returncode != 0 or not lines or not lines[-1].startswith("$y$"):
      raise RuntimeError("camgate passwd failed: rc=%s out=%r err=%r"
                         % (r.returncode, r.stdout, r.stderr[-500:]))
    _HASHES[password] = lines[-1]
  return _HASHES[password]


# ------------------------------------------------------------- YAML config

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$|^[0-9]+[A-Za-z]+$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n",
             "~"}


def _scalar(v):
  if v is True:
    return "true"
  if v is False:
    return "false"
  if v is None:
    return "null"
  if isinstance(v, int):
    return str(v)
  s = str(v)
  if _PLAIN.match(s) and s.lower() not in _RESERVED:
    return s
  return json.dumps(s)     # JSON strings are valid YAML double-quoted


def _emit(obj, ind, out):
  pad = " " * ind
  if isinstance(obj, dict):
    for k, v in obj.items():
      if isinstance(v, (dict, list)) and v:
        out.append("%s%s:" % (pad, k))
        _emit(v, ind + 2, out)
      elif isinstance(v, dict):
        out.append("%s%s: {}" % (pad, k))
      elif isinstance(v, list):
        out.append("%s%s: []" % (pad, k))
      else:
        out.append("%s%s: %s" % (pad, k, _scalar(v)))
  else:
    for item in obj:
      if isinstance(item, (dict, list)) and item:
        sub = []
        _emit(item, ind + 2, sub)
        out.append(pad + "- " + sub[0][ind + 2:])
        out.extend(sub[1:])
      else:
        out.append("%s- %s" % (pad, _scalar(item)))


def to_yaml(obj):
  out = []
  _emit(obj, 0, out)
  return "\n".join(out) + "\n"


def camera(cid, password=True, name=None, allow_from=None, channel=None,
           user=None):
  """A camera entry. password=True takes PASSWORDS[cid]; a string is used
  as is; None/False gives a camera without an SMTP login."""
  c = {"id": cid}
  if name:
    c["name"] = name
  if password:
    pw = PASSWORDS[cid] if password is True else password
    c["smtp"] = {"user": user or cid, "password_hash": hash_password(pw)}
  if allow_from:
    c["allow_from"] = list(allow_from)
  if channel:
    c["channel"] = dict(channel)
  return c


def base_config(workdir, smtp_port, mqtt_port, cameras, tls=None,
                tls_port=None, min_version="1.2", ciphers=None,
                max_size="1M", idle_timeout="30s", hold="2s",
                hostname=HOSTNAME, level="debug", client_id=None):
  """The brief's config template. Give each camgate that shares a broker
  with another its own client_id, or the broker keeps kicking one out."""
  cfg = {"log": {"level": level},
         "spool": {"path": os.path.join(workdir, "var"),
                   "retention": "7d"}}
  if tls:
    cfg["tls"] = {"cert": tls[0], "key": tls[1],
                  "min_version": min_version}
    if ciphers:
      cfg["tls"]["ciphers"] = ciphers
  smtp = {"listen": "%s:%d" % (HOST, smtp_port)}
  if tls and tls_port:
    smtp["listen_tls"] = "%s:%d" % (HOST, tls_port)
  smtp.update({"hostname": hostname, "max_size": max_size,
               "idle_timeout": idle_timeout})
  cfg["smtp"] = smtp
  cfg["cameras"] = list(cameras)
  cfg["backends"] = [{"name": "ha", "type": "mqtt", "host": HOST,
                      "port": mqtt_port, "topic_prefix": "camgate",
                      "hold": hold, "retry_initial": "1s",
                      "retry_max": "2s"}]
  if client_id:
    cfg["backends"][0]["client_id"] = client_id
  cfg["rules"] = [{"name": "all", "backends": ["ha"]}]
  return cfg


# ------------------------------------------------------------------ daemon

class Camgate:
  """One camgate process: `camgate run -c workdir/camgate.yaml`, logging to
  workdir/camgate.log (appended across restarts)."""

  def __init__(self, workdir, config, smtp_port=None, env=None,
               name="camgate"):
    self.workdir = workdir
    self.config_path = os.path.join(workdir, name + ".yaml")
    self.log_path = os.path.join(workdir, name + ".log")
    self.env = dict(os.environ)
    self.env.update(env or {})
    self.proc = None
    self.smtp_port = smtp_port
    self.write_config(config)

  def write_config(self, config):
    text = config if isinstance(config, str) else to_yaml(config)
    if not isinstance(config, str) and self.smtp_port is None:
      self.smtp_port = int(config["smtp"]["listen"].rsplit(":", 1)[1])
    tmp = self.config_path + ".tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, self.config_path)

  def start(self, wait=True, timeout=15):
    log = open(self.log_path, "ab")
    try:
      self.proc = _register(subprocess.Popen(
          [camgate_bin(), "run", "-c", self.config_path],
          stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env))
    finally:
      log.close()
    if wait:
      self.wait_ready(timeout)
    return self

  def wait_ready(self, timeout=15):
    ok = wait_until(lambda: self.proc.poll() is not None
                    or port_open(self.smtp_port), timeout)
    if not ok or self.proc.poll() is not None:
      rc = self.proc.poll()
      if rc is None:
        self.kill9()
      raise RuntimeError("camgate did not come up on %d (rc=%s):\n%s"
                         % (self.smtp_port, rc, tail(self.log())))

  def alive(self):
    return self.proc is not None and self.proc.poll() is None

  def stop(self, timeout=20):
    """SIGTERM; returns the exit code (kills and returns None if it does
    not exit within timeout)."""
    if self.proc is None:
      return None
    if self.proc.poll() is not None:
      return self.proc.returncode
    self.proc.send_signal(signal.SIGTERM)
    try:
      return self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait(5)
      return None

  def kill9(self):
    if self.alive():
      self.proc.kill()
      self.proc.wait(5)

  def hup(self):
    self.proc.send_signal(signal.SIGHUP)

  def cpu_seconds(self):
    """User plus system CPU time the process has used, all threads."""
    with open("/proc/%d/stat" % self.proc.pid) as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

  def log(self):
    try:
      with open(self.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")
    except OSError:
      return ""

  def log_mark(self):
    try:
      return os.path.getsize(self.log_path)
    except OSError:
      return 0

  def wait_log(self, pattern, timeout=10, since=0):
    """The first match of regex pattern in the log after byte `since`."""
    rx = re.compile(pattern)

    def look():
      try:
        with open(self.log_path, "rb") as f:
          f.seek(since)
          return rx.search(f.read().decode("utf-8", "replace"))
      except OSError:
        return None
    return wait_until(look, timeout)


def run_camgate(args, input=None, timeout=30, env=None):
  e = dict(os.environ)
  e.update(env or {})
  return subprocess.run([camgate_bin()] + list(args), input=input,
                        capture_output=True, text=True, timeout=timeout,
                        env=e)


# --------------------------------------------------------- raw SMTP client

class Reply:
  def __init__(self, code, lines, raw):
    self.code = code
    self.lines = lines        # full lines without CRLF, e.g. "250-SIZE 10"
    self.raw = raw

  @property
  def first(self):
    return self.lines[0]

  @property
  def texts(self):
    return [l[4:] for l in self.lines]

  def __repr__(self):
    return "Reply(%r)" % (self.lines,)


class SmtpClient:
  """Line-level SMTP client for asserting exact replies."""

  def __init__(self, port, timeout=15, tls_ctx=None, connect=True):
    self.port = port
    self.timeout = timeout
    self.buf = b""
    self.sock = None
    if connect:
      self.connect(tls_ctx)

  def connect(self, tls_ctx=None):
    s = socket.create_connection((HOST, self.port), timeout=self.timeout)
    if tls_ctx is not None:
      s = tls_ctx.wrap_socket(s, server_hostname=None)
    self.sock = s

  def _recv(self, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
      raise socket.timeout("no complete reply")
    self.sock.settimeout(left)
    d = self.sock.recv(65536)
    if not d:
      raise EOFError("connection closed; partial=%r" % self.buf[:200])
    self.buf += d

  def read_line(self, timeout=None):
    deadline = time.monotonic() + (timeout or self.timeout)
    while b"\r\n" not in self.buf:
      self._recv(deadline)
    line, self.buf = self.buf.split(b"\r\n", 1)
    return line

  def read_reply(self, timeout=None):
    deadline = time.monotonic() + (timeout or self.timeout)
    lines, raw = [], b""
    while True:
      while b"\r\n" not in self.buf:
        self._recv(deadline)
      line, self.buf = self.buf.split(b"\r\n", 1)
      raw += line + b"\r\n"
      text = line.decode("utf-8", "replace")
      lines.append(text)
      if not re.match(r"^\d{3}([ -]|$)", text):
        raise AssertionError("malformed reply line %r" % text)
      if len(text) < 4 or text[3] == " ":
        return Reply(int(text[:3]), lines, raw)

  def send(self, data):
    if isinstance(data, str):
      data = data.encode("utf-8")
    self.sock.sendall(data)

  def send_line(self, line):
    if isinstance(line, str):
      line = line.encode("utf-8")
    self.send(line + b"\r\n")

  def cmd(self, line, timeout=None):
    self.send_line(line)
    return self.read_reply(timeout)

  def starttls(self, ctx=None):
    r = self.cmd("STARTTLS")
    if r.code != 220:
      return r
    if self.buf:
      raise AssertionError("data after 220 to STARTTLS: %r" % self.buf)
    self.sock = (ctx or client_tls_context()).wrap_socket(self.sock)
    return r

  def login(self, user, password, mech="PLAIN"):
    if mech == "PLAIN":
      tok = base64.b64encode(("\0%s\0%s" % (user, password)).encode())
      return self.cmd(b"AUTH PLAIN " + tok)
    r = self.cmd("AUTH LOGIN")
    if r.code != 334:
      return r
    r = self.cmd(base64.b64encode(user.encode()))
    if r.code != 334:
      return r
    return self.cmd(base64.b64encode(password.encode()))

  def wait_eof(self, timeout=5):
    """True when the server closes (EOF or reset) within timeout; data
    that arrives meanwhile is appended to self.buf."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      try:
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        d = self.sock.recv(65536)
      except socket.timeout:
        return False
      except (ConnectionResetError, BrokenPipeError):
        return True
      except ssl.SSLError:
        return True
      if not d:
        return True
      self.buf += d
    return False

  def close(self):
    if self.sock is not None:
      try:
        self.sock.close()
      except OSError:
        pass
      self.sock = None

  def reset(self):
    """Abort with RST (SO_LINGER 0)."""
    if self.sock is not None:
      raw = self.sock
      try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       struct.pack("ii", 1, 0))
      except OSError:
        pass
      self.close()

  def __enter__(self):
    return self

  def __exit__(self, *a):
    self.close()


def client_tls_context(min_version=None, max_version=None, ciphers=None):
  ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  ctx.check_hostname = False
  ctx.verify_mode = ssl.CERT_NONE
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    if min_version is not None:
      ctx.minimum_version = min_version
    if max_version is not None:
      ctx.maximum_version = max_version
  if ciphers:
    ctx.set_ciphers(ciphers)
  return ctx


def smtp_session(port, user=None, password=None, ehlo="client.example.com",
                 tls_ctx=None, mech="PLAIN"):
  """Connected, greeted (EHLO) and, if user is given, authenticated
  client; asserts each step."""
  c = SmtpClient(port, tls_ctx=tls_ctx)
  r = c.read_reply()
  if r.code != 220:
    raise AssertionError("banner: %r" % r)
  r = c.cmd("EHLO " + ehlo)
  if r.code != 250:
    raise AssertionError("EHLO: %r" % r)
  if user is not None:
    r = c.login(user, password, mech)
    if r.code != 235:
      raise AssertionError("AUTH %s: %r" % (user, r))
  return c


def simple_message(subject, sender="cam@example.com",
                   rcpt="alerts@example.net", body="Motion detected."):
  return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n"
          "Date: Wed, 01 May 2024 12:30:45 +0000\r\n"
          "Message-ID: <%s@it.example.com>\r\n\r\n%s\r\n"
          % (sender, rcpt, subject, re.sub(r"\W", "", subject) +
             str(time.time_ns()), body)).encode()


def send_mail_raw(port, user, password, data, sender="cam@example.com",
                  rcpts=("alerts@example.net",)):
  """Sends one message over the raw client; returns the reply to the
  final dot."""
  with smtp_session(port, user, password) as c:
    r = c.cmd("MAIL FROM:<%s>" % sender)
    if r.code != 250:
      return r
    for rc in rcpts:
      r = c.cmd("RCPT TO:<%s>" % rc)
      if r.code != 250:
        return r
    r = c.cmd("DATA")
    if r.code != 354:
      return r
    c.send(dotstuff(data) + b".\r\n")
    r = c.read_reply()
    try:
      c.cmd("QUIT", timeout=5)
    except (OSError, EOFError):
      pass
    return r


# ------------------------------------------------------ real SMTP clients

def send_swaks(port, user, password, sender, rcpts, path, tls=None,
               auth="LOGIN", timeout=60):
  """swaks; tls: None, 'starttls' or 'implicit'. CompletedProcess."""
  args = ["swaks", "--server", HOST, "--port", str(port),
          "--ehlo", "swaks.example.com", "--from", sender,
          "--to", ",".join(rcpts), "--data", "@" + path,
          "--timeout", "30"]
  if user:
    args += ["--auth", auth, "--auth-user", user, "--auth-password",
             password]
  if tls == "starttls":
    args += ["--tls"]
  elif tls == "implicit":
    args += ["--tls-on-connect"]
  return subprocess.run(args, capture_output=True, text=True,
                        timeout=timeout, stdin=subprocess.DEVNULL)


def send_curl(port, user, password, sender, rcpts, path, tls=None,
              login_options=None, timeout=60):
  """curl smtp://; tls: None, 'starttls' or 'implicit'."""
  scheme = "smtps" if tls == "implicit" else "smtp"
  args = ["curl", "-sS", "--max-time", "30",
          "%s://%s:%d/curl.example.com" % (scheme, HOST, port),
          "--mail-from", sender]
  for r in rcpts:
    args += ["--mail-rcpt", r]
  args += ["--upload-file", path]
  if user:
    args += ["--user", "%s:%s" % (user, password)]
  if login_options:
    args += ["--login-options", login_options]
  if tls:
    args += ["-k"]
  if tls == "starttls":
    args += ["--ssl-reqd"]
  return subprocess.run(args, capture_output=True, text=True,
                        timeout=timeout, stdin=subprocess.DEVNULL)


def send_smtplib(port, user, password, sender, rcpts, data, tls=None,
                 timeout=30):
  """smtplib; returns the (code, message) reply to DATA."""
  if tls == "implicit":
    s = smtplib.SMTP_SSL(HOST, port, local_hostname="smtplib.example.com",
                         timeout=timeout, context=client_tls_context())
  else:
    s = smtplib.SMTP(HOST, port, local_hostname="smtplib.example.com",
                     timeout=timeout)
  try:
    s.ehlo()
    if tls == "starttls":
      s.starttls(context=client_tls_context())
      s.ehlo()
    if user:
      s.login(user, password)
    code, msg = s.mail(sender)
    if code != 250:
      return code, msg
    for r in rcpts:
      code, msg = s.rcpt(r)
      if code != 250:
        return code, msg
    reply = s.data(data)
    try:
      s.quit()
    except (smtplib.SMTPException, OSError):
      pass
    return reply
  finally:
    s.close()


# ------------------------------------------------------------ fixtures

def fixture_path(name):
  return os.path.join(SMTP_FIXTURES, name)


def read_fixture(name):
  with open(fixture_path(name), "rb") as f:
    return f.read()


def eml_jpegs(name_or_bytes):
  """The decoded image/jpeg parts of an .eml, in order."""
  data = (read_fixture(name_or_bytes) if isinstance(name_or_bytes, str)
          else name_or_bytes)
  msg = email.message_from_bytes(data, policy=email.policy.default)
  return [p.get_content() for p in msg.walk()
          if p.get_content_type() == "image/jpeg"]


def dotstuff(data):
  """SMTP transparency (RFC 5321 4.5.2): a leading '.' on a line doubled;
  ensures the data ends with a line break so a '.' line can follow."""
  out = re.sub(rb"(^|\n)\.", rb"\1..", data)
  if not out.endswith(b"\n"):
    out += b"\r\n"
  return out


# ----------------------------------------------------- .dialog notation

Step = collections.namedtuple("Step", "kind arg lineno")
Expect = collections.namedtuple("Expect", "code exact text lineno inferred")
Action = collections.namedtuple("Action", "kind arg expects lineno")


class DialogError(ValueError):
  pass


class DialogMismatch(AssertionError):
  pass


class TlsHandshakeError(Exception):
  def __init__(self, lineno, error, replayer):
    Exception.__init__(self, "line %d: TLS handshake failed: %r"
                       % (lineno, error))
    self.lineno = lineno
    self.error = error
    self.replayer = replayer


def parse_dialog(text):
  """Steps of a .dialog: send (C: text), expect (a group of #S: lines; a
  line "ddd-..." continues the group, any other ends it), include
  (@include-data FILE), same (@same-segment A + B), tls
  (@tls-clienthello k=v...), connect (@connect port=N), close, reset.
  Comments and blank lines are dropped."""
  steps = []
  open_group = False
  for n, line in enumerate(text.splitlines(), 1):
    line = line.rstrip("\r\n")
    if line.startswith("#S:"):
      t = line[3:].strip()
      if open_group and steps and steps[-1].kind == "expect":
        steps[-1].arg.append(t)
      else:
        steps.append(Step("expect", [t], n))
      open_group = bool(re.match(r"^\d{3}-", t))
      continue
    if line.startswith("#") or not line.strip():
      continue
    open_group = False
    if line.startswith("C:"):
      t = line[2:]
      steps.append(Step("send", t[1:] if t.startswith(" ") else t, n))
    elif line.startswith("@"):
      word, _, rest = line.partition(" ")
      rest = rest.strip()
      if word == "@include-data":
        if not rest:
          raise DialogError("line %d: @include-data needs a file" % n)
        steps.append(Step("include", rest, n))
      elif word == "@same-segment":
        parts = [p.strip() for p in rest.split(" + ")]
        parts = [p[2:].lstrip() if p.startswith("C:") else p for p in parts]
        if len(parts) < 2:
          raise DialogError("line %d: @same-segment needs A + B" % n)
        steps.append(Step("same", parts, n))
      elif word in ("@tls-clienthello", "@connect"):
        kv = {}
        for tok in rest.split():
          k, eq, v = tok.partition("=")
          if not eq:
            raise DialogError("line %d: bad parameter %r" % (n, tok))
          kv[k] = v
        if word == "@connect":
          if "port" in kv:
            kv["port"] = int(kv["port"])
          steps.append(Step("connect", kv, n))
        else:
          steps.append(Step("tls", kv, n))
      elif word in ("@close", "@reset"):
        steps.append(Step(word[1:], None, n))
      else:
        raise DialogError("line %d: unknown directive %r" % (n, word))
    else:
      raise DialogError("line %d: cannot parse %r" % (n, line))
  return steps


def expect_from_group(lines, lineno):
  first = lines[0]
  m = re.match(r"^(\d{3})(?:[ -]|$)", first)
  code = int(m.group(1)) if m else None
  if code is None:
    m = re.search(r"\b([2-5]\d\d)\b", first)
    code = int(m.group(1)) if m else None
  exact = None
  if code == 334 and first.startswith("334 "):
    tok = first[4:].split()
    if tok and re.match(r"^[A-Za-z0-9+/]+=*$", tok[0]):
      exact = "334 " + tok[0]
  return Expect(code, exact, "\n".join(lines), lineno, False)


# Replies a command gets when the dialog does not say (fixture 13 leaves
# the #S out after the handshake).
DEFAULT_CODES = {"EHLO": 250, "HELO": 250, "MAIL": 250, "RCPT": 250,
                 "RSET": 250, "NOOP": 250, "DATA": 354, "QUIT": 221,
                 "STARTTLS": 220, "VRFY": 252, ".": 250}


def _inferred(verb, lineno):
  return Expect(DEFAULT_CODES.get(verb), None, "(inferred)", lineno, True)


def plan_dialog(steps):
  """Turns steps into actions with the replies each must get:
  connect (expects: greeting, none if implicit TLS follows), tls
  (arg: params + implicit flag; expects: greeting if implicit), cmd,
  dataline, data (an .eml), dot, same (arg: [(line, expects_reply)]),
  read (an orphan #S group), close, reset."""
  actions = []
  i = 0
  mode = "cmd"

  def take_expect(verb, lineno):
    nonlocal i
    if i < len(steps) and steps[i].kind == "expect":
      e = expect_from_group(steps[i].arg, steps[i].lineno)
      i += 1
      return e
    return _inferred(verb, lineno)

  if not steps or steps[0].kind != "connect":
    steps = [Step("connect", {}, 0)] + list(steps)
  while i < len(steps):
    st = steps[i]
    i += 1
    if st.kind == "connect":
      mode = "cmd"
      if i < len(steps) and steps[i].kind == "tls":
        actions.append(Action("connect", st.arg, [], st.lineno))
        tl = steps[i]
        i += 1
        params = dict(tl.arg, implicit=True)
        actions.append(Action("tls", params, [take_expect("", tl.lineno)],
                              tl.lineno))
        if actions[-1].expects[0].code is None:
          actions[-1].expects[0] = Expect(220, None, "(inferred)",
                                          tl.lineno, True)
      else:
        e = take_expect("", st.lineno)
        if e.code is None:
          e = Expect(220, None, "(inferred)", st.lineno, True)
        actions.append(Action("connect", st.arg, [e], st.lineno))
    elif st.kind == "send":
      if mode == "data":
        if st.arg == ".":
          actions.append(Action("dot", ".", [take_expect(".", st.lineno)],
                                st.lineno))
          mode = "cmd"
        else:
          actions.append(Action("dataline", st.arg, [], st.lineno))
        continue
      verb = st.arg.split(" ", 1)[0].upper()
      actions.append(Action("cmd", st.arg, [take_expect(verb, st.lineno)],
                            st.lineno))
      if verb == "DATA":
        mode = "data"
    elif st.kind == "include":
      if mode != "data":
        raise DialogError("line %d: @include-data outside DATA" % st.lineno)
      actions.append(Action("data", st.arg, [], st.lineno))
    elif st.kind == "same":
      items, expects = [], []
      for part in st.arg:
        if mode == "data" and part != ".":
          items.append((part, False))
          continue
        verb = "." if mode == "data" else part.split(" ", 1)[0].upper()
        items.append((part, True))
        expects.append(verb)
        if mode == "data":
          mode = "cmd"
        elif verb == "DATA":
          mode = "data"
      actions.append(Action("same", items,
                            [take_expect(v, st.lineno) for v in expects],
                            st.lineno))
    elif st.kind == "tls":
      actions.append(Action("tls", dict(st.arg, implicit=False), [],
                            st.lineno))
    elif st.kind == "expect":
      actions.append(Action("read", None,
                            [expect_from_group(st.arg, st.lineno)],
                            st.lineno))
    elif st.kind in ("close", "reset"):
      actions.append(Action(st.kind, None, [], st.lineno))
  return actions


def load_dialog(name):
  with open(fixture_path(name), encoding="utf-8") as f:
    return plan_dialog(parse_dialog(f.read()))


# IANA suite code -> OpenSSL name, for @tls-clienthello ciphers=...
CIPHER_NAMES = {
    0x0004: "RC4-MD5", 0x0005: "RC4-SHA", 0x000A: "DES-CBC3-SHA",
    0x002F: "AES128-SHA", 0x0035: "AES256-SHA", 0x003C: "AES128-SHA256",
    0x009C: "AES128-GCM-SHA256", 0x009D: "AES256-GCM-SHA384",
    0xC013: "ECDHE-RSA-AES128-SHA", 0xC014: "ECDHE-RSA-AES256-SHA",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
}

TLS_VERSIONS = {0x0301: ssl.TLSVersion.TLSv1, 0x0302: ssl.TLSVersion.TLSv1_1,
                0x0303: ssl.TLSVersion.TLSv1_2,
                0x0304: ssl.TLSVersion.TLSv1_3}


def clienthello_context(params):
  """An ssl context that sends the described ClientHello as far as
  Python's ssl allows: the highest version is client_version, the lowest
  TLS 1.0 (what the device offers), only the listed suites (unknown or
  unavailable ones, e.g. RC4, are dropped), no certificate check. The
  extension list is OpenSSL's and cannot be emptied ("extensions=none")."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    cv = int(params.get("client_version", "0x0303"), 16)
    ctx = client_tls_context(ssl.TLSVersion.TLSv1, TLS_VERSIONS[cv])
  names = []
  for m in re.finditer(r"\(0x([0-9A-Fa-f]{4})\)", params.get("ciphers", "")):
    name = CIPHER_NAMES.get(int(m.group(1), 16))
    if name:
      names.append(name)
  if names:
    ctx.set_ciphers(":".join(names) + ":@SECLEVEL=0")
  else:
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
  return ctx


def clienthello_sni(params):
  sni = params.get("sni", "none")
  return None if sni in ("none", "") else sni


class DialogReplayer:
  """Plays planned actions against the daemon, asserting each awaited
  reply's code (and the exact text of 334 challenges). port_map maps a
  @connect port to the test's port (None: the plaintext port)."""

  def __init__(self, port_map, timeout=15):
    self.port_map = dict(port_map)
    self.timeout = timeout
    self.client = None
    self.transcript = []      # (lineno, what we sent, Reply)
    self.last_cmd = None

  def _port(self, arg):
    p = arg.get("port")
    if p in self.port_map:
      return self.port_map[p]
    if p is None:
      return self.port_map[None]
    raise DialogError("no port mapped for @connect port=%s" % p)

  def _check(self, expect, sent):
    try:
      r = self.client.read_reply(self.timeout)
    except (socket.timeout, EOFError, OSError) as e:
      raise DialogMismatch("line %d: after %r no reply (%s), wanted %s"
                           % (expect.lineno, sent, e, expect.code))
    self.transcript.append((expect.lineno, sent, r))
    if expect.code is not None and r.code != expect.code:
      raise DialogMismatch("line %d: %r got %r, wanted %s (%s)"
                           % (expect.lineno, sent, r.lines, expect.code,
                              expect.text))
    if expect.exact is not None and r.first != expect.exact:
      raise DialogMismatch("line %d: %r got %r, wanted exactly %r"
                           % (expect.lineno, sent, r.first, expect.exact))
    return r

  def run(self, actions):
    """Plays actions; returns the transcript. On a failed TLS handshake
    the connection stays open (see read_raw_until_close; call close())."""
    ok = False
    try:
      for a in actions:
        getattr(self, "_do_" + a.kind)(a)
      ok = True
    except TlsHandshakeError:
      ok = True
      raise
    finally:
      if not ok:
        self.close()
    self.close()
    return self.transcript

  def close(self):
    if self.client is not None:
      self.client.close()
      self.client = None

  def _do_connect(self, a):
    if self.client is not None:
      self.client.close()
    self.client = SmtpClient(self._port(a.arg), timeout=self.timeout)
    for e in a.expects:
      self._check(e, "<connect>")

  def _do_tls(self, a):
    ctx = clienthello_context(a.arg)
    raw = self.client.sock
    if self.client.buf:
      raise DialogMismatch("line %d: plaintext bytes before TLS: %r"
                           % (a.lineno, self.client.buf[:100]))
    ts = ctx.wrap_socket(raw, server_hostname=clienthello_sni(a.arg),
                         do_handshake_on_connect=False)
    ts.settimeout(self.timeout)
    try:
      ts.do_handshake()
    except (ssl.SSLError, OSError) as e:
      fd = ts.detach()
      self.client.sock = socket.socket(fileno=fd)
      raise TlsHandshakeError(a.lineno, e, self)
    self.client.sock = ts
    self.tls_version = ts.version()
    self.tls_cipher = ts.cipher()
    for e in a.expects:
      self._check(e, "<tls %s>" % ts.version())

  def _do_cmd(self, a):
    self.client.send_line(a.arg)
    self.last_cmd = a.arg.split(" ", 1)[0].upper()
    for e in a.expects:
      self._check(e, a.arg)

  def _do_read(self, a):
    for e in a.expects:
      self._check(e, "<nothing>")

  def _do_dataline(self, a):
    line = a.arg.encode("utf-8")
    self.client.send((b"." + line if line.startswith(b".") else line)
                     + b"\r\n")

  def _do_data(self, a):
    self.client.send(dotstuff(read_fixture(a.arg)))

  def _do_dot(self, a):
    self.client.send_line(".")
    self.last_cmd = "."
    for e in a.expects:
      self._check(e, ".")

  def _do_same(self, a):
    self.client.send(b"".join(l.encode("utf-8") + b"\r\n"
                              for l, _ in a.arg))
    self.last_cmd = a.arg[-1][0].split(" ", 1)[0].upper()
    for e in a.expects:
      self._check(e, " + ".join(l for l, _ in a.arg))

  def _do_close(self, a):
    if self.last_cmd == "QUIT" and not self.client.wait_eof(5):
      raise DialogMismatch("line %d: server did not close after QUIT"
                           % a.lineno)
    self.client.close()
    self.client = None

  def _do_reset(self, a):
    self.client.reset()
    self.client = None

  def read_raw_until_close(self, timeout=5):
    """After a failed handshake: (closed?, bytes received meanwhile)."""
    c = self.client
    closed = c.wait_eof(timeout)
    data, c.buf = c.buf, b""
    return closed, data


def _probe_listening(port):
  """Whether something listens on port, without connecting (ss -ltn)."""
  r = subprocess.run(["ss", "-ltnH", "sport = :%d" % port],
                     capture_output=True, text=True, timeout=10)
  return r.returncode == 0 and bool(r.stdout.strip())


def tls10_possible(workdir):
  """Whether this machine's OpenSSL can do TLS 1.0 with AES128-SHA at all:
  a throwaway `openssl s_server -tls1` and our ClientHello context."""
  cert, key = make_cert(workdir, "probe.example")
  port = free_port()
  p = _register(subprocess.Popen(
      ["openssl", "s_server", "-accept", "%s:%d" % (HOST, port), "-cert",
       cert, "-key", key, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0",
       "-quiet"],
      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL))
  try:
    # Polling the port would use up an accept; give it a moment instead.
    if not wait_until(lambda: _probe_listening(port) or p.poll() is not None,
                      10) or p.poll() is not None:
      return False
    ctx = clienthello_context({"client_version": "0x0301",
                               "ciphers": "X(0x002f)"})
    try:
      with socket.create_connection((HOST, port), timeout=5) as s:
        with ctx.wrap_socket(s) as ts:
          return ts.version() == "TLSv1"
    except (ssl.SSLError, OSError):
      return False
  finally:
    p.kill()
    p.wait(5)


def clienthello_bytes(params):
  """The first flight (the ClientHello record) of clienthello_context."""
  ctx = clienthello_context(params)
  inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
  obj = ctx.wrap_bio(inc, out, server_hostname=clienthello_sni(params))
  try:
    obj.do_handshake()
  except ssl.SSLWantReadError:
    pass
  return out.read()


# ------------------------------------------------------- event checks

EVENT_FIELDS = ("id", "camera", "camera_name", "source", "kind", "state",
                "device_time", "recv_time", "title", "text", "labels",
                "snapshot_size", "attachments")


def assert_no_secrets(tc, log, users):
  tc.assertTrue(log, "empty camgate log")
  for user in users:
    pw = PASSWORDS[user]
    for secret in (pw, base64.b64encode(pw.encode()).decode(),
                   base64.b64encode(("\0%s\0%s" % (user, pw)).encode())
                   .decode()):
      bad = [l for l in log.splitlines() if secret in l]
      if bad:
        tc.fail("secret of %s (%r) in the log: %s" % (user, secret, bad[0]))


def parse_iso(s):
  import datetime
  d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
  return d


class EventAsserts:
  """Mixin for unittest.TestCase: self.watcher is an MqttWatcher on the
  broker camgate publishes to."""

  prefix = "camgate"
  hold = 2.0

  def event_topic(self, camera):
    return "%s/%s/event" % (self.prefix, topic_id(camera))

  def wait_event(self, camera, since, pred=None, timeout=20):
    def ok(m):
      try:
        ev = event_json(m)
      except ValueError:
        return False
      return pred is None or pred(ev)
    m = self.watcher.wait_for(self.event_topic(camera), ok, timeout, since)
    if m is None:
      seen = sorted({x.topic for x in self.watcher.snapshot(since)})
      self.fail("no event for camera %r within %ss; topics seen since: %s"
                % (camera, timeout, seen))
    return m, event_json(m)

  def assert_no_event(self, since, pred=None, wait=4.0):
    """No event message at all (matching pred) arrives within wait."""
    def bad(m):
      if not (m.topic.startswith(self.prefix + "/")
              and m.topic.endswith("/event")):
        return False
      try:
        return pred is None or pred(event_json(m))
      except ValueError:
        return True
    m = self.watcher.wait_for(lambda t: True, bad, wait, since)
    self.assertIsNone(m, "unexpected event: %r" % (m,))

  def assert_event(self, camera, since, kind="motion", jpegs=(),
                   states=("pulse", "start"), pred=None, timeout=20):
    """Waits for camera's event since mark `since` and checks it and the
    retained topics that go with it. Returns the event dict."""
    m, ev = self.wait_event(camera, since, pred, timeout)
    tid = topic_id(camera)
    base = "%s/%s/" % (self.prefix, tid)
    missing = [f for f in EVENT_FIELDS if f not in ev]
    self.assertEqual(missing, [], "event lacks fields: %r" % ev)
    self.assertFalse(m.retain, "event message must not be retained")
    self.assertEqual(ev["camera"], camera)
    self.assertEqual(ev["source"], "smtp")
    self.assertEqual(ev["kind"], kind, ev)
    self.assertIn(ev["state"], states, ev)
    self.assertIsInstance(ev["labels"], dict)
    recv = parse_iso(ev["recv_time"])
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    if recv.tzinfo is None:
      recv = recv.replace(tzinfo=datetime.timezone.utc)
    self.assertLess(abs((now - recv).total_seconds()), 600, ev["recv_time"])
    n_att = ev["attachments"]
    n_att = len(n_att) if isinstance(n_att, list) else n_att
    self.assertEqual(n_att, len(jpegs), "attachments: %r" %
                     (ev["attachments"],))
    if jpegs:
      self.assertEqual(ev["snapshot_size"], len(jpegs[0]))
      snap = self.watcher.wait_for(base + "snapshot",
                                   lambda x: x.payload == jpegs[0],
                                   10, since)
      got = [len(x.payload) for x in self.watcher.all(base + "snapshot",
                                                      since)]
      self.assertIsNotNone(snap, "snapshot bytes differ from the .eml's "
                           "first JPEG (%d bytes); got sizes %r"
                           % (len(jpegs[0]), got))
      self.assertTrue(snap.retain, "snapshot must be retained")
    else:
      self.assertIn(ev["snapshot_size"], (0, None), ev)
    on = self.watcher.wait_for(base + ev["kind"],
                               lambda x: x.payload == b"ON", 10, since)
    self.assertIsNotNone(on, "no ON on %s%s" % (base, ev["kind"]))
    self.assertTrue(on.retain, "ON must be retained")
    last = self.watcher.wait_for(base + "last_event", None, 10, since)
    self.assertIsNotNone(last, "no last_event")
    self.assertTrue(last.retain, "last_event must be retained")
    parse_iso(last.payload.decode())
    if ev["state"] == "pulse":
      off = self.watcher.wait_for(
          base + ev["kind"], lambda x: x.payload == b"OFF" and x.t > on.t,
          self.hold + 8, since)
      self.assertIsNotNone(off, "no OFF after hold for a pulse event")
      self.assertTrue(off.retain, "OFF must be retained")
      self.assertGreaterEqual(off.t - on.t, self.hold * 0.75)
    disc = "homeassistant/device/%s/config" % tid
    d = self.watcher.wait_for(disc, None, 10, 0)
    if d is None:
      d_payload = retained(self.watcher.port, [disc]).get(disc)
    else:
      self.assertTrue(d.retain, "discovery must be retained")
      d_payload = d.payload
    self.assertIsNotNone(d_payload, "no discovery on " + disc)
    dj = json.loads(d_payload)
    for k in ("dev", "o", "cmps"):
      self.assertIn(k, dj, "discovery lacks %r" % k)
    return ev
