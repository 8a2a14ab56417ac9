"""Limits that keep one misbehaving host from taking camgate from the
cameras: sessions per address, and password checks that do not stall the
event loop."""

import base64
import socket
import time
import unittest

import camgate_testlib as lib


def connect_from(port, source, timeout=10):
  """A raw client socket bound to the loopback address source."""
  s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s.settimeout(timeout)
  s.bind((source, 0))
  s.connect((lib.HOST, port))
  return s


def read_line(sock, timeout=10):
  """One reply line (without CRLF), or b"" when the server closed."""
  buf = b""
  deadline = time.monotonic() + timeout
  while b"\r\n" not in buf and time.monotonic() < deadline:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
      d = sock.recv(4096)
    except socket.timeout:
      break
    if not d:
      break
    buf += d
  return buf.split(b"\r\n", 1)[0]


class PerAddress(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("limits")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.mosq = lib.Mosquitto(cls.tmp)
    cls.mosq.start()
    cls.addClassCleanup(cls.mosq.stop)
    cls.port = lib.free_port()
    cls.cfg = lib.base_config(cls.tmp, cls.port, cls.mosq.port,
                              [lib.camera("cam-shed")], idle_timeout="20s")
    cls.cfg["smtp"]["max_sessions"] = 30
    cls.cfg["smtp"]["max_sessions_per_address"] = 5
    cls.gw = lib.Camgate(cls.tmp, cls.cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def test_one_address_cannot_take_every_session(self):
    """40 idle connections from 127.0.0.1: 5 get the banner, the rest
    421 4.7.0, with one log line for them all; another address still gets
    in."""
    mark = self.gw.log_mark()
    socks, banners = [], []
    try:
      for _ in range(40):
        s = connect_from(self.port, "127.0.0.1")
        socks.append(s)
        banners.append(read_line(s))
      ok = [b for b in banners if b.startswith(b"220 ")]
      refused = [b for b in banners if b.startswith(b"421 ")]
      self.assertEqual(len(ok), 5, banners)
      self.assertEqual(len(refused), 35, banners)
      self.assertEqual(refused[0],
                       b"421 4.7.0 Too many connections from your address")
      other = connect_from(self.port, "127.0.0.2")
      socks.append(other)
      self.assertTrue(read_line(other).startswith(b"220 "))
      self.assertTrue(self.gw.wait_log("too many connections from one "
                                       "address", 5, mark))
      log = self.gw.log()[mark:]
      self.assertEqual(log.count("too many connections from one address"),
                       1, lib.tail(log, 10))
    finally:
      for s in socks:
        s.close()
    # The slots come back once the connections are gone.
    self.assertTrue(lib.wait_until(
        lambda: read_line(self._fresh(socks)).startswith(b"220 "), 10,
        interval=0.2))
    for s in socks:
      s.close()

  def _fresh(self, socks):
    s = connect_from(self.port, "127.0.0.1")
    socks.append(s)
    return s


class AuthOffLoop(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("authloop")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.mosq = lib.Mosquitto(cls.tmp)
    cls.mosq.start()
    cls.addClassCleanup(cls.mosq.stop)
    cls.port = lib.free_port()
    cls.cfg = lib.base_config(cls.tmp, cls.port, cls.mosq.port,
                              [lib.camera("cam-shed")], idle_timeout="20s",
                              level="info")
    cls.gw = lib.Camgate(cls.tmp, cls.cfg)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def test_wrong_passwords_do_not_stall_other_sessions(self):
    """30 wrong logins from 30 addresses in flight at once (each a
    yescrypt check of tens of milliseconds): a NOOP on another session is
    answered within 100 ms all the same."""
    bad = []
    try:
      for i in range(30):
        s = connect_from(self.port, "127.0.1.%d" % (i + 1))
        bad.append(s)
        self.assertTrue(read_line(s).startswith(b"220 "))
        s.sendall(b"EHLO x\r\n")
      for s in bad:
        deadline = time.monotonic() + 10
        buf = b""
        while b"250 " not in buf and time.monotonic() < deadline:
          buf += s.recv(4096)
      with lib.smtp_session(self.port) as good:
        for i, s in enumerate(bad):
          who = "cam-shed" if i % 2 else "nobody"
          tok = base64.b64encode(("\0%s\0wrong-%d" % (who, i)).encode())
          s.sendall(b"AUTH PLAIN " + tok + b"\r\n")
        time.sleep(0.01)
        start = time.monotonic()
        r = good.cmd("NOOP")
        took = time.monotonic() - start
        self.assertEqual(r.code, 250)
        self.assertLess(took, 0.1, "NOOP took %.0f ms" % (took * 1000))
      for s in bad:
        self.assertTrue(read_line(s).startswith(b"535 "))
    finally:
      for s in bad:
        s.close()
    with lib.smtp_session(self.port, "cam-shed",
                          lib.PASSWORDS["cam-shed"]) as s:
      self.assertEqual(s.cmd("NOOP").code, 250)


if __name__ == "__main__":
  unittest.main()
