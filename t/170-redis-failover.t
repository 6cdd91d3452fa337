# A Redis that stops being the master while the connections stay up
# (REPLICAOF by an operator or an orchestrator other than Sentinel): PING
# still answers, writes get -READONLY.  The pool must go down (health_ready
# says so, requests get the failure verdict of their policy) and come back
# by itself within 3 s of the server being master again.  Also with an ACL
# user that may not run ROLE, and with -MASTERDOWN.  Two Redis servers of
# this test's own; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);

our ($work, %redis, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
need_module_and_redis();

my $rp = free_port();       # the server nginx uses
my $other = free_port();    # the one it is made a replica of
start_redis($rp);
start_redis($other);

# a user that may run the rate limit script but neither ROLE nor SCRIPT
redis_cli($rp, 'acl setuser rlonly on ">pw" "~rl:*" +evalsha +eval +ping'
               . ' +time +hmget +hset +pexpire +unlink');
# a session user that may GET and PING only
redis_cli($rp, 'acl setuser sessonly on ">pw" "~sess:*" +get +expire +ping');

my $port = free_port();
my $d = start_nginx_main('failover', '', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 500ms; }
    redis_pool norole { server 127.0.0.1:$rp; timeout 500ms;
                        username rlonly; password pw; }
    redis_pool sess { server 127.0.0.1:$rp; timeout 500ms;
                      username sessonly; password pw; }
    ratelimit_redis_zone \$arg_k zone=z rate=1r/m pool=main;
    ratelimit_redis_zone \$arg_k zone=n rate=1r/m pool=norole;
    server {
        listen 127.0.0.1:$port;
        add_header X-RL \$ratelimit_redis_status always;
        add_header X-Session \$session_redis_status always;
        location = /open   { ratelimit_redis zone=z; empty_gif; }
        location = /closed { ratelimit_redis zone=z; ratelimit_redis_fail_open off;
                             empty_gif; }
        location = /norole { ratelimit_redis zone=n; empty_gif; }
        location = /sess   { session_redis sess; session_redis_required off;
                             session_redis_fail_open on; empty_gif; }
        location = /must   { session_redis sess; empty_gif; }
        location = /ready  { health_ready; }
    }
_EOC_
my $u = "http://127.0.0.1:$port";

# (status, X-RL, X-Session) of one request, with a cookie maybe
sub req {
    my ($path, $cookie) = @_;
    my $c = $cookie ? "-H 'Cookie: $cookie'" : '';
    my $h = `curl -s -m 3 -D - -o /dev/null $c '$u$path'`;
    my ($code) = $h =~ m{^HTTP/1\.\d (\d+)};
    my ($rl) = $h =~ /^X-RL: (\w*)/mi;
    my ($se) = $h =~ /^X-Session: (\w*)/mi;
    return ($code || 0, $rl // '', $se // '');
}

sub ready {
    my $body = `curl -s -m 3 -w '\\n%{http_code}' '$u/ready?verbose'`;
    my ($text, $code) = $body =~ /^(.*)\n(\d+)$/s;
    return ($code || 0, $text // '');
}

# the check of one pool in ready's answer: 'ok', 'failed: why' or ''
sub pool_check {
    my $pool = shift;
    my (undef, $text) = ready();
    return $text =~ /^\[[-+]\]redis:$pool (ok|failed: .*?)\r?$/m ? $1 : '';
}

# repeats $try (a sub) every 0.1 s until it returns true, at most $secs;
# returns the seconds it took, or undef
sub within {
    my ($secs, $try) = @_;
    $secs *= $valgrind_slow;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return time - $t0 if $try->();
        sleep 0.1;
    }
    return undef;
}

sub demote  { redis_cli($rp, "replicaof 127.0.0.1 $other") }
sub promote { redis_cli($rp, 'replicaof no one') }

sleep 1.2;
is((req('/open?k=warm'))[1], 'PASSED', 'before: limited');
is((req('/norole?k=warm'))[1], 'PASSED', 'before: limited through a user without ROLE');
is(pool_check('main'), 'ok', 'before: ready says pool main is up');
is(pool_check('norole'), 'ok', 'before: and pool norole');

my $n = 0;

# 1. Demoted under traffic: READONLY drops the connection and the pool
#    stays down (ROLE says replica) until the server is master again.
{
    demote();
    my $t = within(3, sub { (req("/open?k=a" . $n++))[1] eq 'FAILED_OPEN' });
    ok(defined $t, 'demoted: requests fail open (READONLY)');

    my ($code, $text) = ready();
    is($code, 503, 'demoted: ready is 503');
    like(pool_check('main'), qr/^failed: .*replica/, 'and names the pool and why');

    my ($c, $rl) = req('/closed?k=c');
    is("$c $rl", '503 FAILED_CLOSED', 'demoted, fail_open off: 503 FAILED_CLOSED');

    # a flood against the replica: failures at once, a few log lines
    my $before = errlog_has($d, qr/redis pool "main"/);
    my %seen;
    my $t0 = time;
    for (1 .. 100) {
        my ($c, $rl) = req("/open?k=f$_");
        $seen{"$c $rl"}++;
        last if time - $t0 > 5;
    }
    my $took = time - $t0;
    is_deeply([keys %seen], ['200 FAILED_OPEN'], 'a flood while demoted: all FAILED_OPEN');
    my $lines = errlog_has($d, qr/redis pool "main"/) - $before;
    cmp_ok($lines, '<=', 2 * int($took + 1) + 2,
           "and $lines log lines for the pool in ${\ sprintf '%.1f', $took} s");

    sleep 1.5;
    like(pool_check('main'), qr/^failed/, 'still a replica: still down (no flapping back up)');

    promote();
    my $k = 'back' . int(rand(1e9));
    $t = within(3, sub { (req("/open?k=$k"))[1] eq 'PASSED' });
    ok(defined $t, 'master again: limiting resumes within 3 s'
                   . (defined $t ? sprintf(' (%.1f s)', $t) : ''));
    is((req("/open?k=$k"))[1], 'REJECTED', 'and it limits: the second request is rejected');
    ok(defined within(3, sub { pool_check('main') eq 'ok' }), 'ready says up again');
    ok(errlog_has($d, qr/redis pool "main" .*(READONLY|replica)/),
       'the error log says the server is a replica');
}

# 2. Demoted while idle: the periodic check (ROLE) notices it.
{
    demote();
    my $t = within(3.5, sub { pool_check('main') =~ /^failed/ });
    ok(defined $t, 'demoted while idle: ready says down without any request'
                   . (defined $t ? sprintf(' (%.1f s)', $t) : ''));
    is((ready())[0], 503, 'ready is 503');
    is((req("/open?k=idle"))[1], 'FAILED_OPEN', 'and a request fails open at once');
    promote();
    my $k = 'idle' . int(rand(1e9));
    $t = within(3, sub { (req("/open?k=$k"))[1] eq 'PASSED' });
    ok(defined $t, 'master again: limiting resumes within 3 s');
    is((req("/open?k=$k"))[1], 'REJECTED', 'and limits');
}

# 3. A user that may not run ROLE: -READONLY alone takes the pool down,
#    and limiting resumes once the server is master again.
{
    ok(defined within(3, sub { (req('/norole?k=w' . $n++))[1] eq 'PASSED' }),
       'no ROLE: limited');
    demote();
    my $t = within(3, sub { (req("/norole?k=a" . $n++))[1] eq 'FAILED_OPEN' });
    ok(defined $t, 'no ROLE, demoted: requests fail open');
    my $down = within(3, sub { req("/norole?k=a" . $n++);
                               pool_check('norole') =~ /^failed/ });
    ok(defined $down, 'no ROLE, demoted: ready names the pool');
    promote();
    my $k = 'norole' . int(rand(1e9));
    $t = within(3, sub { (req("/norole?k=$k"))[1] eq 'PASSED' });
    ok(defined $t, 'no ROLE, master again: limiting resumes within 3 s'
                   . (defined $t ? sprintf(' (%.1f s)', $t) : ''));
    is((req("/norole?k=$k"))[1], 'REJECTED', 'and limits');
    ok(defined within(4, sub { pool_check('norole') eq 'ok' }), 'and ready says up again');
}

# 4. -MASTERDOWN (a replica that may not serve stale data) on a session
#    pool whose user may not run ROLE: the pool goes down.
{
    redis_cli($rp, q{set sess:abc '{"cookie":{},"user":{"id":"ann"}}' ex 600});
    ok(defined within(3, sub { (req('/must', 'sid=abc'))[0] == 200
                               && pool_check('sess') eq 'ok' }),
       'session pool up, the session is valid');
    redis_cli($rp, 'config set replica-serve-stale-data no');
    redis_cli($rp, 'replicaof 127.0.0.1 1');
    my $down = within(3.5, sub { req('/sess', 'sid=abc');
                                 pool_check('sess') =~ /^failed/ });
    ok(defined $down, 'MASTERDOWN: the session pool is down');
    is(join(' ', (req('/sess', 'sid=abc'))[0, 2]), '200 ERROR',
       'the session fails open as configured');
    is((req('/must', 'sid=abc'))[0], 503, 'and a required session is 503');
    promote();
    redis_cli($rp, 'config set replica-serve-stale-data yes');
    ok(defined within(4, sub { (ready())[0] == 200 }), 'master again: ready is 200');
}

stop_nginx_main($d);
errlog_clean($d, 'failover');
valgrind_clean($d, 'failover');
done_testing();
