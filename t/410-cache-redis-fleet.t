# cache_redis across a fleet: two nginx instances share one Redis cache in
# front of the example express app (examples/app, its slow endpoint counts
# its fetches in Redis).  Single flight for a cold key, purge and POST seen
# by both instances, per-user entries behind session_redis, the lock
# timeout, use_stale, revalidation, Redis paused / down, reload and quit
# with lookups waiting, and the metrics.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep time);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

need_example_app();

my $rp = free_port();
start_redis($rp);

my $secret = 'cache secret';
my $ap = start_example_app('app-410', $rp, $secret, SLOW_MS => 300);

sub conf {
    my ($port) = @_;
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 200ms; }
    upstream app { server 127.0.0.1:$ap; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Cache "\$cache_redis_status" always;

        location /api/ {
            proxy_pass http://app;
        }
        location /api/slow/ {
            cache_redis main;
            cache_redis_tags "slow";
            cache_redis_purge;
            proxy_pass http://app;
        }
        location /u/ {
            session_redis main;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_set \$user_id user.id;
            proxy_set_header X-User-Id \$user_id;
            cache_redis main;
            proxy_pass http://app/api/;
        }
        location /short/ {
            cache_redis main;
            proxy_hide_header Cache-Control;
            cache_redis_valid 2s;
            cache_redis_stale 30s;
            cache_redis_use_stale updating error timeout http_502;
            cache_redis_lock_timeout 600ms;
            cache_redis_key "short:\$uri";
            proxy_pass http://app/api/slow/;
        }
        location /broken/ {
            cache_redis main;
            cache_redis_stale 30s;
            cache_redis_use_stale error;
            cache_redis_key "short:/short/\$1";
            proxy_connect_timeout 200ms;
            proxy_pass http://127.0.0.1:1;
            location ~ ^/broken/(.*)\$ {
                cache_redis main;
                cache_redis_stale 30s;
                cache_redis_use_stale error;
                cache_redis_key "short:/short/\$1";
                proxy_pass http://127.0.0.1:1;
            }
        }
        location /nostore/ {
            cache_redis main;
            cache_redis_no_store 1;
            proxy_pass http://app/api/slow/;
        }
        location /reval/ {
            cache_redis main;
            proxy_hide_header Cache-Control;
            cache_redis_valid 2s;
            cache_redis_revalidate on;
            rewrite ^ /api/test break;
            proxy_pass http://app;
        }
        location = /metrics { health_metrics; }
    }
_EOC_
}

my @p = (free_port(), free_port());
my @d = (start_nginx('c1', conf($p[0])), start_nginx('c2', conf($p[1])));
my @u = map { "http://127.0.0.1:$_" } @p;

