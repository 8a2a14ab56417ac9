// relay.js - the Node.js relay people write instead of camgate (bench peer).
//
// smtp-server takes the camera's mail with AUTH LOGIN/PLAIN and a password
// check, mailparser parses it, and every mail becomes one MQTT notification
// on the same local broker camgate publishes to: a JSON event on
// <prefix>/<user>/event and the first image on <prefix>/<user>/snapshot.
// The 250 is sent once the publishes are handed to the MQTT client; nothing
// is stored, so a crash loses what was acknowledged.
//
// usage: node relay.js SMTP_PORT MQTT_PORT [USER_PREFIX] [PASSWORD] [TOPIC]
'use strict';

const { SMTPServer } = require('smtp-server');
const { simpleParser } = require('mailparser');
const mqtt = require('mqtt');

const smtpPort = Number(process.argv[2]);
const mqttPort = Number(process.argv[3]);
const userPrefix = process.argv[4] || 'bench';
const password = process.argv[5] || 'bench-pass';
const prefix = process.argv[6] || 'bench';

const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
  clientId: `node-relay-${process.pid}`,
});

const server = new SMTPServer({
  authMethods: ['LOGIN', 'PLAIN'],
  allowInsecureAuth: true,
  disabledCommands: ['STARTTLS'],
  size: 64 * 1024 * 1024,
  maxClients: 2000,
  logger: false,
  onAuth(auth, session, callback) {
    if (auth.username.startsWith(userPrefix) && auth.password === password) {
      callback(null, { user: auth.username });
      return;
    }
    callback(new Error('Invalid username or password'));
  },
  onData(stream, session, callback) {
    simpleParser(stream).then((mail) => {
      const user = session.user || 'anonymous';
      const image = (mail.attachments || []).find(
        (a) => /^image\//.test(a.contentType));
      const event = {
        camera: user,
        title: mail.subject || '',
        text: mail.text || '',
        recv_time: new Date().toISOString(),
        snapshot_size: image ? image.size : 0,
      };
      client.publish(`${prefix}/${user}/event`, JSON.stringify(event),
                     { qos: 1 });
      if (image)
        client.publish(`${prefix}/${user}/snapshot`, image.content,
                       { qos: 1, retain: true });
      callback(null, 'Message queued');
    }).catch((err) => callback(err));
  },
});

server.on('error', (err) => console.error('smtp error:', err.message));
client.on('connect', () => {
  server.listen(smtpPort, '127.0.0.1', () =>
    console.error(`node-relay listening on 127.0.0.1:${smtpPort}`));
});
process.on('SIGTERM', () => {
  server.close(() => client.end(false, () => process.exit(0)));
  setTimeout(() => process.exit(0), 2000).unref();
});
