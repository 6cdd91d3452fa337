# Least-privilege Redis users.  A pool loads only the scripts it runs, and
# a refused SCRIPT LOAD does not fail the connection (EVAL after NOSCRIPT
# covers it): a session pool whose ACL user may only GET / EXPIRE / PING
# works while ratelimit_redis is configured on another pool, and a
# ratelimit pool whose user may EVALSHA / EVAL but not SCRIPT still limits.
# A Redis of this test's own (ACL users are not left on the shared one).

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);

our ($work, %redis, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

redis_cli($rp, 'acl setuser sessonly on ">pw" "~sess:*" +get +expire +ping');
# the ratelimit user has exactly the commands the README's table lists
my $readme = do {
    open my $f, '<', "$FindBin::Bin/../README.md" or die $!;
    local $/;
    <$f>;
};
my ($row) = $readme =~ /^\| `ratelimit_redis` \| (.*?) \|$/m;
my @rl = $row ? $row =~ /`([a-z|]+)`/g : ();
ok(@rl >= 4, "the README lists the ratelimit commands: @rl");
redis_cli($rp, 'acl setuser rlonly on ">pw" "~rl:*" ' . join ' ', map { "+$_" } @rl);
redis_cli($rp, q{set sess:abc '{"cookie":{},"user":{"id":"erin"}}' ex 600});

my $port = free_port();
my $d = start_nginx_main('acl', '', <<"_EOC_");
    redis_pool rl { server 127.0.0.1:$rp; }
    redis_pool sess { server 127.0.0.1:$rp; username sessonly; password pw; }
    redis_pool rlonly { server 127.0.0.1:$rp; username rlonly; password pw;
                        timeout 500ms; }
    ratelimit_redis_zone \$arg_k zone=z rate=100r/m pool=rl;
    ratelimit_redis_zone \$arg_k zone=tight rate=1r/m pool=rlonly;
    server {
        listen 127.0.0.1:$port;
        add_header X-RL \$ratelimit_redis_status always;
        location = /who {
            ratelimit_redis zone=z;
            session_redis sess;
            session_redis_set \$uid user.id;
            add_header X-Uid "\$uid" always;
            add_header X-RL \$ratelimit_redis_status always;
            empty_gif;
        }
        location = /tight { ratelimit_redis zone=tight; empty_gif; }
        location = /ready { health_ready; }
    }
_EOC_
my $u = "http://127.0.0.1:$port";

sub req {
    my ($path, $cookie) = @_;
    my $c = $cookie ? "-H 'Cookie: $cookie'" : '';
    my $h = `curl -s -m 3 -D - -o /dev/null $c '$u$path'`;
    my ($code) = $h =~ m{^HTTP/1\.\d (\d+)};
    my ($rl) = $h =~ /^X-RL: (\w*)/mi;
    my ($uid) = $h =~ /^X-Uid: (\S*)/mi;
    return ($code || 0, $rl // '', $uid // '');
}

sleep 1.2;

my ($code, $rl, $uid) = req('/who?k=1', 'sid=abc');
is($code, 200, 'session pool with a get/expire/ping user: 200');
is($uid, 'erin', 'the session is read');
is($rl, 'PASSED', 'ratelimit on its own pool: limited');
is((req('/who?k=1'))[0], 401, 'no cookie: 401, the session check works');

my $k = 'k' . int(rand(1e9));
is((req("/tight?k=$k"))[1], 'PASSED', 'a user without SCRIPT: the script runs (EVAL)');
is((req("/tight?k=$k"))[1], 'REJECTED', 'and it limits');
is((req("/tight?k=$k"))[1], 'REJECTED', 'and again, by EVALSHA now');

my $ready = `curl -s -m 3 '$u/ready?verbose'`;
like($ready, qr/^\[\+\]redis:sess ok/m, 'ready: the session pool is up');
like($ready, qr/^\[\+\]redis:rlonly ok/m, 'ready: the EVAL-only pool is up');
like($ready, qr/^\[\+\]redis:rl ok/m, 'ready: the ratelimit pool is up');

# the session pool never tried to load a script (its ROLE is refused: fine)
my $acl = redis_cli($rp, 'acl log');
unlike($acl, qr/^script\|load\r?\nusername\r?\nsessonly\r?$/m,
       'Redis ACL LOG: the session user was never refused SCRIPT LOAD')
    or diag($acl);
like($acl, qr/^script\|load\r?\nusername\r?\nrlonly\r?$/m,
     'the EVAL-only user was (the pool that runs the script tried)');
ok(!errlog_has($d, qr/handshake with .* failed/), 'no handshake failed');

# after SCRIPT FLUSH the EVAL-only pool loads the script again by itself
redis_cli($rp, 'script flush');
$k = 'f' . int(rand(1e9));
is((req("/tight?k=$k"))[1], 'PASSED', 'after SCRIPT FLUSH: limited');
is((req("/tight?k=$k"))[1], 'REJECTED', 'and limits');

stop_nginx_main($d);
errlog_clean($d, 'acl');
valgrind_clean($d, 'acl');
done_testing();
