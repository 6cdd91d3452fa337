# nginx follows Redis Sentinel itself, no HAProxy between (t/520 is the
# HAProxy recipe): `sentinel HOST:PORT;` x3 + `master NAME;`.  One master,
# two replicas, three redis-sentinel (quorum 2, down-after 1 s, failover
# timeout 3 s) with requirepass, nginx with sentinel_password;
# ratelimit_redis (fail open) and session_redis (express-session cookies,
# fail_open off) on the pool.
#
#   a `server` pool demoted without a connection drop (REPLICAOF): every
#   worker notices within a PING interval plus the timeout
#   SIGKILL of the master under steady load: every request answered per
#   policy, limiting and sessions back within 3 s of the promotion, exact
#   counts after it; the old master back as a replica gets no EVALSHA / GET
#   SENTINEL FAILOVER: followed through +switch-master (the notice line),
#   no -READONLY needed
#   the first Sentinel dead: the next one answers; no Sentinel at all at
#   start: down, verdicts per policy, up when they come back; a pool without
#   the Sentinels' password: down, with a log line
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256_base64);
use POSIX ();

our ($work, $nginx, $so, %redis, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
require "$FindBin::Bin/helpers/pool.pl";
need_module_and_redis();

my ($sentinel_bin) = grep { -x } map { "$_/redis-sentinel" }
                          split(/:/, $ENV{PATH} || ''), '/usr/sbin', '/usr/bin';
plan skip_all => 'redis-sentinel not found' unless $sentinel_bin;

my $parent = $$;
my %proc;                   # name => pid (Redis nodes and Sentinels)
my $spw = 'sentinel-secret';

sub cli { return redis_cli_bounded(@_) }
sub scli { my $port = shift; return cli($port, '-a', $spw, '--no-auth-warning', @_) }
sub field { my ($text, $name) = @_; return $text =~ /^\Q$name\E:(\S+)/m ? $1 : '' }

sub spawn {
    my ($name, @cmd) = @_;
    mkdir "$work/$name";
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>>', "$work/$name/out.log";
        open STDERR, '>&', \*STDOUT;
        { exec @cmd }
        POSIX::_exit(1);
    }
    $proc{$name} = $pid;
}

