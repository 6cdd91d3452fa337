# One FIFO of commands per connection: replies go to the commands that
# asked, in order, whatever happens to the ones before them.  Many
# requests with distinct sessions are in flight on one connection at once;
# Redis then stalls (DEBUG SLEEP) past the pool timeout: the commands
# waiting fail, and every later request gets its own session back, never
# a late reply meant for another.  Plain Test::More; every wait is bounded.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256_base64);
use POSIX ();

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $secret = 'fifo secret';
my $n = 60;

my $rp = free_port();
start_redis($rp, '--enable-debug-command', 'yes');

sub cookie {
    my ($sid) = @_;
    my $sig = hmac_sha256_base64($sid, $secret);
    my $v = "s:$sid.$sig";
    $v =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    return "connect.sid=$v";
}

for my $i (1 .. $n) {
    redis_cli($rp, 'set', "sess:fifo$i",
              qq('{"cookie":{"originalMaxAge":3600000},"user":{"id":"u$i"}}'));
}

my $p = free_port();
my $d = start_nginx('fifo', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 150ms; connections 1; }
    server {
        listen 127.0.0.1:$p;
        location / {
            session_redis main;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_fail_open off;
            session_redis_set \$user_id user.id;
            add_header X-User \$user_id always;
            empty_gif;
        }
    }
_EOC_

# all at once: each child asks for one session, the answers land in files
sub burst {
    my ($tag, @ids) = @_;
    my @kids;
    for my $i (@ids) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $c = cookie("fifo$i");
            my $out = `curl -s -m 5 -o /dev/null -D - -w 'time_total=%{time_total}\n' -H 'Cookie: $c' 'http://127.0.0.1:$p/'`;
            open my $f, '>', "$work/$tag.$i" or POSIX::_exit(1);
            print $f $out;
            close $f;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;
    my %r;
    for my $i (@ids) {
        open my $f, '<', "$work/$tag.$i" or next;
        local $/;
        my $h = <$f>;
        my ($code) = $h =~ m{^HTTP/\S+ (\d+)};
        my ($user) = $h =~ /^X-User: ([^\r\n]*)/mi;
        my ($t) = $h =~ /^time_total=([\d.]+)/m;
        diag("$tag.$i: $h") if $ENV{FIFO_DEBUG} && $i == 1;
        $r{$i} = [$code // 0, $user // '', $t // 99];
    }
    return %r;
}

# 1. a burst on one pipelined connection: each request gets its own user
my %r = burst('warm', 1 .. $n);
my @wrong = grep { !($r{$_} && $r{$_}[0] == 200 && $r{$_}[1] eq "u$_") } 1 .. $n;
is("@wrong", '', "$n requests in flight at once on one connection: each got its own session");

# 2. Redis stalls for 1.5 s, ten times the 150 ms timeout: every request
#    of a burst sent meanwhile fails, each at its timeout or at once
my $sleeper = fork // die;
if ($sleeper == 0) {
    { exec "redis-cli", "-p", $rp, "debug", "sleep", "1.5" }
    POSIX::_exit(1);
}
sleep 0.1;
my $t0 = time;
%r = burst('stalled', 1 .. 20);
my $took = time - $t0;
my @not503 = grep { $r{$_}[0] != 503 } 1 .. 20;
my ($slowest) = sort { $b <=> $a } map { $r{$_}[2] } 1 .. 20;
if ($took < 1.3) {
    is("@not503", '', 'requests waiting on the stalled connection fail (503, fail_open off)');
    cmp_ok($slowest, '<', 0.6, "each fails at the timeout or at once, not when Redis wakes (slowest ${slowest}s)");
} else {
    # the machine was too slow to send the burst while Redis slept
    pass("burst took ${took}s: not judged") for 1 .. 2;
}
waitpid($sleeper, 0);

# 3. after the stall: late replies are never handed to later commands
my $ok = 0;
for (1 .. 50) {
    my ($c) = get("http://127.0.0.1:$p/");
    last if ($ok = ($c == 401 || $c == 200));
    sleep 0.1;
}
%r = burst('after', 1 .. $n);
@wrong = grep { !($r{$_}[0] == 200 && $r{$_}[1] eq "u$_") } 1 .. $n;
is("@wrong", '', 'after the stall every request gets its own session, none a late reply');

ok(errlog_has($d, qr/timed out after 150 ms/), 'the timeout is logged');
errlog_clean($d, 'fifo');
stop_nginx($d);

# 4. a timeout fails the commands waiting on the stalled connection, never
#    one sent after it: a request whose rate limit times out goes on to
#    its session lookup on the same pool, which must not be sent to (and
#    failed with) the connection being dropped
my $p2 = free_port();
my $d2 = start_nginx('later', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 150ms; connections 1; }
    ratelimit_redis_zone \$arg_k zone=z rate=100r/m pool=main;
    server {
        listen 127.0.0.1:$p2;
        location = /metrics { health_metrics; }
        location / {
            ratelimit_redis zone=z;
            session_redis main;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_fail_open on;
            session_redis_required off;
            empty_gif;
        }
    }
_EOC_
sub errors_of {
    my $m = `curl -s -m 5 'http://127.0.0.1:$p2/metrics'`;
    my %e = $m =~ /^nginx_redis_errors_total\{pool="main",kind="(\w+)"\} (\d+)/mg;
    return \%e;
}
is((get("http://127.0.0.1:$p2/?k=warm"))[0], 200, 'later: warm-up');
my $e0 = errors_of();
$sleeper = fork // die;
if ($sleeper == 0) {
    { exec "redis-cli", "-p", $rp, "debug", "sleep", "1" }
    POSIX::_exit(1);
}
sleep 0.1;
my $c = cookie('fifo1');
my $code = `curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'Cookie: $c' 'http://127.0.0.1:$p2/?k=late'`;
waitpid($sleeper, 0);
my $e1 = errors_of();
is($code, '200', 'later: both fail open, the request is answered');
is(($e1->{timeout} // 0) - ($e0->{timeout} // 0), 1,
   'later: one command timed out (the rate limit), not the session lookup sent after it');
errlog_clean($d2, 'later');
stop_nginx($d2);

done_testing();
