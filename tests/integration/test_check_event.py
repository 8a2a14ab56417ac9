"""`camgate check -c FILE --event ...` on the rules example of README.md
(taken from the README itself, so the example stays true): the four
wishes of the example hold, rule by rule and route by route, with each
backend's merged settings; bad --event arguments exit 2. Skipped when the
build lacks a backend type the example uses."""

import os
import re
import unittest

import camgate_testlib as lib

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                      "..", "README.md")


def readme_rules_yaml():
  """The first ```yaml block after the "Rules and rate limits" heading."""
  with open(README) as f:
    text = f.read()
  at = text.index("### Rules and rate limits")
  m = re.compile(r"```yaml\n(.*?)```", re.S).search(text, at)
  return m.group(1)


class CheckEvent(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("check-event")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.path = os.path.join(cls.tmp, "camgate.yaml")
    with open(cls.path, "w") as f:
      f.write(readme_rules_yaml())
    r = lib.run_camgate(["check", "-c", cls.path])
    if r.returncode != 0 and "backend type" in r.stderr:
      raise unittest.SkipTest("a backend type of the example is missing")
    if r.returncode != 0:
      raise AssertionError("README example refused:\n" + r.stderr)

  def check(self, *event):
    r = lib.run_camgate(["check", "-c", self.path, "--event"] + list(event))
    self.assertEqual(r.returncode, 0, r.stderr)
    return r.stdout

  def routes(self, out):
    return {m.group(1): m.group(0) for m in
            re.finditer(r"^route (\S+) .*$", out, re.M)}

  def test_person_at_the_door_any_time(self):
    for when in ("2026-12-03T12:00", "2026-12-03T23:30", "2026-12-04T03:00"):
      with self.subTest(time=when):
        out = self.check("camera=door", "kind=person", "source=smtp",
                         "time=" + when)
        self.assertIn('rule "person at the door" matches -> phone,email\n',
                      out)
        routes = self.routes(out)
        self.assertEqual(sorted(routes), ["email", "homeassistant",
                                          "phone"])
        self.assertIn("type=ntfy priority=high", routes["phone"])
        self.assertIn("rule=\"person at the door\"", routes["phone"])

  def test_garden_motion_home_assistant_only(self):
    out = self.check("camera=garden", "kind=motion")
    self.assertIn('rule "garden motion" matches -> drop\n', out)
    self.assertIn('rule "the rest" not reached\n', out)
    self.assertEqual(list(self.routes(out)), ["homeassistant"])
    self.assertIn("limits=none", self.routes(out)["homeassistant"])

  def test_nothing_to_the_phone_at_night(self):
    for when, phone in (("2026-12-03T22:59", True),
                        ("2026-12-03T23:00", False),
                        ("2026-12-04T06:29", False),
                        ("2026-12-04T06:30", True),
                        # Across the DST change in Europe/Berlin.
                        ("2026-03-29T03:30", False),
                        ("2026-10-25T02:30", False)):
      with self.subTest(time=when):
        out = self.check("camera=door", "kind=motion", "time=" + when)
        self.assertEqual("phone" in self.routes(out), phone, out)
        self.assertIn("email", self.routes(out))
        self.assertIn('rule "quiet hours" %s' % ("no (time)" if phone
                                                 else "matches"), out)

  def test_one_email_per_camera_per_5_minutes(self):
    out = self.check("camera=door", "kind=person")
    self.assertRegex(self.routes(out)["email"],
                     r"type=email .*cooldown=5m rate=- burst=- "
                     r"daily_cap=- summary=no$")
    self.assertRegex(self.routes(out)["phone"], r"cooldown=- ")

  def test_event_line(self):
    out = self.check("camera=door", "kind=person", "time=2026-12-03T23:30",
                     "snapshot=yes", "label.channel=D4", "state=start")
    first = out.splitlines()[0]
    self.assertEqual(first, 'event camera=door camera_name="door" '
                     'kind=person source=smtp state=start '
                     'time=2026-12-03T23:30:00+01 zone=Europe/Berlin '
                     'snapshot=yes label.channel="D4"')

  def test_unknown_camera_is_warned_about(self):
    path = os.path.join(self.tmp, "with-cameras.yaml")
    with open(path, "w") as f:
      f.write(readme_rules_yaml() + "\ncameras:\n  - id: door\n"
              "    allow_from: [192.0.2.10]\n")
    warn = "warning: %s: cameras: no camera has the id %s"
    for camera, known in (("door", True), ("gate", False)):
      with self.subTest(camera=camera):
        r = lib.run_camgate(["check", "-c", path, "--event",
                             "camera=" + camera, "kind=person"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(warn % (path, camera) in r.stdout, not known,
                         r.stdout)
        self.assertIn("route homeassistant", r.stdout)

  def test_misspelt_kinds_are_warned_about(self):
    path = os.path.join(self.tmp, "kinds.yaml")
    with open(path, "w") as f:
      f.write("smtp:\n  kinds:\n    - {pattern: 'Bird', kind: bird}\n"
              "cameras:\n  - id: door\n    allow_from: [192.0.2.10]\n"
              "    kinds: [motion, persn, bird]\n"
              "backends:\n  - {name: ha, type: mqtt}\n"
              "rules:\n  - name: typo\n"
              "    match: {kind: [person, persn, 'veh*', bird]}\n"
              "    backends: [ha]\n")
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 0, r.stderr)
    warned = [l for l in r.stdout.splitlines() if "no alert has the kind" in l]
    self.assertEqual(len(warned), 2, r.stdout)
    self.assertIn("%s: rules[0].match.kind[1]: no alert has the kind "
                  "\"persn\"" % path, warned[0])
    self.assertIn("%s: cameras[0].kinds[1]: no alert has the kind \"persn\""
                  % path, warned[1])

  def test_bad_event_exits_2(self):
    for args in (["kind=person"], ["camera=door", "colour=red"],
                 ["camera=door", "time=yesterday"],
                 ["camera=door", "state=maybe"], ["camera=door", "oops"]):
      with self.subTest(args=args):
        r = lib.run_camgate(["check", "-c", self.path, "--event"] + args)
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("--event", r.stderr)


if __name__ == "__main__":
  unittest.main()
