"""Camera mail in over SMTP with AUTH LOGIN, out through every e-mail
transport to real peers on loopback: SMTP with a password over STARTTLS
and implicit TLS, SMTP with XOAUTH2 (Microsoft and Gmail style), and
Microsoft Graph sendMail (delegated and app-only). Checks what the far
side received (the AUTH string, the envelope, the headers, attachment
bytes equal to the camera's, or a thumbnail above thumbnail_over) and
the failure paths: 4xx and 5xx replies,
an access token that runs out mid-burst, a revoked refresh token (needs
login, nothing lost, delivered after a new login) and a token server
that is down for a while."""

import base64
import email
import email.message
import email.policy
import json
import os
import re
import sqlite3
import stat
import subprocess
import time
import unittest

import camgate_testlib as lib
import email_peers as peers
from test_ntfy_e2e import jpeg_size

FROM = "alerts@contoso.example"
TO = ["owner@example.net"]
CC = ["family@example.net"]
APP_PW = "app-password-123"
FIX05 = "05_hikvision_nvr_motion_3jpeg.eml"
FIX12 = "12_zoneminder_inline_cid_related.eml"


def oauth_conf(fake, tmp, name, **kw):
  o = {"provider": "microsoft", "client_id": "client-" + name,
       "token_url": fake.url("/tenant/oauth2/v2.0/token"),
       "device_code_url": fake.url("/tenant/oauth2/v2.0/devicecode"),
       "auth_url": fake.url("/authorize"),
       "token_file": os.path.join(tmp, name + ".token"),
       "refresh_margin": "10s"}
  o.update(kw)
  return o


