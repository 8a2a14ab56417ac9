"""The SMTP server's replies to wrong, malformed, out-of-order, over-long
and cut-off input, checked on the wire and on MQTT (what must not become
an event, and what must). No allow_from here: every camera logs in."""

import os
import random
import re
import socket
import struct
import time
import unittest

import camgate_testlib as lib

LOGINS = ("cam-shed", "cam-door")
MAX_SIZE = 1024 * 1024


class SmtpErrors(lib.EventAsserts, unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("errors")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.cert, cls.key = lib.make_cert(cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port, cls.tls_port = lib.free_ports(2)
    cls.fail_flag = os.path.join(cls.tmp, "spool-fail")
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          [lib.camera(c) for c in LOGINS],
                          tls=(cls.cert, cls.key), tls_port=cls.tls_port,
                          idle_timeout="4s")
    cls.gw = lib.Camgate(cls.tmp, cfg,
                         env={"CAMGATE_SPOOL_FAIL": cls.fail_flag})
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def setUp(self):
    self.assertTrue(self.gw.alive(), "camgate is not running:\n"
                    + lib.tail(self.gw.log()))
    self.mark = self.watcher.mark()

  def session(self, user="cam-shed", **kw):
    c = lib.smtp_session(self.smtp_port, user,
                         lib.PASSWORDS[user] if user else None, **kw)
    self.addCleanup(c.close)
    return c

  def assert_code(self, reply, code, enh=None):
    self.assertEqual(reply.code, code, reply)
    if enh:
      self.assertTrue(reply.first[4:].startswith(enh),
                      "want %d %s, got %r" % (code, enh, reply.first))

  def to_data(self, c, sender="cam@example.com"):
    self.assert_code(c.cmd("MAIL FROM:<%s>" % sender), 250)
    self.assert_code(c.cmd("RCPT TO:<alerts@example.net>"), 250)
    self.assert_code(c.cmd("DATA"), 354)

  def assert_still_serves(self):
    self.assertTrue(self.gw.alive(), "camgate died:\n"
                    + lib.tail(self.gw.log()))
    tag = "alive-%d" % time.time_ns()
    mark = self.watcher.mark()
    r = lib.send_mail_raw(self.smtp_port, "cam-door",
                          lib.PASSWORDS["cam-door"],
                          lib.simple_message("Motion detected " + tag))
    self.assert_code(r, 250, "2.0.0")
    self.wait_event("cam-door", mark, lambda e: tag in e["title"])

  def no_event_with(self, tag, wait=4.0):
    self.assert_no_event(self.mark, lambda e: tag in e.get("title", "")
                         or tag in e.get("text", ""), wait)

  # ------------------------------------------------- greeting and EHLO
  def test_banner_and_ehlo(self):
    c = lib.SmtpClient(self.smtp_port)
    self.addCleanup(c.close)
    b = c.read_reply()
    self.assert_code(b, 220)
    self.assertTrue(b.first.startswith("220 " + lib.HOSTNAME), b)
    r = c.cmd("EHLO client.example.com")
    self.assert_code(r, 250)
    self.assertTrue(r.first.startswith("250-" + lib.HOSTNAME), r)
    ext = [t.upper() for t in r.texts[1:]]
    size = [e for e in ext if e.startswith("SIZE")]
    self.assertEqual(len(size), 1, ext)
    self.assertIn(int(size[0].split()[1]), (MAX_SIZE, 1000000), size)
    for want in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS",
                 "HELP"):
      self.assertIn(want, ext)
    auth = [e for e in ext if e.startswith("AUTH ")]
    self.assertEqual(len(auth), 1, ext)
    self.assertEqual(set(auth[0].split()[1:]), {"PLAIN", "LOGIN"})

  def test_helo_is_one_line_and_auth_after_helo(self):
    c = lib.SmtpClient(self.smtp_port)
    self.addCleanup(c.close)
    c.read_reply()
    r = c.cmd("HELO client.example.com")
    self.assert_code(r, 250)
    self.assertEqual(len(r.lines), 1, r)
    self.assert_code(c.login("cam-shed", lib.PASSWORDS["cam-shed"]), 235,
                     "2.7.0")

  def test_no_starttls_once_tls_is_on(self):
    c = self.session(None)
    self.assert_code(c.starttls(), 220)
    r = c.cmd("EHLO again.example.com")
    self.assertNotIn("STARTTLS", [t.upper() for t in r.texts])
    self.assertTrue(any(t.upper().startswith("AUTH") for t in r.texts))
    self.assert_code(c.cmd("STARTTLS"), 503)
    self.assert_code(c.cmd("NOOP"), 250)
    c2 = lib.SmtpClient(self.tls_port, tls_ctx=lib.client_tls_context())
    self.addCleanup(c2.close)
    self.assert_code(c2.read_reply(), 220)
    r = c2.cmd("EHLO tls.example.com")
    self.assertNotIn("STARTTLS", [t.upper() for t in r.texts])

  def test_auth_login_prompts(self):
    c = self.session(None)
    r = c.cmd("AUTH LOGIN")
    self.assertEqual(r.first, "334 VXNlcm5hbWU6")
    r = c.cmd("Y2FtLXNoZWQ=")
    self.assertEqual(r.first, "334 UGFzc3dvcmQ6")
    self.assert_code(c.cmd("czNjcmV0LXNoZWQ="), 235, "2.7.0")
    # RFC 4954 section 4: no second AUTH after a successful one
    self.assert_code(c.cmd("AUTH PLAIN AGNhbS1zaGVkAHMzY3JldC1zaGVk"), 503)

  # ------------------------------------------------------- auth errors
  def test_wrong_password_535(self):
    c = self.session(None)
    t0 = time.monotonic()
    r = c.login("cam-shed", "wrong-password", "PLAIN")
    self.assert_code(r, 535, "5.7.8")
    r2 = c.login("no-such-user", "wrong-password", "LOGIN")
    self.assert_code(r2, 535, "5.7.8")
    self.assertEqual(r.first, r2.first, "reply tells unknown user apart")
    self.assertLess(time.monotonic() - t0, 10)
    self.assert_code(c.cmd("NOOP"), 250)

  def test_mail_without_auth_530(self):
    c = self.session(None)
    self.assert_code(c.cmd("MAIL FROM:<cam@example.com>"), 530, "5.7.0")

  # ------------------------------------------------------------- sizes
  def test_size_parameter_over_max_552(self):
    c = self.session()
    since = self.gw.log_mark()
    for _ in range(3):
      self.assert_code(c.cmd("MAIL FROM:<cam@example.com> SIZE=%d"
                             % (MAX_SIZE * 2)), 552, "5.3.4")
    for bad in ("-1", "+5", "", "12x"):
      self.assert_code(c.cmd("MAIL FROM:<cam@example.com> SIZE=" + bad),
                       501, "5.5.4")
    self.assert_code(c.cmd("MAIL FROM:<cam@example.com> SIZE=1000"), 250)
    # Logged once per session, with the size and what to change.
    want = "size=%d max=%d msg=\"message announced over smtp.max_size" % (
        MAX_SIZE * 2, MAX_SIZE)
    self.assertTrue(self.gw.wait_log(want, 5, since),
                    lib.tail(self.gw.log(), 10))
    with open(self.gw.log_path, "rb") as f:
      f.seek(since)
      self.assertEqual(f.read().decode().count(want), 1)

  def test_message_over_max_size_552_after_dot(self):
    tag = "oversize-%d" % time.time_ns()
    c = self.session()
    self.to_data(c)
    body = (b"X" * 998 + b"\r\n") * (MAX_SIZE // 1000 + 200)
    c.send(lib.simple_message("Motion detected " + tag) + body + b".\r\n")
    r = c.read_reply(30)
    self.assert_code(r, 552, "5.3.4")
    self.assert_code(c.cmd("RSET"), 250)
    self.no_event_with(tag, 3)

  def test_message_of_too_many_parts_or_headers_554(self):
    """Within max_size, but built to make a MIME parser hoard memory:
    1,500 parts, or 12,000 folded header lines. Refused with 554 after
    the dot, logged, nothing stored, and the session goes on."""
    tag = "complex-%d" % time.time_ns()
    parts = b"".join(b"--b\r\nContent-Type: image/jpeg\r\n\r\nx\r\n"
                     for _ in range(1500))
    many_parts = (b"Subject: Motion " + tag.encode() + b"\r\n"
                  b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                  + parts + b"--b--\r\n")
    folded = (b"Subject: Motion " + tag.encode() + b"\r\n"
              + b"X-Pad: a\r\n" + b" continued\r\n" * 12000
              + b"\r\nbody\r\n")
    since = self.gw.log_mark()
    c = self.session()
    for msg in (many_parts, folded):
      self.to_data(c)
      c.send(msg + b".\r\n")
      self.assert_code(c.read_reply(30), 554, "5.6.0")
    self.assertTrue(self.gw.wait_log(r"camera=cam-shed boundaries=1501 "
                                     r"header_lines=\d+ .*more MIME parts "
                                     r"or header lines", 5, since))
    self.no_event_with(tag, 2)
    self.assert_still_serves()

  def test_long_subject_is_cut(self):
    tag = "longsubj-%d" % time.time_ns()
    subject = "Motion " + tag + " " + "é" * 3000
    c = self.session()
    self.to_data(c)
    c.send(("Subject: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "\r\nbody\r\n.\r\n" % subject).encode())
    self.assert_code(c.read_reply(30), 250)
    m, ev = self.wait_event("cam-shed", self.mark,
                            lambda e: tag in (e.get("title") or ""))
    self.assertLessEqual(len(ev["title"].encode()), 998)
    self.assertTrue(ev["title"].startswith("Motion " + tag + " éé"))

  def test_recipients_over_the_limit_452_session_goes_on(self):
    """150 pipelined RCPTs: the first 100 (smtp.max_recipients) get 250,
    the rest 452 (send them again later, RFC 5321 3.5.3), which does not
    count as an error that closes the session; the mail goes out."""
    tag = "many-rcpts-%d" % time.time_ns()
    c = self.session()
    self.assert_code(c.cmd("MAIL FROM:<cam@example.com>"), 250)
    c.send(b"".join(b"RCPT TO:<a%d@example.net>\r\n" % i
                    for i in range(150)))
    codes = [c.read_reply(10).code for _ in range(150)]
    self.assertEqual(codes, [250] * 100 + [452] * 50)
    self.assert_code(c.cmd("DATA"), 354)
    c.send(lib.simple_message("Motion detected " + tag) + b".\r\n")
    self.assert_code(c.read_reply(30), 250)
    self.wait_event("cam-shed", self.mark,
                    lambda e: tag in (e.get("title") or ""))

  # ---------------------------------------------------- command errors
  def test_unknown_command_500(self):
    c = self.session(None)
    self.assert_code(c.cmd("FROBNICATE now"), 500, "5.5.2")

  def test_bad_syntax_501(self):
    c = self.session()
    for line in ("MAIL FROM:cam@example.com>", "MAIL TO:<cam@example.com>",
                 "MAIL FROM:<cam@example.com"):
      with self.subTest(line=line):
        self.assert_code(c.cmd(line), 501, "5.5.4")
    c2 = self.session(None)
    self.assert_code(c2.cmd("EHLO"), 501, "5.5.4")

  def test_out_of_order_503(self):
    c = self.session()
    self.assert_code(c.cmd("DATA"), 503, "5.5.1")
    self.assert_code(c.cmd("RCPT TO:<alerts@example.net>"), 503, "5.5.1")
    self.assert_code(c.cmd("MAIL FROM:<cam@example.com>"), 250)
    self.assert_code(c.cmd("DATA"), 503, "5.5.1")

  def test_rset_noop_vrfy_help_quit(self):
    c = self.session()
    self.assert_code(c.cmd("RSET"), 250)
    self.assert_code(c.cmd("NOOP"), 250)
    self.assert_code(c.cmd("VRFY cam-shed"), 252)
    self.assertEqual(c.cmd("HELP").code // 100, 2)
    self.assert_code(c.cmd("QUIT"), 221)
    self.assertTrue(c.wait_eof(5), "no close after QUIT")

  def test_idle_timeout_closes(self):
    c = self.session(None)
    t0 = time.monotonic()
    closed = c.wait_eof(12)
    self.assertTrue(closed, "idle session not closed after idle_timeout 4s")
    self.assertGreater(time.monotonic() - t0, 2.5)
    if c.buf:
      self.assertTrue(c.buf.startswith(b"421"), c.buf[:100])

  # --------------------------------------------------- over-long lines
  def send_long(self, c, total, chunk=256 * 1024):
    """Sends `total` bytes without CRLF while reading; stops when the
    server answers or closes. Returns (reply bytes, closed)."""
    s = c.sock
    sent = 0
    got = b""
    closed = False
    deadline = time.monotonic() + 60
    s.setblocking(False)
    try:
      while time.monotonic() < deadline:
        r, w, _ = lib.select.select([s], [s] if sent < total else [], [], 1)
        if r:
          try:
            d = s.recv(65536)
          except (ConnectionResetError, BlockingIOError):
            d = b""
          if not d:
            closed = True
            break
          got += d
        if w and sent < total:
          try:
            sent += s.send(b"A" * min(chunk, total - sent))
          except (BrokenPipeError, ConnectionResetError):
            closed = True
          except BlockingIOError:
            pass
        if sent >= total and not r and got:
          break
    finally:
      s.setblocking(True)
    if not closed:
      closed = c.wait_eof(5)
    return c.buf + got, closed

  def test_long_line_outside_data_500_and_close(self):
    c = self.session(None)
    got, closed = self.send_long(c, 10 * 1024 * 1024)
    self.assertTrue(got.startswith(b"500 5.5.6"), got[:200])
    self.assertTrue(closed, "session not closed after a too long line")
    self.assert_still_serves()

  def test_line_just_over_64k_outside_data(self):
    c = self.session(None)
    got, closed = self.send_long(c, 64 * 1024 + 100)
    self.assertTrue(got.startswith(b"500 5.5.6"), got[:200])
    self.assertTrue(closed)

  def test_long_line_inside_data_500_and_close(self):
    tag = "longdata-%d" % time.time_ns()
    c = self.session()
    self.to_data(c)
    c.send(lib.simple_message("Motion detected " + tag)[:-2])
    got, closed = self.send_long(c, 10 * 1024 * 1024)
    self.assertTrue(got.startswith(b"500 5.5.6"), got[:200])
    self.assertTrue(closed, "session not closed after a too long line")
    self.no_event_with(tag, 2)
    self.assert_still_serves()

  def test_binary_garbage(self):
    rnd = random.Random(4711)
    for n in range(3):
      c = lib.SmtpClient(self.smtp_port)
      try:
        c.read_reply()
        junk = bytes(rnd.randrange(256) for _ in range(20000))
        junk = junk.replace(b"\x16", b"\x17")   # not a TLS record
        try:
          c.send(b"\x00\xff" + junk + b"\r\n" + junk[:500] + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
          pass
        c.wait_eof(3)
        for line in c.buf.split(b"\r\n"):
          if line:
            self.assertRegex(line, rb"^[2-5]\d\d[ -]", c.buf[:300])
      finally:
        c.close()
    self.assert_still_serves()

  # ------------------------------------------------- cut-off sessions
  def test_connection_dropped_mid_data_no_event(self):
    for how in ("close", "reset"):
      tag = "dropped-%s-%d" % (how, time.time_ns())
      c = self.session()
      self.to_data(c)
      msg = lib.simple_message("Motion detected " + tag)
      c.send(msg[:len(msg) // 2])
      time.sleep(0.2)
      getattr(c, how)()
    self.no_event_with("dropped-", 4)
    self.assert_still_serves()

  def test_quit_pipelined_with_dot_then_reset_delivers(self):
    tag = "pipelined-%d" % time.time_ns()
    c = self.session()
    self.to_data(c)
    c.send(lib.dotstuff(lib.simple_message("Motion detected " + tag))
           + b".\r\nQUIT\r\n")
    c.reset()
    self.wait_event("cam-shed", self.mark, lambda e: tag in e["title"],
                    timeout=15)

  # -------------------------------------------------------- spool full
  def test_spool_failure_451_then_success(self):
    tag = "spoolfail-%d" % time.time_ns()
    open(self.fail_flag, "w").close()
    self.addCleanup(lambda: os.path.exists(self.fail_flag)
                    and os.unlink(self.fail_flag))
    msg = lib.simple_message("Motion detected " + tag)
    r = lib.send_mail_raw(self.smtp_port, "cam-shed",
                          lib.PASSWORDS["cam-shed"], msg)
    self.assert_code(r, 451, "4.3.0")
    self.no_event_with(tag, 3)
    os.unlink(self.fail_flag)
    r = lib.send_mail_raw(self.smtp_port, "cam-shed",
                          lib.PASSWORDS["cam-shed"], msg)
    self.assert_code(r, 250, "2.0.0")
    self.assertRegex(r.first, r"queued as \S+")
    self.wait_event("cam-shed", self.mark, lambda e: tag in e["title"])

  def test_zz_no_secrets_in_log(self):
    lib.assert_no_secrets(self, self.gw.log(), LOGINS)
    self.assertNotIn("wrong-password", self.gw.log())


if __name__ == "__main__":
  unittest.main()
