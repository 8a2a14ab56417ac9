"""camgate-http.so, the module that holds libcurl and the backends that
need it: a camgate with only MQTT never maps libcurl (its memory is what
the module saves); one with an ntfy backend opens the module at start and
delivers through it; when the module cannot be found, `camgate check`
says so and exits 1, and `camgate run` logs why, keeps the ntfy alerts
in the spool and still publishes to MQTT."""

import os
import unittest

import camgate_testlib as lib
import ntfy_server

CAM = "cam-shed"


def mapped_files(pid):
  with open("/proc/%d/maps" % pid) as f:
    return {line.split()[5] for line in f if len(line.split()) > 5}


def has(files, name):
  return any(os.path.basename(p).startswith(name) for p in files)


class HttpModule(lib.EventAsserts, unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = lib.make_tmpdir("httpmod")
    cls.addClassCleanup(lib.remove_tmpdir, cls.tmp)
    lib.start_broker(cls)
    cls.srv = ntfy_server.NtfyServer().start()
    cls.addClassCleanup(cls.srv.stop)

  def start(self, name, ntfy, env=None):
    port = lib.free_port()
    cfg = lib.base_config(os.path.join(self.tmp), port, self.mosq.port,
                          [lib.camera(CAM)], client_id="mod-" + name)
    cfg["spool"]["path"] = os.path.join(self.tmp, "var-" + name)
    if ntfy:
      cfg["backends"].append({"name": "phone", "type": "ntfy",
                              "url": self.srv.url() + "/",
                              "topic": "mod-" + name,
                              "retry_initial": "1s", "retry_max": "2s"})
      cfg["rules"] = [{"name": "all", "backends": ["ha", "phone"]}]
    gw = lib.Camgate(self.tmp, cfg, env=env, name=name)
    self.addCleanup(gw.kill9)
    gw.start()
    return gw, port

  def send(self, port, subject):
    reply = lib.send_mail_raw(port, CAM, lib.PASSWORDS[CAM],
                              lib.simple_message(subject))
    self.assertEqual(reply.code, 250, reply)

  def test_mqtt_only_never_maps_libcurl(self):
    gw, port = self.start("mqtt-only", ntfy=False)
    mark = self.watcher.mark()
    self.send(port, "Motion mqtt only")
    self.assert_event(CAM, mark, pred=lambda e: "mqtt only" in e["title"])
    files = mapped_files(gw.proc.pid)
    self.assertTrue(has(files, "libmosquitto"), files)
    self.assertFalse(has(files, "libcurl"), "libcurl mapped without need")
    self.assertFalse(has(files, "camgate-http"), files)

  def test_ntfy_backend_opens_the_module(self):
    gw, port = self.start("with-ntfy", ntfy=True)
    files = mapped_files(gw.proc.pid)
    self.assertTrue(has(files, "camgate-http.so"), files)
    self.assertTrue(has(files, "libcurl"), files)
    self.send(port, "Motion with ntfy")
    self.assertTrue(self.srv.wait_for("mod-with-ntfy", 1, 20),
                    lib.tail(gw.log(), 20))
    self.assertIn("HTTP module loaded", gw.log())

  def test_missing_module_is_reported(self):
    empty = os.path.join(self.tmp, "no-module-here")
    os.makedirs(empty, exist_ok=True)
    env = {"CAMGATE_MODULE_DIR": empty}
    gw, port = self.start("no-module", ntfy=True, env=env)
    want = "cannot load %s/camgate-http.so" % empty
    r = lib.run_camgate(["check", "-c", gw.config_path], env=env)
    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
    self.assertIn("backends phone: " + want, r.stderr)
    self.assertIn("set CAMGATE_MODULE_DIR, then reload", r.stderr)
    self.assertIn("cannot run without camgate-http.so", r.stderr)
    # The daemon runs on: MQTT delivers, ntfy's alerts wait in the spool.
    self.assertTrue(gw.wait_log("backend=phone error=\"" + want, 10),
                    lib.tail(gw.log(), 20))
    mark = self.watcher.mark()
    self.send(port, "Motion without module")
    self.assert_event(CAM, mark,
                      pred=lambda e: "without module" in e["title"])
    self.assertEqual(self.srv.of("mod-no-module"), [])


if __name__ == "__main__":
  unittest.main()
