# Shared by the bench/ scripts: private Redis and nginx on loopback, wrk,
# and a comparison that interleaves its cases so the machine's noise hits
# them alike.  Sourced, not run.
#
# Settings: ROUNDS (5), SLICE seconds per case and round (3), CONNS (32),
# NGINX_BIN (/usr/sbin/nginx), SO (build/modules/ngx_http_scale_module.so).
#
# Besides req/s, compare() prints the CPU each request cost the nginx
# workers (utime + stime from /proc) and Redis (INFO cpu), medians over
# the rounds: only the case being measured runs during its slice.

set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
nginx=${NGINX_BIN:-/usr/sbin/nginx}
unset NGINX                       # nginx would read it as inherited sockets
so=${SO:-$repo/build/modules/ngx_http_scale_module.so}
rounds=${ROUNDS:-5}
slice=${SLICE:-3}
conns=${CONNS:-32}

[ -f "$so" ] || make -C "$repo" >&2
"$repo/scripts/deps.sh" bench

work=$(mktemp -d "/tmp/bench-$(basename "$0").XXXXXX")
pids=()

bench_cleanup() {
    local f p
    for f in "$work"/ngx-*/nginx.pid; do
        [ -f "$f" ] && kill -QUIT "$(cat "$f")" 2>/dev/null
    done
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    sleep 0.3
    rm -rf "$work"
}
trap bench_cleanup EXIT

. "$repo/scripts/lib/redis.sh"     # free_port, redis_start, redis_stop

start_redis() {   # start_redis [REDIS FLAGS...]: sets redis_port
    redis_port=$(free_port)
    redis_start "$redis_port" "$work" "$@" || exit 1
    pids+=("$(cat "$work/redis-$redis_port.pid")")
}

tls_certs() {   # a CA and a certificate for localhost / 127.0.0.1: $work/tls
    local t=$work/tls
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench-ca \
        -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
        -keyout "$t/srv.key" -out "$t/srv.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$t/san.ext"
    openssl x509 -req -in "$t/srv.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
        -CAcreateserial -days 1 -extfile "$t/san.ext" -out "$t/srv.pem" 2>/dev/null
    tls_redis_flags=(--tls-port "$(free_port)" --tls-cert-file "$t/srv.pem"
                     --tls-key-file "$t/srv.key" --tls-ca-cert-file "$t/ca.pem"
                     --tls-auth-clients no)
    tls_port=${tls_redis_flags[1]}
}

start_nginx() {   # start_nginx NAME MAIN_LINES HTTP_BODY: one worker
    local d=$work/ngx-$1
    mkdir -p "$d/logs"
    cat >"$d/nginx.conf" <<EOC
$2
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$3
}
EOC
    "$nginx" -p "$d" -c "$d/nginx.conf"
    for _ in $(seq 50); do [ -s "$d/nginx.pid" ] && break; sleep 0.1; done
    sleep 0.3                     # workers connect to Redis
}

# keys.lua: each request asks for /PATH?k=N with N drawn uniformly from
# 1..KEYS (env), so a limit keyed on $arg_k sees KEYS distinct clients
wrk_keys_script() {
    cat >"$work/keys.lua" <<'EOL'
local n = tonumber(os.getenv("KEYS")) or 1
init = function() math.randomseed(os.time()) end
request = function()
    return wrk.format(nil, wrk.path .. "?k=" .. math.random(n))
end
EOL
}

cpu_ticks() {   # utime + stime of every bench nginx worker, in clock ticks
    local f m c t=0
    for f in "$work"/ngx-*/nginx.pid; do
        [ -f "$f" ] || continue
        m=$(cat "$f")
        for c in $(cat "/proc/$m/task/$m/children" 2>/dev/null); do
            t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
        done
    done
    echo "$t"
}

redis_cpu() {   # used_cpu_user + used_cpu_sys of the bench Redis, seconds
    [ -n "${redis_port:-}" ] || { echo 0; return; }
    redis-cli -p "$redis_port" info cpu \
        | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.6f\n", s}'
}

expect_code() {   # expect_code CODE URL [HEADER]: the case does what it claims
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' ${3:+-H "$3"} "$2")
    [ "$got" = "$1" ] || { echo "$2 answered $got, not $1" >&2; exit 1; }
}

# rps SECONDS URL [HEADER [KEYS]]: req/s, requests, responses other than
# 2xx or 3xx (a case that errors must not pass for a fast one).  KEYS: a
# number of keys for keys.lua, or the name of another wrk script in $work
# (NAME.lua)
rps() {
    local script=
    case ${4:-} in
    "") ;;
    *[!0-9]*) script=$work/$4.lua ;;
    *) script=$work/keys.lua ;;
    esac
    KEYS=${4:-1} wrk -t1 -c"$conns" -d"${1}s" ${3:+-H "$3"} \
        ${script:+-s "$script"} "$2" 2>/dev/null \
        | awk '/ requests in / {n = $1} /^Requests\/sec/ {r = $2}
               /Non-2xx or 3xx responses:/ {e = $NF}
               END {print r, n, e + 0}'
}

