"""Every fixtures/smtp/*.dialog replayed against the real camgate, with the
reply codes each line awaits, and the event each must (or must not)
produce on MQTT. Fixture 13 runs twice: with the default TLS floor (the
handshake must fail cleanly) and with the floor lowered to 1.0."""

import os
import unittest

import camgate_testlib as lib

ALL_CAMERAS = ("cam-shed", "cam-door", "cam-lobby", "trailcam", "dafang-1",
               "nvr-gate")


def fixture_cameras():
  cams = [lib.camera(c) for c in ALL_CAMERAS]
  cams.append(lib.camera("reolink", password=None, allow_from=["127.0.0.1"],
                         channel={"from": "rcpt", "pattern": "^([^@]+)@",
                                  "id": "{1}"}))
  return cams


class Dialogs(lib.EventAsserts, unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("dialogs")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.cert, cls.key = lib.make_cert(cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port, cls.tls_port = lib.free_ports(2)
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          fixture_cameras(), tls=(cls.cert, cls.key),
                          tls_port=cls.tls_port)
    cls.gw = lib.Camgate(cls.tmp, cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def setUp(self):
    self.assertTrue(self.gw.alive(), "camgate is not running:\n"
                    + lib.tail(self.gw.log()))
    self.mark = self.watcher.mark()

  def replay(self, name, port_map=None, actions=None):
    pm = {None: self.smtp_port, 25: self.smtp_port, 587: self.smtp_port,
          465: self.tls_port}
    pm.update(port_map or {})
    r = lib.DialogReplayer(pm, timeout=15)
    try:
      r.run(actions or lib.load_dialog(name))
    except lib.DialogMismatch as e:
      # Reported when the test ends, so that the event checks that follow
      # still run (a reply lost at QUIT does not hide a lost event).
      self.addCleanup(self._mismatch, name, e)
    return r

  def _mismatch(self, name, e):
    raise AssertionError("%s: %s" % (name, e))

  def jpegs(self, eml):
    return lib.eml_jpegs(eml)

  def assert_serves(self, port=None):
    with lib.smtp_session(port or self.smtp_port, "cam-shed",
                          lib.PASSWORDS["cam-shed"]) as c:
      self.assertEqual(c.cmd("NOOP").code, 250)
      self.assertEqual(c.cmd("QUIT").code, 221)

  # ------------------------------------------------------------ plain
  def test_01_ehlo_then_helo_fallback_auth_login(self):
    self.replay("01_ehlo_then_helo_fallback_auth_login.dialog")
    self.assert_event("cam-shed", self.mark,
                      jpegs=self.jpegs("05_hikvision_nvr_motion_3jpeg.eml"))

  def test_02_auth_login_initial_response_variants(self):
    """The fixture strings the AUTH LOGIN shapes of three different
    clients into one session; RFC 4954 section 4 makes a server answer a
    second AUTH after a successful one with 503, so each variant (from
    its AUTH up to the next) is replayed in a session of its own: greeting
    and EHLO from the fixture, then the variant, then the fixture's
    QUIT."""
    name = "02_auth_login_initial_response_variants.dialog"
    acts = lib.load_dialog(name)
    auths = [i for i, a in enumerate(acts)
             if a.kind == "cmd" and a.arg.upper().startswith("AUTH ")]
    head, tail = acts[:auths[0]], acts[-2:]
    self.assertEqual([a.kind for a in tail], ["cmd", "close"])
    self.assertEqual(len(auths), 3)
    for k, start in enumerate(auths):
      end = auths[k + 1] if k + 1 < len(auths) else len(acts) - 2
      with self.subTest(variant="ABC"[k]):
        self.replay(name, actions=head + acts[start:end] + tail)
    self.assert_no_event(self.mark, wait=2)

  def test_03_auth_login_strict_challenge_text(self):
    self.replay("03_auth_login_strict_challenge_text.dialog")
    ev = self.assert_event("cam-lobby", self.mark)
    self.assertIn("Motion Detection Alarm", ev["title"])

  def test_04_helo_then_auth_plain(self):
    self.replay("04_helo_then_auth_plain.dialog")
    self.assert_event("trailcam", self.mark,
                      jpegs=self.jpegs("12_zoneminder_inline_cid_related.eml"))

  def test_07_reolink_rcpt_identity_text_only(self):
    self.replay("07_reolink_rcpt_identity_text_only.dialog")
    self.assert_event("garden", self.mark)
    # one event for the two recipients
    lib.wait_until(lambda: False, 2)
    events = [m for m in self.watcher.snapshot(self.mark)
              if m.topic.endswith("/event")]
    self.assertEqual([m.topic for m in events], ["camgate/garden/event"])

  # -------------------------------------------------------------- TLS
  def test_13_tls10_refused_at_default_floor(self):
    with self.assertRaises(lib.TlsHandshakeError) as cm:
      self.replay("13_starttls_tls10_legacy_ciphers.dialog")
    rep = cm.exception.replayer
    try:
      closed, data = rep.read_raw_until_close(5)
    finally:
      rep.close()
    self.assertTrue(closed, "server kept the failed TLS connection open")
    self.assertFalse(data[:3].isdigit(),
                     "ClientHello answered as SMTP: %r" % data[:80])
    self.assertTrue(self.gw.alive())
    self.assert_serves()
    self.assert_no_event(self.mark, wait=1)

  def test_13_tls10_allowed_when_floor_lowered(self):
    tmp = lib.make_tmpdir("dialogs-tls10")
    self.addCleanup(lib.remove_tmpdir, tmp)
    port = lib.free_port()
    cfg = lib.base_config(tmp, port, self.mosq.port, fixture_cameras(),
                          tls=(self.cert, self.key), min_version="1.0",
                          ciphers="DEFAULT:@SECLEVEL=0",
                          client_id="camgate-tls10")
    gw = lib.Camgate(tmp, cfg)
    self.addCleanup(gw.kill9)
    gw.start()
    try:
      r = self.replay("13_starttls_tls10_legacy_ciphers.dialog",
                      {None: port, 25: port, 587: port})
    except lib.TlsHandshakeError as e:
      closed, data = e.replayer.read_raw_until_close(5)
      e.replayer.close()
      self.assertTrue(closed and not data[:3].isdigit(),
                      "TLS 1.0 failure was not clean: %r" % data[:80])
      self.assertTrue(gw.alive())
      if lib.tls10_possible(tmp):
        self.fail("TLS 1.0 with min_version 1.0 failed (%s) although this "
                  "OpenSSL can do TLS 1.0 (openssl s_server -tls1 works)"
                  "\n%s" % (e.error, lib.tail(gw.log(), 15)))
      self.skipTest("this OpenSSL cannot do TLS 1.0 even at SECLEVEL=0")
    self.assertEqual(r.tls_version, "TLSv1")
    self.assertIn(r.tls_cipher[0], ("AES128-SHA", "AES256-SHA"))
    jp = self.jpegs("11_single_line_base64_over_998.eml")
    self.assertEqual(len(jp[0]), 18105)
    self.assert_event("dafang-1", self.mark, jpegs=jp)
    self.assertEqual(gw.stop(), 0)

  def test_14_implicit_tls_465(self):
    self.replay("14_implicit_tls_465.dialog")
    self.assert_event("nvr-gate", self.mark,
                      jpegs=self.jpegs("05_hikvision_nvr_motion_3jpeg.eml"))

  def test_14_clienthello_on_plaintext_port(self):
    acts = lib.load_dialog("14_implicit_tls_465.dialog")
    hello = lib.clienthello_bytes(acts[1].arg)
    self.assertEqual(hello[:1], b"\x16")
    log_mark = self.gw.log_mark()
    c = lib.SmtpClient(self.smtp_port)
    try:
      banner = c.read_reply()        # the server speaks first
      self.assertEqual(banner.code, 220)
      c.send(hello)
      closed = c.wait_eof(5)
      self.assertTrue(closed, "connection not closed after a ClientHello")
      self.assertEqual(c.buf, b"", "replied to a ClientHello: %r"
                       % c.buf[:100])
    finally:
      c.close()
    self.assertTrue(self.gw.wait_log(r"(?i)tls.{0,60}plain", 5, log_mark),
                    "no log line about TLS on a plaintext port:\n"
                    + lib.tail(self.gw.log(), 10))
    self.assert_serves()

  def test_zz_no_secrets_in_log(self):
    """AUTH data never reaches the log, not even a password a buggy
    client put in the username slot (fixture 02 variant C)."""
    lib.assert_no_secrets(self, self.gw.log(), ALL_CAMERAS)


if __name__ == "__main__":
  unittest.main()
