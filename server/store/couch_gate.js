// The embedded CouchDB's door: server/store/embedded_couch.py runs pouchdb-server as
// `node --require <this file> pouchdb-server …`, and every HTTP request passes here before pouchdb-server sees it.
//
// Why a door of our own: pouchdb-server 4 has no `require_valid_user`, answers anonymous reads of /, /_all_dbs
// and /_users, and an anonymous `PUT /<new database>` or sign-up in /_users crashes the whole process (tried:
// "db.info is not a function"). So a request gets through only with the admin's HTTP Basic credentials (the
// password file embedded_couch.py generates, named by LINLI_COUCH_PASSWORD_FILE), addressed to the loopback
// host (no DNS rebinding), and not sent by a page of another site (no Origin or Sec-Fetch-Site from elsewhere;
// CORS is off in the config, so no answer carries Access-Control-Allow-*). This is the only JavaScript outside
// pwa/: it runs inside pouchdb-server, where no Python can.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const user = process.env.LINLI_COUCH_USER;
const password = fs.readFileSync(process.env.LINLI_COUCH_PASSWORD_FILE, 'utf8').trim();
delete process.env.LINLI_COUCH_PASSWORD_FILE; // nothing pouchdb-server runs needs to know where it is
const expected = sha256(`Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`);
const LOOPBACK_NAMES = ['127.0.0.1', 'localhost'];
const KEEP_ALIVE_MS = 10 * 60 * 1000;

function sha256(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest();
}

// Why a request is refused ([status, reason]), or null to let it through.
function refusal(req) {
  const port = req.socket.localPort;
  const host = req.headers.host || '';
  if (!LOOPBACK_NAMES.some((name) => host === `${name}:${port}`)) {
    return [403, 'the Host must be this loopback address'];
  }
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  if ((origin !== undefined && origin !== `http://${host}`) || (site !== undefined && site !== 'same-origin'
      && site !== 'none')) {
    return [403, 'cross-origin requests are refused'];
  }
  // Compared as digests: equal length, constant time.
  if (!crypto.timingSafeEqual(sha256(req.headers.authorization || ''), expected)) {
    return [401, 'credentials required'];
  }
  return null;
}

function guarded(handler) {
  return function (req, res) {
    const refused = refusal(req);
    if (refused === null) {
      return handler(req, res);
    }
    const [status, reason] = refused;
    const body = JSON.stringify({error: status === 401 ? 'unauthorized' : 'forbidden', reason});
    res.writeHead(status, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body)});
    res.end(body);
  };
}

// Express's app.listen() calls http.createServer(app): the one server pouchdb-server makes.
const createServer = http.createServer;
http.createServer = function (...args) {
  const last = args.length - 1;
  if (typeof args[last] !== 'function') {
    throw new Error('couch_gate: a server made without its request handler would be unguarded');
  }
  args[last] = guarded(args[last]);
  const server = createServer.apply(this, args);
  // Node closes a connection idle for 5 s; a Python client that spent longer (a loaded machine sealing a batch
  // of the demo's load) then sends its next request down the closed connection: ECONNRESET, the load fails. Only
  // Linli's own processes connect here (loopback, the admin's credentials), so idle connections may stay long.
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  return server;
};