redis_calls() {   # the calls requests make: scripts (a batch each) and GETs
    [ -n "${redis_port:-}" ] || { echo 0; return; }
    redis-cli -p "$redis_port" info commandstats | tr -d '\r' \
        | awk -F'[:=,]' '/^cmdstat_(evalsha|eval|get):/ {s += $3} END {print s + 0}'
}

# rps_cpu SECONDS URL HEADER KEYS: req/s, nginx and Redis µs per request,
# requests per script call or GET (for ratelimit_redis: the batch size),
# the % of responses other than 2xx or 3xx
rps_cpu() {
    local t0 r0 c0 t1 r1 c1 out hz
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks); r0=$(redis_cpu); c0=$(redis_calls)
    out=$(rps "$@")
    t1=$(cpu_ticks); r1=$(redis_cpu); c1=$(redis_calls)
    awk -v o="$out" -v t="$((t1 - t0))" -v hz="$hz" -v r0="$r0" -v r1="$r1" \
        -v c="$((c1 - c0))" '
        BEGIN { split(o, a, " "); n = a[2] > 0 ? a[2] : 1
                printf "%s %.3f %.3f %.2f %.2f\n", a[1], t / hz * 1e6 / n,
                       (r1 - r0) * 1e6 / n, (c > 0 ? n / c : 0), a[3] * 100 / n }'
}

# compare "name|url|header|keys" ...: the first case is the baseline.
# Every round gives each case one slice, in an order that rotates; prints
# the median req/s of each case, the median of its per-round ratios, and
# the median nginx and Redis CPU per request, requests per Redis script
# call or GET, and the largest share of error responses (other than 2xx or
# 3xx) in any round.  $work/results keeps "round case req/s nginx-µs
# redis-µs req/call error-%" lines for more ratios.
compare() {
    local cases=("$@") n=$# r i k name url hdr nk out=$work/results
    : >"$out"
    [ -f "$work/keys.lua" ] || wrk_keys_script

    for i in $(seq 0 $((n - 1))); do          # warm-up
        IFS='|' read -r name url hdr nk <<<"${cases[$i]}"
        rps 1 "$url" "$hdr" "$nk" >/dev/null
    done

    for r in $(seq "$rounds"); do
        for k in $(seq 0 $((n - 1))); do
            i=$(((k + r) % n))
            IFS='|' read -r name url hdr nk <<<"${cases[$i]}"
            echo "$r $i $(rps_cpu "$slice" "$url" "$hdr" "$nk")" >>"$out"
        done
    done

    printf '%-44s %9s %6s %8s %8s %8s %7s\n' "one worker, wrk -c$conns, ${rounds}x${slice}s" \
        "req/s" "ratio" "nginx us" "redis us" "req/call" "errors"
    for i in $(seq 0 $((n - 1))); do
        IFS='|' read -r name url hdr nk <<<"${cases[$i]}"
        awk -v i="$i" -v name="$name" '
            { v[$1, $2] = $3; c[$1, $2] = $4; d[$1, $2] = $5; b[$1, $2] = $6
              if ($1 > rounds) rounds = $1
              if ($2 == i && $7 > e) e = $7 }
            END {
                for (r = 1; r <= rounds; r++) {
                    a[r] = v[r, i]; q[r] = v[r, i] / v[r, 0]
                    x[r] = c[r, i]; y[r] = d[r, i]; z[r] = b[r, i]
                }
                printf "%-44s %9.0f %6.2f %8.2f %8.2f %8.2f %6.1f%%\n", name,
                       median(a, rounds), median(q, rounds), median(x, rounds),
                       median(y, rounds), median(z, rounds), e
            }
            function median(x, m,   j, k, t) {
                for (j = 1; j <= m; j++) for (k = j + 1; k <= m; k++)
                    if (x[k] < x[j]) { t = x[j]; x[j] = x[k]; x[k] = t }
                return (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
            }' "$out"
    done
}

ratio_of() {   # ratio_of I J: median over rounds of case I / case J req/s
    median_of "$1" "$2" 3
}

# median_of I J COL: median over rounds of case I / case J in column COL
# of $work/results (3: req/s, 4: nginx µs, 5: Redis µs per request); J "-":
# of case I alone
median_of() {
    awk -v i="$1" -v j="$2" -v c="$3" '{ v[$1, $2] = $c; if ($1 > n) n = $1 }
         END {
             for (r = 1; r <= n; r++) q[r] = (j == "-") ? v[r, i] : v[r, i] / v[r, j]
             for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)
                 if (q[b] < q[a]) { t = q[a]; q[a] = q[b]; q[b] = t }
             printf "%.2f\n", (n % 2) ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2
         }' "$work/results"
}

# redis_op_cost N ARGS...: Redis CPU µs per command of redis-benchmark ARGS
# (N commands), on the bench Redis: what this machine charges for Redis
redis_op_cost() {
    local n=$1 r0 r1
    shift
    r0=$(redis_cpu)
    redis-benchmark -p "$redis_port" -n "$n" -q "$@" >/dev/null 2>&1
    r1=$(redis_cpu)
    awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN { printf "%.2f\n", (b - a) * 1e6 / n }'
}

errlog_summary() {
    local n
    n=$(cat "$work"/ngx-*/logs/error.log 2>/dev/null | grep -cE '\[(alert|emerg|crit)\]' || true)
    echo "error log [alert]/[emerg]/[crit] lines: $n"
}
