"""The MQTT backend's optional thumbnail: with `snapshot: WxH` the
retained snapshot is the camera's picture fitted into the box (made by
the shared snapshot cache), and without the key it stays the camera's
bytes, unchanged. Two MQTT backends on one real Mosquitto, one of each,
get the same alert."""

import unittest

import camgate_testlib as lib
from test_ntfy_e2e import jpeg_size

FIX05 = "05_hikvision_nvr_motion_3jpeg.eml"


class MqttThumbnail(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("mqtt-thumb")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port = lib.free_port()
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          [lib.camera("cam-shed")], client_id="thumb-a")
    thumb = dict(cfg["backends"][0], name="thumbs", client_id="thumb-b",
                 topic_prefix="thumbs", discovery=False,
                 snapshot="40x40", quality=70)
    cfg["backends"].append(thumb)
    cfg["rules"] = [{"name": "all", "backends": ["ha", "thumbs"]}]
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def test_thumbnail_and_original(self):
    mark = self.watcher.mark()
    original = lib.eml_jpegs(FIX05)[0]
    p = lib.send_swaks(self.smtp_port, "cam-shed",
                       lib.PASSWORDS["cam-shed"], "cam-shed@example.com",
                       ["alerts@example.net"], lib.fixture_path(FIX05))
    self.assertEqual(p.returncode, 0, lib.tail(p.stdout + p.stderr, 8))
    small = self.watcher.wait_for("thumbs/cam-shed/snapshot", None, 20,
                                  mark)
    self.assertIsNotNone(small, lib.tail(self.gw.log(), 30))
    self.assertTrue(small.retain)
    self.assertEqual(jpeg_size(small.payload), (40, 30))
    full = self.watcher.wait_for("camgate/cam-shed/snapshot", None, 20,
                                 mark)
    self.assertIsNotNone(full)
    self.assertEqual(full.payload, original)


if __name__ == "__main__":
  unittest.main()
