# vi:filetype=perl
#
# health_metrics: the families of DESIGN.md, HELP and TYPE once per family,
# cumulative histograms, per-peer request counts, OpenMetrics when asked,
# and a scrape that succeeds while everything else fails.

use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;

no_shuffle();
worker_connections(1024);

our @Ports = map { free_port() } 1 .. 2;

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# "ok\n", or what is wrong with an exposition in the text format
sub check_exposition {
    my ($text) = @_;
    my (@err, %help, %type, %done, $family, %hist);

    $text =~ s/# EOF\n\z//;

    for my $line (split /\n/, $text) {
        if ($line =~ /^# HELP (\S+) /) {
            push @err, "HELP $1 twice" if $help{$1}++;
            $done{$family} = 1 if defined $family && $family ne $1;
            $family = $1;
            push @err, "family $1 split" if $done{$1};
            next;
        }
        if ($line =~ /^# TYPE (\S+) (\S+)$/) {
            push @err, "TYPE $1 twice" if $type{$1};
            push @err, "TYPE $1 not after its HELP" if $1 ne $family;
            $type{$1} = $2;
            next;
        }
        if ($line !~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/) {
            push @err, "bad line: $line";
            next;
        }
        my ($name, $labels, $value) = ($1, $3 // '', $4);
        my $t = $type{$family} // '';
        if ($t eq 'histogram') {
            my $key = $labels;
            $key =~ s/,?le="[^"]*"//;
            if ($name eq "${family}_bucket") {
                my ($le) = $labels =~ /le="([^"]*)"/;
                my $h = $hist{"$family\{$key"} //= { le => -1, n => 0 };
                my $lev = $le eq '+Inf' ? 9**9**9 : $le;
                push @err, "$family\{$key} le $le out of order" if $lev <= $h->{le};
                push @err, "$family\{$key} le $le not cumulative" if $value < $h->{n};
                @$h{qw(le n inf)} = ($lev, $value, $le eq '+Inf' ? $value : undef);
            } elsif ($name eq "${family}_count") {
                my $h = $hist{"$family\{$key"};
                push @err, "$family\{$key} +Inf != _count"
                    unless $h && defined $h->{inf} && $h->{inf} == $value;
            } elsif ($name ne "${family}_sum") {
                push @err, "$name inside histogram $family";
            }
        } elsif ($t eq 'counter' && $name ne $family && $name ne "${family}_total") {
            push @err, "$name inside counter $family";
        } elsif ($t eq 'gauge' && $name ne $family) {
            push @err, "$name inside gauge $family";
        }
    }

    return @err ? join("\n", @err) . "\n" : "ok\n";
}

add_block_preprocessor(sub {
    my $block = shift;
    for my $s (qw(http_config config)) {
        my $v = $block->$s;
        next unless defined $v;
        $v =~ s/\$AppPort(\d)/$Ports[$1 - 1]/g;
        $block->set_value($s, $v);
    }
});

run_tests();

__DATA__

=== TEST 1: requests per peer, per status class, duration, ratelimit, redis
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=m rate=1000r/s pool=main;
    upstream app { server 127.0.0.1:$AppPort1; server 127.0.0.1:$AppPort2; }
    server {
        listen 127.0.0.1:$AppPort1;
        listen 127.0.0.1:$AppPort2;
        location / { return 200 "$server_port\n"; }
    }
