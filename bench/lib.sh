# bench/lib.sh -- what bench/run.sh, bench/ab.sh and bench/profile.sh share:
# the scenario table and cairnd's bench config. Sourced, not run.

# ---- the scenarios -----------------------------------------------------------
# id|connections|wrk mode|wrk args ({N} = number of posts)|peers|enabled|what
# A row with enabled=no is reported as "not yet available" with its reason
# (S4a was such a row until store.sync=always, the write-ahead log with group
# commit, landed in ad08b5e). The wrk modes are bench/wrk/bench.lua's.
SCENARIO_TABLE=(
    "S1|64|get|{N}|all|yes|GET /v1/posts/{random id}"
    "S2|64|path|/comments|all|yes|GET the 100-document list (~10 KB)"
    "S3|64|path|/posts?userId=7&_sort=views&_order=desc&_limit=10|all|yes|filter, sort, paginate 10,000 posts"
    "S4|64|post||writers|yes|POST /v1/posts, store.sync=none"
    "S4a|64|post||cairnd-always|yes|POST /v1/posts, store.sync=always (write-ahead log, one fdatasync per group of writes)"
    "S5|256|mix|{N} 10|writers|yes|90% GET by id, 10% POST"
    "S6|64|close|{N}|all|yes|GET by id, Connection: close (one request per connection)"
    "S7|1024|get|{N}|all|yes|S1 at 1,024 connections"
)

# scenario ID NPOSTS -> SC_CONNS SC_MODE SC_ARGS (an array, {N} replaced) SC_PEERS
# SC_ENABLED SC_WHAT; returns 1 for an unknown id
scenario() {
    local row= k wargs id
    for k in "${SCENARIO_TABLE[@]}"; do [ "${k%%|*}" = "$1" ] && row=$k; done
    [ -n "$row" ] || return 1
    IFS='|' read -r id SC_CONNS SC_MODE wargs SC_PEERS SC_ENABLED SC_WHAT <<<"$row"
    wargs=${wargs//\{N\}/$2}
    # word splitting on purpose: "{N} 10" is two arguments; no row has a glob character
    read -r -a SC_ARGS <<<"$wargs"
}

# cairnd_conf DIR PORT SYNC -> DIR/cairnd.conf, its data in DIR/data (made by the caller);
# knobs CAIRN_THREADS (1: the server has one core) and CAIRN_CONF_EXTRA (lines appended)
cairnd_conf() {
    cat >"$1/cairnd.conf" <<CONF
listen_address = "127.0.0.1";
listen_port = $2;
threads = ${CAIRN_THREADS:-1};
max_connections = 4096;
connection_timeout = 30;
log_level = "notice";
shutdown_timeout = 5;
store = { data_dir = "$1/data"; sync = "$3"; };
${CAIRN_CONF_EXTRA:-}
CONF
}
