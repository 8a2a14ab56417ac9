"""ntfy_server - a local ntfy-compatible server for camgate's tests.

It implements the subset of ntfy's publish API (https://docs.ntfy.sh/
publish/) that camgate uses, on a loopback port:

  PUT or POST /<topic>   topic of 1-64 [-_A-Za-z0-9]
  headers                Title, Message, Priority, Tags, Click, Icon,
                         Actions, Filename (each also as X-<name>, and
                         Priority also as X-Priority, Prio or P), decoded
                         from RFC 2047 encoded words as ntfy does
  body                   the message (UTF-8 text, no Filename), or an
                         attachment (a Filename header, or a body that is
                         not UTF-8)
  auth                   Authorization: Bearer <token> or Basic; when
                         users or tokens are configured, anything else is
                         401 with ntfy's JSON error

and the answers camgate must handle:

  413   an attachment larger than the topic's limit (attachment_limits)
  429   for the next K requests of a topic (throttle()), with Retry-After
        when given
  any   the next N answers of a topic forced (fail_next())

Each request is recorded: in memory (NtfyServer.requests) and as one JSON
line in log_path, with the method, topic, status, raw headers, the
decoded fields, the auth used and the body (base64) with its length.

As a script it runs in the foreground until SIGTERM, SIGINT or
--max-seconds (an hour):

  ntfy_server.py --port 8080 --log requests.jsonl [--token T]
                 [--user U:P] [--limit TOPIC=BYTES] [--throttle TOPIC=K]

Python standard library only; every wait is bounded.
"""

import argparse
import base64
import email.header
import hashlib
import http.server
import json
import re
import secrets
import signal
import sys
import threading
import time

TOPIC_RE = re.compile(r"^/([-_A-Za-z0-9]{1,64})/?$")
PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "urgent": 5,
              "max": 5, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5}
FIELDS = {
    "title": ("x-title", "title", "t"),
    "message": ("x-message", "message", "m"),
    "priority": ("x-priority", "priority", "prio", "p"),
    "tags": ("x-tags", "tags", "tag", "ta"),
    "click": ("x-click", "click"),
    "icon": ("x-icon", "icon"),
    "actions": ("x-actions", "actions", "action"),
    "filename": ("x-filename", "filename", "file", "f"),
}
MAX_BODY = 64 * 1024 * 1024


def decode_rfc2047(value):
  """What ntfy does with a header value: decode encoded words, if any."""
  if "=?" not in value:
    return value
  try:
    parts = email.header.decode_header(value)
  except (ValueError, LookupError):
    return value
  out = []
  for data, charset in parts:
    if isinstance(data, bytes):
      out.append(data.decode(charset or "ascii", "replace"))
    else:
      out.append(data)
  return "".join(out)


def error_json(code, http_status, text):
  return json.dumps({"code": code, "http": http_status,
                     "error": text}).encode() + b"\n"


