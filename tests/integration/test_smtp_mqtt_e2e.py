"""Each fixtures/smtp/*.eml sent through a real SMTP client (swaks, curl
and smtplib, over plaintext, STARTTLS and implicit TLS) into camgate and
checked on the MQTT side: the event JSON, the retained ON/OFF, snapshot,
last_event and discovery topics, snapshot bytes equal to the .eml's first
JPEG."""

import unittest

import camgate_testlib as lib

LOGINS = ("cam-shed", "cam-door", "cam-lobby", "trailcam", "nvr-gate")


class EndToEnd(lib.EventAsserts, unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("e2e")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.cert, cls.key = lib.make_cert(cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port, cls.tls_port = lib.free_ports(2)
    cams = [lib.camera(c) for c in LOGINS]
    cams.append(lib.camera("nvr-yard", name="Yard NVR",
                           channel={"from": "body",
                                    "pattern": lib.NVR_CHANNEL_RE}))
    cams.append(lib.camera("reolink", password=None,
                           allow_from=["127.0.0.1"],
                           channel={"from": "rcpt", "pattern": "^([^@]+)@",
                                    "id": "{1}"}))
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port, cams,
                          tls=(cls.cert, cls.key), tls_port=cls.tls_port)
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def setUp(self):
    self.assertTrue(self.gw.alive(), "camgate is not running:\n"
                    + lib.tail(self.gw.log()))
    self.mark = self.watcher.mark()

  def assert_ok(self, proc):
    """A client that failed is reported when the test ends, so that the
    event checks still run (a lost reply to QUIT does not hide the
    event)."""
    if proc.returncode != 0:
      msg = ("%s exited %d:\n%s\n%s" % (proc.args[0], proc.returncode,
                                        lib.tail(proc.stdout, 6),
                                        lib.tail(proc.stderr, 6)))
      self.addCleanup(self.fail, msg)

  def assert_device_time(self, ev):
    self.assertIsNotNone(ev["device_time"])
    self.assertIn("2024-05-01", ev["device_time"])
    self.assertIn("12:30:45", ev["device_time"])

  # --------------------------------------------------------- fixtures
  def test_05_hikvision_nvr_channel_swaks(self):
    f = "05_hikvision_nvr_motion_3jpeg.eml"
    self.assert_ok(lib.send_swaks(self.smtp_port, "nvr-yard",
                                  lib.PASSWORDS["nvr-yard"],
                                  "nvr-yard@example.com",
                                  ["alerts@example.net"], lib.fixture_path(f)))
    ev = self.assert_event("nvr-yard-D4", self.mark, jpegs=lib.eml_jpegs(f))
    self.assertIn("Yard NVR", ev["camera_name"])
    labels = ev["labels"]
    for k in ("serial", "channel", "channel_name"):
      self.assertIn(k, labels, labels)
    self.assertEqual(labels["serial"], "0820230101CCRR000000000WCVU")
    self.assertEqual(labels["channel"], "D4")
    self.assertEqual(labels["channel_name"], "Driveway")
    self.assert_device_time(ev)

  def test_05_over_implicit_tls_curl(self):
    f = "05_hikvision_nvr_motion_3jpeg.eml"
    self.assert_ok(lib.send_curl(self.tls_port, "nvr-gate",
                                 lib.PASSWORDS["nvr-gate"],
                                 "nvr-gate@example.com",
                                 ["alerts@example.net"], lib.fixture_path(f),
                                 tls="implicit", login_options="AUTH=LOGIN"))
    self.assert_event("nvr-gate", self.mark, jpegs=lib.eml_jpegs(f))

  def test_06_dahua_base64_body_curl(self):
    f = "06_dahua_ezip_base64_body.eml"
    self.assert_ok(lib.send_curl(self.smtp_port, "cam-shed",
                                 lib.PASSWORDS["cam-shed"],
                                 "ezip-gate@example.com",
                                 ["alerts@example.net"], lib.fixture_path(f)))
    ev = self.assert_event("cam-shed", self.mark, jpegs=lib.eml_jpegs(f),
                           states=("start",))
    self.assertNotIn("=?", ev["title"], "RFC 2047 subject not decoded")
    self.assertIn("EZIP-GATE", ev["title"] + ev["text"])
    self.assertIn("Motion Detection Start", ev["text"],
                  "base64 body not decoded")
    self.assert_device_time(ev)

  def test_07_reolink_rcpt_identity_smtplib_no_auth(self):
    f = "07_reolink_text_only.eml"
    code, msg = lib.send_smtplib(self.smtp_port, None, None,
                                 "cam-garden@example.com",
                                 ["garden@example.net",
                                  "garden-backup@example.net"],
                                 lib.read_fixture(f))
    self.assertEqual(code, 250, msg)
    self.assertRegex(msg.decode(), r"queued as \S+")
    self.assert_event("garden", self.mark)
    lib.wait_until(lambda: False, 1.5)
    topics = [m.topic for m in self.watcher.snapshot(self.mark)
              if m.topic.endswith("/event")]
    self.assertEqual(topics, ["camgate/garden/event"])

  def test_channel_cannot_speak_for_another_camera(self):
    """The address-trusted camera takes its id from the recipient, but not
    the id of a camera that logs in, of an NVR's channel, or camgate's
    own: those recipients are refused as ids and the next one is tried,
    else the alert is the camera's own."""
    fix = lib.read_fixture("07_reolink_text_only.eml")
    since = self.gw.log_mark()
    for rcpts, want in ((["cam-shed@example.net"], "reolink"),
                        (["camgate@example.net"], "reolink"),
                        (["nvr-yard-D4@example.net"], "reolink"),
                        (["cam-door@example.net", "porch@example.net"],
                         "porch")):
      with self.subTest(rcpts=rcpts):
        mark = self.watcher.mark()
        code, msg = lib.send_smtplib(self.smtp_port, None, None,
                                     "cam-garden@example.com", rcpts, fix)
        self.assertEqual(code, 250, msg)
        m, ev = self.wait_event(want, mark)
        self.assertEqual(ev["camera"], want)
        self.assertEqual(ev["source"], "smtp")
    lib.wait_until(lambda: False, 1)
    cams = {lib.event_json(x)["camera"]
            for x in self.watcher.snapshot(self.mark)
            if x.topic.endswith("/event")}
    self.assertEqual(cams, {"reolink", "porch"})
    for spoof in ("cam-shed", "camgate", "nvr-yard-D4", "cam-door"):
      self.assertTrue(self.gw.wait_log(
          r"camera=reolink channel_id=\"%s\" msg=\"the alert's channel "
          r"names another camera" % spoof, 5, since), spoof)

  def test_topic_sanitises_camera_id(self):
    data = lib.read_fixture("07_reolink_text_only.eml").replace(
        b"garden@", b"front.door@")
    code, msg = lib.send_smtplib(self.smtp_port, None, None,
                                 "cam-garden@example.com",
                                 ["front.door@example.net"], data)
    self.assertEqual(code, 250, msg)
    m, ev = self.wait_event("front.door", self.mark)
    self.assertEqual(m.topic, "camgate/front_door/event")
    self.assertIn(ev["camera"], ("front.door", "front_door"))
    lib.wait_until(lambda: False, 1)
    bad = [x.topic for x in self.watcher.snapshot(self.mark)
           if "front.door" in x.topic]
    self.assertEqual(bad, [])

  def test_08_bare_lf_no_date_curl(self):
    f = "08_no_date_no_msgid_bare_lf.eml"
    self.assert_ok(lib.send_curl(self.smtp_port, "cam-lobby",
                                 lib.PASSWORDS["cam-lobby"],
                                 "thingino-porch@example.com",
                                 ["alerts@example.net"], lib.fixture_path(f)))
    ev = self.assert_event("cam-lobby", self.mark)
    self.assertIn("Motion detected porch-cam", ev["title"])
    # No Date header: the receive time, or the time the body names.
    if ev["device_time"] is not None and "2024-05-01" not in ev["device_time"]:
      d = lib.parse_iso(ev["device_time"])
      r = lib.parse_iso(ev["recv_time"])
      if d.tzinfo and r.tzinfo:
        self.assertLess(abs((d - r).total_seconds()), 120, ev)

  def test_11_single_line_base64_smtplib(self):
    f = "11_single_line_base64_over_998.eml"
    jp = lib.eml_jpegs(f)
    self.assertEqual(len(jp[0]), 18105)
    code, msg = lib.send_smtplib(self.smtp_port, "trailcam",
                                 lib.PASSWORDS["trailcam"],
                                 "esp32cam@example.com",
                                 ["alerts@example.net"], lib.read_fixture(f))
    self.assertEqual(code, 250, msg)
    self.assert_event("trailcam", self.mark, jpegs=jp)

  def test_12_zoneminder_inline_swaks_starttls(self):
    f = "12_zoneminder_inline_cid_related.eml"
    self.assert_ok(lib.send_swaks(self.smtp_port, "cam-door",
                                  lib.PASSWORDS["cam-door"],
                                  "zoneminder@example.com",
                                  ["alerts@example.net"], lib.fixture_path(f),
                                  tls="starttls"))
    self.assert_event("cam-door", self.mark, jpegs=lib.eml_jpegs(f))

  def test_12_smtplib_starttls(self):
    f = "12_zoneminder_inline_cid_related.eml"
    data = lib.read_fixture(f).replace(b"zm-4711@", b"zm-4712@")
    code, msg = lib.send_smtplib(self.smtp_port, "cam-lobby",
                                 lib.PASSWORDS["cam-lobby"],
                                 "zoneminder@example.com",
                                 ["alerts@example.net"], data, tls="starttls")
    self.assertEqual(code, 250, msg)
    self.assert_event("cam-lobby", self.mark, jpegs=lib.eml_jpegs(f))

  def test_status_online_retained(self):
    r = lib.retained(self.mosq.port, ["camgate/status"])
    self.assertEqual(r.get("camgate/status"), b"online")

  def test_zz_no_secrets_in_log(self):
    lib.assert_no_secrets(self, self.gw.log(), LOGINS + ("nvr-yard",))


if __name__ == "__main__":
  unittest.main()
