# vi:filetype=perl
#
# The demo scenario in quick mode (examples/demo/run --quick): Redis as a
# master, 2 replicas and 3 Sentinels, 3 app instances, 2 nginx with the
# module (redis_pool through the Sentinels; DEMO_REDIS_POOL picks another
# way), HAProxy in front, all on free random loopback ports, then every KPI
# (Instance Scale, Load Distribution, Session Persistence, Rate Limiting,
# Query Caching, Failover, No Single Point of Failure) with the same pass
# criteria as `make demo`, fewer requests.  Plain Test::More.

use strict;
use warnings;
use Test::More;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $repo = abs_path(dirname(__FILE__) . '/..');

sub have { my $c = shift; return system("command -v $c >/dev/null 2>&1") == 0 }

plan skip_all => 'node and npm are needed for the example app (scripts/deps.sh demo)'
    unless have('node') && (have('npm') || -d "$repo/examples/app/node_modules/express-session");

for my $c (qw(haproxy redis-server redis-sentinel redis-cli curl)) {
    BAIL_OUT("$c not found: scripts/deps.sh demo installs it") unless have($c);
}

my $so    = $ENV{TEST_NGINX_LOAD_MODULES} || $ENV{SO} || "$repo/build/modules/ngx_http_scale_module.so";
my $nginx = $ENV{TEST_NGINX_BINARY} || $ENV{NGINX} || '/usr/sbin/nginx';
ok(-f $so, "module $so exists") or BAIL_OUT("build the module first (make)");

local $ENV{SO} = $so;
local $ENV{NGINX_BIN} = $nginx;
my $out = `timeout 400 $repo/examples/demo/run --quick 2>&1`;
my $rc = $? >> 8;

my @kpis = ('Instance Scale', 'Load Distribution', 'Session Persistence',
            'Rate Limiting', 'Query Caching', 'Failover', 'No Single Point of Failure');
for my $kpi (@kpis) {
    my ($line) = $out =~ /^(KPI \Q$kpi\E \.+ .*)$/m;
    ok(defined $line, "KPI $kpi reported") or next;
    like($line, qr/^KPI \Q$kpi\E \.+ PASS  /, "KPI $kpi: PASS")
        or diag($line);
}
my $lines = () = $out =~ /^KPI /mg;
is($lines, scalar @kpis, 'exactly one line per KPI');
is($rc, 0, 'examples/demo/run --quick exits 0');
my ($summary) = $out =~ /^(demo: (?:all \d+ KPIs PASS|\d+ KPI\(s\) FAIL))$/m;
is($summary // '', 'demo: all 7 KPIs PASS', 'summary line');

# No Single Point of Failure: one detail line per kill, each recovered with
# nothing failing afterwards; the Redis master's within its bound
my %kill = $out =~ /^    (app1|nginx1|redis\d \(master\)|sentinel1) +killed: (.*)$/mg;
is(join(' ', sort keys %kill), 'app1 nginx1 redis1 (master) sentinel1',
   'an app, an nginx, the Redis master and a Sentinel were killed');
for my $k (sort keys %kill) {
    like($kill{$k}, qr/^recovered after [\d.]+s .*; failed \d+ of \d+ during, 0 of \d+ after;/,
         "$k: recovered, 0 failed after recovery");
}
# within 2.5 s of Sentinel's down-after (the KPI line says the bound)
my ($lim, $ses) = ($kill{'redis1 (master)'} // '') =~ /limiting degraded ([\d.]+)s, sessions ([\d.]+)s/;
my ($max) = $out =~ /^KPI No Single Point of Failure .*\(max ([\d.]+)s\)/m;
ok(defined $max && $max <= 4.5, 'the bound is down-after + 2.5 s, at most 4.5 s: ' . ($max // 'none'));
ok(defined $lim && defined $max && $lim <= $max && $ses <= $max,
   'Redis master: limiting and sessions back within the bound')
    or diag($kill{'redis1 (master)'});
# matched line by line: a failure shows the line, not the whole output
my ($before) = $out =~ /^\s+(before the kills: .*)$/m;
like($before // '', qr/^before the kills: \d+ requests, 0 failed$/, 'nothing failed before the kills');
my ($after) = $out =~ /^\s+(after the kills: .*)$/m;
like($after // '', qr/^after the kills: a new login -> 200, its session validated by nginx: ok$/,
     'after the kills a new login works and nginx validates its session (both on the new master)');

# everything it started is gone: none of its ports still listens
my @ports = $out =~ m{127\.0\.0\.1:(\d+)}g;
my %seen;
my @left = grep { !$seen{$_}++ && `ss -Htln "sport = :$_" 2>/dev/null` ne '' } @ports;
ok(@ports >= 8, 'the demo printed its ports');
is("@left", '', 'no listener left after teardown');
# the whole run: in the test's own output (prove -v), and in full on failure
note($out);
diag($out) unless Test::More->builder->is_passing;

done_testing();
