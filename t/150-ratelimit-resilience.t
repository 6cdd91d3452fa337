# ratelimit_redis under failure and load: scenarios that need their own
# Redis and nginx processes (pause, restart, two instances, reload), so
# this file drives them itself with Test::More.  Loopback only; every loop
# is bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

my $port = free_port();
my $d = start_nginx('one', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 3s; connect_timeout 200ms; }
    redis_pool fast { server 127.0.0.1:$rp; timeout 100ms; connect_timeout 100ms; }
    ratelimit_redis_zone \$arg_k zone=slow rate=1000r/s pool=main;
    ratelimit_redis_zone \$arg_k zone=z rate=5r/m pool=fast;
    ratelimit_redis_zone \$arg_k zone=flood rate=1r/m pool=fast;
    server {
        listen 127.0.0.1:$port;
        location = /limited { ratelimit_redis zone=slow; empty_gif; }
        location = /plain   { empty_gif; }
        location = /open    { ratelimit_redis zone=z; empty_gif; }
        location = /closed  { ratelimit_redis zone=z; ratelimit_redis_fail_open off; empty_gif; }
        location = /flood   { ratelimit_redis zone=flood; empty_gif; }
    }
_EOC_
my $u = "http://127.0.0.1:$port";

# 1. A worker never blocks: Redis asleep, the single worker still serves.
{
    is((get("$u/limited?k=warm"))[0], 200, 'warm-up');
    system("redis-cli -p $rp debug sleep 1.5 >/dev/null 2>&1 &");
    sleep 0.15;
    my $pid = fork // die;
    if ($pid == 0) {
        my ($c, $t) = get("$u/limited?k=w", 5);
        open my $f, '>', "$work/limited.out"; print $f "$c $t\n"; close $f;
        POSIX::_exit(0);
    }
    sleep 0.1;
    my $worst = 0;
    for (1 .. 5) {
        my ($c, $t) = get("$u/plain", 2);
        is($c, 200, "plain request $_ while Redis sleeps");
        $worst = $t if $t > $worst;
    }
    waitpid $pid, 0;
    open my $f, '<', "$work/limited.out"; my ($lc, $lt) = split ' ', <$f>;
    cmp_ok($worst, '<', 0.2, "plain requests answer at once while Redis sleeps (worst ${worst}s)");
    is($lc, 200, 'the limited request is answered once Redis wakes');
    cmp_ok($lt, '>', 0.8, "the limited request waited for Redis (${lt}s)");
    sleep 1.5;
}

# 2. Redis paused: each request waits about the pool timeout, then fails open.
{
    system("redis-cli -p $rp debug sleep 1.5 >/dev/null 2>&1 &");
    sleep 0.15;
    my $worst = 0;
    for (1 .. 5) {
        my ($c, $t) = get("$u/open?k=p$_", 2);
        is($c, 200, "paused Redis, fail_open on: request $_ admitted");
        $worst = $t if $t > $worst;
    }
    cmp_ok($worst, '<', 0.5, "paused Redis: requests bounded by the 100ms timeout (worst ${worst}s)");
    my ($c) = get("$u/closed?k=pc", 2);
    is($c, 503, 'paused Redis, fail_open off: 503');
    sleep 1.6;
    ok(errlog_has($d, qr/redis pool "fast" timed out after 100 ms/), 'timeouts are logged');
}

