"""Camera mail in over SMTP, out as ntfy pushes to a local ntfy-compatible
server (ntfy_server.py): a PUT with the thumbnail as its body and the
title, priority, tags, click URL, icon, actions and auth in headers; a
POST for a mail without a picture; 413 answered with a smaller picture
and then none; 429 waited out as the server asks, up to retry_max (and
with our own backoff when it does not say); 5xx retried; a refused token
given up on; and no secret in camgate's log."""

import base64
import json
import os
import struct
import unittest

import camgate_testlib as lib
import ntfy_server

TOKEN = "tk_camgate0test0token0123456789"
BAD_TOKEN = "tk_not0the0right0token000000000"
USER, PASSWORD = "phil", "ntfy-basic-pass"
CLICK = "http://nvr.example.net/cam/"
FIX05 = "05_hikvision_nvr_motion_3jpeg.eml"
FIX07 = "07_reolink_text_only.eml"
FIX11 = "11_single_line_base64_over_998.eml"     # one 160x120 JPEG
SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
       0xCE, 0xCF}


def jpeg_size(data):
  """(width, height) from a JPEG's SOF, after checking that the marker
  segments up to it are well formed and that the file ends with EOI."""
  if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
    raise ValueError("not a whole JPEG (SOI ... EOI)")
  i = 2
  for _ in range(1000):
    if i + 4 > len(data) or data[i] != 0xFF:
      raise ValueError("bad marker at %d" % i)
    marker = data[i + 1]
    if marker == 0xFF:
      i += 1
      continue
    length = struct.unpack(">H", data[i + 2:i + 4])[0]
    if marker in SOF:
      h, w = struct.unpack(">HH", data[i + 5:i + 9])
      return w, h
    if marker == 0xDA:
      raise ValueError("scan before a frame header")
    i += 2 + length
  raise ValueError("no frame header")


def body(rec):
  return base64.b64decode(rec["body_b64"])


