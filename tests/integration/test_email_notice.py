"""The "needs login" notice: when an OAuth e-mail backend's refresh token
is refused (invalid_grant), camgate sends one notice through the other
configured backends, not through the backend itself: a synthetic event
from camera "camgate" whose title names the backend and the command to
run. Here a Graph backend on the fake OAuth/Graph server loses its
refresh token while alerts keep arriving; the notice arrives once on a
real Mosquitto, and the alerts wait in the spool until a new login."""

import json
import os
import re
import sqlite3
import unittest

import camgate_testlib as lib
import email_peers as peers

FROM = "alerts@contoso.example"
FIX12 = "12_zoneminder_inline_cid_related.eml"


class EmailNeedsLoginNotice(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("email-notice")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.fake = peers.FakeOAuth().start()
    cls.addClassCleanup(cls.fake.stop)
    lib.start_broker(cls)
    cls.smtp_port = lib.free_port()
    fake = cls.fake
    token = os.path.join(cls.tmp, "outlook.token")
    fake.write_token_file(token, "client-outlook")
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          [lib.camera("cam-lobby")], client_id="notice")
    cfg["backends"].append({
        "name": "outlook", "type": "email", "transport": "graph",
        "from": FROM, "to": ["owner@example.net"],
        "graph_url": fake.url("/v1.0"), "retry_initial": "1s",
        "retry_max": "2s",
        "oauth": {"client_id": "client-outlook",
                  "token_url": fake.url("/tenant/oauth2/v2.0/token"),
                  "device_code_url": fake.url("/tenant/oauth2/v2.0/"
                                              "devicecode"),
                  "token_file": token, "refresh_margin": "10s"}})
    # Camera alerts go to the mailbox only: the notice needs no rule.
    cfg["rules"] = [{"name": "mail", "backends": ["outlook"]}]
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def send(self, tag):
    data = re.sub(rb"(?m)^Subject: ", b"Subject: " + tag.encode() + b" ",
                  lib.read_fixture(FIX12), count=1)
    code, msg = lib.send_smtplib(self.smtp_port, "cam-lobby",
                                 lib.PASSWORDS["cam-lobby"],
                                 "cam-lobby@cameras.example",
                                 ["x@example.net"], data)
    self.assertEqual(code, 250, msg)

  def notices(self, since=0):
    return [m for m in self.watcher.snapshot(since)
            if m.topic == "camgate/camgate/event"]

  def test_notice_once_then_login(self):
    n = len(self.fake.graph)
    self.send("before")
    self.assertEqual(len(self.fake.wait_graph(n + 1)), n + 1,
                     lib.tail(self.gw.log()))
    self.assertEqual(self.notices(), [])
    mark = self.watcher.mark()
    self.fake.revoke_refresh("client-outlook")
    self.fake.expire_access("client-outlook")
    for i in range(3):
      self.send("revoked%d" % i)
    got = self.watcher.wait_for("camgate/camgate/event", None, 30, mark)
    self.assertIsNotNone(got, lib.tail(self.gw.log(), 40))
    ev = json.loads(got.payload)
    self.assertEqual(ev["camera"], "camgate")
    self.assertEqual(ev["kind"], "needs_login")
    self.assertIn("outlook needs a new login", ev["title"])
    self.assertIn("camgate oauth login outlook -c %s"
                  % self.gw.config_path, ev["title"])
    # Once per entry into the state: the alerts that keep failing and
    # the keeper's polling for a new login add none.
    for i in range(3, 5):
      self.send("revoked%d" % i)
    lib.wait_until(lambda: False, 4)
    self.assertEqual(len(self.notices(mark)), 1)
    self.assertEqual(len(self.fake.graph), n + 1)
    # Not through the backend itself: nothing about it went to Graph.
    self.assertFalse(any("needs a new login" in json.dumps(d)
                         for _, d in self.fake.graph))
    r = lib.run_camgate(["oauth", "login", "outlook", "-c",
                         self.gw.config_path], timeout=60)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    got = self.fake.wait_graph(n + 6, 30)
    self.assertEqual(len(got), n + 6, lib.tail(self.gw.log()))
    # A restart that finds the account signed in sends no notice either.
    self.assertEqual(self.gw.stop(), 0)
    self.gw.start()
    lib.wait_until(lambda: False, 2)
    self.assertEqual(len(self.notices(mark)), 1)

  def test_zz_clean_stop(self):
    self.assertEqual(self.gw.stop(), 0, lib.tail(self.gw.log()))
    # No backend forwards: the camera's raw messages were not kept.
    db = sqlite3.connect(os.path.join(self.tmp, "var", "spool.db"))
    try:
      raw = db.execute("SELECT count(*) FROM attachments WHERE seq < 0")
      self.assertEqual(raw.fetchone()[0], 0)
      n = db.execute("SELECT count(*) FROM attachments").fetchone()[0]
      self.assertGreater(n, 0)
    finally:
      db.close()
    self.assertNotIn("Sanitizer", self.gw.log())
    self.assertNotIn(self.fake.client_secret, self.gw.log())


if __name__ == "__main__":
  unittest.main()
