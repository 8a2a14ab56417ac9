"""The MQTT backend's optional thumbnail: with `snapshot: WxH` the
retained snapshot is the camera's picture fitted into the box (made by
the shared snapshot cache), and without the key it stays the camera's
bytes, unchanged. Two MQTT backends on one real Mosquitto, one of each,
get the same alert. A picture whose header does not read is logged and
left out on both: the next picture of the alert is used, or none."""

import email.message
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

  def send_pictures(self, subject, pictures):
    msg = email.message.EmailMessage()
    msg["From"] = "cam-shed@example.com"
    msg["To"] = "alerts@example.net"
    msg["Subject"] = subject
    msg.set_content("Motion detected in the shed.")
    for name, data in pictures:
      msg.add_attachment(data, maintype="image", subtype="jpeg",
                         filename=name)
    code, reply = lib.send_smtplib(self.smtp_port, "cam-shed",
                                   lib.PASSWORDS["cam-shed"],
                                   "cam-shed@example.com",
                                   ["alerts@example.net"], msg.as_bytes())
    self.assertEqual(code, 250, reply)

  def unusable_lines(self):
    return [l for l in self.gw.log().splitlines()
            if "picture unusable; left out" in l and "garbled.jpg" in l]

  def test_broken_picture_is_left_out(self):
    good = lib.eml_jpegs(FIX05)[0]
    # A JPEG's first marker, then 5000 bytes with no marker in them.
    garbled = b"\xff\xd8\xff\xe0" + bytes(i * 7 % 255 for i in range(5000))
    mark = self.watcher.mark()
    self.send_pictures("Motion shed, garbled then good",
                       [("garbled.jpg", garbled), ("good.jpg", good)])
    full = self.watcher.wait_for("camgate/cam-shed/snapshot", None, 20,
                                 mark)
    self.assertIsNotNone(full, lib.tail(self.gw.log(), 30))
    self.assertEqual(full.payload, good, "not the good picture as sent")
    small = self.watcher.wait_for("thumbs/cam-shed/snapshot", None, 20,
                                  mark)
    self.assertIsNotNone(small)
    self.assertEqual(jpeg_size(small.payload), (40, 30))
    self.assertTrue(lib.wait_until(lambda: len(self.unusable_lines()) >= 1,
                                   10), lib.tail(self.gw.log(), 30))
    self.assertIn("error=\"", self.unusable_lines()[0])

    # Only a garbled picture: the retained pictures are cleared, so the
    # previous alert's picture is not shown with this one.
    mark = self.watcher.mark()
    self.send_pictures("Motion shed, garbled only",
                       [("garbled.jpg", garbled)])
    for prefix in ("camgate", "thumbs"):
      last = self.watcher.wait_for("%s/cam-shed/last_event" % prefix, None,
                                   20, mark)
      self.assertIsNotNone(last, lib.tail(self.gw.log(), 30))
      snaps = self.watcher.all("%s/cam-shed/snapshot" % prefix, mark)
      self.assertEqual([(x.payload, x.retain) for x in snaps], [(b"", True)],
                       prefix)
    # Each broken picture is logged once, however many backends saw it.
    lines = self.unusable_lines()
    self.assertEqual(len(lines), 2, "\n".join(lines))
    self.assertNotEqual(lines[0].split("event=")[1].split()[0],
                        lines[1].split("event=")[1].split()[0])

if __name__ == "__main__":
  unittest.main()
