# The Debian package, as an operator meets it: `make deb`, then
# `apt-get install ./libnginx-mod-http-scale_*.deb` into the machine's own
# nginx.  The module is enabled through /etc/nginx/modules-enabled, the stock
# /etc/nginx/nginx.conf with a conf.d file using every module's directives
# passes `nginx -t`, an nginx started from that layout (on a test port
# only) counts a request in Redis; after `apt-get remove` nginx tests and
# starts without it.  Everything this changes on the machine is put back in
# END blocks, also on failure.

use strict;
use warnings;
use FindBin;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(sleep);

our ($work, $repo, $build);
BEGIN {
    require "$FindBin::Bin/helpers/scale.pl";
    require "$FindBin::Bin/helpers/package.pl";
}

my $pkg  = 'libnginx-mod-http-scale';
my $link = '/etc/nginx/modules-enabled/50-mod-http-scale.conf';
my $snippet = '/usr/share/nginx/modules-available/mod-http-scale.conf';

plan skip_all => 'dpkg-buildpackage not found (scripts/deps.sh deb installs it)'
    if system('command -v dpkg-buildpackage >/dev/null') != 0;
plan skip_all => 'installing a package needs root' if $> != 0;
plan skip_all => 'no Debian nginx layout (/etc/nginx/nginx.conf, modules-enabled)'
    unless -f '/etc/nginx/nginx.conf' && -d '/etc/nginx/modules-enabled'
           && -x '/usr/sbin/nginx';
plan skip_all => 'redis-server not found'
    if system('command -v redis-server >/dev/null') != 0;
plan skip_all => 'another run of this scenario holds the machine for 15 min'
    unless machine_lock('nginx-scale-deb-scenario', 900);
plan skip_all => "$pkg is installed already (not by this test): left alone"
    if installed($pkg);

my $log = "$work/t700.log";
my @apt = ('env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-y', '-q',
           '-o', 'DPkg::Lock::Timeout=300');
my $testconf = "/etc/nginx/conf.d/zz-nginx-scale-t700-$$.conf";
my ($installed, @started);

sub stock_nginx_t {
    return run_cmd(60, $log, '/usr/sbin/nginx', '-t', '-q');
}

# ------------------------------------------------------------- restore --
# a signal (a timeout, Ctrl-C) ends the test through exit, so END runs
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { exit 1 };
END {
    local $?;
    for my $d (@started) {
        run_cmd(20, "$work/stop.log", '/usr/sbin/nginx', '-c', "$d/nginx.conf",
                '-s', 'stop');
        for (1 .. 50) { last unless -e "$d/nginx.pid"; sleep 0.1 }
    }
    unlink $testconf;
    # also when a remove left it in dpkg's config-files state
    if ($installed) {
        run_cmd(300, "$work/purge.log", @apt, 'purge', $pkg);
    }
}

# ------------------------------------------------------------------ build --
my $deb = package_deb(1, $log);
ok($deb, 'make deb built the package') or diag(log_tail($log, 30));
unless ($deb) { done_testing(); exit }
like($deb, qr{^\Q$build\E/${pkg}_[^/]+\.deb$}, "the package is in build/: $deb");

my %f = map { $_ => scalar out_cmd(30, 'dpkg-deb', '-f', $deb, $_) }
        qw(Package Version Depends);
chomp %f;
is($f{Package}, $pkg, 'binary package name');
my $version = code_version();
is($f{Version}, $version, "package version is the code's ($version)");
like($f{Depends}, qr/\bnginx-abi-[\d.]+-\d+\b/, "depends on the exact nginx ABI: $f{Depends}");
like($f{Depends}, qr/\blibhiredis0\.14\b/, 'depends on libhiredis (shlibs)');
my $abi = out_cmd(30, 'dpkg-query', '-W', '-f=${Provides}', 'nginx');
my ($dep_abi) = $f{Depends} =~ /(nginx-abi-[\d.]+-\d+)/;
like($abi, qr/\Q$dep_abi\E/, "the machine's nginx provides $dep_abi");

my $files = out_cmd(30, 'dpkg-deb', '-c', $deb);
like($files, qr{\./usr/lib/nginx/modules/ngx_http_scale_module\.so$}m,
     'ships the module in /usr/lib/nginx/modules');