sub curl { my $args = shift; return scalar `curl -s -m 10 $args 2>/dev/null`; }
sub fetches { my $n = shift; my $j = curl("http://127.0.0.1:$ap/api/slow/$n/fetches"); return $j =~ /"fetches":(\d+)/ ? $1 : -1; }
sub xcache { my $h = shift; return $h =~ /^X-Cache: (\S*)\r?$/mi ? $1 : ''; }
sub req {   # (status line headers, body)
    my ($url, $args) = @_;
    $args //= '';
    my $out = curl("-D - $args '$url'");
    my ($h, $b) = split /\r?\n\r?\n/, $out, 2;
    return ($h // '', $b // '');
}

# 1. a cold key: 50 at once over both instances reach the app once
my $k = "cold" . int(rand(1e9));
my @kids;
for my $i (1 .. 50) {
    my $pid = fork // die;
    if ($pid == 0) {
        { exec 'curl', '-s', '-m', '15', '-o', "$work/cold.$i", "$u[$i % 2]/api/slow/$k" }
        POSIX::_exit(1);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
is(fetches($k), 1, '50 concurrent requests for a cold key over 2 instances: 1 fetch');
my %bodies;
for my $i (1 .. 50) { open my $f, '<', "$work/cold.$i"; local $/; $bodies{<$f> // ''}++ }
is(scalar keys %bodies, 1, 'all 50 answers are identical');
like((keys %bodies)[0], qr/"name":"$k"/, 'and are the app\'s answer');

my $hits = 0;
for my $i (1 .. 10) { my ($h) = req("$u[$i % 2]/api/slow/$k"); $hits++ if xcache($h) eq 'HIT' }
is($hits, 10, '10 more: HITs on both instances');
is(fetches($k), 1, 'still 1 fetch');

# 2. PURGE on one instance is seen by the other at once
my ($h, $b) = req("$u[0]/api/slow/$k", '-X PURGE');
like($h, qr/^HTTP\/1\.1 200/, 'PURGE of the key: 200');
($h) = req("$u[1]/api/slow/$k");
is(xcache($h), 'MISS', 'the other instance misses after the purge');
is(fetches($k), 2, 'and fetches again');

# by tag: every entry stored with the tag, from the other instance
my $k2 = "tag" . int(rand(1e9));
req("$u[0]/api/slow/$k2");
($h) = req("$u[1]/api/slow/$k2");
is(xcache($h), 'HIT', 'a second tagged entry is a HIT');
($h, $b) = req("$u[1]/api/slow/anything", "-X PURGE -H 'Cache-Tag: slow'");
like($b, qr/"purged":[2-9]/, 'PURGE with Cache-Tag: both tagged entries');
($h) = req("$u[0]/api/slow/$k2");
is(xcache($h), 'MISS', 'gone for the other instance too');

# 3. a POST on one instance invalidates for both
($h, $b) = req("$u[1]/api/slow/$k2", '-X POST -d x=1');
like($b, qr/"version":1/, 'POST answered by the app');
($h, $b) = req("$u[0]/api/slow/$k2");
is(xcache($h), 'MISS', 'the GET after a POST on the other instance is fresh');
like($b, qr/"version":1/, 'and shows the write');

# 4. per-user entries where session_redis checks the request
my %jar;
for my $user (qw(alice bob)) {
    $jar{$user} = "$work/jar.$user";
    curl("-c $jar{$user} -H 'Content-Type: application/json' -d '{\"user\":\"$user\"}' $u[0]/api/login");
}
my $k3 = "user" . int(rand(1e9));
my ($ha1, $ba1) = req("$u[0]/u/slow/$k3", "-b $jar{alice}");
my ($ha2, $ba2) = req("$u[1]/u/slow/$k3", "-b $jar{alice}");
my ($hb, $bb) = req("$u[0]/u/slow/$k3", "-b $jar{bob}");
like($ba1, qr/"user":"alice"/, 'alice gets her answer');
is(xcache($ha2), 'HIT', "alice's second request, other instance: HIT");
is($ba2, $ba1, 'the same body');
like($bb, qr/"user":"bob"/, 'bob on the same URL gets his own answer, not alice\'s');
is(xcache($hb), 'MISS', "bob's request is a MISS");
is(fetches($k3), 2, 'two users, two fetches');
my ($hn) = req("$u[1]/u/slow/$k3");
like($hn, qr/^HTTP\/1\.1 401/, 'no session: 401 before the cache is asked');

# 5. the lock: held elsewhere, a waiter gives up at lock_timeout
my $k4 = "lock" . int(rand(1e9));
redis_cli($rp, "set 'cache:short:/short/$k4#lock' other px 10000");
my $t0 = time;
($h, $b) = req("$u[0]/short/$k4");
my $dt = time - $t0;
like($h, qr/^HTTP\/1\.1 200/, 'lock held elsewhere: the waiter answers 200 in the end');
cmp_ok($dt, '>=', 0.55, 'after cache_redis_lock_timeout (600ms)');
cmp_ok($dt, '<', 3, 'not much later');
is(xcache($h), 'MISS', 'as a MISS');
($h) = req("$u[1]/short/$k4");
isnt(xcache($h), 'HIT', 'what a waiter fetched after the timeout is not stored');

# a client that goes away while it waits for the lock
for (1 .. 5) { get("$u[$_ % 2]/short/$k4", 0.2) }
redis_cli($rp, "del 'cache:short:/short/$k4#lock'");

# an answer that is not storable does not make the others queue for the
# lock one after the other: 10 at once take about two fetches, not ten
my $k9 = "nostore" . int(rand(1e9));
$t0 = time;
@kids = ();
for my $i (1 .. 10) {
    my $pid = fork // die;
    if ($pid == 0) {
        { exec 'curl', '-s', '-m', '15', '-o', "$work/ns.$i", "$u[$i % 2]/nostore/$k9" }
        POSIX::_exit(1);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
$dt = time - $t0;
is(fetches($k9), 10, 'an unstorable answer: each of 10 concurrent requests fetched');
cmp_ok($dt, '<', 2.7, 'in parallel once the first answer proved unstorable (10 x 300 ms in a row would be 3 s)');

# 6. use_stale updating: the old entry while one instance refreshes
my $k5 = "stale" . int(rand(1e9));
($h, $b) = req("$u[0]/short/$k5");
is(xcache($h), 'MISS', 'short-lived entry stored');
sleep 2.3;
redis_cli($rp, "set 'cache:short:/short/$k5#lock' other px 10000");
$t0 = time;
my ($hs, $bs) = req("$u[1]/short/$k5");
is(xcache($hs), 'UPDATING', 'expired while another instance updates: UPDATING');
cmp_ok(time - $t0, '<', 0.25, 'at once, no wait');
is($bs, $b, 'the old body');
redis_cli($rp, "del 'cache:short:/short/$k5#lock'");
($h) = req("$u[1]/short/$k5");
is(xcache($h), 'EXPIRED', 'lock free: EXPIRED, fetched');
($h) = req("$u[0]/short/$k5");
is(xcache($h), 'HIT', 'then a HIT');

# use_stale error: the app is unreachable, the stale entry answers
sleep 2.3;
($h, $b) = req("$u[0]/broken/$k5");
like($h, qr/^HTTP\/1\.1 200/, 'app unreachable, use_stale error: 200');
is(xcache($h), 'STALE', 'STALE');
like($b, qr/"name":"$k5"/, 'the stored body');
($h) = req("$u[0]/broken/nothing$k5");
like($h, qr/^HTTP\/1\.1 502/, 'no entry to use: the 502 stays');

# 7. revalidation: the app answers 304 to the entry's ETag
my $k6 = "reval" . int(rand(1e9));
($h, $b) = req("$u[0]/reval/$k6");
like($h, qr/^ETag:/mi, 'the app sends an ETag');
sleep 2.3;
my ($hr, $br) = req("$u[1]/reval/$k6");
is(xcache($hr), 'REVALIDATED', 'expired with a validator: REVALIDATED');
is($br, $b, 'the stored body, from a 304');
($h) = req("$u[0]/reval/$k6");
is(xcache($h), 'HIT', 'fresh again: HIT');

# 8. metrics
my $m = curl("$u[0]/metrics");
like($m, qr/^nginx_cache_redis_requests_total\{result="hit"\} [1-9]/m, 'hits counted');
like($m, qr/^nginx_cache_redis_requests_total\{result="miss"\} [1-9]/m, 'misses counted');
like($m, qr/^nginx_cache_redis_stored_total [1-9]/m, 'stores counted');
like($m, qr/^nginx_cache_redis_stored_bytes_total [1-9]\d\d/m, 'stored bytes counted');

# 9. reload and quit with lookups waiting on a lock
my $k7 = "reload" . int(rand(1e9));
redis_cli($rp, "set 'cache:short:/short/$k7#lock' other px 10000");
@kids = ();
for my $i (1 .. 6) {
    my $pid = fork // die;
    if ($pid == 0) {
        { exec 'curl', '-s', '-m', '10', '-o', '/dev/null', "$u[0]/short/$k7" }
        POSIX::_exit(1);
    }
    push @kids, $pid;
}
sleep 0.2;
nginx_signal($d[0], 'reload');
waitpid($_, 0) for @kids;
($h) = req("$u[0]/short/$k7");
like($h, qr/^HTTP\/1\.1 200/, 'after a reload with waiters in flight, requests are answered');

# 10. Redis paused, answering garbage, down: the app answers
my $k8 = "pause" . int(rand(1e9));
my $pause = fork // die;
if ($pause == 0) { redis_cli($rp, 'debug sleep 1.5'); POSIX::_exit(0) }
sleep 0.2;
$t0 = time;
($h, $b) = req("$u[1]/api/slow/$k8");
like($h, qr/^HTTP\/1\.1 200/, 'Redis paused: 200 from the app');
is(xcache($h), 'ERROR', 'ERROR');
waitpid($pause, 0);

stop_redis($rp);
my @codes = map { (get("$u[$_ % 2]/api/slow/down$k8"))[0] } 1 .. 4;
is("@codes", '200 200 200 200', 'Redis down: the app answers every request');

# quit with a request on its way
my $late = fork // die;
if ($late == 0) { { exec 'curl', '-s', '-m', '5', '-o', '/dev/null', "$u[0]/api/slow/quit$k8" } POSIX::_exit(1) }
sleep 0.1;
stop_nginx($_) for @d;
waitpid($late, 0);

for my $i (0, 1) {
    errlog_clean($d[$i], "c" . ($i + 1));
    ok(!errlog_has($d[$i], qr/open socket|leak|still running/), "c" . ($i + 1) . ": nothing left open at quit");
}
ok(errlog_has($d[1], qr/redis pool "main" (timed out|unreachable|failed)/),
   'the Redis failure is logged');

done_testing();
