# Edge values that nginx -t accepts must also work: a rate of exactly 2^53
# (the largest count Lua's doubles hold exactly), a unix socket path of
# exactly sun_path's 107 bytes (also written "UNIX:"), an ACL user with its
# password, a database other than 0.

use strict;
use warnings;
use FindBin;
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep);

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

# sun_path holds 107 bytes and the NUL
my $sock = "$work/" . ('r' x (107 - length("$work/") - length('.sock'))) . '.sock';
plan skip_all => "the temporary directory $work is too long for a 107-byte path"
    if length("$work/") > 90;
is(length $sock, 107, 'the socket path is 107 bytes');

# the workers (user nobody) reach the socket through the private directory
chmod 0711, $work;

my $rp = free_port();
start_redis($rp, '--unixsocket', $sock, '--unixsocketperm', '777');
ok(-S $sock, 'Redis listens on the 107-byte path');
like(redis_cli($rp, 'acl setuser app on ">s3cret" "~*" "+@all"'), qr/OK/, 'ACL user app');

my $port = free_port();
my $max = '9007199254740992';

my $d = start_nginx('edges', <<"_EOC_");
    redis_pool sock  { server unix:$sock; }
    redis_pool usock { server UNIX:$sock; }
    redis_pool acl   { server 127.0.0.1:$rp; username app; password s3cret; }
    redis_pool bad   { server 127.0.0.1:$rp; username app; password wrong; }
    redis_pool db    { server 127.0.0.1:$rp; database 7; }

    ratelimit_redis_zone \$arg_k zone=max rate=${max}r/s pool=sock;
    ratelimit_redis_zone \$arg_k zone=usock rate=100r/s pool=usock;
    ratelimit_redis_zone \$arg_k zone=acl rate=100r/s pool=acl;
    ratelimit_redis_zone \$arg_k zone=bad rate=100r/s pool=bad;
    ratelimit_redis_zone edge-db zone=db rate=100r/s pool=db;

    server {
        listen 127.0.0.1:$port;
        ratelimit_redis_fail_open off;
        ratelimit_redis_headers legacy;
        add_header X-RL \$ratelimit_redis_status always;

        location /max   { ratelimit_redis zone=max; empty_gif; }
        location /usock { ratelimit_redis zone=usock; empty_gif; }
        location /acl   { ratelimit_redis zone=acl; empty_gif; }
        location /bad   { ratelimit_redis zone=bad; empty_gif; }
        location /db    { ratelimit_redis zone=db; empty_gif; }
    }
_EOC_

# (status, { lower-case header => value })
sub request {
    my ($path) = @_;
    my @out = `curl -s -m 5 -o /dev/null -D - 'http://127.0.0.1:$port$path'`;
    my ($status) = (shift(@out) // '') =~ m{^HTTP/\S+ (\d+)};
    my %h = map { /^([^:]+):\s*(.*?)\r?$/ ? (lc $1, $2) : () } @out;
    return ($status || 0, \%h);
}

# the first requests may come before the workers' handshakes are done
sub settled {
    my ($path) = @_;
    my ($s, $h);
    for (1 .. 30) {
        ($s, $h) = request($path);
        last if $s == 200;
        sleep 0.1;
    }
    return ($s, $h);
}

my ($s, $h) = settled('/max?k=a');
is($s, 200, 'rate 2^53 r/s on a 107-byte unix path: 200');
is($h->{'x-rl'}, 'PASSED', 'PASSED');
is($h->{'x-ratelimit-limit'}, $max, 'the limit is exactly 2^53');
is($h->{'x-ratelimit-remaining'}, '9007199254740991', 'remaining is exactly 2^53 - 1');
($s, $h) = request('/max?k=a');
is($h->{'x-ratelimit-remaining'}, '9007199254740990', 'and counts down by one: 2^53 - 2');

($s, $h) = settled('/usock?k=a');
is("$s $h->{'x-rl'}", '200 PASSED', 'server UNIX:PATH is the same unix socket');

($s, $h) = settled('/acl?k=a');
is("$s $h->{'x-rl'}", '200 PASSED', 'username and password: AUTH app s3cret works');

($s, $h) = request('/bad?k=a');
is("$s $h->{'x-rl'}", '503 FAILED_CLOSED', 'a wrong password fails: AUTH is sent');

($s, $h) = settled('/db?k=a');
is("$s $h->{'x-rl'}", '200 PASSED', 'database 7');
# the zone's counts: a hash per generation, rl:{db}:START, a field per key
my $count = q{"for _, k in ipairs(redis.call('KEYS', 'rl:{db}:*')) do }
          . q{if redis.call('HEXISTS', k, 'edge-db') == 1 then return 1 end end }
          . q{return 0" 0};
is(`redis-cli -p $rp -n 7 eval $count 2>/dev/null`, "1\n",
   'the zone\'s keys are in database 7');
is(`redis-cli -p $rp -n 0 --scan --pattern 'rl:{db}:*' 2>/dev/null`, '',
   'and not in database 0');

ok(errlog_has($d, qr/WRONGPASS/),
   'the wrong password is logged');
errlog_clean($d, 'edges');
done_testing();
