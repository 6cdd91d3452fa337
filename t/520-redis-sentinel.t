# Redis without a single point of failure: the recipe of
# examples/redis-sentinel, run on loopback.  A master, a replica, three
# Sentinels (quorum 2) and HAProxy routing to whichever node says
# role:master, all started from the shipped files with ports filled in; nginx
# rate limits through HAProxy.  The master is killed (SIGKILL) under traffic:
# no request fails (fail open), Sentinel promotes the replica, HAProxy follows
# it, nginx reconnects by itself and limiting works again on the new master.
# Plain Test::More; every wait is bounded.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my %bin;
for my $b (qw(redis-sentinel haproxy)) {
    ($bin{$b}) = grep { -x } map { "$_/$b" } split(/:/, $ENV{PATH} || ''), '/usr/sbin', '/usr/bin';
    plan skip_all => "$b not found (scripts/deps.sh test)" unless $bin{$b};
}

my $ex     = "$FindBin::Bin/../examples/redis-sentinel";
my $render = "$FindBin::Bin/../examples/nginx/render";
my $parent = $$;
my %other;                       # sentinels and HAProxy: pid => name

# a shipped template, placeholders filled in by examples/nginx/render
sub render {
    my ($tpl, $out, %vars) = @_;
    local @ENV{keys %vars} = values %vars;
    my $text = `'$render' '$ex/$tpl'`;
    die "render $tpl failed\n" if $?;
    open my $f, '>', $out or die "$out: $!";
    print $f $text;
    close $f;
    return $out;
}

sub spawn {
    my ($log, $env, @cmd) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        @ENV{keys %$env} = values %$env;
        { exec @cmd }
        POSIX::_exit(1);
    }
    return $pid;
}

sub cli {   # redis-cli, bounded: a dead end never hangs the test
    my $port = shift;
    my $out = `timeout 2 redis-cli -p $port @_ 2>/dev/null`;
    $out =~ s/\r//g;
    return $out;
}

sub field { my ($text, $name) = @_; return $text =~ /^\Q$name\E:(\S+)/m ? $1 : '' }

sub wait_for {   # polls $cond every 0.1 s for at most $secs; returns seconds waited or undef
    my ($secs, $cond) = @_;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return time - $t0 if $cond->();
        sleep 0.1;
    }
    return undef;
}

# GET with the rate limit verdict nginx adds as X-RL
sub req {
    my ($url) = @_;
    my $out = `curl -s -o /dev/null -D - -m 2 '$url'`;
    my ($code) = $out =~ m{^HTTP/\S+ (\d+)}m;
    my ($rl)   = $out =~ /^X-RL: (\S+)/mi;
    return ($code || 0, $rl || '-');
}

END {
    local $?;   # waitpid must not become the exit status
    if ($$ == $parent) {
        kill 'TERM', keys %other;
        for my $pid (keys %other) {
            for (1 .. 40) { last if waitpid($pid, POSIX::WNOHANG()); sleep 0.05 }
            kill 'KILL', $pid;
            waitpid $pid, 0;
        }
    }
}

# ---------------------------------------------------------------- start --
my ($mp, $rp) = (free_port(), free_port());
my @sp = map { free_port() } 1 .. 3;
my $hp = free_port();

for my $node ([master => $mp], [replica => $rp]) {
    my ($role, $p) = @$node;
    mkdir "$work/$role";
    my $conf = render("redis-$role.conf", "$work/$role/redis.conf",
                      REDIS_BIND => '127.0.0.1', REDIS_PORT => $p, REDIS_DIR => "$work/$role",
                      MASTER_HOST => '127.0.0.1', MASTER_PORT => $mp);
    $redis{$p} = spawn("$work/$role/redis.log", {}, 'redis-server', $conf);
    wait_for(5, sub { cli($p, 'ping') =~ /PONG/ }) // BAIL_OUT("redis $role did not start");
}
ok(defined wait_for(10, sub { field(cli($rp, 'info replication'), 'master_link_status') eq 'up' }),
   'the replica is in sync with the master');

