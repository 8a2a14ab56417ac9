"""README.md's "Try it" as a newcomer runs it: the example config as
shipped (only its SMTP and MQTT ports and its spool moved to free ones),
then the README's own swaks and curl commands, taken from the README and
run as written, with the sample mails in config/samples/. Each alert must
reach MQTT as the README says: the event JSON, ON, and the JPEG."""

import json
import os
import re
import shlex
import subprocess
import unittest

import camgate_testlib as lib

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def readme_send_commands():
  """The commands of the README's sh block that sends the sample alerts,
  continuation lines joined."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  at = text.index("Then send a sample alert")
  block = re.search(r"```sh\n(.*?)```", text[at:], re.S).group(1)
  joined = block.replace("\\\n", " ")
  return [shlex.split(l) for l in joined.splitlines() if l.strip()]


class ReadmeTryIt(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("try-it")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    lib.start_broker(cls)
    cls.smtp_port = lib.free_port()
    with open(os.path.join(ROOT, "config", "camgate.example.yaml")) as f:
      cfg = f.read()
    for old, new in (("listen: 127.0.0.1:2525",
                      "listen: 127.0.0.1:%d" % cls.smtp_port),
                     ("port: 1883", "port: %d" % cls.mosq.port),
                     ("path: ./var",
                      "path: %s" % os.path.join(cls.tmp, "var"))):
      assert cfg.count(old) == 1, "example config has no single %r" % old
      cfg = cfg.replace(old, new)
    cls.gw = lib.Camgate(cls.tmp, cfg, smtp_port=cls.smtp_port)
    cls.addClassCleanup(cls.gw.kill9)
    cls.gw.start()

  def test_readme_commands_deliver_the_samples(self):
    cmds = readme_send_commands()
    self.assertEqual([c[0] for c in cmds], ["swaks", "curl"])
    for cmd in cmds:
      sample = next(a.lstrip("@") for a in cmd
                    if a.lstrip("@").startswith("config/samples/"))
      with self.subTest(tool=cmd[0], sample=sample):
        argv = [a.replace("127.0.0.1:2525", "127.0.0.1:%d" % self.smtp_port)
                for a in cmd]
        mark = self.watcher.mark()
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0,
                         lib.tail((p.stdout + p.stderr).decode(), 10))
        m = self.watcher.wait_for("camgate/demo/event", None, 20, mark)
        self.assertIsNotNone(m, lib.tail(self.gw.log(), 30))
        ev = json.loads(m.payload)
        self.assertEqual(ev["camera"], "demo")
        with open(os.path.join(ROOT, sample), "rb") as f:
          first = lib.eml_jpegs(f.read())[0]
        self.assertEqual(ev["snapshot_size"], len(first))
        snap = self.watcher.wait_for("camgate/demo/snapshot", None, 20, mark)
        self.assertIsNotNone(snap)
        self.assertEqual(snap.payload, first)
        state = self.watcher.wait_for(
            lambda t: t.startswith("camgate/demo/") and
            t.rsplit("/", 1)[1] in ("motion", "person", "alert"),
            lambda x: x.payload == b"ON", 20, mark)
        self.assertIsNotNone(state, "no ON for the alert's kind")


if __name__ == "__main__":
  unittest.main()