--- config
    location = /metrics { health_metrics; }
    location /app/ { ratelimit_redis zone=m; proxy_pass http://app; }
--- init
Time::HiRes::sleep(1.2);
--- request eval
["GET /app/?k=a", "GET /app/?k=b", "GET /app/?k=c", "GET /app/?k=d", "GET /nope", "GET /metrics"]
--- error_code eval
[200, 200, 200, 200, 404, 200]
--- response_body_like eval
[qr/^\d+$/, qr/^\d+$/, qr/^\d+$/, qr/^\d+$/, qr/404/,
 qr/\nnginx_http_requests_total\{status="2xx"\} 8\n(?:.*\n)?nginx_http_requests_total\{status="4xx"\} 1\n(?:.*\n)?nginx_http_requests_total\{status="5xx"\} 0\n(?:.*\n)?nginx_ratelimit_redis_requests_total\{zone="m",result="passed"\} 4\n(?:.*\n)?nginx_redis_up\{pool="main"\} 1\n(?:.*\n)?nginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 2\nnginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$main::Ports[1]"\} 2\n(?:.*\n)?nginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 1\n/s]
--- no_error_log
[alert]
[emerg]



=== TEST 2: every family of DESIGN.md; those without series here still named
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    upstream app { server 127.0.0.1:$AppPort1; }
--- config
    location = /metrics { health_metrics; }
--- request eval
["GET /metrics", "GET /metrics"]
--- response_body_like eval
[qr/.*/,
 qr/^# HELP nginx_cache_redis_requests_total .*
# TYPE nginx_cache_redis_requests_total counter
# HELP nginx_cache_redis_stored_bytes_total .*
# TYPE nginx_cache_redis_stored_bytes_total counter
# HELP nginx_cache_redis_stored_total .*
# TYPE nginx_cache_redis_stored_total counter
# HELP nginx_connections .*
# TYPE nginx_connections gauge
nginx_connections\{state="active"\} \d+
nginx_connections\{state="reading"\} \d+
nginx_connections\{state="writing"\} \d+
nginx_connections\{state="waiting"\} \d+
# HELP nginx_connections_accepted_total .*
# TYPE nginx_connections_accepted_total counter
nginx_connections_accepted_total [1-9]\d*
# HELP nginx_connections_handled_total .*
# TYPE nginx_connections_handled_total counter
nginx_connections_handled_total [1-9]\d*
# HELP nginx_http_request_duration_seconds .*
# TYPE nginx_http_request_duration_seconds histogram
nginx_http_request_duration_seconds_bucket\{le="0.0005"\} \d+
(?:nginx_http_request_duration_seconds_bucket\{le="[0-9.]+"\} \d+
){13}nginx_http_request_duration_seconds_bucket\{le="\+Inf"\} 1
nginx_http_request_duration_seconds_sum [0-9.]+
nginx_http_request_duration_seconds_count 1
# HELP nginx_http_requests_total .*
# TYPE nginx_http_requests_total counter
nginx_http_requests_total\{status="1xx"\} 0
nginx_http_requests_total\{status="2xx"\} 1
nginx_http_requests_total\{status="3xx"\} 0
nginx_http_requests_total\{status="4xx"\} 0
nginx_http_requests_total\{status="5xx"\} 0
# HELP nginx_ratelimit_redis_requests_total .*
# TYPE nginx_ratelimit_redis_requests_total counter
# HELP nginx_redis_command_duration_seconds .*
# TYPE nginx_redis_command_duration_seconds histogram
(?:nginx_redis_command_duration_seconds_bucket\{pool="main",le="[0-9.]+"\} \d+
){14}nginx_redis_command_duration_seconds_bucket\{pool="main",le="\+Inf"\} \d+
nginx_redis_command_duration_seconds_sum\{pool="main"\} [0-9.]+
nginx_redis_command_duration_seconds_count\{pool="main"\} \d+
# HELP nginx_redis_commands_total .*
# TYPE nginx_redis_commands_total counter
nginx_redis_commands_total\{pool="main"\} \d+
# HELP nginx_redis_errors_total .*
# TYPE nginx_redis_errors_total counter
nginx_redis_errors_total\{pool="main",kind="connect"\} \d+
nginx_redis_errors_total\{pool="main",kind="timeout"\} \d+
nginx_redis_errors_total\{pool="main",kind="reply"\} \d+
nginx_redis_errors_total\{pool="main",kind="protocol"\} \d+
# HELP nginx_redis_up .*
# TYPE nginx_redis_up gauge
nginx_redis_up\{pool="main"\} [01]
# HELP nginx_redis_up_workers .*
# TYPE nginx_redis_up_workers gauge
nginx_redis_up_workers\{pool="main"\} [01]
# HELP nginx_scale_info .*
# TYPE nginx_scale_info gauge
nginx_scale_info\{version="\d+\.\d+\.\d+"\} 1
# HELP nginx_session_redis_requests_total .*
# TYPE nginx_session_redis_requests_total counter
# HELP nginx_upstream_peer_requests_total .*
# TYPE nginx_upstream_peer_requests_total counter
nginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 0
# HELP nginx_upstream_peer_up .*
# TYPE nginx_upstream_peer_up gauge
nginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 1
# HELP nginx_upstream_requests_total .*
# TYPE nginx_upstream_requests_total counter
nginx_upstream_requests_total\{upstream="app"\} 0
# HELP nginx_scale_metrics_overflow_total .*
# TYPE nginx_scale_metrics_overflow_total counter
nginx_scale_metrics_overflow_total 0
$/]
--- no_error_log
[alert]
[emerg]



=== TEST 3: HELP and TYPE once per family, histograms cumulative, +Inf == _count
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool other { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=m rate=1000r/s pool=main;
    ratelimit_redis_zone $arg_k zone=o rate=1000r/s pool=other;
    upstream app { server 127.0.0.1:$AppPort1; server 127.0.0.1:$AppPort2 backup; }
    upstream more { server 127.0.0.1:$AppPort2; }
    server {
        listen 127.0.0.1:$AppPort1;
        location / { return 204; }
    }
--- config
    location = /metrics { health_metrics; }
    location /app/ { ratelimit_redis zone=m; proxy_pass http://app; }
    location /other/ { ratelimit_redis zone=o; proxy_pass http://app/; }
--- init
Time::HiRes::sleep(1.2);
--- request eval
["GET /app/?k=1", "GET /other/?k=2", "GET /app/?k=3", "GET /metrics"]
--- error_code eval
[204, 204, 204, 200]
--- response_body_filters eval
\&main::check_exposition
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 4: OpenMetrics when the Accept header asks for it
--- config
    location = /metrics { health_metrics; }
--- more_headers
Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1
--- request
GET /metrics
--- error_code: 200
--- response_headers
Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8
--- response_body_like chomp
# TYPE nginx_http_requests counter
nginx_http_requests_total\{status="1xx"\} 0
.*# TYPE nginx_scale_metrics_overflow counter
nginx_scale_metrics_overflow_total 0
# EOF
$
--- no_error_log
[alert]
[emerg]



=== TEST 5: OpenMetrics output is well formed too
--- config
    location = /metrics { health_metrics; }
--- more_headers
Accept: application/openmetrics-text
--- request eval
["GET /metrics", "GET /metrics"]
--- response_body_filters eval
\&main::check_exposition
--- response_body eval
["ok\n", "ok\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 6: never 503: Redis gone, upstream peers down, ready failing
--- http_config
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
    upstream app {
        server 127.0.0.1:1 max_fails=1 fail_timeout=60s;
        server 127.0.0.1:2 max_fails=1 fail_timeout=60s;
    }
    health_ready_upstream app;
--- config
    location = /metrics { health_metrics; }
    location = /ready { health_ready; }
    location /app { proxy_pass http://app; }
--- init
Time::HiRes::sleep(1.2);
--- request eval
["GET /app", "GET /ready", "GET /metrics"]
--- error_code eval
[502, 503, 200]
--- response_body_like eval
[qr/502/, qr/"status":"fail"/,
 qr/\nnginx_http_requests_total\{status="5xx"\} 2\n(?:.*\n)?nginx_redis_up\{pool="gone"\} 0\n(?:.*\n)?nginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:1"\} 0\nnginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:2"\} 0\n/s]
--- no_error_log
[alert]
[emerg]



=== TEST 7: upstream with a shared zone: peers read under its lock
--- http_config
    upstream app {
        zone app 64k;
        server 127.0.0.1:$AppPort1;
        server 127.0.0.1:$AppPort2 down;
    }
    health_ready_upstream app;
    server {
        listen 127.0.0.1:$AppPort1;
        location / { return 200 "$server_port\n"; }
    }
--- config
    location = /metrics { health_metrics; }
    location = /ready { health_ready; }
    location /app/ { proxy_pass http://app; }
--- request eval
["GET /app/", "GET /app/", "GET /ready?verbose", "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/^\d+$/, qr/^\d+$/, qr/\[\+\]upstream:app ok\n/,
 qr/\nnginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 2\nnginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$main::Ports[1]"\} 0\n(?:.*\n)?nginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:$main::Ports[0]"\} 1\nnginx_upstream_peer_up\{upstream="app",peer="127.0.0.1:$main::Ports[1]"\} 0\n/s]
--- no_error_log
[alert]
[emerg]



=== TEST 8: a location without any health directive still counts (LOG phase)
--- config
    location = /metrics { health_metrics; }
    location = /gif { empty_gif; }
--- request eval
["GET /gif", "GET /gif", "GET /gif", "GET /metrics"]
--- response_body_like eval
[qr/^GIF/, qr/^GIF/, qr/^GIF/,
 qr/\nnginx_http_request_duration_seconds_count 3\n(?:.*\n)?nginx_http_requests_total\{status="2xx"\} 3\n/s]
--- no_error_log
[alert]
[emerg]



=== TEST 9: a zone too small: requests still served, scrape still succeeds
--- http_config eval
"    health_zone 32k;\n"
. CORE::join("", map { "    redis_pool p$_ { server 127.0.0.1:1; connect_timeout 100ms; }\n" } 1 .. 100)
--- config
    location = /metrics { health_metrics; }
    location = /gif { empty_gif; }
--- request eval
["GET /gif", "GET /gif", "GET /metrics"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^GIF/, qr/^GIF/, qr/\nnginx_scale_metrics_overflow_total \d+\n$/s]
--- no_error_log
[alert]
[emerg]