for my $i (0 .. 2) {
    mkdir "$work/sentinel$i";
    my $conf = render('sentinel.conf', "$work/sentinel$i/sentinel.conf",
                      SENTINEL_BIND => '127.0.0.1', SENTINEL_PORT => $sp[$i],
                      SENTINEL_DIR => "$work/sentinel$i",
                      MASTER_HOST => '127.0.0.1', MASTER_PORT => $mp);
    $other{ spawn("$work/sentinel$i/sentinel.log", {}, $bin{'redis-sentinel'}, $conf) } = "sentinel$i";
}
# every sentinel must know the replica and the two others before a failover
# can be agreed on (they find each other through the master, every 2 s)
my $t = wait_for(20, sub {
    for my $p (@sp) {
        my %m = split /\n/, cli($p, 'sentinel master mymaster');
        return 0 unless ($m{'num-other-sentinels'} // 0) == 2 && ($m{'num-slaves'} // 0) == 1;
    }
    return 1;
});
ok(defined $t, sprintf('3 sentinels see each other and the replica (%.1fs)', $t // 20));

my %henv = (REDIS_FRONT_BIND => "127.0.0.1:$hp",
            REDIS1_ADDR => "127.0.0.1:$mp", REDIS2_ADDR => "127.0.0.1:$rp");
{
    local @ENV{keys %henv} = values %henv;
    is(system("$bin{haproxy} -c -q -f '$ex/haproxy-redis.cfg' >$work/haproxy-check.log 2>&1"), 0,
       'haproxy -c accepts haproxy-redis.cfg') or diag(`cat $work/haproxy-check.log`);
}
$other{ spawn("$work/haproxy.log", \%henv, $bin{haproxy}, '-db', '-f', "$ex/haproxy-redis.cfg") } = 'haproxy';
# HAProxy routes to the master only once the replica failed its first check
my $streak = 0;
$t = wait_for(10, sub {
    $streak = field(cli($hp, 'info server'), 'tcp_port') eq $mp ? $streak + 1 : 0;
    return $streak >= 5;
});
ok(defined $t, 'HAProxy routes to the master (5 connections in a row), not to the replica');

render('nginx-redis.conf', "$work/nginx-redis.conf", REDIS_SERVER => "127.0.0.1:$hp");
my $np = free_port();
my $d = start_nginx('sentinel', <<"_EOC_", workers => 2);
    include $work/nginx-redis.conf;
    ratelimit_redis_zone \$arg_k zone=z rate=5r/m pool=main;
    ratelimit_redis_zone \$arg_k zone=probe rate=100000r/m pool=main;
    server {
        listen 127.0.0.1:$np;
        add_header X-RL \$ratelimit_redis_status always;
        location = /limited { ratelimit_redis zone=z; empty_gif; }
        location = /probe   { ratelimit_redis zone=probe; empty_gif; }
        location = /ready   { health_ready; }
    }
_EOC_
my $u = "http://127.0.0.1:$np";
wait_for(5, sub { (get("$u/ready"))[0] == 200 && (get("$u/ready"))[0] == 200 });

# a key's limit: five admitted by Redis, then rejected
sub limited {
    my ($key) = @_;
    return join ' ', map { my ($c, $rl) = req("$u/limited?k=$key"); "$c/$rl" } 1 .. 6;
}
my $five = join ' ', ('200/PASSED') x 5, '429/REJECTED';

# ------------------------------------------------------- before failover --
wait_window($mp, 60, 5);
is(limited('before'), $five, 'through HAProxy to the master: 5 admitted, then 429');
is((cli($mp, 'wait 1 1000') =~ /(\d+)/)[0], 1, 'the counters reached the replica (WAIT)');

# ------------------------------------------------------------- failover --
my $t_kill = time;
my $mpid = delete $redis{$mp};
kill 'KILL', $mpid;
waitpid $mpid, 0;

my (%codes, %verdict, @bad, $t_promoted, $t_routed, $t_resumed);
my ($n, $passed) = (0, 0);
while (time - $t_kill < 15) {
    my $t0 = time;
    my ($c, $rl) = req("$u/probe?k=f" . $n++);
    $codes{$c}++;
    $verdict{$rl}++;
    push @bad, sprintf('%.1fs: %s %s', $t0 - $t_kill, $c, $rl) if $c != 200;
    $t_promoted //= time - $t_kill
        if ((split /\n/, cli($sp[0], 'sentinel get-master-addr-by-name mymaster'))[1] // '') eq $rp;
    $t_routed //= time - $t_kill
        if $t_promoted && field(cli($hp, 'info server'), 'tcp_port') eq $rp;
    if ($rl eq 'PASSED') { $passed++ } else { $passed = 0 }
    $t_resumed //= $t0 - $t_kill if $t_routed && $rl eq 'PASSED';
    $t_resumed = undef if $rl ne 'PASSED';
    last if $t_routed && $passed >= 10;
    my $rest = 0.1 - (time - $t0);
    sleep $rest if $rest > 0;
}
my $open = $verdict{FAILED_OPEN} || 0;
diag(sprintf('failover: %d requests in %.1fs; %s; sentinel promoted the replica after %s, '
             . 'HAProxy routed to it after %s, limiting resumed after %s',
             $n, time - $t_kill, join(', ', map { "$_ $verdict{$_}" } sort keys %verdict),
             map { defined $_ ? sprintf('%.1fs', $_) : 'never' } $t_promoted, $t_routed, $t_resumed));

is(join(' ', map { "$_ x$codes{$_}" } sort keys %codes), "200 x$n",
   "during the failover all $n requests answered 200 (none 5xx, none failed)")
    or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
cmp_ok($open, '>', 0, "$open of them were admitted while no master was reachable (FAILED_OPEN)");
ok(defined $t_promoted, 'Sentinel promoted the replica');
cmp_ok($t_promoted // 99, '<', 10, 'within 10 s of the kill');
ok(defined $t_routed, 'HAProxy routes to the new master');
ok(defined $t_resumed && $passed >= 10, 'nginx reconnected by itself: requests get PASSED again');
cmp_ok($t_resumed // 99, '<', 12, 'within 12 s of the kill');

is(field(cli($rp, 'info replication'), 'role'), 'master', 'the old replica is master');
my $agreed = wait_for(5, sub {
    !grep { ((split /\n/, cli($_, 'sentinel get-master-addr-by-name mymaster'))[1] // '') ne $rp } @sp
});
ok(defined $agreed, 'all three sentinels name the new master');
is(record_count(cli($rp, q{eval "for _, k in ipairs(redis.call('KEYS', 'rl:{z}:*')) do }
          . q{local n = redis.call('HGET', k, 'before') if n then return n end end }
          . q{return '0:0:0'" 0})), 5,
   'counters replicated before the crash are on the new master');

# ------------------------------------------------------- after failover --
wait_window($rp, 60, 5);
is(limited('after'), $five, 'through HAProxy to the new master: 5 admitted, then 429');
is((get("$u/ready"))[0], 200, 'health_ready: the pool is up again');
ok(errlog_has($d, qr/redis pool "main"/), 'nginx logged losing the pool');
errlog_clean($d, 'nginx across the failover');

done_testing();
