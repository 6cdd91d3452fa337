# Graceful shutdown while commands are out and Redis does not answer
# (a Redis of this test's own, frozen with SIGSTOP, always resumed).
# worker_shutdown_timeout bounds the shutdown: the timers the client arms
# do not keep a worker alive once no request waits on them.  Without it,
# a request in flight is still answered before the worker exits.
# Under TEST_NGINX_USE_VALGRIND nginx runs in valgrind (memcheck, every
# process) and the workers must exit with nothing lost.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);

our ($work, %redis, @nginx, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
need_module_and_redis();

my $slow = $valgrind_slow;

my $rp = free_port();
start_redis($rp);
redis_cli($rp, q{set sess:abc '{"cookie":{},"user":{"id":"ann"}}'});

END { kill 'CONT', $redis{$rp} if $redis{$rp} }

sub master_pid {
    my $d = shift;
    open my $f, '<', "$d/logs/nginx.pid" or return;
    my $pid = <$f>;
    chomp $pid;
    return $pid;
}

# a request in the background: its "status seconds" lands in a file
sub background {
    my ($url, $out, $cookie) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        my $c = $cookie ? "-H 'Cookie: $cookie'" : '';
        my $r = `curl -s -o /dev/null -m 20 $c -w '%{http_code} %{time_total}' '$url'`;
        open my $f, '>', $out; print $f "$r\n"; close $f;
        POSIX::_exit(0);
    }
    return $pid;
}

sub result {
    my $out = shift;
    open my $f, '<', $out or return (0, 0);
    my ($code, $t) = split ' ', scalar(<$f>) // '';
    return ($code || 0, $t || 0);
}

# seconds until the nginx of $d (master and workers) is gone, at most $max
sub gone_within {
    my ($d, $max, @pids) = @_;
    my $t0 = time;
    while (time - $t0 < $max) {
        return time - $t0 unless grep { alive($_) } @pids;
        sleep 0.05;
    }
    return undef;
}

my $conf = sub {
    my ($port, $timeout) = @_;
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout $timeout; }
    ratelimit_redis_zone \$arg_k zone=z rate=100r/s pool=main;
    server {
        listen 127.0.0.1:$port;
        location = /rl { ratelimit_redis zone=z;
                         add_header X-RL \$ratelimit_redis_status always;
                         empty_gif; }
        location = /sess { session_redis main; empty_gif; }
    }
_EOC_
};

# 1. Redis frozen, a batch (ratelimit) and a request's own command (session)
#    out, timeout 8s, worker_shutdown_timeout 1s: the worker is gone
#    within about 2 s of QUIT.
{
    my $port = free_port();
    my $d = start_nginx_main('bounded', 'worker_shutdown_timeout 1s;', $conf->($port, '8s'));
    my $u = "http://127.0.0.1:$port";
    is((get("$u/rl?k=warm", 5 * $slow))[0], 200, 'bounded: warm-up');

    my $master = master_pid($d);
    my @workers = worker_pids($d);
    ok(@workers, 'bounded: a worker runs');

    kill 'STOP', $redis{$rp};
    my @c = (background("$u/rl?k=a", "$work/b1"),
             background("$u/sess", "$work/b2", 'sid=abc'));
    sleep 0.5 * $slow;

    kill 'QUIT', $master;
    my $t = gone_within($d, 10 * $slow, $master, @workers);
    kill 'CONT', $redis{$rp};
    waitpid $_, 0 for @c;

    ok(defined $t, 'bounded: nginx exited'
                   . (defined $t ? sprintf(' after %.1f s', $t) : ' (not within 10 s)'));
    cmp_ok($t // 99, '<', 2.5 * $slow, 'bounded: within worker_shutdown_timeout + 1.5 s');
    ok(!errlog_has($d, qr/open socket/), 'bounded: no open socket left');
    errlog_clean($d, 'bounded');
    valgrind_clean($d, 'bounded');
    @nginx = grep { $_ ne $d } @nginx;
}

# 2. No worker_shutdown_timeout: the requests in flight are answered when
#    the command times out, and only then does the worker exit.
{
    sleep 0.5;
    my $port = free_port();
    my $d = start_nginx_main('graceful', '', $conf->($port, '1s'));
    my $u = "http://127.0.0.1:$port";
    is((get("$u/rl?k=warm", 5 * $slow))[0], 200, 'graceful: warm-up');

    my $master = master_pid($d);
    my @workers = worker_pids($d);

    kill 'STOP', $redis{$rp};
    my @c = (background("$u/rl?k=b", "$work/g1"),
             background("$u/sess", "$work/g2", 'sid=abc'));
    sleep 0.3 * $slow;

    kill 'QUIT', $master;
    my $t = gone_within($d, 6 * $slow, $master, @workers);
    kill 'CONT', $redis{$rp};
    waitpid $_, 0 for @c;

    ok(defined $t, 'graceful: nginx exited');
    is((result("$work/g1"))[0], 200, 'graceful: the limited request was answered (fail open)');
    is((result("$work/g2"))[0], 503, 'graceful: the session request was answered (503)');
    ok(!errlog_has($d, qr/open socket/), 'graceful: no open socket left');
    errlog_clean($d, 'graceful');
    valgrind_clean($d, 'graceful');
    @nginx = grep { $_ ne $d } @nginx;
}

# 3. A pool that cannot connect (backoff and connect timers armed): QUIT
#    is immediate.
{
    my $port = free_port();
    my $d = start_nginx_main('down', '', <<"_EOC_");
    redis_pool gone { server 127.0.0.1:1; connect_timeout 5s; }
    ratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=gone;
    server {
        listen 127.0.0.1:$port;
        location = /rl { ratelimit_redis zone=z; empty_gif; }
    }
_EOC_
    is((get("http://127.0.0.1:$port/rl?k=x", 5 * $slow))[0], 200, 'down: fails open');
    my $master = master_pid($d);
    my @workers = worker_pids($d);
    kill 'QUIT', $master;
    my $t = gone_within($d, 6 * $slow, $master, @workers);
    cmp_ok($t // 99, '<', 1 * $slow, 'down pool: nginx exits at once');
    errlog_clean($d, 'down');
    valgrind_clean($d, 'down');
    @nginx = grep { $_ ne $d } @nginx;
}

done_testing();
