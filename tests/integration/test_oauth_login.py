"""`camgate oauth login BACKEND -c FILE` against a local fake OAuth server,
from a terminal with no browser: the Microsoft device code flow
(authorization_pending, slow_down, expired_token, access_denied), Google's
authorization code with PKCE and a pasted-back redirect, and app-only
client credentials. The token file must come out mode 0600 with the
tokens the server issued, and no token may reach the output."""

import json
import os
import re
import stat
import subprocess
import time
import unittest
import urllib.request

import camgate_testlib as lib
import email_peers as peers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
  def redirect_request(self, *a, **kw):
    return None


class OAuthLogin(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("oauth")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    cls.fake = peers.FakeOAuth().start()
    cls.addClassCleanup(cls.fake.stop)

  def setUp(self):
    self.fake.pending_polls = 1
    self.fake.slow_down_once = False
    self.fake.device_outcome = "ok"

  def write_config(self, name, oauth, transport="smtp_xoauth2"):
    token = os.path.join(self.tmp, name + ".token")
    if os.path.exists(token):
      os.unlink(token)
    o = {"client_id": "client-" + name,
         "token_url": self.fake.url("/t/oauth2/v2.0/token"),
         "device_code_url": self.fake.url("/t/oauth2/v2.0/devicecode"),
         "auth_url": self.fake.url("/authorize"), "token_file": token}
    o.update(oauth)
    if o.get("token_file") is None:
      o.pop("token_file")
    cfg = {"spool": {"path": os.path.join(self.tmp, "var")},
           "smtp": {"listen": "127.0.0.1:%d" % lib.free_port()},
           "cameras": [{"id": "c1"}],
           "backends": [{"name": name, "type": "email",
                         "transport": transport, "from": "me@example.com",
                         "to": ["you@example.net"], "host": "127.0.0.1",
                         "oauth": o}],
           "rules": [{"name": "all", "backends": [name]}]}
    path = os.path.join(self.tmp, name + ".yaml")
    with open(path, "w") as f:
      f.write(lib.to_yaml(cfg))
    return path, token

  def login(self, name, path, input=None, timeout=60):
    return lib.run_camgate(["oauth", "login", name, "-c", path],
                           input=input, timeout=timeout)

  def assert_token_file(self, token, client):
    st = os.stat(token)
    self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
    with open(token) as f:
      t = json.load(f)
    self.assertTrue(self.fake.access_ok(t["access_token"]))
    self.assertEqual(self.fake.refresh.get(t["refresh_token"]), client)
    self.assertGreater(t["expires_at"], time.time() + 3000)
    self.assertIs(t["needs_login"], False)
    return t

  def assert_no_tokens(self, text):
    self.assertNotRegex(text, r"\bat-|\brt-|\bdc-|s3cret-app")

  # ----------------------------------------------------------- device
  def test_device_flow_pending_then_success(self):
    self.fake.pending_polls = 2
    path, token = self.write_config("ms", {})
    t0 = time.monotonic()
    r = self.login("ms", path)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    self.assertIn(self.fake.url("/devicelogin"), r.stdout)
    self.assertIn("ABCD-1234", r.stdout)
    self.assertGreaterEqual(time.monotonic() - t0, 2.5)   # 3 polls, 1 s
    self.assert_token_file(token, "client-ms")
    self.assert_no_tokens(r.stdout + r.stderr)
    dc = [f for p, f in self.fake.requests if p.endswith("/devicecode")][-1]
    self.assertEqual(dc["scope"],
                     "https://outlook.office.com/SMTP.Send offline_access")

  def test_device_flow_slow_down(self):
    self.fake.pending_polls = 0
    self.fake.slow_down_once = True
    path, token = self.write_config("slow", {})
    t0 = time.monotonic()
    r = self.login("slow", path)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    # 1 s, then slow_down: 1 + 5 s before the next poll.
    self.assertGreaterEqual(time.monotonic() - t0, 6.5)
    self.assert_token_file(token, "client-slow")

  def test_device_flow_denied(self):
    self.fake.device_outcome = "denied"
    path, token = self.write_config("denied", {})
    r = self.login("denied", path)
    self.assertEqual(r.returncode, 1)
    self.assertIn("declined", r.stderr)
    self.assertFalse(os.path.exists(token))

  def test_device_flow_expired(self):
    self.fake.device_outcome = "expired"
    path, token = self.write_config("expired", {})
    r = self.login("expired", path)
    self.assertEqual(r.returncode, 1)
    self.assertIn("expired", r.stderr)
    self.assertFalse(os.path.exists(token))

  def test_graph_scope(self):
    path, token = self.write_config("graph", {}, transport="graph")
    r = self.login("graph", path)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    dc = [f for p, f in self.fake.requests if p.endswith("/devicecode")][-1]
    self.assertEqual(dc["scope"],
                     "https://graph.microsoft.com/Mail.Send offline_access")

  # ----------------------------------------------------------- google
  def test_google_pkce_paste_back(self):
    path, token = self.write_config("gmail", {
        "provider": "google", "client_secret": self.fake.client_secret,
        "redirect_uri": "http://127.0.0.1:1/"})
    proc = lib._register(subprocess.Popen(
        [lib.camgate_bin(), "oauth", "login", "gmail", "-c", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
    url = None
    lines = []
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
      line = proc.stdout.readline()
      if not line:
        break
      lines.append(line)
      if line.startswith(self.fake.url("/authorize")):
        url = line.strip()
    self.assertIsNotNone(url, "".join(lines))
    self.assertIn("code_challenge_method=S256", url)
    self.assertIn("scope=https%3A%2F%2Fmail.google.com%2F", url)
    self.assertIn("access_type=offline", url)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
      opener.open(url, timeout=10)
      self.fail("no redirect")
    except urllib.error.HTTPError as e:
      self.assertEqual(e.code, 302)
      redirect = e.headers["Location"]
    self.assertTrue(redirect.startswith("http://127.0.0.1:1/?code="))
    out, err = proc.communicate(redirect + "\n", timeout=30)
    self.assertEqual(proc.returncode, 0, out + err)
    self.assert_token_file(token, "client-gmail")
    self.assert_no_tokens(out + err)

  def test_google_wrong_state(self):
    path, token = self.write_config("gstate", {
        "provider": "google", "client_secret": self.fake.client_secret})
    r = self.login("gstate", path, input="http://127.0.0.1:8765/?code=x&"
                   "state=not-ours\n")
    self.assertEqual(r.returncode, 1)
    self.assertIn("state differs", r.stderr)
    self.assertFalse(os.path.exists(token))

  # ---------------------------------------------------------- app-only
  def test_client_credentials(self):
    path, token = self.write_config("app", {
        "flow": "client_credentials", "tenant": "contoso",
        "client_secret": self.fake.client_secret}, transport="graph")
    r = self.login("app", path)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    self.assertIn("nothing to sign in", r.stdout)
    form = [f for p, f in self.fake.requests
            if f.get("grant_type") == "client_credentials"][-1]
    self.assertEqual(form["scope"], "https://graph.microsoft.com/.default")
    self.assert_no_tokens(r.stdout + r.stderr)

  def test_client_credentials_bad_secret(self):
    path, _ = self.write_config("badapp", {
        "flow": "client_credentials", "client_secret": "wrong",
        "token_file": None}, transport="graph")
    r = self.login("badapp", path)
    self.assertEqual(r.returncode, 1)
    self.assertIn("invalid_client", r.stderr)

  # -------------------------------------------------------------- misc
  def test_check_shows_needs_login(self):
    path, token = self.write_config("chk", {})
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertRegex(r.stdout, r"backend chk type=email "
                     r"transport=smtp_xoauth2 host=127.0.0.1:587")
    self.assertIn("oauth chk state=needs_login", r.stdout)
    self.assertIn("camgate oauth login chk -c " + path, r.stdout)

  def test_unknown_backend_and_usage(self):
    path, _ = self.write_config("u", {})
    r = self.login("nope", path)
    self.assertEqual(r.returncode, 2)
    self.assertIn("no backend named nope", r.stderr)
    r = lib.run_camgate(["oauth", "login"])
    self.assertEqual(r.returncode, 2)

  def test_config_errors(self):
    path, _ = self.write_config("bad", {"provider": "google"})
    r = lib.run_camgate(["check", "-c", path])
    self.assertEqual(r.returncode, 2)
    self.assertRegex(r.stderr, r"backends\[0\]\.oauth: expected "
                     r"oauth.client_secret")


if __name__ == "__main__":
  unittest.main()
