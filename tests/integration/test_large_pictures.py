"""Large pictures never sit whole in camgate's memory on the way in: a
base64 part over 1 MB is decoded into a file under the spool's tmp/, moved
into att/ with its event, and read back only by a backend that needs the
bytes. Checked here end to end with smtplib and a real Mosquitto: a 2.5 MB
picture still reaches the retained snapshot topic byte for byte (read
back from its file), a 5 MB one is announced in the event but not
published (over MQTT's 4 MB picture limit, logged; the retained
snapshot is cleared so the previous alert's picture does not stand in for
it), nothing is left in
tmp/, and files a killed run left in tmp/ are removed at the next
start."""

import email.message
import os
import unittest

import camgate_testlib as lib

CAM = "cam-shed"


def picture(size, seed):
  """A real JPEG of exactly size bytes: a camera's picture with APP15
  segments of filler after its SOI (seed makes each one different), so
  that its header reads as a picture's must before MQTT publishes it."""
  real = lib.eml_jpegs("05_hikvision_nvr_motion_3jpeg.eml")[0]
  fill = bytes((i * 131 + seed) % 256 for i in range(65533))
  segs = []
  n = size - len(real)
  while n > 0:
    chunk = min(n, 4 + len(fill))
    if 0 < n - chunk < 4:
      chunk -= 4
    segs.append(b"\xff\xef" + (chunk - 2).to_bytes(2, "big")
                + fill[:chunk - 4])
    n -= chunk
  pic = real[:2] + b"".join(segs) + real[2:]
  assert len(pic) == size
  return pic


def alert(subject, pic):
  msg = email.message.EmailMessage()
  msg["From"] = "yard@example.com"
  msg["To"] = "alerts@example.net"
  msg["Subject"] = subject
  msg.set_content("Motion detected on the yard camera.")
  msg.add_attachment(pic, maintype="image", subtype="jpeg",
                     filename="yard.jpg")
  return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class LargePictures(lib.EventAsserts, unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("largepic")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port = lib.free_port()
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          [lib.camera(CAM)], max_size="16M")
    cls.spool = cfg["spool"]["path"]
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def setUp(self):
    if not self.gw.alive():
      self.gw.start()
    self.mark = self.watcher.mark()

  def send(self, subject, pic):
    code, msg = lib.send_smtplib(self.smtp_port, CAM, lib.PASSWORDS[CAM],
                                 "yard@example.com", ["alerts@example.net"],
                                 alert(subject, pic))
    self.assertEqual(code, 250, msg)

  def leftovers(self):
    return sorted(os.listdir(os.path.join(self.spool, "tmp")))

  def test_picture_from_a_file_reaches_the_snapshot_topic(self):
    pic = picture(2500 * 1024, 1)
    self.send("Motion yard 2.5 MB", pic)
    ev = self.assert_event(CAM, self.mark, jpegs=[pic])
    self.assertEqual(ev["snapshot_size"], len(pic))
    self.assertNotIn("sub=mail", self.gw.log(),
                     "decoding the picture into a file failed")
    self.assertEqual(self.leftovers(), [])
    names = os.listdir(os.path.join(self.spool, "att"))
    self.assertTrue(any(os.path.getsize(os.path.join(self.spool, "att", n))
                        == len(pic) for n in names),
                    "no file of %d bytes in att/: %r" % (len(pic), names))

  def test_picture_over_4mb_is_announced_not_published(self):
    pic = picture(5 * 1024 * 1024, 2)
    self.send("Motion yard 5 MB", pic)
    m, ev = self.wait_event(CAM, self.mark,
                            lambda e: e["title"] == "Motion yard 5 MB")
    self.assertEqual(ev["snapshot_size"], len(pic))
    last = self.watcher.wait_for("camgate/%s/last_event" % lib.topic_id(CAM),
                                 None, 10, self.mark)
    self.assertIsNotNone(last, "no last_event after the event")
    topic = "camgate/%s/snapshot" % lib.topic_id(CAM)
    cleared = self.watcher.wait_for(topic, lambda x: x.payload == b"", 10,
                                    self.mark)
    self.assertIsNotNone(cleared, "the retained snapshot was not cleared, "
                         "so the previous alert's picture stays up")
    self.assertTrue(cleared.retain)
    snaps = [x for x in self.watcher.all(topic, self.mark)
             if len(x.payload) == len(pic)]
    self.assertEqual(snaps, [], "a 5 MB picture was published to MQTT")
    self.assertTrue(lib.wait_until(
        lambda: "picture over 4 MB not published" in self.gw.log(), 10),
        "no log line says why the picture was not published")
    self.assertEqual(self.leftovers(), [])

  def test_files_of_a_killed_run_are_removed_at_start(self):
    self.gw.kill9()
    stale = [os.path.join(self.spool, "tmp", n)
             for n in ("pic-abc123", "msg-def456")]
    for p in stale:
      with open(p, "wb") as f:
        f.write(b"\xff\xd8\xff" + b"x" * 1000)
    self.gw.start()
    self.assertEqual(self.leftovers(), [])
    self.assertIn("unfinished files of an earlier run removed",
                  self.gw.log())


if __name__ == "__main__":
  unittest.main()
