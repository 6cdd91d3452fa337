# vi:filetype=perl
#
# /metrics through `promtool check metrics` (package prometheus).  A plain
# Test::More script: it starts its own nginx with its own prefix and port,
# the module from TEST_NGINX_LOAD_MODULES, and Redis from
# TEST_NGINX_REDIS_PORT when set.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $so = $ENV{TEST_NGINX_LOAD_MODULES}
    or plan skip_all => 'TEST_NGINX_LOAD_MODULES is not set';

chomp(my $promtool = `command -v promtool 2>/dev/null` // '');
plan skip_all => 'promtool not installed (package prometheus)' unless $promtool;
chomp(my $curl = `command -v curl 2>/dev/null` // '');
plan skip_all => 'curl not installed' unless $curl;

my $base = $ENV{TEST_NGINX_WORK} && -d $ENV{TEST_NGINX_WORK}
           ? $ENV{TEST_NGINX_WORK} : undef;
my $prefix = tempdir('health-promtool.XXXXXX', $base ? (DIR => $base) : (TMPDIR => 1),
                     CLEANUP => 1);
mkdir "$prefix/logs";

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

my ($port, $app) = (free_port(), free_port());
my $redis = $ENV{TEST_NGINX_REDIS_PORT}
    ? "redis_pool main { server 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}; }\n"
      . "    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }\n"
      . "    ratelimit_redis_zone \$arg_k zone=p rate=1000r/s pool=main;"
    : '';
my $limit = $ENV{TEST_NGINX_REDIS_PORT} ? 'ratelimit_redis zone=p;' : '';

open my $conf, '>', "$prefix/nginx.conf" or die $!;
print $conf <<"EOF";
load_module $so;
worker_processes 2;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    $redis
    upstream app {
        server 127.0.0.1:$app;
        server 127.0.0.1:1 max_fails=1;
        server unix:$prefix/nobody.sock backup;
    }
    server {
        listen 127.0.0.1:$port;
        location = /metrics { health_metrics; }
        location /app/ { $limit proxy_pass http://app; }
        location = /gif { empty_gif; }
    }
    server {
        listen 127.0.0.1:$app;
        location / { return 200 "ok\\n"; }
    }
}
EOF
close $conf;

system("$nginx -p $prefix -c $prefix/nginx.conf") == 0 or BAIL_OUT('nginx did not start');
END {
    if (-f "$prefix/nginx.pid") {
        chomp(my $pid = `cat $prefix/nginx.pid`);
        kill 'QUIT', $pid if $pid;
        sleep 0.5;
    }
}

sleep 1.2;
system("$curl -s -o /dev/null 'http://127.0.0.1:$port/app/x?k=$_'") for 1 .. 10;
system("$curl -s -o /dev/null http://127.0.0.1:$port/gif") for 1 .. 5;
system("$curl -s -o /dev/null http://127.0.0.1:$port/nope");

for my $accept ('', 'application/openmetrics-text; version=1.0.0') {
    my $h = $accept ? "-H 'Accept: $accept'" : '';
    my $what = $accept ? 'OpenMetrics' : 'text 0.0.4';
    my $code = `$curl -s -o $prefix/metrics -w '%{http_code}' $h http://127.0.0.1:$port/metrics`;
    is($code, '200', "$what: /metrics answers 200");

    # promtool reads the 0.0.4 text format only
    if (!$accept) {
        my $out = `$promtool check metrics < $prefix/metrics 2>&1`;
        is($? >> 8, 0, "$what: promtool check metrics exits 0") or diag($out);
    }

    open my $in, '<', "$prefix/metrics" or die $!;
    my $text = do { local $/; <$in> };
    close $in;

    like($text, qr/^nginx_upstream_peer_requests_total\{upstream="app",peer="unix:\Q$prefix\E\/nobody.sock"\} 0$/m,
         "$what: a unix socket peer is labelled as nginx prints it");
    like($text, qr/^nginx_http_requests_total\{status="4xx"\} 1$/m, "$what: the 404 is counted");
    if ($accept) {
        like($text, qr/# EOF\n\z/, "$what: ends with # EOF");
    }

    my %hist;
    my $ok = 1;
    for my $line (split /\n/, $text) {
        next unless $line =~ /^(\w+)_(bucket|count)\{?(.*?)\}? (\d+)$/;
        my ($fam, $kind, $labels, $v) = ($1, $2, $3, $4);
        if ($kind eq 'bucket') {
            $labels =~ s/,?le="([^"]+)"//;
            my $le = $1;
            my $h = $hist{"$fam|$labels"} //= { n => 0 };
            $ok = 0, diag("$fam\{$labels} not cumulative at le=$le") if $v < $h->{n};
            $h->{n} = $v;
            $h->{inf} = $v if $le eq '+Inf';
        } elsif (my $h = $hist{"$fam|$labels"}) {
            $ok = 0, diag("$fam\{$labels} +Inf $h->{inf} != _count $v")
                unless defined $h->{inf} && $h->{inf} == $v;
        }
    }
    ok($ok && keys %hist >= 2, "$what: histograms cumulative, +Inf == _count");
}

open my $log, '<', "$prefix/logs/error.log" or die $!;
my @bad = grep { /\[(alert|emerg)\]/ } <$log>;
ok(!@bad, 'no [alert] or [emerg] in error.log') or diag(@bad);

done_testing();
