#!/usr/bin/python3
"""bench/loadgen keeps working: 200 alert mails over 5 sessions against the
real camgate and Mosquitto, end to end (every one must get its 250 and
arrive on camgate/+/event). Quick, and without the slow bench peers.

Environment: CAMGATE_BIN, CAMGATE_LOADGEN (the loadgen binary).
"""

import os
import subprocess
import unittest

import camgate_testlib as lib


class LoadgenSmoke(unittest.TestCase):
  def setUp(self):
    self.loadgen = os.environ.get("CAMGATE_LOADGEN")
    if not self.loadgen or not os.access(self.loadgen, os.X_OK):
      self.fail("CAMGATE_LOADGEN is not set to the loadgen binary")
    self.tmp = lib.make_tmpdir("loadgen")
    self.mosq = lib.Mosquitto(self.tmp)
    self.mosq.start()
    self.smtp_port = lib.free_port()
    cams = [lib.camera("cam%02d" % i, password="smoke-pass",
                       user="bench%02d" % i) for i in range(5)]
    cfg = lib.base_config(self.tmp, self.smtp_port, self.mosq.port, cams,
                          level="warn")
    self.gw = lib.Camgate(self.tmp, cfg)
    self.gw.start()

  def tearDown(self):
    self.gw.stop()
    self.mosq.stop()
    lib.remove_tmpdir(self.tmp)

  def test_200_messages_5_sessions_end_to_end(self):
    r = subprocess.run(
        [self.loadgen, "-p", str(self.smtp_port), "-u", "bench",
         "--users", "5", "-w", "smoke-pass", "-c", "5", "-n", "200",
         "-s", "20K", "-d", "60", "-m", str(self.mosq.port),
         "--wait", "30", "-q"],
        capture_output=True, text=True, timeout=180)
    lines = [l for l in r.stdout.splitlines() if l.startswith("result ")]
    self.assertEqual(len(lines), 1, "no result line: %r %r"
                     % (r.stdout, r.stderr[-2000:]))
    kv = dict(x.split("=", 1) for x in lines[0].split()[1:])
    msg = "%s\n%s\n%s" % (lines[0], r.stderr[-2000:],
                          lib.tail(self.gw.log()))
    self.assertEqual(kv["errors"], "0", msg)
    self.assertEqual(kv["sent"], "200", msg)
    self.assertEqual(kv["ok"], "200", msg)
    self.assertEqual(kv["arrived"], "200", msg)
    self.assertEqual(kv["dup"], "0", msg)
    self.assertGreater(float(kv["msgs_per_s"]), 0, msg)
    self.assertEqual(r.returncode, 0, msg)


if __name__ == "__main__":
  unittest.main()