class NtfyServer:
  """The server, run on a thread. Configure it before or while it runs;
  all state is behind one lock."""

  def __init__(self, port=None, log_path=None, tokens=(), users=None,
               attachment_limit=15 * 1024 * 1024):
    self.port = port or _free_port()
    self.log_path = log_path
    self.tokens = set(tokens)
    self.users = dict(users or {})
    self.attachment_limit = attachment_limit
    self.attachment_limits = {}      # topic -> bytes
    self.forced = {}                 # topic -> [(status, retry_after)]
    self.requests = []
    self.lock = threading.Lock()
    self.cond = threading.Condition(self.lock)
    self.server = None
    self.thread = None

  # -- configuration
  def limit(self, topic, nbytes):
    with self.lock:
      self.attachment_limits[topic] = nbytes

  def throttle(self, topic, count, retry_after=None):
    """The next count requests to topic get 429 (with Retry-After:
    retry_after seconds when not None)."""
    self.fail_next(topic, 429, count, retry_after)

  def fail_next(self, topic, status, count=1, retry_after=None):
    with self.lock:
      self.forced.setdefault(topic, []).extend(
          [(status, retry_after)] * count)

  # -- life cycle
  def start(self):
    handler = type("Handler", (_Handler,), {"ntfy": self})
    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port),
                                                  handler)
    self.server.daemon_threads = True
    self.thread = threading.Thread(target=self.server.serve_forever,
                                   kwargs={"poll_interval": 0.1},
                                   daemon=True)
    self.thread.start()
    return self

  def stop(self):
    if self.server is not None:
      self.server.shutdown()
      self.server.server_close()
      self.thread.join(5)
      self.server = None

  def url(self):
    return "http://127.0.0.1:%d" % self.port

  # -- what was received
  def of(self, topic):
    with self.lock:
      return [r for r in self.requests if r["topic"] == topic]

  def wait_for(self, topic, count=1, timeout=20, status=None):
    """Waits until topic has count requests (with status, when given);
    returns them all (maybe fewer on timeout)."""
    deadline = time.monotonic() + timeout
    with self.lock:
      while True:
        got = [r for r in self.requests if r["topic"] == topic and
               (status is None or r["status"] == status)]
        left = deadline - time.monotonic()
        if len(got) >= count or left <= 0:
          return [r for r in self.requests if r["topic"] == topic]
        self.cond.wait(min(left, 0.2))

  # -- the handler's side
  def _record(self, rec):
    with self.lock:
      self.requests.append(rec)
      if self.log_path:
        with open(self.log_path, "a") as f:
          f.write(json.dumps(rec) + "\n")
      self.cond.notify_all()

  def _forced(self, topic):
    with self.lock:
      q = self.forced.get(topic)
      if q:
        return q.pop(0)
    return None

  def _auth(self, value):
    """(ok, what) for an Authorization header value."""
    if not self.tokens and not self.users:
      return True, {"type": "none" if not value else "ignored"}
    if not value:
      return False, {"type": "none"}
    kind, _, cred = value.partition(" ")
    if kind.lower() == "bearer":
      return cred in self.tokens, {"type": "bearer", "token": cred}
    if kind.lower() == "basic":
      try:
        user, _, pw = base64.b64decode(cred, validate=True).decode(
            "utf-8").partition(":")
      except (ValueError, UnicodeDecodeError):
        return False, {"type": "basic", "user": None}
      return self.users.get(user) == pw, {"type": "basic", "user": user,
                                          "password": pw}
    return False, {"type": kind}


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  ntfy = None

  def log_message(self, fmt, *args):
    pass

  def _param(self, field):
    for name in FIELDS[field]:
      v = self.headers.get(name)
      if v is not None and v != "":
        return decode_rfc2047(v)
    return None

  def _reply(self, status, body, extra=()):
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    for k, v in extra:
      self.send_header(k, v)
    self.end_headers()
    self.wfile.write(body)

  def _read_body(self):
    n = int(self.headers.get("Content-Length") or 0)
    if n < 0 or n > MAX_BODY:
      raise ValueError("body too large")
    data = b""
    while len(data) < n:
      chunk = self.rfile.read(n - len(data))
      if not chunk:
        break
      data += chunk
    return data

  def do_GET(self):
    self._reply(200, b'{"healthy":true}\n')

  def do_PUT(self):
    self._publish()

  def do_POST(self):
    self._publish()

  def _publish(self):
    ntfy = self.ntfy
    t = time.time()
    m = TOPIC_RE.match(self.path.split("?", 1)[0])
    body = self._read_body()
    topic = m.group(1) if m else None
    ok, auth = ntfy._auth(self.headers.get("Authorization"))
    fields = {f: self._param(f) for f in FIELDS}
    attach = fields["filename"] is not None
    if not attach:
      try:
        body.decode("utf-8")
      except UnicodeDecodeError:
        attach = True
    rec = {"t": t, "method": self.command, "path": self.path,
           "topic": topic, "headers": dict(self.headers.items()),
           "fields": fields, "auth": auth, "attachment": attach,
           "body_len": len(body),
           "body_sha256": hashlib.sha256(body).hexdigest(),
           "body_b64": base64.b64encode(body).decode()}
    status, reply, extra = self._decide(topic, ok, fields, attach, body)
    rec["status"] = status
    ntfy._record(rec)
    self._reply(status, reply, extra)

  def _decide(self, topic, auth_ok, fields, attach, body):
    ntfy = self.ntfy
    if topic is None:
      return 404, error_json(40401, 404, "page not found"), ()
    if not auth_ok:
      return 401, error_json(40101, 401, "unauthorized"), ()
    forced = ntfy._forced(topic)
    if forced:
      status, after = forced
      extra = (("Retry-After", str(after)),) if after is not None else ()
      if status == 429:
        return 429, error_json(42901, 429, "limit reached: too many "
                               "requests"), extra
      return status, error_json(status * 100 + 1, status,
                                "forced answer %d" % status), extra
    prio = fields["priority"]
    if prio is not None and prio.lower() not in PRIORITIES:
      return 400, error_json(40007, 400, "invalid priority"), ()
    with ntfy.lock:
      limit = ntfy.attachment_limits.get(topic, ntfy.attachment_limit)
    if attach and len(body) > limit:
      return 413, error_json(41301, 413, "attachment too large, or "
                             "bandwidth limit reached"), ()
    if fields["actions"]:
      try:
        acts = json.loads(fields["actions"])
        assert isinstance(acts, list) and len(acts) <= 3
      except (ValueError, AssertionError):
        return 400, error_json(40018, 400, "invalid actions"), ()
    msg = {"id": secrets.token_hex(6), "time": int(time.time()),
           "event": "message", "topic": topic,
           "message": fields["message"] if attach
           else body.decode("utf-8")}
    if attach:
      msg["attachment"] = {"name": fields["filename"] or "attachment",
                           "size": len(body)}
    return 200, json.dumps(msg).encode() + b"\n", ()


def _free_port():
  import socket
  s = socket.socket()
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
  s.close()
  return port


def main(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--port", type=int, required=True)
  ap.add_argument("--log", required=True, help="JSON lines, appended")
  ap.add_argument("--token", action="append", default=[])
  ap.add_argument("--user", action="append", default=[],
                  help="USER:PASSWORD")
  ap.add_argument("--limit", action="append", default=[],
                  help="TOPIC=BYTES: 413 over this attachment size")
  ap.add_argument("--throttle", action="append", default=[],
                  help="TOPIC=K: 429 for the first K requests")
  ap.add_argument("--retry-after", type=int, default=None)
  ap.add_argument("--max-seconds", type=float, default=3600,
                  help="stop after this long in any case")
  a = ap.parse_args(argv)
  users = dict(u.split(":", 1) for u in a.user)
  srv = NtfyServer(a.port, a.log, a.token, users)
  for spec in a.limit:
    topic, n = spec.split("=", 1)
    srv.limit(topic, int(n))
  for spec in a.throttle:
    topic, n = spec.split("=", 1)
    srv.throttle(topic, int(n), a.retry_after)
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  signal.signal(signal.SIGINT, lambda *_: stop.set())
  srv.start()
  sys.stderr.write("ntfy_server: listening on %s\n" % srv.url())
  stop.wait(a.max_seconds)
  srv.stop()
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