class NtfyEndToEnd(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("ntfy")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.srv = ntfy_server.NtfyServer(
        log_path=os.path.join(cls.tmp, "ntfy.jsonl"), tokens=[TOKEN],
        users={USER: PASSWORD}).start()
    cls.addClassCleanup(cls.srv.stop)
    cls.srv.limit("small", 10000)
    cls.srv.limit("tiny", 100)
    token_file = cls.secret("token", TOKEN)
    pw_file = cls.secret("password", PASSWORD)

    def ntfy(name, topic, **kw):
      b = {"name": name, "type": "ntfy", "url": cls.srv.url() + "/",
           "topic": topic, "token_file": token_file,
           "retry_initial": "1s", "retry_max": "2s"}
      b.update(kw)
      return b

    cls.smtp_port = lib.free_port()
    cams = [lib.camera(c) for c in ("cam-shed", "cam-door", "cam-lobby",
                                    "trailcam", "dafang-1", "nvr-gate")]
    cams.append(lib.camera("nvr-yard", name="Yard NVR",
                           channel={"from": "body",
                                    "pattern": lib.NVR_CHANNEL_RE}))
    cams.append(lib.camera("reolink", password=None,
                           allow_from=["127.0.0.1"],
                           channel={"from": "rcpt", "pattern": "^([^@]+)@",
                                    "id": "{1}"}))
    basic = ntfy("basic", "basic", user=USER, password_file=pw_file)
    del basic["token_file"]
    backends = [
        ntfy("phone", "yard", priority="high",
             click=CLICK + "{camera}",
             icon="http://nvr.example.net/icon.png",
             actions=[{"action": "view", "label": "Live {camera_name}",
                       "url": "http://nvr.example.net/live/{camera}"}],
             title="{camera_name}: {kind}", snapshot="40x40", quality=80),
        ntfy("small", "small", snapshot="full"),
        ntfy("capped", "capped", snapshot="full", max_attachment="10K"),
        ntfy("tiny", "tiny", snapshot="full"),
        ntfy("busy", "busy"),
        ntfy("flaky", "flaky"),
        basic,
        ntfy("badauth", "denied", token=BAD_TOKEN),
    ]
    del backends[-1]["token_file"]
    routes = [("nvr-yard*", ["phone"]), ("garden", ["phone"]),
              ("cam-shed", ["small", "capped"]), ("cam-door", ["tiny"]),
              ("cam-lobby", ["busy"]), ("trailcam", ["basic"]),
              ("dafang-1", ["flaky"]), ("nvr-gate", ["badauth"])]
    cfg = {"log": {"level": "debug"},
           "spool": {"path": os.path.join(cls.tmp, "var")},
           "smtp": {"listen": "%s:%d" % (lib.HOST, cls.smtp_port),
                    "hostname": lib.HOSTNAME, "max_size": "1M"},
           "cameras": cams, "backends": backends,
           "rules": [{"name": "to " + b[0], "match": {"camera": c},
                      "backends": b} for c, b in routes]}
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.addClassCleanup(cls.gw.stop)
    cls.gw.start()

  @classmethod
  def secret(cls, name, value):
    path = os.path.join(cls.tmp, name)
    with open(path, "w") as f:
      f.write(value + "\n")
    os.chmod(path, 0o600)
    return path

  def setUp(self):
    self.assertTrue(self.gw.alive(), "camgate is not running:\n"
                    + lib.tail(self.gw.log()))

  def send(self, user, fixture):
    p = lib.send_swaks(self.smtp_port, user, lib.PASSWORDS[user],
                       user + "@example.com", ["alerts@example.net"],
                       lib.fixture_path(fixture))
    self.assertEqual(p.returncode, 0, lib.tail(p.stdout + p.stderr, 8))

  def requests(self, topic, count, timeout=20, status=None):
    got = self.srv.wait_for(topic, count, timeout, status)
    if len([r for r in got if status is None or r["status"] == status]) \
        < count:
      self.fail("topic %s: wanted %d requests, got %r\n%s"
                % (topic, count, [(r["method"], r["status"]) for r in got],
                   lib.tail(self.gw.log(), 30)))
    return got

  # ------------------------------------------------------------ pictures
  def test_picture_push(self):
    self.send("nvr-yard", FIX05)
    reqs = [r for r in self.requests("yard", 1, status=200)
            if r["fields"]["filename"]]
    self.assertEqual(len(reqs), 1, reqs)
    r = reqs[0]
    f = r["fields"]
    self.assertEqual(r["method"], "PUT")
    self.assertEqual(r["status"], 200)
    self.assertEqual(r["auth"], {"type": "bearer", "token": TOKEN})
    self.assertEqual(f["title"], "Yard NVR D4: motion")
    self.assertEqual(r["headers"].get("X-Priority"), "4")
    self.assertEqual(f["tags"], "walking")
    self.assertEqual(f["click"], CLICK + "nvr-yard-D4")
    self.assertEqual(f["icon"], "http://nvr.example.net/icon.png")
    self.assertEqual(json.loads(f["actions"]),
                     [{"action": "view", "label": "Live Yard NVR D4",
                       "url": "http://nvr.example.net/live/nvr-yard-D4",
                       "clear": False}])
    self.assertIn("Driveway", f["message"])
    self.assertTrue(f["filename"].startswith("nvr-yard-D4-"), f)
    self.assertTrue(f["filename"].endswith(".jpg"), f)
    self.assertEqual(r["headers"].get("Content-Type"), "image/jpeg")
    self.assertTrue(r["attachment"])
    # The camera's 64x48 JPEG, fitted into the 40x40 box: 40x30.
    data = body(r)
    self.assertEqual(jpeg_size(lib.eml_jpegs(FIX05)[0]), (64, 48))
    self.assertEqual(jpeg_size(data), (40, 30))
    self.assertEqual(r["body_len"], len(data))
    for name, value in r["headers"].items():
      self.assertTrue(value.isascii(), "%s: %r" % (name, value))

  def test_text_only_post(self):
    code, msg = lib.send_smtplib(self.smtp_port, None, None,
                                 "cam-garden@example.com",
                                 ["garden@example.net"],
                                 lib.read_fixture(FIX07))
    self.assertEqual(code, 250, msg)
    reqs = lib.wait_until(
        lambda: [r for r in self.srv.of("yard")
                 if r["fields"]["click"] == CLICK + "garden"], 20)
    self.assertTrue(reqs, "no push for garden: %r\n%s"
                    % (self.srv.of("yard"), lib.tail(self.gw.log(), 30)))
    r = reqs[0]
    self.assertEqual(r["method"], "POST")
    self.assertEqual(r["status"], 200)
    self.assertFalse(r["attachment"])
    self.assertIsNone(r["fields"]["filename"])
    self.assertIsNone(r["fields"]["message"])
    # The camera's name from its channel template, "{name} {1}".
    self.assertEqual(r["fields"]["title"], "reolink garden: motion")
    self.assertTrue(body(r).decode("utf-8").strip())
    self.assertEqual(r["headers"].get("Content-Type"),
                     "text/plain; charset=utf-8")
    self.assertEqual(r["auth"]["type"], "bearer")

  # -------------------------------------------------------------- 413
  def test_413_smaller_picture(self):
    original = lib.eml_jpegs(FIX11)[0]
    self.assertEqual(jpeg_size(original), (160, 120))
    self.send("cam-shed", FIX11)
    reqs = self.requests("small", 1, status=200)
    self.assertEqual([(r["method"], r["status"]) for r in reqs],
                     [("PUT", 413), ("PUT", 200)])
    self.assertEqual(body(reqs[0]), original)
    self.assertEqual(jpeg_size(body(reqs[1])), (80, 60))
    self.assertLess(reqs[1]["body_len"], 10000)
    # Over max_attachment here: made smaller before it is sent at all.
    capped = self.requests("capped", 1, status=200)
    self.assertEqual(len(capped), 1, capped)
    self.assertEqual(capped[0]["method"], "PUT")
    self.assertEqual(jpeg_size(body(capped[0])), (80, 60))

  def test_413_then_no_picture(self):
    self.send("cam-door", FIX11)
    reqs = self.requests("tiny", 1, status=200)
    self.assertEqual([(r["method"], r["status"]) for r in reqs],
                     [("PUT", 413), ("PUT", 413), ("POST", 200)])
    self.assertEqual(jpeg_size(body(reqs[1])), (80, 60))
    self.assertFalse(reqs[2]["attachment"])
    self.assertEqual(reqs[2]["fields"]["title"], "cam-door: motion")
    log = self.gw.log()
    self.assertIn("attachment refused; sending a smaller one", log)

  # -------------------------------------------------------------- 429
  def test_429_waits_and_arrives(self):
    # An hour asked for: waited only up to the backend's retry_max (2 s).
    self.srv.throttle("busy", 1, retry_after=3600)
    self.srv.throttle("busy", 1)
    self.send("cam-lobby", FIX05)
    reqs = self.requests("busy", 1, timeout=30, status=200)
    self.assertEqual([r["status"] for r in reqs], [429, 429, 200])
    # Retry-After honoured up to retry_max; then, with none given, our own
    # backoff (retry_initial 1s, doubled for the second 429 in a row).
    self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 1.9)
    self.assertLess(reqs[1]["t"] - reqs[0]["t"], 10)
    self.assertIn("retry_after=given wait_ms=2000 ", self.gw.log())
    self.assertGreaterEqual(reqs[2]["t"] - reqs[1]["t"], 1.9)
    # Never more than that: no request after the one that went through.
    lib.wait_until(lambda: False, 1.5)
    self.assertEqual(len(self.srv.of("busy")), 3)
    self.assertEqual(jpeg_size(body(reqs[2])), (64, 48))

  # ------------------------------------------------------ other answers
  def test_5xx_retried(self):
    self.srv.fail_next("flaky", 503, 1)
    self.send("dafang-1", FIX05)
    reqs = self.requests("flaky", 1, timeout=30, status=200)
    self.assertEqual([r["status"] for r in reqs], [503, 200])
    self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 0.9)

  def test_basic_auth(self):
    self.send("trailcam", FIX05)
    r = self.requests("basic", 1, status=200)[0]
    self.assertEqual(r["auth"], {"type": "basic", "user": USER,
                                 "password": PASSWORD})

  def test_refused_token_gives_up(self):
    self.send("nvr-gate", FIX05)
    reqs = self.requests("denied", 1)
    self.assertEqual(reqs[0]["status"], 401)
    self.assertTrue(self.gw.wait_log(r"status=401 reason=\"unauthorized\" "
                                     r"msg=\"refused; giving up", 10))
    lib.wait_until(lambda: False, 2.5)
    self.assertEqual(len(self.srv.of("denied")), 1,
                     "a refused push must not be retried")

  def test_z_no_secrets_in_log(self):
    self.send("trailcam", FIX05)
    self.requests("basic", 1, status=200)
    log = self.gw.log()
    basic = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    for secret in (TOKEN, BAD_TOKEN, PASSWORD, basic):
      self.assertNotIn(secret, log)
    lib.assert_no_secrets(self, log, ["cam-shed", "trailcam", "nvr-yard"])


if __name__ == "__main__":
  unittest.main()
