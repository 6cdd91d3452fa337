# vi:filetype=perl
#
# A Sentinel that is behind.  During a failover only the leader names the
# promoted replica at first; the others name the dead master until the
# leader's +switch-master reaches them, a second or more later (seen in
# the demo: 4.1 s from the kill until nginx followed, against the < 3 s of
# DESIGN.md).  The Sentinel that answered last is asked first; when the
# master it named fails the connection, the next Sentinels are asked
# before that answer is believed again.
#
# Fake Sentinels (plain TCP, RESP): "behind" always names a port where
# nothing listens, "current" names the real Redis.
#   behind first, current second: the pool is up within a second or two
#   (without asking around: down for good, "behind" answers every time)
#   both behind: down, asking at most about once per backoff (no busy loop)
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use POSIX ();

our ($work, %redis, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
require "$FindBin::Bin/helpers/pool.pl";
need_module_and_redis();

my $parent = $$;
my @fakes;
END { if ($$ == $parent) { local $?; kill 'KILL', @fakes; waitpid $_, 0 for @fakes } }

# fake_sentinel(PORT, MASTER_PORT, LOG): names 127.0.0.1:MASTER_PORT for
# every get-master-addr-by-name (one line per question in LOG), confirms
# SUBSCRIBE and publishes nothing
sub fake_sentinel {
    my ($port, $mport, $log) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Listen => 16, ReuseAddr => 1) or die "listen $port: $!";
    my $pid = fork // die;
    if ($pid) { close $l; push @fakes, $pid; return }
    my $sel = IO::Select->new($l);
    my %buf;
    my $end = time + 300;
    while (time < $end) {
        for my $h ($sel->can_read(0.5)) {
            if ($h == $l) { my $c = $l->accept; $sel->add($c) if $c; next }
            my $n = sysread($h, my $d, 4096);
            if (!$n) { $sel->remove($h); close $h; delete $buf{$h}; next }
            $buf{$h} .= $d;
            # one command: *N then N bulk strings
            while ($buf{$h} =~ /^\*(\d+)\r\n/) {
                my ($argc, $at, @argv) = ($1, length($&));
                for (1 .. $argc) {
                    last unless substr($buf{$h}, $at) =~ /^\$(\d+)\r\n/;
                    my $len = $1;
                    my $hl = length($&);
                    last if length($buf{$h}) < $at + $hl + $len + 2;
                    push @argv, substr($buf{$h}, $at + $hl, $len);
                    $at += $hl + $len + 2;
                }
                last if @argv < $argc;
                substr($buf{$h}, 0, $at) = '';
                my $cmd = uc($argv[0] // '');
                my $out;
                if ($cmd eq 'SENTINEL') {
                    if (open my $f, '>>', $log) { print $f time, "\n"; close $f }
                    $out = "*2\r\n\$9\r\n127.0.0.1\r\n\$" . length($mport) . "\r\n$mport\r\n";
                } elsif ($cmd eq 'SUBSCRIBE') {
                    $out = "*3\r\n\$9\r\nsubscribe\r\n\$" . length($argv[1]) . "\r\n$argv[1]\r\n:1\r\n";
                } elsif ($cmd eq 'PING') {
                    $out = "+PONG\r\n";
                } else {
                    $out = "+OK\r\n";
                }
                syswrite($h, $out);
            }
        }
    }
    POSIX::_exit(0);
}

sub questions { my $log = shift; open my $f, '<', $log or return 0; my @l = <$f>; return scalar @l }

my $rp = free_port();
start_redis($rp);
my $dead = free_port();      # nothing listens there

my ($behind, $current, $behind2) = (free_port(), free_port(), free_port());
fake_sentinel($behind, $dead, "$work/behind.log");
fake_sentinel($current, $rp, "$work/current.log");
fake_sentinel($behind2, $dead, "$work/behind2.log");

sub conf {
    my ($port, @sentinels) = @_;
    my $list = join ' ', map { "sentinel 127.0.0.1:$_;" } @sentinels;
    return <<"_EOC_";
    redis_pool mm { $list master mm; timeout 200ms; connect_timeout 200ms; }
    ratelimit_redis_zone \$arg_k zone=z rate=1000r/m pool=mm;
    server {
        listen 127.0.0.1:$port;
        add_header X-RL \$ratelimit_redis_status always;
        location = /z     { ratelimit_redis zone=z; empty_gif; }
        location = /ready { health_ready; }
    }
_EOC_
}

# 1. the first Sentinel asked is behind: the next one is asked, the pool is up
my $p1 = free_port();
my $d1 = start_nginx_main('behind-first', '', conf($p1, $behind, $current));
my $t = within(5, sub { pool_state("http://127.0.0.1:$p1", 'mm') eq 'ok' });
ok(defined $t, 'the first Sentinel names a dead master: up through the next one, in ' . secs($t))
    or diag(`grep -v debug $d1/logs/error.log | tail -5`);
ok(defined $t && $t < 2.5 * $valgrind_slow, 'within the < 3 s of a failover') if defined $t;
is(verdict("http://127.0.0.1:$p1/z?k=a"), '200 PASSED', 'a limit is decided on the master')
    if defined $t;
ok(questions("$work/behind.log") >= 1 && questions("$work/current.log") >= 1,
   'both Sentinels were asked');
my $before = questions("$work/current.log");
sleep 1;
is(verdict("http://127.0.0.1:$p1/z?k=a"), '200 PASSED', 'the pool stays up');
cmp_ok(questions("$work/current.log") - $before, '<=', 2, 'and asks no more once connected');
errlog_clean($d1, 'behind first');
stop_nginx_main($d1);
valgrind_clean($d1, 'behind first');

# 2. every Sentinel behind: down, and the questions are paced by the backoff
my $p2 = free_port();
my $q0 = questions("$work/behind.log") + questions("$work/behind2.log");
my $d2 = start_nginx_main('all-behind', '', conf($p2, $behind, $behind2));
sleep 3 * $valgrind_slow;
is(verdict("http://127.0.0.1:$p2/z?k=a"), '200 FAILED_OPEN', 'no Sentinel names a master that answers: fail open');
my $q = questions("$work/behind.log") + questions("$work/behind2.log") - $q0;
# one connection, backoff 50 ms doubling to 250 ms with Sentinels: about 13
# rounds in 3 s, each asking both; many more would be a loop
cmp_ok($q, '<=', 40 * $valgrind_slow, "questions in 3 s: $q (paced by the backoff)");
cmp_ok($q, '>=', 4, 'and both Sentinels are still asked');
errlog_clean($d2, 'all behind');
stop_nginx_main($d2);
valgrind_clean($d2, 'all behind');

done_testing();
