# Upstream balancers: nginx's own (round robin, hash, ip_hash, least_conn,
# random, with keepalive and zone on top) keep round-robin peers, which
# health reads for nginx_upstream_peer_* and health_ready_upstream.  A
# third-party balancer keeps peers of its own (here Debian's upstream-fair
# module, loaded before the scale module as a packaged nginx would): its
# upstream gets the per-upstream count only, and health_ready_upstream
# naming it is refused.  nginx -t, /metrics and /ready never crash.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);

our ($nginx, $so, $work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $fair = '/usr/lib/nginx/modules/ngx_http_upstream_fair_module.so';
plan skip_all => "$fair not installed (libnginx-mod-http-upstream-fair)" unless -f $fair;

my @b = map { free_port() } 1 .. 2;   # two backends, served by the same nginx

my $backends = join '', map {
    "    server { listen 127.0.0.1:$_; location / { return 200 \"$_\\n\"; } }\n"
} @b;

# a complete nginx.conf: the fair module first, then this one
sub conf {
    my ($d, $http, %o) = @_;
    my $workers = $o{workers} || 1;
    return <<"_EOC_";
load_module $fair;
load_module $so;
worker_processes $workers;
pid $d/logs/nginx.pid;
error_log $d/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$http
}
_EOC_
}

sub write_conf {
    my ($name, $http) = @_;
    my $d = "$work/$name";
    mkdir $d; mkdir "$d/logs";
    open my $f, '>', "$d/nginx.conf" or die;
    print $f conf($d, $http);
    close $f;
    return $d;
}

# nginx -t: (exit status as the shell sees it, output)
sub nginx_t {
    my $d = shift;
    my $out = `$nginx -t -p $d -c $d/nginx.conf 2>&1`;
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($rc, $out);
}

sub start {
    my ($name, $http) = @_;
    my $d = write_conf($name, $http);
    system("$nginx -p $d -c $d/nginx.conf") == 0 or die "nginx $name did not start";
    for (1 .. 50) { last if -s "$d/logs/nginx.pid"; sleep 0.1 }
    push @main::nginx, $d;
    sleep 0.3;
    return $d;
}

sub body {
    my $url = shift;
    return scalar `curl -s -m 5 '$url'`;
}

sub metric {
    my ($m, $re) = @_;
    return $m =~ /^$re (\d+)$/m ? $1 : undef;
}

my $servers = join ' ', map { "server 127.0.0.1:$_;" } @b;


my ($port, $http, $d, $rc, $out, @codes, $m, $r);
$port = free_port();

# --- health_ready_upstream naming a fair upstream is refused

for my $u (['f', "upstream f { fair; $servers }"],
           ['fk', "upstream fk { fair; $servers keepalive 4; }"])
{
    my ($name, $block) = @$u;
    $d = write_conf("fair-ready-$name", <<"_EOC_");
    $block
    health_ready_upstream $name;
    server { listen 127.0.0.1:$port; location = /ready { health_ready; } }
_EOC_
    ($rc, $out) = nginx_t($d);
    is($rc, 1, "health_ready_upstream $name (fair): nginx -t refuses it, no crash") or diag($out);
    like($out, qr/\[emerg\] .*health_ready_upstream.*"$name"|\[emerg\] .*"$name".*health_ready_upstream/,
         "the [emerg] names health_ready_upstream and the upstream \"$name\"");
    like($out, qr/nginx\.conf:\d+/, 'and the line of the directive');
}


# --- nginx's own balancers: per-peer series and readiness still work

my @kinds = (
    ['rr',   ''],
    ['hash', 'hash $request_uri;'],
    ['chash', 'hash $request_uri consistent;'],
    ['iph',  'ip_hash;'],
    ['lc',   'least_conn;'],
    ['rnd',  'random;'],
    ['rnd2', 'random two least_conn;'],
    ['ka',   'keepalive 4;'],
    ['hka',  'hash $request_uri; keepalive 4;'],
    ['lcka', 'least_conn; keepalive 4;'],
    ['zone', 'zone z_zone 64k;'],
    ['zlc',  'zone z_zlc 64k; least_conn; keepalive 4;'],
);

