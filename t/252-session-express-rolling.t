# session_redis with express-session's `rolling: true, resave: false`: every
# response renews the browser's cookie and connect-redis's touch EXPIREs
# the key, but the stored cookie.expires stays at login.  An active user
# must not get 401 at the edge once the original maxAge is over: Redis's
# TTL decides, as it does for the app.  Once the user stops, the key
# expires and both sides refuse the cookie.  The real app, maxAge 3 s.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep time);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

need_example_app();

my $rp = free_port();
start_redis($rp);

my $secret = 'rolling secret';
my $max_age = 3;                        # seconds
my $ap = start_example_app('app-252', $rp, $secret, SESSION_ROLLING => '1', SESSION_MAX_AGE_MS => $max_age * 1000);

my $port = free_port();
my $d = start_nginx('rolling', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 500ms; }
    server {
        listen 127.0.0.1:$port;
        session_redis_format express;
        session_redis_cookie connect.sid;
        session_redis_secret "$secret";
        session_redis_set \$user_id user.id;
        add_header X-Session \$session_redis_status always;

        location /api/ {
            proxy_pass http://127.0.0.1:$ap;
        }
        location = /api/profile {
            session_redis main;
            proxy_set_header X-User-Id \$user_id;
            proxy_pass http://127.0.0.1:$ap;
        }
    }
_EOC_
my $u = "http://127.0.0.1:$port";
my $jar = "$work/cookies";

sub curl { my $args = shift; return `curl -s -m 5 $args 2>/dev/null`; }

my $login = curl("-c $jar -H 'Content-Type: application/json' -d '{\"user\":\"alice\"}' $u/api/login");
my $t0 = time;
like($login, qr/"alice"/, 'logged in through nginx');
my ($cookie) = `cat $jar` =~ /connect\.sid\s+(\S+)/;
(my $sid = $cookie // '') =~ s/^s%3A([^.]+)\..*/$1/;

# the browser: sends the cookie it has, stores every renewed one
my ($n, $ok, $last, @bad) = (0, 0, 0);
while (time - $t0 < $max_age + 1.5 && $n < 20) {
    sleep 0.5;
    my $body = curl("-D $work/h -b $jar -c $jar $u/api/profile");
    my $h = `cat $work/h`;
    $n++;
    if ($h =~ m{^HTTP/1\.1 200} && $body =~ /"user":"alice"/
        && $body =~ /"session_user":"alice"/)
    {
        $ok++;
        $last = time - $t0;
    } else {
        my ($st) = $h =~ /X-Session: (\S+)/;
        push @bad, sprintf('%.1fs: %s %s', time - $t0, $st // '?', $body);
    }
}
is($ok, $n, "an active user is served throughout ($ok of $n)")
    or diag(join "\n", @bad);
cmp_ok($last, '>', $max_age + 0.5, 'served well past the original maxAge');

my $stored = redis_cli($rp, "get sess:$sid");
my ($expires) = $stored =~ /"expires":"([^"]+)"/;
my ($now) = split /\n/, redis_cli($rp, 'time');
my ($y, $mo, $dd, $hh, $mi, $ss) = ($expires // '') =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)/;
use POSIX qw(mktime);
my $exp = defined $y ? do { local $ENV{TZ} = 'UTC'; POSIX::tzset(); mktime($ss, $mi, $hh, $dd, $mo - 1, $y - 1900) } : 0;
cmp_ok($exp, '<', $now, "the stored cookie.expires ($expires) is in the past: the scenario is real");
my $ttl = redis_cli($rp, "pttl sess:$sid");
cmp_ok($ttl, '>', 0, "while Redis keeps the key (pttl $ttl)");

# the user goes idle: the key expires; nginx and the app both refuse
sleep $max_age + 1;
my $code = curl("-o /dev/null -D $work/h2 -w '%{http_code}' -b $jar $u/api/profile");
is($code, 401, 'idle past maxAge: 401 at the edge');
like(`cat $work/h2`, qr/X-Session: MISSING/, 'status MISSING (Redis dropped the key)');
my $direct = curl("-b $jar http://127.0.0.1:$ap/api/profile");
like($direct, qr/"session_user":null/, 'and the app has no session either');

errlog_clean($d, 'rolling');
done_testing();
