# `server NAME:PORT resolve;`: the address of a managed Redis moves on
# failover, behind a DNS name.  A tiny DNS server of the test's own
# (helpers/dns.pl, TTL 1) names redis.test; two Redis servers on one port,
# 127.0.0.1 (A) and 127.0.0.2 (B) (Linux routes all of 127/8 to lo).
#
#   resolved at startup (no resolve): works; a name the system cannot
#   resolve and a `resolve` without `resolver`: nginx -t refuses
#   starts on A; the name moves to B and A is demoted (REPLICAOF B): the
#   next writes get -READONLY, the pool resolves again and limits on B
#   within 3 s, A gets no more EVALSHA; B killed, A restarted at the name:
#   followed again
#   the DNS server down, silent or answering NXDOMAIN: the pool is down
#   with a log line naming the name, verdicts per fail_open, the worker
#   answers other requests at once (no blocking lookup); back when DNS is
#   no DNS lookup per request
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

our ($work, $nginx, $so, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
require "$FindBin::Bin/helpers/pool.pl";
require "$FindBin::Bin/helpers/dns.pl";
need_module_and_redis();

my $parent = $$;
my %mine;                   # "host:port" => pid

sub rcli {
    my ($hp, @args) = @_;
    my ($h, $p) = split /:/, $hp;
    my $a = join ' ', map { "'$_'" } @args;
    my $out = `timeout 3 redis-cli -h $h -p $p $a 2>&1`;
    $out =~ s/\r//g;
    chomp $out;
    return $out;
}

sub start_r {
    my ($hp) = @_;
    my ($h, $p) = split /:/, $hp;
    my $dir = "$work/redis-$h-$p";
    mkdir $dir;
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        { exec 'redis-server', '--port', $p, '--bind', $h, '--save', '',
               '--appendonly', 'no', '--dir', $dir }
        POSIX::_exit(1);
    }
    $mine{$hp} = $pid;
    return within(5, sub { rcli($hp, 'ping') eq 'PONG' });
}

sub kill_r {
    my ($hp, $sig) = @_;
    my $pid = delete $mine{$hp} or return;
    kill $sig || 'KILL', $pid;
    waitpid $pid, 0;
}

END {
    if ($$ == $parent) {
        local $?;
        kill_r($_) for keys %mine;
    }
}