$port = free_port();
my $ups = join '', map { "    upstream $_->[0] { $_->[1] $servers }\n" } @kinds;
my $ready = join '', map { "    health_ready_upstream $_->[0] min=2;\n" } @kinds;
my $locs = join '', map {
    "        location /$_->[0]/ { proxy_pass http://$_->[0]/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n"
} @kinds;
$http = <<"_EOC_";
$ups
$ready
$backends
    server {
        listen 127.0.0.1:$port;
        location = /metrics { health_metrics; }
        location = /ready { health_ready; }
$locs
    }
_EOC_

$d = write_conf('own-t', $http);
($rc, $out) = nginx_t($d);
is($rc, 0, "nginx's own balancers: nginx -t succeeds") or diag($out);

$d = start('own', $http);
for my $k (@kinds) {
    @codes = map { `curl -s -o /dev/null -w '%{http_code}' -m 5 http://127.0.0.1:$port/$k->[0]/$_` } 1 .. 8;
    is("@codes", join(' ', ('200') x 8), "$k->[0]: 8 requests served");
}

$m = body("http://127.0.0.1:$port/metrics");
for my $k (@kinds) {
    my $sum = 0;
    for my $p (@b) {
        my $v = metric($m, "nginx_upstream_peer_requests_total\\{upstream=\"$k->[0]\",peer=\"127.0.0.1:$p\"\\}");
        ok(defined $v, "$k->[0]: per-peer requests of 127.0.0.1:$p");
        is(metric($m, "nginx_upstream_peer_up\\{upstream=\"$k->[0]\",peer=\"127.0.0.1:$p\"\\}"), 1,
           "$k->[0]: 127.0.0.1:$p is up");
        $sum += $v // 0;
    }
    is($sum, 8, "$k->[0]: the peers' requests add up to 8");
    is(metric($m, "nginx_upstream_requests_total\\{upstream=\"$k->[0]\"\\}"), 8,
       "$k->[0]: the per-upstream count is 8");
}

$r = body("http://127.0.0.1:$port/ready");
like($r, qr/^\{"status":"pass"/, '/ready passes');
for my $k (@kinds) {
    like($r, qr/"upstream:$k->[0]":\[\{"componentType":"component","status":"pass","observedValue":2,"observedUnit":"peers"/,
         "$k->[0]: /ready sees its 2 peers");
}

errlog_clean($d, "nginx's own balancers");
stop_nginx($d);

# --- a fair upstream: nginx -t, /metrics, the per-upstream count

$port = free_port();
$http = <<"_EOC_";
    upstream f { fair; $servers }
    upstream fk { fair; $servers keepalive 4; }
$backends
    server {
        listen 127.0.0.1:$port;
        location = /metrics { health_metrics; }
        location = /ready { health_ready; }
        location /f { proxy_pass http://f; }
        location /fk { proxy_pass http://fk; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
_EOC_

$d = write_conf('fair-t', $http);
($rc, $out) = nginx_t($d);
is($rc, 0, 'health_metrics with a fair upstream: nginx -t succeeds') or diag($out);

$d = start('fair', $http);
@codes = map { `curl -s -o /dev/null -w '%{http_code}' -m 5 http://127.0.0.1:$port/f/$_` } 1 .. 6;
is("@codes", join(' ', ('200') x 6), 'requests through the fair upstream are served');
@codes = map { `curl -s -o /dev/null -w '%{http_code}' -m 5 http://127.0.0.1:$port/fk/$_` } 1 .. 4;
is("@codes", join(' ', ('200') x 4), 'requests through fair + keepalive are served');

$m = body("http://127.0.0.1:$port/metrics");
like($m, qr/^nginx_scale_info\{/m, '/metrics answers');
is(metric($m, 'nginx_upstream_requests_total\{upstream="f"\}'), 6,
   'the fair upstream counts its requests per upstream');
is(metric($m, 'nginx_upstream_requests_total\{upstream="fk"\}'), 4,
   'so does fair with keepalive on top');
unlike($m, qr/^nginx_upstream_peer_\w+\{upstream="fk?"/m,
       'no per-peer series for peers health cannot read');
like($m, qr/^# TYPE nginx_upstream_requests_total counter$/m, 'the family is typed');

$r = body("http://127.0.0.1:$port/ready");
like($r, qr/^\{"status":"pass"/, '/ready without health_ready_upstream passes');
errlog_clean($d, 'fair');
stop_nginx($d);


done_testing();
