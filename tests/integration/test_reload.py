"""SIGHUP with a config whose backends did not change: the backends stay
connected, so Home Assistant never sees camgate go offline and nothing
delivered is delivered again."""

import time
import unittest

import camgate_testlib as lib


class ReloadKeepsBackends(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("reload")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.mosq = lib.Mosquitto(cls.tmp)
    cls.mosq.start()
    cls.addClassCleanup(cls.mosq.stop)
    cls.port = lib.free_port()
    cls.cfg = lib.base_config(cls.tmp, cls.port, cls.mosq.port,
                              [lib.camera("cam-shed"),
                               lib.camera("cam-door")], hold="1s",
                              level="info")
    cls.gw = lib.Camgate(cls.tmp, cls.cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def reload(self, cfg):
    mark = self.gw.log_mark()
    self.gw.write_config(cfg)
    self.gw.hup()
    self.assertTrue(self.gw.wait_log(r"msg=\"reloaded\"", 10, mark),
                    lib.tail(self.gw.log(), 10))
    return mark

  def test_empty_config_is_refused(self):
    """A truncated config file reloaded by mistake keeps every camera in;
    a valid one that moves the spool is applied but says the move waits
    for a restart."""
    mark = self.gw.log_mark()
    self.gw.write_config("")
    self.gw.hup()
    self.assertTrue(self.gw.wait_log(
        r"reload refused, keeping the running config: the new one has no "
        r"cameras, backends or rules", 10, mark), lib.tail(self.gw.log(), 10))
    c = lib.smtp_session(self.port, "cam-shed", lib.PASSWORDS["cam-shed"])
    c.close()
    moved = dict(self.cfg, spool=dict(self.cfg["spool"],
                                     path=self.cfg["spool"]["path"] + "2"))
    mark = self.reload(moved)
    self.assertTrue(self.gw.wait_log(r"spool.path changed; it takes effect "
                                     r"after a restart", 5, mark))
    self.reload(self.cfg)

  def test_open_session_takes_the_new_config(self):
    """A camera logged in before a reload that removed it is asked to log
    in again at its next MAIL, instead of sending on under the old
    config; a camera the reload kept carries on."""
    gone = lib.smtp_session(self.port, "cam-shed", lib.PASSWORDS["cam-shed"])
    self.addCleanup(gone.close)
    kept = lib.smtp_session(self.port, "cam-door", lib.PASSWORDS["cam-door"])
    self.addCleanup(kept.close)
    self.assertEqual(gone.cmd("MAIL FROM:<shed@example.com>").code, 250)
    self.assertEqual(gone.cmd("RSET").code, 250)
    cfg = dict(self.cfg, cameras=[lib.camera("cam-door")])
    mark = self.reload(cfg)
    try:
      r = gone.cmd("MAIL FROM:<shed@example.com>")
      self.assertEqual((r.code, r.first[:9]), (530, "530 5.7.0"), r)
      self.assertTrue(self.gw.wait_log(r"login no longer valid after the "
                                       r"reload", 5, mark))
      self.assertEqual(kept.cmd("MAIL FROM:<door@example.com>").code, 250)
    finally:
      self.reload(self.cfg)

  def test_unchanged_config_keeps_mqtt_online(self):
    cam = lib.topic_id("cam-shed")
    w = lib.MqttWatcher(self.mosq.port, ["camgate/#"]).start()
    self.addCleanup(w.stop)
    self.assertIsNotNone(w.wait_for(
        "camgate/status", lambda m: m.payload == b"online", 10))
    r = lib.send_mail_raw(self.port, "cam-shed", lib.PASSWORDS["cam-shed"],
                          lib.simple_message("Motion before reload"))
    self.assertEqual(r.code, 250, r)
    self.assertIsNotNone(w.wait_for("camgate/%s/event" % cam, timeout=10))
    self.assertIsNotNone(w.wait_for(
        "camgate/%s/motion" % cam, lambda m: m.payload == b"OFF", 10))
    since = w.mark()
    mark = self.reload(self.cfg)
    time.sleep(2)
    after = w.snapshot(since)
    self.assertEqual([m for m in after if m.topic == "camgate/status"], [],
                     after)
    self.assertEqual([m for m in after if m.topic.startswith(
        "camgate/%s/" % cam)], [], after)
    self.assertIn("kept running", self.gw.log()[mark:])
    self.assertEqual(lib.retained(self.mosq.port, ["camgate/status"]),
                     {"camgate/status": b"online"})
    # Still delivering afterwards, over the same connection.
    since = w.mark()
    r = lib.send_mail_raw(self.port, "cam-shed", lib.PASSWORDS["cam-shed"],
                          lib.simple_message("Motion after reload"))
    self.assertEqual(r.code, 250, r)
    self.assertIsNotNone(w.wait_for("camgate/%s/event" % cam, timeout=10,
                                    since=since))

  def test_changed_backend_is_reopened(self):
    cfg = dict(self.cfg)
    cfg["backends"] = [dict(self.cfg["backends"][0])]
    cfg["backends"][0]["retry_max"] = "3s"
    self.addCleanup(self.reload, self.cfg)
    mark = self.reload(cfg)
    self.assertNotIn("kept running", self.gw.log()[mark:])
    self.assertTrue(self.gw.wait_log("msg=\"connecting\"", 10, mark))


if __name__ == "__main__":
  unittest.main()


class ReloadLiftsLockouts(unittest.TestCase):
  """An address locked out after failed logins (a camera with the wrong
  password) gets 454; a reload after fixing the config lifts the lockout
  at once instead of after smtp.auth_lockout."""

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("lockout")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.port = lib.free_port()
    cls.cfg = lib.base_config(cls.tmp, cls.port, lib.free_port(),
                              [lib.camera("cam-shed")], level="info")
    cls.cfg["smtp"].update({"auth_failures": 2, "auth_lockout": "10m"})
    cls.gw = lib.Camgate(cls.tmp, cls.cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def test_reload_lifts_a_lockout(self):
    c = lib.smtp_session(self.port)
    for _ in range(2):
      self.assertEqual(c.login("cam-shed", "not-the-password").code, 535)
    r = c.login("cam-shed", lib.PASSWORDS["cam-shed"])
    self.assertEqual(r.code, 454, r)
    self.assertTrue(self.gw.wait_log(r"locked=\d+s msg=\"too many failed "
                                     r"logins from this address; refused "
                                     r"until then, or until a reload", 5),
                    lib.tail(self.gw.log(), 10))
    c.close()
    mark = self.gw.log_mark()
    self.gw.write_config(self.cfg)
    self.gw.hup()
    self.assertTrue(self.gw.wait_log(r"addresses=1 msg=\"failed-login "
                                     r"lockouts lifted by the reload\"", 10,
                                     mark), lib.tail(self.gw.log(), 10))
    c = lib.smtp_session(self.port, "cam-shed", lib.PASSWORDS["cam-shed"])
    c.close()
