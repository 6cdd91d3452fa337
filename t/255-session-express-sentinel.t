# vi:filetype=perl
#
# The example express app and nginx behind the same Sentinel, a master
# that moves while the old one still answers (SENTINEL FAILOVER; the same
# happens when a second failover follows the first).  Sentinel demotes the
# old master only seconds later: an app that asks Sentinel only when its
# connection drops keeps writing sessions there, and nginx, which follows
# +switch-master, reads the new master: every login after the switch is
# refused at the edge (seen in the demo as a second failover).  The app
# follows +switch-master too: a login soon after the switch is written to
# the new master and nginx validates it.
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/pool.pl";
need_module_and_redis();
need_example_app();

my ($sentinel_bin) = grep { -x } map { "$_/redis-sentinel" }
                          split(/:/, $ENV{PATH} || ''), '/usr/sbin', '/usr/bin';
plan skip_all => 'redis-sentinel not found' unless $sentinel_bin;

sub cli { return redis_cli_bounded(@_) }
sub curl { my $args = shift; return `curl -s -m 5 $args 2>/dev/null`; }

my ($m, $r, $sp) = (free_port(), free_port(), free_port());
start_redis($m);
start_redis($r, '--replicaof', '127.0.0.1', $m);
ok(within(10, sub { cli($r, 'info', 'replication') =~ /^master_link_status:up$/m }),
   'the replica is in sync');

# one Sentinel is enough for SENTINEL FAILOVER; down-after is long so that
# only the test moves the master
mkdir "$work/sentinel";
open my $sc, '>', "$work/sentinel/sentinel.conf" or die;
print $sc <<"_EOC_";
port $sp
bind 127.0.0.1
dir $work/sentinel
sentinel monitor mm 127.0.0.1 $m 1
sentinel down-after-milliseconds mm 10000
sentinel failover-timeout mm 5000
_EOC_
close $sc;
my $parent = $$;
my $spid = fork // die;
if ($spid == 0) {
    open STDOUT, '>', "$work/sentinel/out.log"; open STDERR, '>&', \*STDOUT;
    { exec $sentinel_bin, "$work/sentinel/sentinel.conf" }
    POSIX::_exit(1);
}
END { if ($$ == $parent) { local $?; kill 'KILL', $spid; waitpid $spid, 0 } }

sub master_of { my @a = split /\n/, cli($sp, 'sentinel', 'get-master-addr-by-name', 'mm'); return "$a[0]:" . ($a[1] // '') }
ok(within(15, sub { cli($sp, 'sentinel', 'master', 'mm') =~ /\nnum-slaves\n1\n/ }),
   'the Sentinel knows the replica') or diag(`tail -5 $work/sentinel/out.log`);

my $secret = 'sentinel-follow-secret';
my $app = start_example_app('app', $m, $secret, REDIS_SENTINELS => "127.0.0.1:$sp",
                            REDIS_MASTER_NAME => 'mm');

my $port = free_port();
my $d = start_nginx('follow', <<"_EOC_", workers => 2);
    redis_pool main { sentinel 127.0.0.1:$sp; master mm; timeout 200ms; }
    server {
        listen 127.0.0.1:$port;
        location = /api/login { proxy_pass http://127.0.0.1:$app; }
        location /api/profile {
            session_redis main;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_set \$user_id user.id;
            proxy_set_header X-User-Id \$user_id;
            add_header X-Session \$session_redis_status always;
            proxy_pass http://127.0.0.1:$app;
        }
    }
_EOC_

# log in through nginx; returns (login status, profile status, session id
# from the cookie, X-Session of the profile)
my $n = 0;
sub login_and_profile {
    my $user = shift;
    my $jar = "$work/jar." . ++$n;
    my $ls = curl("-o /dev/null -w '%{http_code}' -c $jar -H 'content-type: application/json' "
                  . "-d '{\"user\":\"$user\"}' http://127.0.0.1:$port/api/login");
    my $out = curl("-D - -o $work/body.$n -b $jar http://127.0.0.1:$port/api/profile");
    my ($ps) = $out =~ m{^HTTP/1\.1 (\d+)}m;
    my ($xs) = $out =~ /^X-Session: (\S+)/mi;
    my $c = `cat $jar 2>/dev/null`;
    my ($sid) = $c =~ /connect\.sid\ts%3A([^.]+)\./;
    return ($ls, $ps // 0, $sid // '', $xs // '');
}

ok(within(10, sub { (login_and_profile('probe'))[1] == 200 }), 'app and nginx are up on the master');
my ($ls, $ps, $sid, $xs) = login_and_profile('before');
is("$ls $ps $xs", '200 200 VALID', 'before the switch: a login is validated by nginx');

# the switch: the old master stays up, a replica until Sentinel demotes it
is(cli($sp, 'sentinel', 'failover', 'mm'), 'OK', 'SENTINEL FAILOVER mm');
ok(within(10, sub { master_of() eq "127.0.0.1:$r" }), 'the Sentinel names the new master');
ok(within(5, sub { errlog_has($d, qr/master "mm" is now 127\.0\.0\.1:$r/) >= 2 }),
   'both nginx workers moved to the new master');
my $t_switch = time;

# within 2 s of the switch, a new login lands on the new master, where
# nginx finds it; without the app's watch it went to the old master for
# the 8 s or more Sentinel waits before it demotes it
my ($after, $took);
my $followed = within(2, sub {
    my @res = login_and_profile('after');
    $after = \@res;
    return "$res[0] $res[1] $res[3]" eq '200 200 VALID';
}, 0.1);
$took = time - $t_switch;
ok($followed, sprintf('after the switch a login is validated by nginx (within %.1f s)', $took))
    or diag("login $after->[0], profile $after->[1] ($after->[3]); old master role: "
            . (split /\n/, cli($m, 'role'))[0] . "; app log:\n" . `cat $work/app.log`);
ok(cli($r, 'exists', "sess:$after->[2]") eq '1', 'that session is on the new master')
    if $followed;
like(`cat $work/app.log`, qr/master "mm" is 127\.0\.0\.1:$r \(\+switch-master from Sentinel/,
     'the app logged the +switch-master it followed');

# the session made before the switch was replicated and still validates
my $c = `cat $work/jar.2`;
my $out = curl("-D - -o /dev/null -b $work/jar.2 http://127.0.0.1:$port/api/profile");
like($out, qr/^X-Session: VALID/mi, 'the session from before the switch still validates');

errlog_clean($d, 'nginx across the switch');
done_testing();
