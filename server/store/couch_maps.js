// How the embedded pouchdb-server runs Linli's map functions: server/store/embedded_couch.py loads this file into it
// with `node --require`, before pouchdb-server's own code.
//
// Why: pouchdb-mapreduce runs a design document's map function by pasting the document's JSON into the function's
// source and compiling and running that in a brand-new V8 context (`vm.runInNewContext`), once per document. That
// is most of the cost of building an index: a map emitting nothing over the demo's ~68,000 documents took minutes
// (issue 19). Here each map function is compiled once, in one sandbox context of its own (as CouchDB's couchjs keeps
// one per design document), and each document enters it as JSON, parsed inside: the map function still sees only
// the document and `emit`, `log`, `isArray`, `toJSON`, nothing of pouchdb-server. Everything else (what is stored,
// reduce functions, queries) stays pouchdb-mapreduce's own: only its `mapper` for string maps is replaced, by
// wrapping `pouchdb-abstract-mapreduce`, which pouchdb-mapreduce hands its mapper to when it is first loaded.
'use strict';

const vm = require('vm');

const abstractPath = require.resolve('pouchdb-abstract-mapreduce');
const createAbstractMapReduce = require(abstractPath);

// The source of each map function, compiled: a function of a document's JSON answering {result, emitteds}.
const compiled = new Map();

function compile(source) {
  let run = compiled.get(source);
  if (run === undefined) {
    run = vm.runInNewContext(
      '"use strict";' +
      'var __emitteds__ = [];' +
      'var emit = function (key, value) { __emitteds__.push([key, value]); };' +
      'var log = function () {};' +
      'var isArray = Array.isArray;' +
      'var toJSON = JSON.parse;' +
      'var __map__ = (' + source.replace(/;\s*$/, '') + ');' +
      '(function (json) { __emitteds__ = []; var result = __map__(JSON.parse(json));' +
      ' return {result: result, emitteds: __emitteds__}; })');
    compiled.set(source, run);
  }
  return run;
}

function fastMapper(stockMapper) {
  return function (mapFun, emit) {
    if (typeof mapFun !== 'string') {
      return stockMapper(mapFun, emit); // a temporary view's JavaScript function: as pouchdb-mapreduce does it
    }
    const run = compile(mapFun);
    return function (doc) {
      const output = run(JSON.stringify(doc));
      for (const [key, value] of output.emitteds) {
        emit(key, value);
      }
      return output.result;
    };
  };
}

require.cache[abstractPath].exports = function (localDocName, mapper, reducer, ddocValidator) {
  return createAbstractMapReduce(localDocName, fastMapper(mapper), reducer, ddocValidator);
};
