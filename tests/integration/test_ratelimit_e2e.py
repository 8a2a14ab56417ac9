"""A storm through the real daemon: 100 alerts in 10 s from one camera
into camgate with an MQTT backend and two notification backends.

MQTT must get every alert: 100 events, 100 ONs and the final OFF. The
notification backends are e-mail backends pointed at a loopback port where
nothing listens, so nothing is sent and what the rate limiter decided
stays in the spool, which the test reads with sqlite3:

  mail    cooldown 4s, folding: a few notifications go out, and the ones
          after the first carry "+N more" counts that, with the events
          still held, add up to exactly the held ones;
  digest  rate 6/m, burst 2, summary: a burst, then summaries scheduled
          for later; every event is in exactly one pending delivery, as
          itself or in a fold count.

The camera is throttled and reported once in the log (a line per
notification that carries a count follows), and camgate is still up at
the end. Skipped when this build has no
e-mail backend.
"""

import os
import sqlite3
import time
import unittest

import camgate_testlib as lib

CAMERA = "cam-shed"
STORM = 100
STORM_S = 10.0


def storm_message(i):
  return lib.simple_message("Motion Detected %d" % i,
                            body="Motion detected, alarm %d." % i)


class RateLimitStorm(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("ratelimit")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port, dead_port = lib.free_ports(2)
    cfg = lib.base_config(cls.tmp, cls.smtp_port, cls.mosq.port,
                          [lib.camera(CAMERA)], hold="2s")
    for name in ("mail", "digest"):
      cfg["backends"].append({
          "name": name, "type": "email", "transport": "smtp",
          "host": lib.HOST, "port": dead_port, "tls": "none",
          "from": "camgate@example.com", "to": ["me@example.com"],
          "retry_initial": "1s", "retry_max": "2s"})
    cfg["rules"] = [{
        "name": "storm",
        "backends": ["ha",
                     {"backend": "mail", "cooldown": "4s"},
                     {"backend": "digest", "rate": "6/m", "burst": 2,
                      "summary": True}]}]
    cls.gw = lib.Camgate(cls.tmp, cfg)
    check = lib.run_camgate(["check", "-c", cls.gw.config_path])
    if check.returncode != 0 and "backend type" in check.stderr:
      raise unittest.SkipTest("no e-mail backend in this build")
    if check.returncode != 0:
      raise AssertionError("config refused:\n" + check.stderr)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()
    cls.mark = cls.watcher.mark()
    cls.replies = cls.send_storm()

  @classmethod
  def send_storm(cls):
    """STORM alerts over one session, spread over STORM_S seconds."""
    codes = []
    start = time.monotonic()
    with lib.smtp_session(cls.smtp_port, CAMERA,
                          lib.PASSWORDS[CAMERA]) as c:
      for i in range(STORM):
        due = start + i * STORM_S / STORM
        pause = due - time.monotonic()
        if pause > 0:
          time.sleep(pause)
        c.cmd("MAIL FROM:<cam@example.com>")
        c.cmd("RCPT TO:<alerts@example.net>")
        c.cmd("DATA")
        c.send(lib.dotstuff(storm_message(i)) + b".\r\n")
        codes.append(c.read_reply().code)
    return codes

  def setUp(self):
    self.assertTrue(self.gw.alive(), "camgate is not running:\n"
                    + lib.tail(self.gw.log()))

  def rows(self, backend):
    """(delivery id, state, folded, folded_since, next_try, recv_time)
    of backend's deliveries, oldest event first."""
    path = os.path.join(self.tmp, "var", "spool.db")
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
      return db.execute(
          "SELECT d.id, d.state, d.folded, d.folded_since, d.next_try,"
          " e.recv_time FROM deliveries d JOIN events e"
          " ON e.id = d.event_id WHERE d.backend = ?"
          " ORDER BY d.event_id", (backend,)).fetchall()
    finally:
      db.close()

  def test_1_every_alert_stored(self):
    self.assertEqual(self.replies, [250] * STORM)
    self.assertEqual(len(self.rows("ha")), STORM)

  def test_2_mqtt_gets_every_on_and_the_off(self):
    topic = "camgate/%s/motion" % CAMERA
    events = self.watcher.wait_count("camgate/%s/event" % CAMERA, STORM,
                                     timeout=30, since=self.mark)
    self.assertEqual(len(events), STORM)
    ons = self.watcher.wait_count(topic, STORM, lambda m: m.payload == b"ON",
                                  timeout=30, since=self.mark)
    self.assertEqual(len(ons), STORM)
    off = lib.wait_until(
        lambda: [m for m in self.watcher.all(topic, self.mark)
                 if m.payload == b"OFF"], 15)
    self.assertTrue(off, "no OFF after the storm")
    lib.wait_until(lambda: False, 1.0)
    last = self.watcher.all(topic, self.mark)[-1]
    self.assertEqual(last.payload, b"OFF")
    self.assertTrue(last.retain)

  def test_3_cooldown_folds_into_the_next(self):
    rows = self.rows("mail")
    self.assertEqual(len(rows), STORM)
    sent = [r for r in rows if r[1] != 3]
    held = [r for r in rows if r[1] == 3]
    # One every 4 s over 10 s: the first, then about two more.
    self.assertTrue(2 <= len(sent) <= 4, sent)
    self.assertNotEqual(rows[0][1], 3)
    self.assertEqual(rows[0][2], 0)
    trailing = [r for r in held if r[0] > sent[-1][0]]
    self.assertEqual(sum(r[2] for r in sent) + len(trailing), len(held))
    # "since" is when the first of the folded ones was stored (the
    # writer's clock, a moment after the camera's 250 was earned).
    for prev, cur in zip(sent, sent[1:]):
      first_held = next(r for r in rows if r[0] > prev[0])
      self.assertGreater(cur[2], 0)
      self.assertAlmostEqual(cur[3], first_held[5], delta=2000)
    # When the camera is quiet again, the next alert goes out with the
    # rest of the count.
    lib.wait_until(lambda: False, 4.5)
    r = lib.send_mail_raw(self.smtp_port, CAMERA, lib.PASSWORDS[CAMERA],
                          storm_message(STORM))
    self.assertEqual(r.code, 250)
    last = self.rows("mail")[-1]
    self.assertNotEqual(last[1], 3)
    self.assertEqual(last[2], len(trailing))
    if trailing:
      self.assertAlmostEqual(last[3], trailing[0][5], delta=2000)

  def test_4_summaries_account_for_every_event(self):
    rows = self.rows("digest")
    out = [r for r in rows if r[1] != 3]
    # The burst of two, then summaries: few deliveries, and each event is
    # in exactly one of them.
    self.assertTrue(3 <= len(out) <= 5, out)
    self.assertEqual(sum(1 + r[2] for r in out), len(rows))
    self.assertEqual(out[:2], rows[:2])
    self.assertEqual([r[2] for r in out[:2]], [0, 0])
    summaries = out[2:]
    for s in summaries:
      self.assertGreater(s[4], s[5] + 1000, "a summary is due later")
    self.assertGreater(summaries[0][2], 0)

  def test_5_storm_reported_once(self):
    log = self.gw.log()
    holds = [l for l in log.splitlines()
             if "holding notifications back" in l]
    mail = [l for l in holds if "backend=mail " in l]
    digest = [l for l in holds if "backend=digest " in l]
    self.assertEqual(len(mail), 1, mail)
    self.assertEqual(len(digest), 1, digest)
    carried = [l for l in log.splitlines()
               if "carries what was held back" in l and "backend=mail " in l]
    self.assertTrue(carried)
    self.assertIn("reason=cooldown", mail[0])
    self.assertIn("reason=rate", digest[0])
    self.assertIn("camera=%s" % CAMERA, mail[0])
    self.assertNotIn("level=error sub=ratelimit", log)


if __name__ == "__main__":
  unittest.main()
