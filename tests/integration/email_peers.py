"""email_peers - the far side of camgate's e-mail backend, on loopback.

SmtpPeer   a real SMTP server (Debian's python3-aiosmtpd) with STARTTLS
           or implicit TLS on a test certificate, AUTH PLAIN and LOGIN
           against a password, and AUTH XOAUTH2 that checks the bearer
           token with the fake OAuth server. It records the AUTH strings,
           the envelope and the message bytes. gmail=True answers a bad
           token the way Gmail does: a 334 with base64 JSON, then 535.
FakeOAuth  a token endpoint (device code, refresh with rotation,
           authorization code with PKCE, client credentials,
           invalid_grant), an authorize endpoint that approves at once,
           and Microsoft Graph's sendMail, which checks the JSON. It can
           go down (connections refused) and come back on its port.

Standard library plus aiosmtpd; every wait is bounded.
"""

import asyncio
import base64
import email
import hashlib
import http.server
import json
import logging
import os
import re
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

import camgate_testlib as lib

HOST = lib.HOST
logging.getLogger("mail.log").setLevel(logging.ERROR)


def make_ip_cert(workdir):
  """A self-signed certificate for 127.0.0.1 (IP SAN) and localhost."""
  cert = os.path.join(workdir, "peer-cert.pem")
  key = os.path.join(workdir, "peer-key.pem")
  subprocess.run(
      ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=localhost",
       "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      timeout=60)
  os.chmod(key, 0o600)
  return cert, key


# ------------------------------------------------------------------ SMTP

class _Handler:
  def __init__(self, peer):
    self.peer = peer

  async def auth_XOAUTH2(self, server, args):
    peer = self.peer
    if len(args) == 2:
      try:
        blob = base64.b64decode(args[1], validate=True)
      except ValueError:
        await server.push("501 5.5.2 Can't decode base64")
        return AuthResult(success=False, handled=True)
    else:
      blob = await server.challenge_auth("")
      if not isinstance(blob, bytes):
        return AuthResult(success=False, handled=True)
    with peer.lock:
      peer.auths.append(("XOAUTH2", blob))
    user, token = _parse_xoauth2(blob)
    if user is not None and peer.token_ok(user, token):
      server.session.peer_token = token
      return AuthResult(success=True, auth_data=LoginPassword(
          user.encode(), b""))
    if peer.gmail:
      err = base64.b64encode(json.dumps(
          {"status": "400", "schemes": "Bearer",
           "scope": "https://mail.google.com/"}).encode()).decode()
      await server.push("334 " + err)
      try:
        line = await asyncio.wait_for(server._reader.readline(), 10)
      except asyncio.CancelledError:
        # The client hung up; aiosmtpd cancels the session's task.
        with peer.lock:
          peer.after_334.append(b"<closed>")
        raise
      with peer.lock:
        peer.after_334.append(line)
      return AuthResult(success=False, handled=False,
                        message="535-5.7.8 Username and Password not "
                        "accepted.")
    return AuthResult(success=False, handled=False,
                      message="535 5.7.3 Authentication unsuccessful")

  async def handle_MAIL(self, server, session, envelope, address,
                        mail_options):
    peer = self.peer
    token = getattr(session, "peer_token", None)
    if token is not None and not peer.token_ok(None, token):
      # The session's token ran out: close it, as a server would after
      # its idle time, so the next transfer logs in anew.
      server.transport.close()
      return "421 4.7.0 Session expired, closing"
    with peer.lock:
      reply = peer.mail_replies.pop(0) if peer.mail_replies else None
    if reply:
      return reply
    envelope.mail_from = address
    envelope.mail_options.extend(mail_options)
    return "250 2.1.0 OK"

  async def handle_DATA(self, server, session, envelope):
    peer = self.peer
    with peer.lock:
      reply = peer.data_replies.pop(0) if peer.data_replies else None
      if reply:
        return reply
      auth = session.auth_data
      login = getattr(auth, "login", None)
      peer.messages.append({
          "mail_from": envelope.mail_from,
          "rcpts": list(envelope.rcpt_tos),
          "data": envelope.original_content or envelope.content,
          "login": login.decode() if isinstance(login, bytes) else login,
          "time": time.monotonic(),
      })
      peer.cond.notify_all()
    return "250 2.0.0 OK queued"


def _parse_xoauth2(blob):
  """user, token from "user=U^Aauth=Bearer T^A^A", or (None, None)."""
  if not blob.endswith(b"\x01\x01"):
    return None, None
  parts = blob[:-2].split(b"\x01")
  if len(parts) != 2 or not parts[0].startswith(b"user=") \
      or not parts[1].startswith(b"auth=Bearer "):
    return None, None
  return parts[0][5:].decode(), parts[1][12:].decode()


class SmtpPeer:
  def __init__(self, cert, key, implicit=False, users=None, oauth=None,
               gmail=False):
    self.port = lib.free_port()
    self.users = dict(users or {})
    self.oauth = oauth
    self.gmail = gmail
    self.lock = threading.Lock()
    self.cond = threading.Condition(self.lock)
    self.messages = []
    self.auths = []
    self.after_334 = []
    self.mail_replies = []
    self.data_replies = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    kw = dict(hostname=HOST, port=self.port, authenticator=self._password,
              auth_required=True, ident="peer.example.net ESMTP test")
    if implicit:
      # The whole session is TLS; aiosmtpd cannot tell and warns.
      warnings.filterwarnings("ignore", "Requiring AUTH while not")
      kw.update(ssl_context=ctx, auth_require_tls=False)
    else:
      kw.update(tls_context=ctx, require_starttls=True)
    self.controller = Controller(_Handler(self), **kw)

  def _password(self, server, session, envelope, mechanism, auth_data):
    with self.lock:
      self.auths.append((mechanism, auth_data))
    ok = (isinstance(auth_data, LoginPassword)
          and self.users.get(auth_data.login.decode())
          == auth_data.password.decode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

  def token_ok(self, user, token):
    return self.oauth is not None and self.oauth.access_ok(token)

  def start(self):
    self.controller.start()
    return self

  def stop(self):
    try:
      self.controller.stop()
    except Exception:
      pass

  def count(self):
    with self.lock:
      return len(self.messages)

  def wait_messages(self, n, timeout=20):
    deadline = time.monotonic() + timeout
    with self.lock:
      while len(self.messages) < n:
        left = deadline - time.monotonic()
        if left <= 0:
          break
        self.cond.wait(left)
      return list(self.messages)


# ----------------------------------------------------------------- OAuth

class FakeOAuth:
  """Token endpoint, device code, authorize and Graph on one port."""

  def __init__(self, client_secret="s3cret-app", expires_in=3600):
    self.port = lib.free_port()
    self.client_secret = client_secret
    self.expires_in = expires_in
    self.lock = threading.Lock()
    self.access = {}           # token -> (expiry (monotonic), client)
    self.refresh = {}          # valid refresh token -> client
    self.devices = {}          # device_code -> dict
    self.codes = {}            # auth code -> (challenge, redirect_uri)
    self.requests = []         # (path, form)
    self.graph = []            # (path, json)
    self.drafts = {}           # id -> {"path", "message", "uploaded"}
    self.sessions = {}         # upload token -> dict
    self.puts = []             # (Content-Range, had Authorization)
    self.slow_down_once = False
    self.pending_polls = 1
    self.device_outcome = "ok"  # ok, denied, expired
    self.status_override = None
    self.server = None
    self.thread = None

  # -- tokens
  def issue(self, client, refresh=True):
    with self.lock:
      at = "at-" + secrets.token_urlsafe(12)
      self.access[at] = (time.monotonic() + self.expires_in, client)
      out = {"access_token": at, "token_type": "Bearer",
             "expires_in": self.expires_in}
      if refresh:
        rt = "rt-" + secrets.token_urlsafe(12)
        self.refresh[rt] = client
        out["refresh_token"] = rt
      return out

  def access_ok(self, token):
    with self.lock:
      exp = self.access.get(token)
      return exp is not None and exp[0] > time.monotonic()

  def expire_access(self, client=None):
    with self.lock:
      for t, (_, c) in list(self.access.items()):
        if client is None or c == client:
          del self.access[t]

  def revoke_refresh(self, client=None):
    with self.lock:
      for t, c in list(self.refresh.items()):
        if client is None or c == client:
          del self.refresh[t]

  def count(self, grant):
    with self.lock:
      return sum(1 for p, f in self.requests
                 if f.get("grant_type") == grant)

  def write_token_file(self, path, client):
    t = self.issue(client)
    data = {"access_token": t["access_token"],
            "expires_at": int(time.time()) + t["expires_in"],
            "refresh_token": t.get("refresh_token"), "needs_login": False}
    fd = os.open(path + ".t", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
      json.dump(data, f)
    os.replace(path + ".t", path)
    return t

  # -- server
  def start(self):
    peer = self

    class H(http.server.BaseHTTPRequestHandler):
      def log_message(self, *a):
        pass

      def do_POST(self):
        peer._post(self)

      def do_GET(self):
        peer._get(self)

      def do_PUT(self):
        peer._put(self)

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    self.server = http.server.ThreadingHTTPServer((HOST, self.port), H)
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

  def url(self, path):
    return "http://%s:%d%s" % (HOST, self.port, path)

  @staticmethod
  def _reply(h, status, obj, headers=None):
    body = json.dumps(obj).encode() if obj is not None else b""
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
      h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)

  def _get(self, h):
    u = urllib.parse.urlsplit(h.path)
    q = dict(urllib.parse.parse_qsl(u.query))
    if u.path != "/authorize":
      return self._reply(h, 404, {"error": "not_found"})
    code = "code-" + secrets.token_urlsafe(8)
    with self.lock:
      self.codes[code] = (q.get("code_challenge"), q.get("redirect_uri"),
                          q.get("code_challenge_method"))
      self.requests.append((u.path, q))
    loc = "%s?%s" % (q.get("redirect_uri", ""), urllib.parse.urlencode(
        {"code": code, "state": q.get("state", ""), "scope": q.get("scope",
                                                                   "")}))
    self._reply(h, 302, None, {"Location": loc})

  def _post(self, h):
    n = int(h.headers.get("Content-Length", "0"))
    body = h.rfile.read(n) if n else b""
    u = urllib.parse.urlsplit(h.path)
    if "/sendMail" in u.path:
      return self._graph(h, u.path, body)
    if "/v1.0/" in u.path:
      return self._graph_draft_flow(h, u.path, body)
    form = dict(urllib.parse.parse_qsl(body.decode()))
    with self.lock:
      self.requests.append((u.path, form))
      override = self.status_override
    if override:
      return self._reply(h, override, {"error": "server_error"})
    if u.path.endswith("/devicecode"):
      return self._devicecode(h, form)
    if u.path.endswith("/token"):
      return self._token(h, form)
    self._reply(h, 404, {"error": "not_found"})

  def _devicecode(self, h, form):
    dc = "dc-" + secrets.token_urlsafe(8)
    with self.lock:
      self.devices[dc] = {"pending": self.pending_polls,
                          "slow": self.slow_down_once}
    self._reply(h, 200, {
        "device_code": dc, "user_code": "ABCD-1234",
        "verification_uri": self.url("/devicelogin"), "expires_in": 60,
        "interval": 1, "message": "To sign in, use a web browser"})

  def _token(self, h, form):
    g = form.get("grant_type")
    if g == "urn:ietf:params:oauth:grant-type:device_code":
      with self.lock:
        d = self.devices.get(form.get("device_code"))
        if d is None:
          return self._reply(h, 400, {"error": "invalid_grant"})
        if self.device_outcome != "ok":
          err = {"denied": "access_denied",
                 "expired": "expired_token"}[self.device_outcome]
          return self._reply(h, 400, {"error": err,
                                      "error_description": "test"})
        if d["slow"]:
          d["slow"] = False
          return self._reply(h, 400, {"error": "slow_down"})
        if d["pending"] > 0:
          d["pending"] -= 1
          return self._reply(h, 400, {"error": "authorization_pending"})
        del self.devices[form["device_code"]]
      return self._reply(h, 200, self.issue(form.get("client_id")))
    if g == "refresh_token":
      with self.lock:
        ok = self.refresh.get(form.get("refresh_token")) == \
            form.get("client_id")
        if ok:
          del self.refresh[form["refresh_token"]]   # rotation
      if not ok:
        return self._reply(h, 400, {
            "error": "invalid_grant",
            "error_description": "AADSTS70000: the refresh token was "
                                 "revoked"})
      return self._reply(h, 200, self.issue(form.get("client_id")))
    if g == "authorization_code":
      with self.lock:
        c = self.codes.pop(form.get("code"), None)
      v = form.get("code_verifier", "")
      want = base64.urlsafe_b64encode(
          hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
      if c is None or c[0] != want or c[1] != form.get("redirect_uri") \
          or c[2] != "S256" or form.get("client_secret") != \
          self.client_secret:
        return self._reply(h, 400, {"error": "invalid_grant"})
      return self._reply(h, 200, self.issue(form.get("client_id")))
    if g == "client_credentials":
      if form.get("client_secret") != self.client_secret:
        return self._reply(h, 401, {"error": "invalid_client"})
      return self._reply(h, 200, self.issue(form.get("client_id"),
                                            refresh=False))
    self._reply(h, 400, {"error": "unsupported_grant_type"})

  def _graph(self, h, path, body):
    auth = h.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not self.access_ok(auth[7:]):
      return self._reply(h, 401, {"error": {
          "code": "InvalidAuthenticationToken",
          "message": "Access token has expired or is not yet valid."}})
    if h.headers.get("Content-Type", "").startswith("text/plain"):
      return self._graph_mime(h, path, body)
    try:
      doc = json.loads(body)
      msg = doc["message"]
      assert isinstance(msg["subject"], str)
      assert msg["body"]["contentType"] in ("Text", "HTML")
      assert msg["toRecipients"][0]["emailAddress"]["address"]
      for a in msg.get("attachments", []):
        assert a["@odata.type"] == "#microsoft.graph.fileAttachment"
        base64.b64decode(a["contentBytes"], validate=True)
    except (ValueError, KeyError, IndexError, TypeError, AssertionError):
      return self._reply(h, 400, {"error": {
          "code": "ErrorInvalidRequest", "message": "bad sendMail JSON"}})
    if len(body) > 4 * 1024 * 1024:
      return self._reply(h, 413, {"error": {"code": "RequestBodyTooLarge",
                                            "message": "too large"}})
    with self.lock:
      self.graph.append((path, doc))
    self._reply(h, 202, None)

  def _graph_mime(self, h, path, body):
    """sendMail with a MIME message, base64 in a text/plain body: Graph
    sends it to the header's To, Cc and Bcc."""
    try:
      mime = base64.b64decode(body, validate=True)
      msg = email.message_from_bytes(mime)
      assert msg["To"]
    except (ValueError, AssertionError):
      return self._reply(h, 400, {"error": {
          "code": "ErrorMimeContentInvalidBase64String",
          "message": "bad MIME content"}})
    if len(body) > 4 * 1024 * 1024:
      return self._reply(h, 413, {"error": {"code": "RequestBodyTooLarge",
                                            "message": "too large"}})
    with self.lock:
      self.graph.append((path, {"mime": mime}))
    self._reply(h, 202, None)

  # -- Graph drafts with upload sessions (large attachments)
  def _authorized(self, h):
    auth = h.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and self.access_ok(auth[7:])

  def _graph_draft_flow(self, h, path, body):
    if not self._authorized(h):
      return self._reply(h, 401, {"error": {
          "code": "InvalidAuthenticationToken", "message": "expired"}})
    m = re.fullmatch(r"(/v1\.0/(?:me|users/[^/]+))/messages"
                     r"(?:/([^/]+)/(attachments/createUploadSession|send))?",
                     path)
    if m is None:
      return self._reply(h, 404, {"error": {"code": "NotFound",
                                            "message": path}})
    if m.group(2) is None:
      msg = json.loads(body)
      assert msg["toRecipients"] and "message" not in msg
      with self.lock:
        mid = "draft-%d" % len(self.drafts)
        self.drafts[mid] = {"path": m.group(1), "message": msg,
                            "uploaded": []}
      return self._reply(h, 201, {"id": mid})
    with self.lock:
      d = self.drafts.get(urllib.parse.unquote(m.group(2)))
    if d is None:
      return self._reply(h, 404, {"error": {"code": "ErrorItemNotFound",
                                            "message": "no such draft"}})
    if m.group(3) == "send":
      with self.lock:
        self.graph.append((m.group(1) + "/messages/send",
                           {"message": d["message"],
                            "uploaded": d["uploaded"]}))
      return self._reply(h, 202, None)
    item = json.loads(body)["AttachmentItem"]
    assert item["attachmentType"] == "file" and item["size"] > 0
    tok = secrets.token_urlsafe(8)
    with self.lock:
      self.sessions[tok] = {"draft": d, "item": item, "data": b""}
    return self._reply(h, 201, {"uploadUrl": self.url("/upload/" + tok),
                                "nextExpectedRanges": ["0-"]})

  def _put(self, h):
    n = int(h.headers.get("Content-Length", "0"))
    body = h.rfile.read(n) if n else b""
    tok = h.path.rsplit("/", 1)[-1]
    rng = h.headers.get("Content-Range", "")
    with self.lock:
      self.puts.append((rng, "Authorization" in h.headers))
      s = self.sessions.get(tok)
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", rng)
    if s is None or m is None:
      return self._reply(h, 404 if s is None else 400, {"error": {
          "code": "InvalidRequest", "message": "bad upload"}})
    first, last, total = (int(x) for x in m.groups())
    size = s["item"]["size"]
    if (first != len(s["data"]) or last - first + 1 != len(body)
        or total != size or len(body) > 4 * 1024 * 1024
        or (last + 1 < size and len(body) % (320 * 1024))):
      return self._reply(h, 416, {"error": {
          "code": "InvalidRange", "message": "unexpected range"}})
    s["data"] += body
    if len(s["data"]) < size:
      return self._reply(h, 200, {"nextExpectedRanges":
                                  ["%d-" % len(s["data"])]})
    with self.lock:
      s["draft"]["uploaded"].append((s["item"]["name"], s["data"]))
      del self.sessions[tok]
    return self._reply(h, 201, None)

  def wait_graph(self, n, timeout=20):
    lib.wait_until(lambda: len(self.graph) >= n, timeout)
    with self.lock:
      return list(self.graph)
