"""camgate's command line: --version, --help, passwd, check, run's exit
codes (0 ok, 1 runtime failure, 2 bad usage or bad config)."""

import os
import re
import socket
import time
import unittest

import camgate_testlib as lib


class Cli(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("cli")
    cls.cert, cls.key = lib.make_cert(cls.tmp)
    cls.smtp_port, cls.tls_port, cls.mqtt_port = lib.free_ports(3)

  @classmethod
  def tearDownClass(cls):
    lib.remove_tmpdir(cls.tmp)

  def write(self, name, text):
    path = os.path.join(self.tmp, name)
    with open(path, "w") as f:
      f.write(text)
    return path

  def good_config(self):
    return lib.base_config(
        self.tmp, self.smtp_port, self.mqtt_port,
        [lib.camera("cam-shed"),
         lib.camera("nvr-yard", name="Yard NVR",
                    channel={"from": "body", "pattern": lib.NVR_CHANNEL_RE}),
         lib.camera("reolink", password=None, allow_from=["127.0.0.1"],
                    channel={"from": "rcpt", "pattern": "^([^@]+)@",
                             "id": "{1}"})],
        tls=(self.cert, self.key), tls_port=self.tls_port)

  # ------------------------------------------------------------ basics
  def test_version(self):
    r = lib.run_camgate(["--version"])
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertEqual(r.stdout.strip(), "camgate 0.1.0")

  def test_help(self):
    r = lib.run_camgate(["--help"])
    self.assertEqual(r.returncode, 0, r.stderr)
    for word in ("run", "check", "passwd"):
      self.assertIn(word, r.stdout)

  def test_bad_usage_exits_2(self):
    for args in ([], ["frobnicate"], ["--frobnicate"], ["run"],
                 ["check"], ["run", "-c"]):
      with self.subTest(args=args):
        r = lib.run_camgate(args, timeout=10)
        self.assertEqual(r.returncode, 2, (r.stdout, r.stderr))
        self.assertTrue(r.stderr.strip(), "no message on stderr")

  # ------------------------------------------------------------ passwd
  def test_passwd_from_stdin(self):
    r1 = lib.run_camgate(["passwd"], input="s3cret-shed\n")
    r2 = lib.run_camgate(["passwd"], input="s3cret-shed\n")
    for r in (r1, r2):
      self.assertEqual(r.returncode, 0, r.stderr)
      self.assertRegex(r.stdout.strip(), r"^\$y\$[./A-Za-z0-9]+\$"
                       r"[./A-Za-z0-9]+\$[./A-Za-z0-9]+$")
      self.assertNotIn("s3cret-shed", r.stdout + r.stderr)
    h1, h2 = r1.stdout.strip(), r2.stdout.strip()
    self.assertNotEqual(h1, h2, "hashes must be salted")
    if lib.crypt_fn() is not None:
      # The trailing newline is not part of the password.
      self.assertEqual(lib.crypt_fn()("s3cret-shed", h1), h1)
      self.assertNotEqual(lib.crypt_fn()("s3cret-shed\n", h1), h1)

  def test_passwd_without_newline(self):
    r = lib.run_camgate(["passwd"], input="no-newline")
    self.assertEqual(r.returncode, 0, r.stderr)
    h = r.stdout.strip()
    if lib.crypt_fn() is not None:
      self.assertEqual(lib.crypt_fn()("no-newline", h), h)

  # ------------------------------------------------------------- check
  def test_check_good_config(self):
    cfg = self.good_config()
    path = self.write("good.yaml", lib.to_yaml(cfg))
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 0, r.stderr)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    # A closing "config FILE ok" line is tolerated.
    if lines and lines[-1].startswith("config "):
      lines = lines[:-1]
    firsts = []
    for l in lines:
      w = [p for p in ("listen", "camera", "backend", "rule")
           if l.startswith(p)]
      self.assertTrue(w, "unexpected line %r" % l)
      firsts.append(w[0])
    self.assertEqual(firsts.count("listen"), 2, lines)
    self.assertEqual(firsts.count("camera"), 3, lines)
    self.assertEqual(firsts.count("backend"), 1, lines)
    self.assertEqual(firsts.count("rule"), 1, lines)
    self.assertIn(str(self.smtp_port), r.stdout)
    self.assertIn(str(self.tls_port), r.stdout)
    for cam in cfg["cameras"]:
      self.assertIn(cam["id"], r.stdout)
      if "smtp" in cam:
        self.assertNotIn(cam["smtp"]["password_hash"], r.stdout + r.stderr,
                         "secret printed by check")

  def check_errors(self, text, name="bad.yaml"):
    path = self.write(name, text)
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 2, (r.stdout, r.stderr))
    errs = []
    for l in r.stderr.splitlines():
      m = re.match(r"^(.*?):(\d+):(\d+): ([^:]+): (.+)$", l)
      if m and m.group(1) == path:
        errs.append((int(m.group(2)), int(m.group(3)), m.group(4).strip(),
                     m.group(5)))
    return errs, r

  def good_lines(self):
    return lib.to_yaml(self.good_config()).splitlines()

  def line_of(self, lines, prefix):
    for i, l in enumerate(lines, 1):
      if l.strip().startswith(prefix):
        return i
    raise AssertionError(prefix)

  def test_check_unknown_key(self):
    lines = self.good_lines()
    n = self.line_of(lines, "hostname:")
    indent = len(lines[n - 1]) - len(lines[n - 1].lstrip())
    lines.insert(n, " " * indent + "hostnmae: typo.example.net")
    errs, r = self.check_errors("\n".join(lines) + "\n")
    self.assertIn((n + 1, indent + 1), [(e[0], e[1]) for e in errs],
                  "want %s:%d:%d: hostnmae: ...; got %r"
                  % ("bad.yaml", n + 1, indent + 1, r.stderr))
    self.assertTrue(any("hostnmae" in e[2] for e in errs), errs)

  def test_check_bad_values_all_reported(self):
    lines = self.good_lines()
    n1 = self.line_of(lines, "max_size:")
    lines[n1 - 1] = lines[n1 - 1].split(":")[0] + ": lots"
    n2 = self.line_of(lines, "idle_timeout:")
    lines[n2 - 1] = lines[n2 - 1].split(":")[0] + ": soon"
    errs, r = self.check_errors("\n".join(lines) + "\n")
    got = {(e[0], e[2].split(".")[-1]) for e in errs}
    self.assertIn((n1, "max_size"), got, r.stderr)
    self.assertIn((n2, "idle_timeout"), got, r.stderr)
    self.assertNotIn("Traceback", r.stderr)

  def test_check_port_out_of_range(self):
    lines = self.good_lines()
    n = self.line_of(lines, "port:")
    lines[n - 1] = lines[n - 1].split(":")[0] + ": 99999"
    errs, r = self.check_errors("\n".join(lines) + "\n")
    self.assertIn(n, [e[0] for e in errs], r.stderr)

  def test_check_rule_names_unknown_backend(self):
    text = lib.to_yaml(self.good_config()).replace("- ha\n", "- nowhere\n")
    errs, r = self.check_errors(text)
    self.assertTrue(errs, r.stderr)
    self.assertIn("nowhere", r.stderr)

  def test_check_yaml_syntax_error(self):
    text = lib.to_yaml(self.good_config()) + "smtp: [unclosed\n"
    errs, r = self.check_errors(text)
    self.assertTrue(errs, "no FILE:LINE:COL error: %r" % r.stderr)

  def test_check_missing_file(self):
    path = os.path.join(self.tmp, "absent.yaml")
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 2, r.stderr)
    self.assertIn(path, r.stderr)

  # --------------------------------------------------------------- run
  def test_run_bad_config_exits_2(self):
    lines = self.good_lines()
    n = self.line_of(lines, "max_size:")
    lines[n - 1] = lines[n - 1].split(":")[0] + ": lots"
    path = self.write("badrun.yaml", "\n".join(lines) + "\n")
    r = lib.run_camgate(["run", "-c", path], timeout=15)
    self.assertEqual(r.returncode, 2, r.stderr)
    self.assertRegex(r.stderr, re.escape(path) + r":%d:\d+: " % n)

  def test_run_refuses_loose_key_mode(self):
    loose = os.path.join(self.tmp, "loose-key.pem")
    with open(self.key, "rb") as f, open(loose, "wb") as g:
      g.write(f.read())
    os.chmod(loose, 0o644)
    cfg = self.good_config()
    cfg["tls"]["key"] = loose
    path = self.write("loose.yaml", lib.to_yaml(cfg))
    r = lib.run_camgate(["run", "-c", path], timeout=15)
    self.assertIn(r.returncode, (1, 2), r.stderr)
    self.assertRegex(r.stderr, r"(loose-key\.pem|tls\.key)")
    self.assertRegex(r.stderr, r"(600|0644|mode)")

  def test_run_port_in_use_exits_1(self):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    busy.bind((lib.HOST, 0))
    busy.listen(1)
    try:
      cfg = lib.base_config(self.tmp, busy.getsockname()[1], self.mqtt_port,
                            [lib.camera("cam-shed")])
      path = self.write("busy.yaml", lib.to_yaml(cfg))
      r = lib.run_camgate(["run", "-c", path], timeout=15)
      self.assertEqual(r.returncode, 1, r.stderr)
      self.assertIn(str(busy.getsockname()[1]), r.stderr)
    finally:
      busy.close()


if __name__ == "__main__":
  unittest.main()