like($files, qr{\./usr/share/nginx/modules-available/mod-http-scale\.conf$}m,
     'ships the load_module snippet in modules-available');

# ---------------------------------------------------------------- install --
my $before = join ' ', sort glob('/etc/nginx/modules-enabled/*');
$installed = 1;
ok(run_cmd(300, $log, @apt, 'install', $deb), "apt-get install $deb")
    or diag(log_tail($log));
ok(-l $link, "$link exists after install");
is(readlink($link) // '', $snippet, 'it links to the package snippet');
open my $sf, '<', $snippet;
my $snip = do { local $/; <$sf> } // '';
is($snip, "load_module modules/ngx_http_scale_module.so;\n",
   'the snippet loads the module by the path users write');

# a conf.d file (inside http {} of the stock nginx.conf) using every
# module's directives
my $rp   = free_port();
my $port = free_port();
start_redis($rp);
my %mods = do {
    open my $c, '<', "$repo/config";
    map { $_ => 1 } join('', <$c>) =~ /\b(ngx_http_\w+_module)\b/g;
};
my $cache = $mods{ngx_http_cache_redis_module}
    ? "location /cached { cache_redis t700pool; cache_redis_valid 200 1m; empty_gif; }"
    : '';
my $conf = <<"_EOC_";
# t/700-deb-package.t (removed when the test ends)
redis_pool t700pool { server 127.0.0.1:$rp; timeout 1s; }
ratelimit_redis_zone \$binary_remote_addr zone=t700zone rate=3r/m pool=t700pool;
ratelimit_redis_headers draft;
health_drain_file /run/nginx-scale-t700-$$.drain;
server {
    listen 127.0.0.1:$port;
    session_redis_format plain;
    session_redis_cookie t700sid;
    session_redis_key_prefix t700sess:;
    session_redis_set \$t700_user user;
    location = /limited { ratelimit_redis zone=t700zone; empty_gif; }
    location = /private {
        session_redis t700pool;
        add_header X-User \$t700_user always;
        empty_gif;
    }
    location = /live    { health_live; }
    location = /ready   { health_ready; }
    location = /metrics { allow 127.0.0.1; deny all; health_metrics; }
    $cache
}
_EOC_
open my $tc, '>', $testconf or die "$testconf: $!";
print $tc $conf;
close $tc;
ok(stock_nginx_t(), 'nginx -t: stock nginx.conf + a conf.d file with every module')
    or diag(log_tail($log));

# nginx from the stock layout, on the test port only: the stock nginx.conf
# with its own pid and logs, the test conf.d file instead of conf.d/* and no
# sites-enabled (the default site listens on :80); modules come from
# modules-enabled, as the package put them
sub stock_layout_nginx {
    my ($name, $body) = @_;
    my $d = "$work/$name";
    mkdir $d;
    mkdir "$d/logs";
    open my $in, '<', '/etc/nginx/nginx.conf' or die $!;
    my $c = do { local $/; <$in> };
    $c =~ s{^\s*pid\s+[^;]+;}{pid $d/nginx.pid;}m or die 'no pid line';
    $c =~ s{^\s*error_log\s+[^;]+;}{error_log $d/logs/error.log info;}m
        or $c = "error_log $d/logs/error.log info;\n$c";
    $c =~ s{^\s*access_log\s+[^;]+;}{access_log $d/logs/access.log;}m;
    $c =~ s{^\s*include\s+/etc/nginx/conf\.d/\*\.conf;}{include $d/conf.d/*.conf;}m
        or die 'no conf.d include';
    $c =~ s{^\s*include\s+/etc/nginx/sites-enabled/\*;}{}m;
    mkdir "$d/conf.d";
    open my $o, '>', "$d/nginx.conf" or die $!;
    print $o $c;
    open $o, '>', "$d/conf.d/test.conf" or die $!;
    print $o $body;
    close $o;
    my $ok = run_cmd(30, "$d/start.log", '/usr/sbin/nginx', '-c', "$d/nginx.conf");
    push @started, $d if $ok;
    for (1 .. 50) { last if -s "$d/nginx.pid"; sleep 0.1 }
    return ($ok, $d);
}

sub stop_stock {
    my $d = shift;
    run_cmd(20, $log, '/usr/sbin/nginx', '-c', "$d/nginx.conf", '-s', 'quit');
    for (1 .. 100) { last unless -e "$d/nginx.pid"; sleep 0.05 }
    @started = grep { $_ ne $d } @started;
    return !-e "$d/nginx.pid";
}

my ($up, $d) = stock_layout_nginx('with', $conf);
ok($up, 'nginx starts from the stock layout with the module')
    or diag(log_tail("$d/start.log") . log_tail("$d/logs/error.log"));
sleep 0.3;

my $http = HTTP::Tiny->new(timeout => 5);
my $u = "http://127.0.0.1:$port";
wait_redis_window($rp, 60, 5);
my @codes = map { $http->get("$u/limited")->{status} } 1 .. 4;
is("@codes", '200 200 200 429', '3r/m: three requests pass, the fourth gets 429');
# the records of the zone's hashes (README, *Redis key layout*)
my $records = out_cmd(10, 'redis-cli', '-p', $rp, 'eval',
    "local r = {} for _, k in ipairs(redis.call('KEYS', 'rl:{t700zone}:*')) do "
    . "local f = redis.call('HGETALL', k) for i = 1, #f, 2 do "
    . "if f[i] ~= '' then r[#r + 1] = f[i + 1] end end end return r", 0);
my $sum = 0;
$sum += record_count($_) || 0 for split /\n/, $records;
is($sum, 3, 'Redis holds the three admitted requests of zone t700zone');

out_cmd(5, 'redis-cli', '-p', $rp, 'set', 't700sess:abc123', '{"user":"alice"}');
my $r = $http->get("$u/private", { headers => { Cookie => 't700sid=abc123' } });
is($r->{status}, 200, 'a session stored in Redis is accepted');
is($r->{headers}{'x-user'}, 'alice', 'and its user read from Redis');
is($http->get("$u/private")->{status}, 401, 'no cookie: 401');
is($http->get("$u/live")->{status}, 200, 'health_live answers');
$r = $http->get("$u/ready");
is($r->{status}, 200, 'health_ready answers 200 with Redis up');
$r = $http->get("$u/metrics");
like($r->{content}, qr/^nginx_scale_info\{version="\Q$version\E"/m,
     "health_metrics: nginx_scale_info{version=\"$version\"}");
like($r->{content},
     qr/^nginx_ratelimit_redis_requests_total\{zone="t700zone",result="rejected"\} 1$/m,
     'health_metrics counts the rejected request');
ok(stop_stock($d), 'that nginx stops');
errlog_clean($d, 'stock layout with the module');

# ----------------------------------------------------------------- remove --
unlink $testconf;
ok(run_cmd(300, $log, @apt, 'remove', $pkg), "apt-get remove $pkg")
    or diag(log_tail($log));
ok(!installed($pkg), 'the package is gone');
like(out_cmd(30, 'dpkg-query', '-W', '-f=${db:Status-Abbrev}', $pkg), qr/^(|[up]n\s*)$/,
     'dpkg keeps nothing of it (not even config-files)');
ok(!-e '/usr/lib/nginx/modules/ngx_http_scale_module.so', 'and its module');
is_deeply([grep { /scale/ } glob('/etc/nginx/modules-enabled/*')], [],
          'modules-enabled holds nothing of it');
is(join(' ', sort glob('/etc/nginx/modules-enabled/*')), $before,
   'modules-enabled is as before the install');
ok(stock_nginx_t(), 'nginx -t passes on the stock layout without the package')
    or diag(log_tail($log));

($up, $d) = stock_layout_nginx('without', <<"_EOC_");
server { listen 127.0.0.1:$port; location / { empty_gif; } }
_EOC_
ok($up, 'nginx starts from the stock layout without the package')
    or diag(log_tail("$d/start.log") . log_tail("$d/logs/error.log"));
is($http->get("$u/")->{status}, 200, 'and serves');
ok(stop_stock($d), 'that nginx stops');
errlog_clean($d, 'stock layout without the module');

done_testing();