# 3. Client disconnects while waiting: tokens detach, nothing breaks.
{
    system("redis-cli -p $rp debug sleep 1 >/dev/null 2>&1 &");
    sleep 0.1;
    my @pids;
    for my $i (1 .. 20) {
        my $pid = fork // die;
        if ($pid == 0) { get("$u/limited?k=gone$i", 0.2); POSIX::_exit(0) }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
    sleep 1.2;
    is((get("$u/limited?k=after"))[0], 200, 'after 20 clients left mid-wait, requests are served');
    ok(errlog_has($d, qr/client prematurely closed connection/),
       'nginx noticed the clients leaving');
}

# 4. Deny cache: a flood against one rejected key reaches Redis once.
{
    wait_window($rp, 60, 5);
    is((get("$u/flood?k=hot"))[0], 200, 'first request of the hot key admitted');
    my $before = evalsha_calls($rp);
    my %codes;
    my $t0 = time;
    $codes{(get("$u/flood?k=hot"))[0]}++ for 1 .. 200;
    my $took = time - $t0;
    my $calls = evalsha_calls($rp) - $before;
    is($codes{429} || 0, 200, '200 requests of a rejected key: all 429');
    cmp_ok($calls, '<=', 1, "and they cost $calls Redis round trip(s)");

    # one line from Redis' verdict, then the cache's at most once a second;
    # a request a second later reports the rest
    sleep 1.1;
    is((get("$u/flood?k=hot"))[0], 429, 'a second later: still 429');
    my $cached = errlog_has($d, qr/zone "flood", retry after \d+ ms \(cached, \d+ more/);
    ok($cached >= 2 && $cached <= int($took) + 3,
       "the flood left $cached cached-rejection lines in ${\ sprintf '%.1f', $took + 1.1} s");
    my $skipped = 0;
    open my $f, '<', "$d/logs/error.log" or die;
    /zone "flood".*\(cached, (\d+) more/ and $skipped += $1 for <$f>;
    # 201 rejections: Redis decided the first (its own line), the cache the rest
    is(errlog_has($d, qr/zone "flood", retry after \d+ ms$|zone "flood", retry after \d+ ms,/), 1,
       'the rejection Redis decided has its own line');
    is($skipped + $cached, 200, "every cached rejection is logged or counted in a line ($cached + $skipped)");
}

# 5. NOSCRIPT after SCRIPT FLUSH: the script is loaded again, no error.
{
    redis_cli($rp, 'script flush');
    is((get("$u/open?k=noscript"))[0], 200, 'request after SCRIPT FLUSH admitted');
    ok(errlog_has($d, qr/lost its scripts, loading again/), 'NOSCRIPT recovery logged');
    my ($c) = get("$u/closed?k=noscript");
    is($c, 200, 'the next request uses EVALSHA again');
}

# 6. Redis killed: fail open fast / 503; restarted: limiting resumes by itself.
{
    stop_redis($rp);
    my $t0 = time;
    my %codes;
    $codes{(get("$u/open?k=down"))[0]}++ for 1 .. 50;
    my $el = time - $t0;
    is($codes{200} || 0, 50, 'Redis down, fail_open on: 50 of 50 admitted');
    cmp_ok($el, '<', 3, sprintf('Redis down: 50 requests in %.2fs (no waiting)', $el));
    is((get("$u/closed?k=down"))[0], 503, 'Redis down, fail_open off: 503');
    start_redis($rp);
    sleep 2.5;
    wait_window($rp, 60, 5);
    my @codes = map { (get("$u/open?k=back"))[0] } 1 .. 6;
    is("@codes", "200 200 200 200 200 429", 'limiting resumes after Redis comes back');
    ok(errlog_has($d, qr/redis pool "fast" is down/), 'the pool going down is logged');
}

errlog_clean($d, 'single instance');

# 7. Two nginx instances share one Redis: together they admit the limit exactly.
{
    my ($pa, $pb) = (free_port(), free_port());
    my $conf = sub {
        my $p = shift;
        return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
    ratelimit_redis_zone \$arg_k zone=shared rate=100r/m pool=main;
    server { listen 127.0.0.1:$p; location = /t { ratelimit_redis zone=shared; empty_gif; } }
_EOC_
    };
    my $da = start_nginx('a', $conf->($pa), workers => 2);
    my $db = start_nginx('b', $conf->($pb), workers => 2);
    wait_window($rp, 60, 10);
    my %codes;
    for my $i (1 .. 200) {
        my $p = $i % 2 ? $pa : $pb;
        $codes{(get("http://127.0.0.1:$p/t?k=two"))[0]}++;
    }
    is($codes{200} || 0, 100, 'two instances, 200 requests at 100/min: 100 admitted');
    is($codes{429} || 0, 100, '... and 100 rejected');
    errlog_clean($da, 'instance a');
    errlog_clean($db, 'instance b');

    # 8. Reload under traffic: no failed request, no leaked socket.
    my $pid = fork // die;
    if ($pid == 0) {
        my ($bad, $n) = (0, 0);
        my $end = time + 3;
        while (time < $end && $n < 3000) {
            my ($c) = get("http://127.0.0.1:$pa/t?k=reload$n", 2);
            $bad++ unless $c == 200 || $c == 429;
            $n++;
        }
        open my $f, '>', "$work/reload.out"; print $f "$bad $n\n"; close $f;
        POSIX::_exit(0);
    }
    for (1 .. 3) { sleep 0.7; nginx_signal($da, 'reload') }
    waitpid $pid, 0;
    open my $f, '<', "$work/reload.out"; my ($bad, $n) = split ' ', <$f>;
    cmp_ok($n, '>', 50, "traffic during reloads ($n requests)");
    is($bad, 0, 'no request failed across 3 reloads');

    # 9. Graceful quit while Redis holds a command: the worker exits cleanly.
    system("redis-cli -p $rp debug sleep 0.8 >/dev/null 2>&1 &");
    sleep 0.1;
    my $q = fork // die;
    if ($q == 0) { get("http://127.0.0.1:$pa/t?k=quit", 3); POSIX::_exit(0) }
    sleep 0.1;
    my $t0 = time;
    stop_nginx($da);
    my $el = time - $t0;
    waitpid $q, 0;
    cmp_ok($el, '<', 4, sprintf('nginx -s quit with a command in flight exits in %.2fs', $el));
    sleep 1;
    errlog_clean($da, 'instance a after reloads and quit');
    stop_nginx($db);
}

# 10. A worker that has just started waits for its first connection
#     (bounded by timeout) rather than failing open.
{
    my $ps = free_port();
    system("redis-cli -p $rp debug sleep 1 >/dev/null 2>&1 &");
    sleep 0.1;
    my $ds = start_nginx('starting', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 3s; connect_timeout 3s; }
    ratelimit_redis_zone \$arg_k zone=s rate=10r/m pool=main;
    server {
        listen 127.0.0.1:$ps;
        location = /t {
            ratelimit_redis zone=s;
            add_header X-RL \$ratelimit_redis_status always;
            empty_gif;
        }
    }
_EOC_
    my $h = `curl -s -m 5 -D - -o /dev/null 'http://127.0.0.1:$ps/t?k=starting'`;
    like($h, qr/X-RL: PASSED/, 'the first request of a new worker is limited, not failed open');
    errlog_clean($ds, 'starting instance');
    stop_nginx($ds);
}

# 11. Redis frozen (SIGSTOP: connections stay open, nothing answers): the
#     watchdog drops the connection while ratelimit and session share the
#     pool; requests keep being answered, fast, and limiting comes back.
{
    my $pf = free_port();
    my $df = start_nginx('frozen', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 100ms; connect_timeout 200ms; }
    ratelimit_redis_zone \$arg_k zone=f rate=3r/m pool=main;
    server {
        listen 127.0.0.1:$pf;
        location = /t {
            ratelimit_redis zone=f;
            session_redis main;
            session_redis_required off;
            session_redis_fail_open on;
            add_header X-RL \$ratelimit_redis_status always;
            empty_gif;
        }
    }
_EOC_
    my $uf = "http://127.0.0.1:$pf";
    is((get("$uf/t?k=warm"))[0], 200, 'frozen: warm-up');
    kill 'STOP', $redis{$rp};
    my ($n, $bad, $worst) = (0, 0, 0);
    my $end = time + 4.5;
    while (time < $end && $n < 200) {
        my ($c, $t) = get("$uf/t?k=frozen$n", 2);
        $bad++ unless $c == 200;
        $worst = $t if $t > $worst;
        $n++;
        sleep 0.02;
    }
    kill 'CONT', $redis{$rp};
    is($bad, 0, "Redis frozen for 4.5 s: all $n requests answered 200");
    cmp_ok($worst, '<', 0.5, "each within the pool timeout or at once (worst ${worst}s)");
    ok(errlog_has($df, qr/did not answer PING for \d+ ms, reconnecting|is down: command timed out/),
       'the stuck connection was dropped (command timeout or PING watchdog)');
    sleep 2.5;
    wait_window($rp, 60, 5);
    my @codes = map { (get("$uf/t?k=thawed"))[0] } 1 .. 4;
    is("@codes", "200 200 200 429", 'limiting resumes once Redis thaws');
    errlog_clean($df, 'frozen instance');
    stop_nginx($df);
}

done_testing();
