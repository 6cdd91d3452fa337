# session_redis against the real thing: the express + express-session +
# connect-redis app of examples/app issues the cookie, nginx validates it
# at the edge and passes the identity on; after logout it is refused.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

need_example_app();

my $rp = free_port();
start_redis($rp);

my $secret = 'interop secret';
my $ap = start_example_app('app-250', $rp, $secret);

my $port = free_port();
my $d = start_nginx('interop', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 500ms; }
    server {
        listen 127.0.0.1:$port;
        session_redis_format express;
        session_redis_cookie connect.sid;
        session_redis_secret "$secret";
        session_redis_set \$user_id user.id;
        session_redis_set \$user_name user.name;
        add_header X-Session \$session_redis_status always;

        location /api/ {
            proxy_pass http://127.0.0.1:$ap;
        }
        location = /api/profile {
            session_redis main;
            proxy_set_header X-User-Id \$user_id;
            proxy_set_header X-User-Name \$user_name;
            proxy_pass http://127.0.0.1:$ap;
        }
    }
_EOC_
my $u = "http://127.0.0.1:$port";
my $jar = "$work/cookies";

sub curl { my $args = shift; return `curl -s -m 5 $args 2>/dev/null`; }

# log in through nginx: the app issues an express-session cookie
my $login = curl("-c $jar -H 'Content-Type: application/json' -d '{\"user\":\"alice\"}' $u/api/login");
like($login, qr/"alice"/, 'logged in through nginx');
my ($cookie) = `cat $jar` =~ /connect\.sid\s+(\S+)/;
like($cookie // '', qr/^s%3A[^.]+\.[A-Za-z0-9%]+$/, 'the app set a signed connect.sid cookie');

# nginx admits it and passes the identity, replacing a spoofed header
my $profile = curl("-D $work/h1 -b $jar -H 'X-User-Id: mallory' $u/api/profile");
like($profile, qr/"user":"alice"/, 'the app received X-User-Id alice from nginx');
unlike($profile, qr/mallory/, 'the client-sent X-User-Id was replaced');
like($profile, qr/"session_user":"alice"/, 'the app sees the same session');
like(`cat $work/h1`, qr/X-Session: VALID/, 'status VALID');
like(`cat $work/h1`, qr/X-Instance-Id: app-250/, 'answered by the app');

# no cookie: 401 from nginx, the app is not reached
my $code = curl("-o /dev/null -w '%{http_code}' $u/api/profile");
is($code, 401, 'no cookie: 401');

# a forged signature: INVALID, never sent to Redis
(my $forged = $cookie) =~ s/\.(.)/'.' . ($1 eq 'A' ? 'B' : 'A')/e;
my $before = redis_cli($rp, 'info commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
$code = curl("-o /dev/null -D $work/h2 -w '%{http_code}' -H 'Cookie: connect.sid=$forged' $u/api/profile");
my $after = redis_cli($rp, 'info commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
is($code, 401, 'forged signature: 401');
like(`cat $work/h2`, qr/X-Session: INVALID/, 'status INVALID');
is($after, $before, 'the forged cookie never reached Redis');

# log out: the app deletes the session; the old cookie is refused
curl("-b $jar -X POST $u/api/logout -o /dev/null");
$code = curl("-o /dev/null -D $work/h3 -w '%{http_code}' -H 'Cookie: connect.sid=$cookie' $u/api/profile");
is($code, 401, 'after logout the old cookie gets 401');
like(`cat $work/h3`, qr/X-Session: MISSING/, 'status MISSING');

errlog_clean($d, 'interop');
done_testing();
