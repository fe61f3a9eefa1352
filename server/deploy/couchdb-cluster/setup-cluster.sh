#!/usr/bin/env bash
# Join three CouchDB 3 nodes into one cluster with the /_cluster_setup API.
# usage: COUCHDB_PASSWORD=... ./setup-cluster.sh couch1.internal couch2.internal couch3.internal
set -euo pipefail
: "${COUCHDB_PASSWORD:?set COUCHDB_PASSWORD (the admin password from local.ini)}"
user="${COUCHDB_USER:-admin}"
first="$1"; shift
api() { curl -fsS -u "$user:$COUCHDB_PASSWORD" -H 'Content-Type: application/json' "$@"; echo; }
for node in "$first" "$@"; do
  # Each node listens on its own private address only (as local.ini says), never on every interface.
  address="$(getent hosts "$node" | awk '{print $1; exit}')"
  api -X POST "http://$node:5984/_cluster_setup" \
    -d "{\"action\":\"enable_cluster\",\"bind_address\":\"$address\",\"username\":\"$user\",\"password\":\"$COUCHDB_PASSWORD\",\"node_count\":\"$(( $# + 1 ))\"}"
done
for node in "$@"; do
  api -X POST "http://$first:5984/_cluster_setup" \
    -d "{\"action\":\"add_node\",\"host\":\"$node\",\"port\":5984,\"username\":\"$user\",\"password\":\"$COUCHDB_PASSWORD\"}"
done
api -X POST "http://$first:5984/_cluster_setup" -d '{"action":"finish_cluster"}'
api "http://$first:5984/_membership"
