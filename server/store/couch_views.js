// How the embedded CouchDB runs Linli's map functions: server/store/embedded_couch.py runs pouchdb-server as
// `node --require couch_gate.js --require <this file> pouchdb-server …`, so this runs before pouchdb-server loads.
//
// Why: pouchdb-mapreduce (Node) runs a map function once per document by pasting the document's JSON into the
// function's source and running that in a new V8 context (`vm.runInNewContext`): a context and a compile per
// document, ~4 ms, whatever the function does. That set every index build at ~200 documents/s (a map emitting
// nothing as slow as one emitting two rows: bench/timebank.py). Here each map function is compiled once per index
// update, in one new context of its own, as Apache CouchDB's query server does; each document reaches it as JSON
// parsed inside that context. Still a sandbox: no `require`, no `process`, no other view's globals.
//
// This replaces the mapper pouchdb-mapreduce hands pouchdb-abstract-mapreduce (its module, in require's cache,
// before pouchdb-mapreduce takes it); the reduce functions and design-document checks stay pouchdb-mapreduce's.
// tests/test_couch.py checks that a view keeps its context across documents and cannot reach Node.
'use strict';

const path = require('path');
const vm = require('vm');

const serverDir = path.dirname(require.resolve('pouchdb-server/package.json'));
const mapreduceDir = path.dirname(require.resolve('pouchdb-mapreduce', {paths: [serverDir]}));
const abstractPath = require.resolve('pouchdb-abstract-mapreduce', {paths: [mapreduceDir]});
if (require.cache[require.resolve('pouchdb-mapreduce', {paths: [serverDir]})]) {
  throw new Error('couch_views.js must be required before pouchdb-server loads pouchdb-mapreduce');
}
const createAbstractMapReduce = require(abstractPath);

// The map function `source` in a new context: a function of one document (as JSON) returning its rows; `emit`,
// `log` and `isArray` as pouchdb-mapreduce gives them.
function compile(source) {
  return vm.runInNewContext(
    '(function () { "use strict"; var emitted = []; var log = function () {};'
    + ' var emit = function (key, value) { emitted.push([key, value]); };'
    + ' var isArray = Array.isArray;'
    + ` var map = (${String(source).replace(/;\s*$/, '')});`
    + ' return function (json) { emitted = []; map(JSON.parse(json)); return emitted; }; })()');
}

// The mapper of one index update: compiled at its first document (most queries find none to index, and pay nothing).
function compiledOnce(source, emit) {
  if (typeof source === 'function') { // a temporary view given as a function (PouchDB's API; not over HTTP)
    return (doc) => source(doc, emit);
  }
  let mapOne = null;
  return (doc) => {
    mapOne ||= compile(source);
    for (const [key, value] of mapOne(JSON.stringify(doc))) {
      emit(key, value);
    }
  };
}

require.cache[abstractPath].exports = function (localDocName, mapper, reducer, ddocValidator) {
  return createAbstractMapReduce(localDocName, compiledOnce, reducer, ddocValidator);
};