sub reap {
    my ($name, $sig) = @_;
    my $pid = delete $proc{$name} or return;
    kill $sig || 'KILL', $pid;
    for (1 .. 100) { last if waitpid($pid, POSIX::WNOHANG()); sleep 0.05 }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

END {
    if ($$ == $parent) {
        local $?;
        reap($_) for keys %proc;
    }
}

sub node {
    my ($name, $port, @extra) = @_;
    spawn($name, 'redis-server', '--port', $port, '--bind', '127.0.0.1', '--save', '',
          '--appendonly', 'no', '--dir', "$work/$name", @extra);
    return within(5, sub { cli($port, 'ping') eq 'PONG' });
}

# EVALSHA / GET that reached a server since its CONFIG RESETSTAT
sub calls {
    my ($port, $cmd) = @_;
    my $s = cli($port, 'info', 'commandstats');
    my ($c) = $s =~ /^cmdstat_$cmd:calls=(\d+)/m;
    my ($r) = $s =~ /^cmdstat_$cmd:.*rejected_calls=(\d+)/m;
    return ($c // 0) + ($r // 0);
}

# keep away from a window boundary of 60 s on the clock of the Redis at $port
sub window_ok {
    my ($port, $margin) = @_;
    within(65, sub {
        my ($now) = split /\n/, cli($port, 'time');
        my $pos = ($now // 0) % 60;
        return $pos >= 1 && 60 - $pos > $margin;
    }, 0.5);
}

# ------------- 1. a `server` pool demoted without a connection drop (today) --
# The bound: each worker checks ROLE (or PINGs) every second (README "Core"),
# the answer comes within `timeout` (200ms), and the worker then drops every
# connection of the pool at once: 1.2 s; 1.3 s more for a loaded 2-core
# machine and the metric poll.  t/170 covers one worker under traffic, a user
# without ROLE and -MASTERDOWN; here: two workers, connections 4, idle, every
# worker must notice (nginx_redis_up_workers).
{
    my ($x, $y) = (free_port(), free_port());
    ok(node('demo-x', $x) && node('demo-y', $y), 'two Redis servers for the demotion');
    my $dp = free_port();
    my $dd = start_nginx('demote', <<"_EOC_", workers => 2);
    redis_pool demo { server 127.0.0.1:$x; timeout 200ms; connections 4; }
    ratelimit_redis_zone \$arg_k zone=d rate=1000000r/m pool=demo;
    server {
        listen 127.0.0.1:$dp;
        add_header X-RL \$ratelimit_redis_status always;
        location = /d { ratelimit_redis zone=d; empty_gif; }
        location = /metrics { health_metrics; }
    }
_EOC_
    my $b = "http://127.0.0.1:$dp";
    my $upw = sub { metric($b, 'nginx_redis_up_workers\{pool="demo"\}') // -1 };
    ok(defined within(5, sub { $upw->() == 2 }), 'both workers up on the master');
    is(verdict("$b/d?k=1"), '200 PASSED', 'limited');
    sleep 0.5;
    my $t0 = time;
    is(cli($x, 'replicaof', '127.0.0.1', $y), 'OK', 'REPLICAOF on the master, connections kept');
    my $t = within(2.5, sub { $upw->() == 0 }, 0.05);
    ok(defined $t, 'every worker noticed within 2.5 s = PING interval 1 s + timeout 0.2 s'
                   . ' + 1.3 s slack (' . secs($t) . ')');
    my $r = preq("$b/d?k=2");
    ok("$r->{code} $r->{rl}" eq '200 FAILED_OPEN' && $r->{time} < 0.5,
       "then requests fail open at once ($r->{code} $r->{rl}, ${\ sprintf '%.2f', $r->{time}} s)");
    cli($x, 'replicaof', 'no', 'one');
    ok(defined within(3, sub { $upw->() == 2 }), 'master again: both workers up within 3 s');
    stop_nginx($dd);
    errlog_clean($dd, 'the demoted server pool');
    reap('demo-x', 'TERM');
    reap('demo-y', 'TERM');
}

# ------------------------------------------------------------ topology --
my ($mp, $r1, $r2) = (free_port(), free_port(), free_port());
my @sp = map { free_port() } 1 .. 3;
my %port_of = (m => $mp, r1 => $r1, r2 => $r2);

ok(node('m', $mp), "master on $mp");
ok(node('r1', $r1, '--replicaof', '127.0.0.1', $mp), "replica 1 on $r1");
ok(node('r2', $r2, '--replicaof', '127.0.0.1', $mp), "replica 2 on $r2");
ok(defined within(10, sub {
       !grep { field(cli($_, 'info', 'replication'), 'master_link_status') ne 'up' } $r1, $r2 }),
   'both replicas in sync');

sub sentinel_start {
    my ($i) = @_;
    my $dir = "$work/sentinel$i";
    mkdir $dir;
    my $conf = "$dir/sentinel.conf";
    unless (-e $conf) {   # a restart reads what the Sentinel rewrote
        open my $f, '>', $conf or die;
        print $f <<"_EOC_";
port $sp[$i]
bind 127.0.0.1
dir $dir
requirepass $spw
sentinel sentinel-pass $spw
sentinel monitor mm 127.0.0.1 $mp 2
sentinel down-after-milliseconds mm 1000
sentinel failover-timeout mm 3000
sentinel parallel-syncs mm 1
_EOC_
        close $f;
    }
    spawn("sentinel$i", $sentinel_bin, $conf);
    return within(5, sub { scli($sp[$i], 'ping') eq 'PONG' });
}
ok(sentinel_start($_), "sentinel $_ on $sp[$_] (requirepass)") for 0 .. 2;
my $t = within(20, sub {
    for my $p (@sp) {
        my %m = split /\n/, scli($p, 'sentinel', 'master', 'mm');
        return 0 unless ($m{'num-other-sentinels'} // 0) == 2 && ($m{'num-slaves'} // 0) == 2;
    }
    return 1;
});
ok(defined $t, '3 Sentinels see each other and both replicas (' . secs($t) . ')');
like(cli($sp[0], 'ping'), qr/^$|NOAUTH/, 'a Sentinel without its password refuses');

# the master as Sentinel $i names it: its port, or ''
sub named {
    my ($i) = @_;
    my @a = split /\n/, scli($sp[$i], 'sentinel', 'get-master-addr-by-name', 'mm');
    return @a == 2 && $a[0] eq '127.0.0.1' ? $a[1] : '';
}
is(named(0), $mp, 'Sentinel names the master');

# express-session cookies (cookie-signature), stored as connect-redis does
my $secret = 'sentinel test secret';
sub cookie_for {
    my ($sid) = @_;
    (my $sig = hmac_sha256_base64($sid, $secret)) =~ s/=+$//;
    my $v = "s:$sid.$sig";
    $v =~ s/([^A-Za-z0-9\-_.!~*'()])/sprintf('%%%02X', ord $1)/ge;
    return "connect.sid=$v";
}
my @users = map { "user$_" } 1 .. 4;
my %cookie;
for my $u (@users) {
    my $sid = "sid-$u-$$";
    cli($mp, 'set', "sess:$sid",
        qq('{"cookie":{"originalMaxAge":3600000,"expires":"2036-11-27T01:57:37.589Z","httpOnly":true,"path":"/"},"user":{"id":"$u"}}'),
        'ex', 3600);
    $cookie{$u} = cookie_for($sid);
}
is(cli($mp, 'wait', 2, 2000), 2, 'the sessions reached both replicas (WAIT)');

# ---------------------------------------------------------------- nginx --
my $sentinels = join ' ', map { "sentinel 127.0.0.1:$_;" } @sp;
sub nginx_conf {
    my ($port, $pool) = @_;
    return <<"_EOC_";
    redis_pool mm { $pool }
    ratelimit_redis_zone \$arg_k zone=z rate=5r/m pool=mm;
    ratelimit_redis_zone \$arg_k zone=wide rate=1000000r/m pool=mm;
    server {
        listen 127.0.0.1:$port;
        add_header X-RL \$ratelimit_redis_status always;
        location = /z      { ratelimit_redis zone=z; empty_gif; }
        location = /wide   { ratelimit_redis zone=wide; empty_gif; }
        location = /closed { ratelimit_redis zone=wide; ratelimit_redis_fail_open off; empty_gif; }
        location = /sess {
            session_redis mm;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_set \$uid user.id;
            add_header X-Uid "\$uid" always;
            add_header X-Session \$session_redis_status always;
            empty_gif;
        }
        location = /ready   { health_ready; }
        location = /metrics { health_metrics; }
    }
_EOC_
}

sub start_gated {
    my ($name, $http, $what) = @_;
    my ($rc, $out) = nginx_t($name, $http);
    unless (ok($rc == 0, "nginx -t accepts $what")) {
        diag("nginx -t said:\n$out");
        return undef;
    }
    return start_nginx($name, $http, workers => 2);
}

my $np = free_port();
my $pool = "$sentinels master mm; sentinel_password $spw; timeout 300ms; connect_timeout 1s;";
my $d = start_gated('native', nginx_conf($np, $pool),
                    'a pool of 3 Sentinels (sentinel, master, sentinel_password)');
unless ($d) { done_testing(); exit }
my $u = "http://127.0.0.1:$np";
my $n = 0;

# a fresh key on zone z (5r/m) right after a window start: 5 PASSED, then REJECTED
sub exact_on {
    my ($port, $what, $base) = @_;
    $base //= $u;
    window_ok($port, 8);
    my $key = "e$$-" . $n++;
    is(join(' ', map { (split ' ', verdict("$base/z?k=$key"))[1] // '-' } 1 .. 6),
       'PASSED PASSED PASSED PASSED PASSED REJECTED', "$what: exactly 5 PASSED at 5r/m");
    my $count = '';
    for my $h (split /\s+/, cli($port, '--scan', '--pattern', 'rl:{z}:*')) {
        my $v = cli($port, 'hget', $h, $key);
        $count = record_count($v) if record_count($v) ne '';
    }
    diag("scan: " . join(",", map { "$_=" . cli($port, "hget", $_, $key) } split /\s+/, cli($port, "--scan", "--pattern", "rl:{z}:*"))) unless $count;
    like($count, qr/^\d+$/,
         "$what: the counter is on the master ($port)");
}

# 2. steady state
{
    my $t = within(5, sub { pool_state($u, 'mm') eq 'ok' });
    ok(defined $t, 'the Sentinel pool is up (' . secs($t) . ')') or diag((ready_verbose($u))[1]);
    exact_on($mp, 'before any failover');
    my $r = preq("$u/sess", cookie => $cookie{user1});
    is("$r->{code} $r->{sess} $r->{uid}", '200 VALID user1', 'an express session is VALID');
    ok(errlog_has($d, qr/redis pool "mm".*127\.0\.0\.1:$mp/), 'the log names the master it found');
}

# 3. SIGKILL of the master under steady load: 4 clients, distinct keys,
#    /wide (fail open) and /sess (fail_open off) in turn, ~20 requests/s
my $load_secs = 18;
sub load_clients {
    my ($tag) = @_;
    my @kids;
    for my $i (0 .. $#users) {
        my $log = "$work/load-$tag-$i.log";
        my $pid = fork // die;
        if ($pid == 0) {
            open my $f, '>', $log or POSIX::_exit(1);
            $f->autoflush(1);
            my $t0 = time;
            for my $j (1 .. 1000) {
                last if time - $t0 > $load_secs;
                my $ts = time;
                my $w = preq("$u/wide?k=$tag-$i-$j", timeout => 3);
                print $f sprintf("%.3f wide %d %s\n", $ts, $w->{code}, $w->{rl} || '-');
                $ts = time;
                my $s = preq("$u/sess", cookie => $cookie{ $users[$i] }, timeout => 3);
                print $f sprintf("%.3f sess %d %s %s\n", $ts, $s->{code}, $s->{sess} || '-',
                                 $s->{uid} || '-');
                my $rest = $ts + 0.4 - time;
                sleep $rest if $rest > 0;
            }
            POSIX::_exit(0);
        }
        push @kids, [$pid, $log];
    }
    return @kids;
}

sub load_results {
    my (@kids) = @_;
    my @rows;
    for my $k (@kids) {
        my ($pid, $log) = @$k;
        for (1 .. 200) { last if waitpid($pid, POSIX::WNOHANG()); sleep 0.1 }
        kill 'KILL', $pid;
        waitpid $pid, 0;
        open my $f, '<', $log or next;
        push @rows, map { [split ' '] } <$f>;
    }
    return sort { $a->[0] <=> $b->[0] } @rows;
}

# the last time a row of $kind was not $good, relative to $t0 (or undef)
sub last_bad {
    my ($rows, $kind, $good, $t0) = @_;
    my @bad = grep { $_->[1] eq $kind && "$_->[2] $_->[3]" ne $good } @$rows;
    return @bad ? $bad[-1][0] - $t0 : undef;
}

my ($newp, $oldp);
{
    my @kids = load_clients('kill');
    sleep 2.5;
    my $t_kill = time;
    reap('m', 'KILL');
    my $t_prom;
    within(15, sub {
        my $p = named(1);
        if ($p && $p ne $mp) { $t_prom = time; $newp = $p; return 1 }
        return 0;
    }, 0.05);
    my @rows = load_results(@kids);
    ok(defined $t_prom, 'Sentinel promoted a replica ('
                        . secs(defined $t_prom ? $t_prom - $t_kill : undef) . ' after the kill)');
    $t_prom //= $t_kill + 15;
    my %seen;
    $seen{"$_->[1] $_->[2] $_->[3]"}++ for @rows;
    diag(sprintf('kill: %d requests; promotion %.1f s after the kill; %s', scalar @rows,
                 $t_prom - $t_kill, join(', ', map { "$_ x$seen{$_}" } sort keys %seen)));
    cmp_ok(scalar @rows, '>=', 10 * $load_secs, 'the load ran (about 20 requests/s)');
    is(scalar(grep { $_->[2] == 0 } @rows), 0, 'no request unanswered (each got an HTTP status)');
    my @off = grep { !/^wide 200 (PASSED|FAILED_OPEN)$/ && !/^sess (200 VALID|503 ERROR)/ } keys %seen;
    ok(!@off, 'every answer per policy: /wide 200 PASSED or FAILED_OPEN,'
              . ' /sess 200 VALID or 503 ERROR') or diag("others: @off");
    ok(!grep({ /^sess 200 VALID (\S+)/ && $1 !~ /^user\d$/ } keys %seen), 'sessions name their users');
    my $lw = last_bad(\@rows, 'wide', '200 PASSED', $t_prom);
    my $ls = last_bad(\@rows, 'sess', '200 VALID', $t_prom);
    ok(!defined $lw || $lw <= 3, 'limiting resumed within 3 s of the promotion (last failure '
                                . (defined $lw ? sprintf('%+.1f s', $lw) : 'none') . ')');
    ok(!defined $ls || $ls <= 3, 'sessions resumed within 3 s of the promotion (last failure '
                                . (defined $ls ? sprintf('%+.1f s', $ls) : 'none') . ')');
    my @after = grep { $_->[0] > $t_prom + 3 } @rows;
    ok(@after >= 20 && !grep({ "$_->[2] $_->[3]" !~ /^200 (PASSED|VALID)$/ } @after),
       'and stayed so: ' . scalar(@after) . ' requests after that, all PASSED / VALID');
    ok(errlog_has($d, qr/redis pool "mm".*master "mm" is now 127\.0\.0\.1:$newp/),
       "the notice: master \"mm\" is now 127.0.0.1:$newp");
    exact_on($newp, 'after the promotion');
}

# 4. the old master back, as a replica of the new one: nothing from nginx
{
    $oldp = $mp;
    ok(node('m', $oldp, '--replicaof', '127.0.0.1', $newp), 'the old master restarted as a replica');
    ok(defined within(10, sub { field(cli($oldp, 'info', 'replication'), 'master_link_status') eq 'up' }),
       'in sync with the new master');
    ok(defined within(10, sub {
           my %m = split /\n/, scli($sp[1], 'sentinel', 'master', 'mm');
           ($m{'num-slaves'} // 0) >= 2 }), 'and known to Sentinel as a replica');
    is(cli($oldp, 'config', 'resetstat'), 'OK', 'CONFIG RESETSTAT on it');
    for my $i (1 .. 20) {
        verdict("$u/wide?k=old$i");
        preq("$u/sess", cookie => $cookie{user2});
    }
    sleep 1.5;   # a ROLE / PING interval too
    is(calls($oldp, 'evalsha') + calls($oldp, 'eval'), 0, 'the old master gets no EVALSHA from nginx');
    is(calls($oldp, 'get'), 0, 'and no GET');
    cmp_ok(calls($newp, 'evalsha'), '>', 0, 'the new master gets them');
}

# 5. SENTINEL FAILOVER (graceful): followed through +switch-master
{
    my $mark = errlog_mark($d);
    my $before = $newp;
    window_ok($before, 20);
    like(scli($sp[1], 'sentinel', 'failover', 'mm'), qr/^OK/, 'SENTINEL FAILOVER mm');
    my $next;
    my $t = within(15, sub { my $p = named(1); $next = $p if $p && $p ne $before; $next });
    ok(defined $t, 'Sentinel switched the master (' . secs($t) . ')');
    $next //= '';
    my $seen = within(3, sub {
        scalar errlog_since($d, $mark, qr/redis pool "mm".*master "mm" is now 127\.0\.0\.1:$next\b/) });
    ok(defined $seen, "nginx followed: notice 'master \"mm\" is now 127.0.0.1:$next' within 3 s of"
                      . ' the switch');
    my @ro = errlog_since($d, $mark, qr/redis pool "mm".*(READONLY|replica|MASTERDOWN)/);
    ok(!@ro, 'without a -READONLY (nginx moved before the old master was demoted)') or diag(@ro);
    my $ok = within(3, sub { verdict("$u/wide?k=g" . $n++) eq '200 PASSED'
                             && cli($next, '--scan', '--pattern', 'rl:{wide}:*') ne '' });
    ok(defined $ok, 'limiting on the new master');
    exact_on($next, 'after SENTINEL FAILOVER');
    $newp = $next;
}

stop_nginx($d);
errlog_clean($d, 'nginx across the failovers');

# 6. the first Sentinel dead: the next one answers; a pool without the
#    Sentinels' password is down, and says so
{
    reap('sentinel0', 'KILL');
    my $p2 = free_port();
    my $http = nginx_conf($p2, $pool);
    $http =~ s/(    ratelimit_redis_zone)/    redis_pool nopw { $sentinels master mm; timeout 300ms; }\n    ratelimit_redis_zone \$arg_k zone=nopw rate=10r\/m pool=nopw;\n$1/;
    $http =~ s/(        location = \/ready)/        location = \/nopw { ratelimit_redis zone=nopw; empty_gif; }\n$1/;
    my $d2 = start_gated('first-dead', $http, 'Sentinel pools, the first Sentinel dead');
    if ($d2) {
        my $b = "http://127.0.0.1:$p2";
        my $t = within(5, sub { pool_state($b, 'mm') eq 'ok' });
        ok(defined $t, 'first Sentinel dead: the pool is up through the next (' . secs($t) . ')');
        exact_on($newp, 'first Sentinel dead', $b);
        my $r = preq("$b/sess", cookie => $cookie{user3});
        is("$r->{code} $r->{sess}", '200 VALID', 'and sessions are VALID');
        like(pool_state($b, 'nopw'), qr/^failed/, 'no sentinel_password: pool nopw is down');
        is(verdict("$b/nopw?k=1"), '200 FAILED_OPEN', 'its requests fail open');
        ok(errlog_has($d2, qr/\[error\].*redis pool "nopw".*(NOAUTH|auth|password)/i),
           'an [error] line names pool nopw and says the Sentinels want a password')
            or diag(join '', errlog_lines($d2, qr/nopw/));
        stop_nginx($d2);
        errlog_clean($d2, 'the first Sentinel dead');
    }
}

# 7. no Sentinel at all when nginx starts: down, then up when they are back
{
    reap('sentinel1', 'TERM');
    reap('sentinel2', 'TERM');
    my $p3 = free_port();
    my $d3 = start_gated('none', nginx_conf($p3, $pool), 'a Sentinel pool, no Sentinel running');
    if ($d3) {
        my $b = "http://127.0.0.1:$p3";
        ok(defined within(3, sub { pool_state($b, 'mm') =~ /^failed/ }), 'no Sentinel: the pool is down');
        is((ready_verbose($b))[0], 503, '/ready 503');
        my $r = preq("$b/wide?k=none1");
        ok("$r->{code} $r->{rl}" eq '200 FAILED_OPEN' && $r->{time} < 1,
           "fail open at once ($r->{code} $r->{rl}, ${\ sprintf '%.2f', $r->{time}} s)");
        is(verdict("$b/closed?k=none2"), '503 FAILED_CLOSED', 'fail_open off: 503');
        is((preq("$b/sess", cookie => $cookie{user4}))->{code}, 503, 'sessions: 503');
        ok(scalar(errlog_lines($d3, qr/\[error\].*redis pool "mm".*sentinel/i)),
           'an [error] line names the pool and the Sentinels')
            or diag(join '', grep { defined } (errlog_lines($d3, qr/redis pool/))[0 .. 4]);
        ok(sentinel_start($_), "sentinel $_ back") for 0 .. 2;
        my $t = within(8, sub { verdict("$b/wide?k=back" . $n++) eq '200 PASSED' });
        ok(defined $t, 'Sentinels back: limiting resumes (' . secs($t) . ')');
        my $s = preq("$b/sess", cookie => $cookie{user4});
        is("$s->{code} $s->{sess} $s->{uid}", '200 VALID user4', 'and sessions');
        stop_nginx($d3);
        errlog_clean($d3, 'no Sentinel at start');
    }
}

done_testing();
