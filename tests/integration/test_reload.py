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
                              [lib.camera("cam-shed")], hold="1s",
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
