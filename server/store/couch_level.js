// How the embedded pouchdb-server opens its LevelDB stores: server/store/embedded_couch.py loads this file into it
// with `node --require`, after the gate and the map runner.
//
// Why: a first start writes ~61,000 documents and ~130,000 index rows (pouchdb-mapreduce stores each row as a
// document of the index's own database) in about a minute, and LevelDB's default 4 MB write buffer flushes and
// compacts that in 4 MB steps. A 32 MB one flushes an eighth as often (issue 19: first starts alternating with and
// without, pouchdb-server's CPU to the URL 58.5 against 65.3 s, medians of 3). The cost: up to 32 MB more memory
// for each database being written (the demo's start: pouchdb-server ~50 MB larger) and a longer log to replay after
// a crash. Snappy compression stays: without it the demo's folder grew from 96 to 254 MB for ~5 % less CPU.
// Options pouchdb-server sets itself are kept; these are only defaults.
'use strict';

const LevelDOWN = require('leveldown');

const DEFAULTS = { writeBufferSize: 32 << 20 };

const open = LevelDOWN.prototype._open;
LevelDOWN.prototype._open = function (options, callback) {
  return open.call(this, Object.assign({}, DEFAULTS, options), callback);
};