class EmailEndToEnd(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("email")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.cert, cls.key = peers.make_ip_cert(cls.tmp)
    cls.fake = peers.FakeOAuth().start()
    cls.addClassCleanup(cls.fake.stop)
    users = {FROM: APP_PW}
    cls.smtp = peers.SmtpPeer(cls.cert, cls.key, users=users,
                              oauth=cls.fake).start()
    cls.addClassCleanup(cls.smtp.stop)
    cls.smtps = peers.SmtpPeer(cls.cert, cls.key, implicit=True,
                               users=users).start()
    cls.addClassCleanup(cls.smtps.stop)
    cls.gmail = peers.SmtpPeer(cls.cert, cls.key, implicit=True,
                               oauth=cls.fake, gmail=True).start()
    cls.addClassCleanup(cls.gmail.stop)
    cls.thumbs = peers.SmtpPeer(cls.cert, cls.key, implicit=True,
                                users=users).start()
    cls.addClassCleanup(cls.thumbs.stop)
    cls.smtp_port = lib.free_port()
    cls.cfg = cls.config()
    for name in ("mail_ms", "mail_gmail", "mail_graph"):
      cls.fake.write_token_file(os.path.join(cls.tmp, name + ".token"),
                                "client-" + name)
    cls.gw = lib.Camgate(cls.tmp, cls.cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  @classmethod
  def config(cls):
    tmp, fake = cls.tmp, cls.fake
    common = {"type": "email", "from": FROM, "to": TO,
              "ca_file": cls.cert, "retry_initial": "1s",
              "retry_max": "2s", "timeout": "20s"}
    backends = [
        dict(common, name="mail_pw", transport="smtp", host=lib.HOST,
             port=cls.smtp.port, tls="starttls", password=APP_PW, cc=CC,
             reply_to_camera=True, time_zone="Europe/Berlin",
             subject="[{camera}] {kind} at {time}"),
        dict(common, name="mail_tls", transport="smtp", host=lib.HOST,
             port=cls.smtps.port, tls="implicit", password=APP_PW),
        dict(common, name="mail_slow", transport="smtp", host=lib.HOST,
             port=cls.smtps.port, tls="implicit", password=APP_PW,
             max_per_minute=2, subject="slow {camera}"),
        dict(common, name="mail_ms", transport="smtp_xoauth2",
             host=lib.HOST, port=cls.smtp.port, tls="starttls",
             oauth=oauth_conf(fake, tmp, "mail_ms")),
        dict(common, name="mail_gmail", transport="smtp_xoauth2",
             host=lib.HOST, port=cls.gmail.port, tls="implicit",
             oauth=oauth_conf(fake, tmp, "mail_gmail", provider="google",
                              client_secret=fake.client_secret)),
        dict(common, name="mail_graph", transport="graph",
             graph_url=fake.url("/v1.0"),
             oauth=oauth_conf(fake, tmp, "mail_graph")),
        dict(common, name="mail_app", transport="graph",
             graph_url=fake.url("/v1.0"), mailbox="cameras@contoso.example",
             oauth=oauth_conf(fake, tmp, "mail_app",
                              flow="client_credentials",
                              client_secret=fake.client_secret,
                              token_file=None)),
        dict(common, name="mail_thumb", transport="smtp", host=lib.HOST,
             port=cls.thumbs.port, tls="implicit", password=APP_PW,
             thumbnail_over="840", snapshot="40x40", quality=70),
        dict(common, name="mail_fwd", transport="smtp", host=lib.HOST,
             port=cls.thumbs.port, tls="implicit", password=APP_PW,
             mode="forward", reply_to_camera=True),
        dict(common, name="mail_graph_fwd", transport="graph",
             graph_url=fake.url("/v1.0"), mailbox="fwd@contoso.example",
             mode="forward", cc=CC,
             oauth=oauth_conf(fake, tmp, "mail_graph_fwd",
                              flow="client_credentials",
                              client_secret=fake.client_secret)),
    ]
    backends[-4]["oauth"].pop("token_file")
    backends[-1]["oauth"].pop("token_file")
    routes = [("cam-shed", "mail_pw"), ("trailcam", "mail_tls"),
              ("cam-door", "mail_ms"), ("dafang-1", "mail_gmail"),
              ("cam-lobby", "mail_graph"), ("nvr-gate", "mail_app"),
              ("nvr-yard", "mail_slow")]
    cams = [lib.camera(c) for c, _ in routes]
    extra = {"nvr-gate": ["mail_thumb"], "cam-lobby": ["mail_fwd"],
             "trailcam": ["mail_graph_fwd"]}
    return {"log": {"level": "debug"},
            "spool": {"path": os.path.join(tmp, "var"), "retention": "7d"},
            "smtp": {"listen": "%s:%d" % (lib.HOST, cls.smtp_port),
                     "hostname": lib.HOSTNAME, "max_size": "16M"},
            "cameras": cams, "backends": backends,
            "rules": [{"name": "to-" + b, "match": {"camera": c},
                       "backends": [b] + extra.get(c, [])}
                      for c, b in routes]}

  def setUp(self):
    self.assertTrue(self.gw.alive(), lib.tail(self.gw.log()))

  def token_file(self, name):
    with open(os.path.join(self.tmp, name + ".token")) as f:
      return json.load(f)

  def send(self, cam, fixture=FIX05, data=None):
    data = data if data is not None else lib.read_fixture(fixture)
    code, msg = lib.send_smtplib(self.smtp_port, cam, lib.PASSWORDS[cam],
                                 cam + "@cameras.example", ["x@example.net"],
                                 data)
    self.assertEqual(code, 250, msg)

  def unique(self, fixture, tag):
    """The fixture with a subject of its own, so each test finds its mail."""
    data = lib.read_fixture(fixture)
    return re.sub(rb"(?m)^Subject: ", b"Subject: " + tag.encode() + b" ",
                  data, count=1)

  def assert_mail(self, m, cam, jpegs, rcpts=TO):
    self.assertEqual(m["mail_from"], FROM)
    self.assertEqual(sorted(m["rcpts"]), sorted(rcpts))
    raw = m["data"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    self.assertEqual(msg["From"].addresses[0].addr_spec, FROM)
    self.assertEqual([a.addr_spec for a in msg["To"].addresses], TO)
    for h in ("Date", "Message-Id", "Subject"):
      self.assertIsNotNone(msg[h], h)
    self.assertEqual(msg["MIME-Version"], "1.0")
    self.assertEqual(msg["X-Camgate-Camera"], cam)
    got = [p.get_content() for p in msg.walk()
           if p.get_content_type() == "image/jpeg"]
    self.assertEqual(got, jpegs)
    for line in raw.split(b"\r\n"):
      self.assertLessEqual(len(line), 998)
    in_b64 = [l for l in raw.split(b"\r\n")
              if re.fullmatch(rb"[A-Za-z0-9+/=]{60,}", l)]
    self.assertTrue(in_b64)
    self.assertLessEqual(max(len(l) for l in in_b64), 76)
    return msg

  # ------------------------------------------------------- transports
  def test_smtp_password_starttls(self):
    n = self.smtp.count()
    self.send("cam-shed", data=self.unique(FIX05, "pw"))
    msgs = self.smtp.wait_messages(n + 1)
    self.assertGreater(len(msgs), n, lib.tail(self.gw.log()))
    m = [x for x in msgs if x["login"] == FROM][-1]
    msg = self.assert_mail(m, "cam-shed", lib.eml_jpegs(FIX05),
                           rcpts=TO + CC)
    self.assertEqual([a.addr_spec for a in msg["Cc"].addresses], CC)
    self.assertEqual(msg["Reply-To"].addresses[0].addr_spec,
                     "cam-shed@cameras.example")
    # 12:30:45 UTC in the fixture's body: 14:30 in Berlin (summer time).
    self.assertEqual(msg["Subject"], "[cam-shed] motion at 14:30")
    mechs = [a[0] for a in self.smtp.auths]
    self.assertTrue(set(mechs) & {"PLAIN", "LOGIN"}, mechs)

  def test_smtp_password_implicit_tls(self):
    self.send("trailcam", FIX12)

    def mine():
      return [m for m in self.smtps.messages
              if b"X-Camgate-Camera: trailcam" in m["data"]]
    self.assertTrue(lib.wait_until(mine, 20), lib.tail(self.gw.log()))
    self.assert_mail(mine()[-1], "trailcam", lib.eml_jpegs(FIX12))

  def test_xoauth2_microsoft(self):
    n = self.smtp.count()
    self.send("cam-door", data=self.unique(FIX05, "xo"))
    msgs = self.smtp.wait_messages(n + 1)
    self.assertGreater(len(msgs), n, lib.tail(self.gw.log()))
    self.assert_mail(msgs[-1], "cam-door", lib.eml_jpegs(FIX05))
    tok = self.token_file("mail_ms")
    want = ("user=%s\x01auth=Bearer %s\x01\x01" % (FROM, tok["access_token"])
            ).encode()
    xo = [a[1] for a in self.smtp.auths if a[0] == "XOAUTH2"]
    self.assertIn(want, xo)

  def test_xoauth2_gmail_style(self):
    self.send("dafang-1", FIX12)
    msgs = self.gmail.wait_messages(1)
    self.assertTrue(msgs, lib.tail(self.gw.log()))
    self.assert_mail(msgs[-1], "dafang-1", lib.eml_jpegs(FIX12))

  def test_xoauth2_gmail_bad_token_334(self):
    """Gmail answers a bad token with 334 and base64 JSON. libcurl 7.88
    takes any reply but 235 there as a refused login and drops the
    connection at once (no empty line, no QUIT: Gmail just sees the
    client go); camgate refreshes the token once and sends again."""
    n = self.gmail.count()
    refreshes = self.fake.count("refresh_token")
    self.fake.expire_access("client-mail_gmail")
    self.send("dafang-1", data=self.unique(FIX12, "g334"))
    msgs = self.gmail.wait_messages(n + 1, 30)
    self.assertEqual(len(msgs), n + 1, lib.tail(self.gw.log()))
    lib.wait_until(lambda: self.gmail.after_334, 12)
    self.assertTrue(self.gmail.after_334)
    self.assertEqual(self.gmail.after_334[0], b"<closed>")
    self.assertGreater(self.fake.count("refresh_token"), refreshes)
    form = [f for p, f in self.fake.requests
            if f.get("client_id") == "client-mail_gmail"
            and f.get("grant_type") == "refresh_token"][-1]
    self.assertEqual(form.get("client_secret"), self.fake.client_secret)
    self.assertNotIn("scope", form)

  def test_graph_delegated(self):
    n = len(self.fake.graph)
    self.send("cam-lobby", FIX05)
    got = self.fake.wait_graph(n + 1)
    self.assertGreater(len(got), n, lib.tail(self.gw.log()))
    path, doc = got[-1]
    self.assertEqual(path, "/v1.0/me/sendMail")
    msg = doc["message"]
    self.assertEqual(msg["toRecipients"][0]["emailAddress"]["address"],
                     TO[0])
    atts = [base64.b64decode(a["contentBytes"]) for a in msg["attachments"]]
    self.assertEqual(atts, lib.eml_jpegs(FIX05))
    self.assertIs(doc["saveToSentItems"], False)

  def test_graph_app_only(self):
    n = len(self.fake.graph)
    self.send("nvr-gate", FIX12)
    got = self.fake.wait_graph(n + 1)
    self.assertGreater(len(got), n, lib.tail(self.gw.log()))
    path = [p for p, _ in got if "/users/" in p]
    self.assertIn("/v1.0/users/cameras@contoso.example/sendMail", path)
    self.assertGreaterEqual(self.fake.count("client_credentials"), 1)

  def test_thumbnail_over(self):
    """Pictures above thumbnail_over (840 bytes) go as thumbnails fitted
    into the backend's snapshot box, each named in the text; smaller ones
    as they came."""
    originals = lib.eml_jpegs(FIX05)
    self.send("nvr-gate", data=self.unique(FIX05, "thumbtag"))

    def mine():
      return [m for m in self.thumbs.messages if b"thumbtag" in m["data"]]
    self.assertTrue(lib.wait_until(mine, 20), lib.tail(self.gw.log()))
    msg = email.message_from_bytes(mine()[-1]["data"],
                                   policy=email.policy.default)
    got = [p.get_content() for p in msg.walk()
           if p.get_content_type() == "image/jpeg"]
    text = msg.get_body(("plain",)).get_content()
    self.assertEqual(len(got), len(originals))
    for orig, sent in zip(originals, got):
      if len(orig) > 840:
        self.assertEqual(jpeg_size(sent), (40, 30))
        self.assertLess(len(sent), len(orig))
        self.assertIn("(%d bytes) sent as a 40x30 thumbnail" % len(orig),
                      text)
      else:
        self.assertEqual(sent, orig)
    self.assertTrue(any(len(o) > 840 for o in originals))

  def test_forward(self):
    """Mode forward re-sends the camera's own message: the body with its
    MIME parts byte for byte, the header too but for From (the mailbox),
    Sender and Reply-To (the camera's envelope sender)."""
    data = self.unique(FIX05, "fwdtag")
    self.send("cam-lobby", data=data)

    def mine():
      return [m for m in self.thumbs.messages if b"fwdtag" in m["data"]]
    self.assertTrue(lib.wait_until(mine, 20), lib.tail(self.gw.log()))
    m = mine()[-1]
    self.assertEqual(m["mail_from"], FROM)
    self.assertEqual(sorted(m["rcpts"]), sorted(TO))
    orig = data.replace(b"\r\n", b"\n")
    got = m["data"].replace(b"\r\n", b"\n")
    ohead, obody = orig.split(b"\n\n", 1)
    ghead, gbody = got.split(b"\n\n", 1)
    self.assertEqual(gbody, obody)
    msg = email.message_from_bytes(m["data"], policy=email.policy.default)
    self.assertEqual(msg["From"].addresses[0].addr_spec, FROM)
    self.assertEqual(msg["Reply-To"].addresses[0].addr_spec,
                     "cam-lobby@cameras.example")
    self.assertIsNone(msg["Sender"])
    self.assertEqual(msg["X-Camgate-Camera"], "cam-lobby")
    parts = [p.as_bytes() for p in msg.walk()]
    want = [p.as_bytes() for p in email.message_from_bytes(
        data, policy=email.policy.default).walk()]
    self.assertEqual(parts[1:], want[1:])
    self.assertEqual([p.get_content() for p in msg.walk()
                      if p.get_content_type() == "image/jpeg"],
                     lib.eml_jpegs(FIX05))
    # Every other header line as the camera wrote it.
    drop = (b"from:", b"sender:", b"reply-to:", b"return-path:")
    kept = [l for l in re.split(rb"\n(?![ \t])", ohead)
            if not l.lower().startswith(drop)]
    for field in kept:
      self.assertIn(field + b"\n", ghead + b"\n")
    # The spool keeps the camera's message (for mode forward only).
    db = sqlite3.connect(os.path.join(self.tmp, "var", "spool.db"))
    try:
      raws = [r[0] for r in db.execute(
          "SELECT data FROM attachments WHERE seq = -1")]
    finally:
      db.close()
    self.assertIn(data.replace(b"\r\n", b"\n"),
                  [r.replace(b"\r\n", b"\n") for r in raws if r])

  def test_forward_graph(self):
    """Over Graph the camera's message goes as MIME (base64): Graph has
    no envelope and sends to the header's To and Cc, so those are the
    configured ones; the body is the camera's, byte for byte."""
    data = self.unique(FIX12, "gfwdtag")
    self.send("trailcam", data=data)

    def mine():
      return [d["mime"] for p, d in list(self.fake.graph)
              if "mime" in d and b"gfwdtag" in d["mime"]]
    self.assertTrue(lib.wait_until(mine, 20), lib.tail(self.gw.log()))
    mime = mine()[-1]
    path = [p for p, d in list(self.fake.graph) if d.get("mime") == mime]
    self.assertEqual(path[0], "/v1.0/users/fwd@contoso.example/sendMail")
    obody = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    gbody = mime.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    self.assertEqual(gbody, obody)
    msg = email.message_from_bytes(mime, policy=email.policy.default)
    self.assertEqual(msg["From"].addresses[0].addr_spec, FROM)
    self.assertEqual([a.addr_spec for a in msg["To"].addresses], TO)
    self.assertEqual([a.addr_spec for a in msg["Cc"].addresses], CC)
    self.assertEqual([p.get_content() for p in msg.walk()
                      if p.get_content_type() == "image/jpeg"],
                     lib.eml_jpegs(FIX12))

  def test_graph_upload_session(self):
    """An attachment of 3 MB or more goes to Graph through an upload
    session on a draft: the draft (small pictures inline), a session,
    PUTs of 320 KiB multiples without the token, then send."""
    big = b"\xff\xd8" + os.urandom(7 * 1024 * 1024) + b"\xff\xd9"
    small = lib.eml_jpegs(FIX12)[0]
    m = email.message.EmailMessage()
    m["From"] = "cam-lobby@cameras.example"
    m["To"] = "x@example.net"
    m["Subject"] = "uptag Motion"
    m.set_content("Motion detected")
    m.add_attachment(small, maintype="image", subtype="jpeg",
                     filename="small.jpg")
    m.add_attachment(big, maintype="image", subtype="jpeg",
                     filename="big.jpg")
    puts = len(self.fake.puts)
    self.send("cam-lobby", data=m.as_bytes())

    def sent():
      return [d for p, d in list(self.fake.graph)
              if p == "/v1.0/me/messages/send"
              and "uptag" in d["message"]["body"]["content"]]
    self.assertTrue(lib.wait_until(sent, 60), lib.tail(self.gw.log()))
    doc = sent()[-1]
    self.assertEqual(doc["uploaded"], [("big.jpg", big)])
    inline = [base64.b64decode(a["contentBytes"])
              for a in doc["message"]["attachments"]]
    self.assertEqual(inline, [small])
    ranges = self.fake.puts[puts:]
    self.assertEqual(len(ranges), 3)
    self.assertFalse(any(auth for _, auth in ranges))
    self.assertNotIn("left out", doc["message"]["body"]["content"])

  def test_max_per_minute(self):
    def slow():
      return [m for m in self.smtps.messages
              if b"Subject: slow nvr-yard" in m["data"]]
    for i in range(3):
      self.send("nvr-yard", data=self.unique(FIX12, "slow%d" % i))
    self.assertTrue(lib.wait_until(lambda: len(slow()) >= 2, 20),
                    lib.tail(self.gw.log()))
    lib.wait_until(lambda: False, 3)
    self.assertEqual(len(slow()), 2)   # the third waits for its minute

  # --------------------------------------------------------- failures
  def test_5xx_fails_with_server_text(self):
    mark = self.gw.log_mark()
    self.smtp.data_replies.append("554 5.6.0 Message rejected for test")
    self.send("cam-shed", data=self.unique(FIX12, "five"))
    m = self.gw.wait_log(r"backend=mail_pw .*result=failed.*554 5\.6\.0 "
                         r"Message rejected for test", 20, since=mark)
    self.assertTrue(m, lib.tail(self.gw.log()))

  def test_4xx_is_retried(self):
    n = self.smtp.count()
    mark = self.gw.log_mark()
    self.smtp.data_replies.append("451 4.3.0 Try again later")
    self.send("cam-shed", data=self.unique(FIX12, "four"))
    self.assertGreater(len(self.smtp.wait_messages(n + 1)), n,
                       lib.tail(self.gw.log()))
    self.assertTrue(self.gw.wait_log(r"backend=mail_pw .*result=retry.*"
                                     r"451", 1, since=mark))

  def test_zz_expired_token_mid_burst(self):
    n = self.smtp.count()
    refreshes = self.fake.count("refresh_token")
    for i in range(3):
      self.send("cam-door", data=self.unique(FIX12, "burst%d" % i))
    self.assertGreaterEqual(len(self.smtp.wait_messages(n + 3)), n + 3)
    old = self.token_file("mail_ms")
    self.fake.expire_access("client-mail_ms")
    for i in range(3, 8):
      self.send("cam-door", data=self.unique(FIX12, "burst%d" % i))
    msgs = self.smtp.wait_messages(n + 8, 40)
    self.assertEqual(len(msgs), n + 8, lib.tail(self.gw.log()))
    ids = [email.message_from_bytes(m["data"])["X-Camgate-Event"]
           for m in msgs[n:]]
    self.assertEqual(len(set(ids)), 8)
    self.assertGreater(self.fake.count("refresh_token"), refreshes)
    new = self.token_file("mail_ms")
    self.assertNotEqual(new["refresh_token"], old["refresh_token"])
    self.assertIn(new["refresh_token"], self.fake.refresh)
    st = os.stat(os.path.join(self.tmp, "mail_ms.token"))
    self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

  def delegated(self):
    return [(p, d) for p, d in self.fake.graph if p == "/v1.0/me/sendMail"]

  def test_zz_revoked_refresh_token_then_login(self):
    n = len(self.delegated())
    notices = len(self.fake.graph) - n
    mark = self.gw.log_mark()
    self.fake.revoke_refresh("client-mail_graph")
    self.fake.expire_access("client-mail_graph")
    for i in range(3):
      self.send("cam-lobby", data=self.unique(FIX12, "revoked%d" % i))
    m = self.gw.wait_log(r"backend=mail_graph state=needs_login.*camgate "
                         r"oauth login mail_graph -c \S+", 20, since=mark)
    self.assertTrue(m, lib.tail(self.gw.log()))
    lib.wait_until(lambda: False, 2)
    self.assertEqual(len(self.delegated()), n)
    # The notice went out through the other backends (here the two
    # app-only Graph ones), once each, naming the command.
    sent = sorted(p for p, d in self.fake.graph[n + notices:]
                  if "camgate oauth login mail_graph -c" in str(d))
    self.assertEqual(sent, ["/v1.0/users/cameras@contoso.example/sendMail",
                            "/v1.0/users/fwd@contoso.example/sendMail"],
                     lib.tail(self.gw.log()))
    self.assertFalse(re.search(r"backend=mail_graph .*result=failed",
                               self.gw.log()[mark:]))
    r = lib.run_camgate(["check", "-c", self.gw.config_path])
    self.assertIn("oauth mail_graph state=needs_login", r.stdout)
    r = lib.run_camgate(["oauth", "login", "mail_graph", "-c",
                         self.gw.config_path], timeout=60)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    self.assertIn("ABCD-1234", r.stdout)
    lib.wait_until(lambda: len(self.delegated()) >= n + 3, 30)
    got = self.delegated()
    self.assertEqual(len(got), n + 3, lib.tail(self.gw.log()))
    texts = [d["message"]["body"]["content"] for _, d in got[n:]]
    for i in range(3):
      self.assertEqual(sum("revoked%d" % i in t for t in texts), 1)

  def test_zz_token_server_down(self):
    n = self.smtp.count()
    self.fake.stop()
    try:
      self.fake.expire_access("client-mail_ms")
      for i in range(3):
        self.send("cam-door", data=self.unique(FIX12, "down%d" % i))
      lib.wait_until(lambda: False, 4)
      self.assertEqual(self.smtp.count(), n)
    finally:
      self.fake.start()
    msgs = self.smtp.wait_messages(n + 3, 60)
    self.assertEqual(len(msgs), n + 3, lib.tail(self.gw.log()))
    self.assertFalse(re.search(r"backend=mail_ms .*result=failed",
                               self.gw.log()))

  def test_zzz_no_secrets_in_log(self):
    log = self.gw.log()
    self.assertNotIn(APP_PW, log)
    self.assertNotIn(self.fake.client_secret, log)
    for t in list(self.fake.access) + list(self.fake.refresh):
      self.assertNotIn(t, log)
    self.assertNotRegex(log, r"\bat-[A-Za-z0-9_-]{10,}|\brt-[A-Za-z0-9_-]"
                        r"{10,}")
    lib.assert_no_secrets(self, log, ("cam-shed", "cam-door"))

  def test_zzzz_sigterm_clean_stop(self):
    self.assertEqual(self.gw.stop(), 0, lib.tail(self.gw.log()))
    self.assertNotIn("Sanitizer", self.gw.log())
    self.assertRegex(self.gw.log(), r"backend=mail_ms msg=\"closed\"")


if __name__ == "__main__":
  unittest.main()