# EVALSHA calls and rejected calls since the last CONFIG RESETSTAT
sub evalsha_seen {
    my ($hp) = @_;
    my $s = rcli($hp, 'info', 'commandstats');
    my ($c) = $s =~ /cmdstat_evalsha:calls=(\d+)/;
    my ($r) = $s =~ /cmdstat_evalsha:.*rejected_calls=(\d+)/;
    return ($c // 0) + ($r // 0);
}

# the count of KEY in ZONE's hashes on that Redis, '' if none
sub counter_of {
    my ($hp, $zone, $key) = @_;
    for my $h (split /\s+/, rcli($hp, '--scan', '--pattern', "rl:{$zone}:*")) {
        my $v = record_count(rcli($hp, 'hget', $h, $key));
        return $v if $v ne '';
    }
    return '';
}

my $P = free_port();
my ($A, $B) = ("127.0.0.1:$P", "127.0.0.2:$P");
ok(start_r($A), "Redis A on $A");
ok(start_r($B), "Redis B on $B (same port, another loopback address)");
my ($ida) = rcli($A, 'info', 'server') =~ /run_id:(\w+)/;
my ($idb) = rcli($B, 'info', 'server') =~ /run_id:(\w+)/;
ok($ida && $idb && $ida ne $idb, 'A and B are two servers');

# ---------------------------------------------------------- the DNS server --
my $dns = start_dns();
dns_map($dns, 'redis.test' => '127.0.0.1', 'other.test' => '127.0.0.2');
{
    # the harness: nginx's own resolver asks it (proxy_pass with a variable)
    my ($hp, $pp) = (free_port(), free_port());
    my $dh = start_nginx('dnscheck', <<"_EOC_");
    resolver 127.0.0.1:$dns->{port} valid=1s ipv6=off;
    resolver_timeout 1s;
    server { listen 127.0.0.1:$hp; listen 127.0.0.2:$hp; return 200 "\$server_addr"; }
    server { listen 127.0.0.1:$pp; location / { proxy_pass http://\$arg_h:$hp; } }
_EOC_
    my $get = sub { `curl -s -m 5 -w ' %{http_code}' 'http://127.0.0.1:$pp/?h=$_[0]'` };
    is($get->('redis.test'), '127.0.0.1 200', 'the test DNS server answers nginx: redis.test is A');
    is($get->('other.test'), '127.0.0.2 200', 'other.test is B');
    like($get->('nowhere.test'), qr/ 502$/, 'an unknown name: NXDOMAIN (502)');
    dns_map($dns, 'redis.test' => '127.0.0.2', 'other.test' => '127.0.0.2');
    ok(defined within(3, sub { $get->('redis.test') eq '127.0.0.2 200' }),
       'the map rewritten: redis.test is B (TTL 1 s)');
    ok(dns_queries($dns, 'redis.test') >= 2, 'the queries are counted');
    ok(errlog_has($dh, qr/nowhere\.test could not be resolved \(3: Host not found\)/),
       "nginx's resolver logged the NXDOMAIN");
    stop_nginx($dh);
    errlog_clean($dh, 'the resolver check');
    dns_map($dns, 'redis.test' => '127.0.0.1', 'other.test' => '127.0.0.2');
}

# --------------------------------------- resolved once, at startup (today) --
{
    my $sp = free_port();
    my $ds = start_nginx('startup', <<"_EOC_");
    redis_pool main { server localhost:$P; timeout 300ms; }
    ratelimit_redis_zone \$arg_k zone=z rate=2r/m pool=main;
    server {
        listen 127.0.0.1:$sp;
        add_header X-RL \$ratelimit_redis_status always;
        location = /rl { ratelimit_redis zone=z; empty_gif; }
        location = /ready { health_ready; }
    }
_EOC_
    my $s = "http://127.0.0.1:$sp";
    ok(defined within(3, sub { (ready_verbose($s))[0] == 200 }),
       'server localhost:PORT (no resolve), resolved at startup: the pool is up');
    wait_window($P, 60, 5);
    my $key = "startup$$";
    is(join(' ', map { verdict("$s/rl?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'and limits exactly');
    like(counter_of($A, 'z', $key), qr/^\d+$/, 'on A (localhost is 127.0.0.1)');
    stop_nginx($ds);
    errlog_clean($ds, 'a pool resolved at startup');

    my ($rc, $out) = nginx_t('noname', <<"_EOC_");
    redis_pool main { server redis.test:$P; }
    ratelimit_redis_zone \$arg_k zone=z rate=2r/m pool=main;
_EOC_
    isnt($rc, 0, 'server redis.test:PORT without resolve: nginx -t resolves it now, and fails');
    like($out, qr/\[emerg\].*redis\.test/, 'the [emerg] names the host') or diag($out);

    ($rc, $out) = nginx_t('noresolver', <<"_EOC_");
    redis_pool p { server redis.test:$P resolve; }
    ratelimit_redis_zone \$arg_k zone=z rate=2r/m pool=p;
_EOC_
    isnt($rc, 0, '`resolve` without a `resolver`: nginx -t refuses');
    like($out, qr/\[emerg\] no resolver defined to resolve "redis\.test" in redis_pool "p"/,
         'with [emerg] no resolver defined to resolve "redis.test" in redis_pool "p"') or diag($out);
}

# ---------------------------------------------------- the `resolve` pool --
my $np = free_port();
my $http = <<"_EOC_";
    resolver 127.0.0.1:$dns->{port} valid=1s ipv6=off;
    resolver_timeout 2s;
    redis_pool main { server redis.test:$P resolve; timeout 300ms; connect_timeout 1s; }
    ratelimit_redis_zone \$arg_k zone=z rate=2r/m pool=main;
    ratelimit_redis_zone \$arg_k zone=wide rate=1000000r/m pool=main;
    server {
        listen 127.0.0.1:$np;
        add_header X-RL \$ratelimit_redis_status always;
        location = /rl     { ratelimit_redis zone=z; empty_gif; }
        location = /wide   { ratelimit_redis zone=wide; empty_gif; }
        location = /closed { ratelimit_redis zone=wide; ratelimit_redis_fail_open off; empty_gif; }
        location = /plain  { return 200 "no redis here\\n"; }
        location = /ready  { health_ready; }
        location = /metrics { health_metrics; }
    }
_EOC_
my ($rc, $out) = nginx_t('resolve', $http);
unless (ok($rc == 0, 'nginx -t accepts `server redis.test:PORT resolve;` with a resolver')) {
    diag("nginx -t said:\n$out");
    done_testing();
    exit;
}
my $d = start_nginx_main('resolve', '', $http);
my $u = "http://127.0.0.1:$np";
my $n = 0;
sub wide { return verdict("$u/wide?k=w" . $n++) }

# exact limits on a fresh key: PASSED PASSED REJECTED, on the server at $hp
sub limits_on {
    my ($hp, $what) = @_;
    within(65, sub {
        my ($now) = split /\n/, rcli($hp, 'time');
        my $pos = ($now // 0) % 60;
        return $pos >= 1 && 60 - $pos > 5;
    }, 0.5);
    my $key = 'x' . $n++ . "-$$";
    is(join(' ', map { verdict("$u/rl?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       "$what: limits exactly (2r/m)");
    like(counter_of($hp, 'z', $key), qr/^\d+$/, "$what: the counter is on $hp");
    return $key;
}

# 1. starts on A
{
    my $t = within(5, sub { pool_state($u, 'main') eq 'ok' });
    ok(defined $t, 'the resolve pool is up (' . secs($t) . ')') or diag((ready_verbose($u))[1]);
    cmp_ok(dns_queries($dns, 'redis.test'), '>=', 1, 'nginx asked the DNS server for redis.test');
    my $key = limits_on($A, 'starting on A');
    unlike(counter_of($B, 'z', $key), qr/^\d+$/, 'and not on B');
    ok(errlog_has($d, qr/redis pool "main".*127\.0\.0\.1:$P/), 'the log names the address used (A)');

    my $q = dns_queries($dns, 'redis.test');
    my $t0 = time;
    my %v;
    $v{ wide() }++ for 1 .. 40;
    is(join(',', keys %v), '200 PASSED', '40 requests: all PASSED');
    cmp_ok(dns_queries($dns, 'redis.test') - $q, '<=', 0,
           'and no DNS query for them (lookups are per connection, not per request)');
}

# 2. the name moves to B, A is demoted: -READONLY, resolve again, B
{
    dns_map($dns, 'redis.test' => '127.0.0.2');
    my $t0 = time;
    is(rcli($A, 'replicaof', '127.0.0.2', $P), 'OK', 'A demoted: REPLICAOF B');
    my (%v, $resumed);
    while (time - $t0 < 5 * $valgrind_slow) {
        my $v = wide();
        $v{$v}++;
        if ($v eq '200 PASSED' && rcli($B, 'dbsize') > 0) { $resumed = time - $t0; last }
        sleep 0.05;
    }
    diag('after the move: ' . join(', ', map { "$_ x$v{$_}" } sort keys %v));
    ok(defined $resumed && $resumed < 3, 'limiting resumes on B within 3 s of the demotion ('
                                         . secs($resumed) . ')');
    ok(!grep({ !/^200 (PASSED|FAILED_OPEN)$/ } keys %v), 'meanwhile every request 200, PASSED or FAILED_OPEN');
    limits_on($B, 'moved to B');
    ok(errlog_has($d, qr/redis pool "main".*(READONLY|replica)/), 'the log says A became a replica');
    ok(errlog_has($d, qr/redis pool "main".*127\.0\.0\.2:$P/), 'and names the new address (B)');
    is(rcli($A, 'config', 'resetstat'), 'OK', 'CONFIG RESETSTAT on A');
    wide() for 1 .. 20;
    sleep 1.2;      # a PING / ROLE interval: nothing goes to A either
    wide() for 1 .. 20;
    is(evalsha_seen($A), 0, 'A (now a replica) gets no EVALSHA from nginx');
    cmp_ok(evalsha_seen($B), '>', 0, 'B gets them');
    is(pool_state($u, 'main'), 'ok', '/ready: the pool is up');
}

# 3. B killed, A restarted as a master at the name: followed again
{
    kill_r($B);
    kill_r($A, 'TERM');
    ok(start_r($A), 'A restarted (a master again, empty)');
    dns_map($dns, 'redis.test' => '127.0.0.1');
    my $t0 = time;
    my $t = within(3, sub { wide() eq '200 PASSED' && rcli($A, 'dbsize') > 0 });
    ok(defined $t, 'B gone, the name back on A: limiting resumes on A within 3 s (' . secs($t) . ')');
    limits_on($A, 'back on A');
    ok(start_r($B), 'B started again (for later)');
}

# the pool must go through a reconnect to look the name up again: drop its
# connection (CLIENT KILL on A) while DNS is in trouble
sub drop_conn { rcli($A, 'client', 'kill', 'type', 'normal') }

# an outage of DNS of kind $what: the pool down, a log line naming the
# name, verdicts per policy, and other requests answered at once meanwhile
sub dns_outage {
    my ($what, $break, $mend, $secs) = @_;
    my $mark = errlog_mark($d);
    $break->();
    sleep 2.2;              # the cached answer (valid=1s, whole seconds) expires
    drop_conn();
    my ($slow_plain, $slow_rl, $nplain, %v) = (0, 0, 0);
    my $t0 = time;
    while (time - $t0 < $secs) {
        my $p = preq("$u/plain", timeout => 3);
        $nplain++;
        $slow_plain = $p->{time} if $p->{code} != 200 || $p->{time} > $slow_plain;
        my $r = preq("$u/wide?k=o" . $n++, timeout => 3);
        $v{"$r->{code} $r->{rl}"}++;
        $slow_rl = $r->{time} if $r->{time} > $slow_rl;
        sleep 0.05;
    }
    diag("$what: " . join(', ', map { "$_ x$v{$_}" } sort keys %v));
    cmp_ok($slow_plain, '<', 0.5, "$what: a location without Redis answered at once,"
                                  . " $nplain times (slowest ${\ sprintf '%.2f', $slow_plain} s)");
    cmp_ok($slow_rl, '<', 1, "$what: every limited request answered within 1 s"
                             . " (slowest ${\ sprintf '%.2f', $slow_rl} s)");
    ok(!grep({ !/^200 (PASSED|FAILED_OPEN)$/ } keys %v), "$what: all of them 200 PASSED or FAILED_OPEN");
    my $down = within(3, sub { pool_state($u, 'main') =~ /^failed/ });
    ok(defined $down, "$what: the pool is down (/ready?verbose)") or diag((ready_verbose($u))[1]);
    is((ready_verbose($u))[0], 503, "$what: /ready 503");
    is(verdict("$u/wide?k=o" . $n++), '200 FAILED_OPEN', "$what: fail_open on: FAILED_OPEN");
    is(verdict("$u/closed?k=o" . $n++), '503 FAILED_CLOSED', "$what: fail_open off: 503");
    my @lines = errlog_since($d, $mark, qr/\[(error|warn)\].*redis pool "main".*redis\.test|redis\.test.*redis pool "main"/);
    ok(scalar @lines, "$what: a log line names the pool and redis.test")
        or diag(join '', errlog_since($d, $mark, qr/redis|resolv/));
    $mend->();
    my $back = within(6, sub { wide() eq '200 PASSED' });
    ok(defined $back, "$what: DNS back: limiting resumes (" . secs($back) . ')');
}

# 4. DNS in trouble
dns_outage('DNS server down', sub { stop_dns($dns) }, sub { start_dns($dns) }, 3);
dns_outage('DNS server silent', sub { dns_map($dns, 'redis.test' => 'drop') },
           sub { dns_map($dns, 'redis.test' => '127.0.0.1') }, 3);
dns_outage('NXDOMAIN', sub { dns_map($dns, 'other.test' => '127.0.0.2') },
           sub { dns_map($dns, 'redis.test' => '127.0.0.1') }, 2);
limits_on($A, 'after the DNS outages');

stop_nginx_main($d);
errlog_clean($d, 'resolve');
valgrind_clean($d, 'resolve');
done_testing();
