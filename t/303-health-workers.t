# vi:filetype=perl
#
# Two workers, one answer: counters live in shared memory, so whichever
# worker serves the scrape reports every worker's requests.

use Test::Nginx::Socket 'no_plan';

no_shuffle();
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: 40 requests over 2 workers; three scrapes agree
--- config
    location = /metrics { health_metrics; add_header X-Pid $pid; }
    location = /gif { empty_gif; }
--- request eval
[("GET /gif") x 40, "GET /metrics", "GET /metrics", "GET /metrics"]
--- error_code eval
[(200) x 43]
--- response_body_like eval
[(qr/^GIF/) x 40,
 qr/\nnginx_http_request_duration_seconds_count 40\n(?:.*\n)?nginx_http_requests_total\{status="2xx"\} 40\n/s,
 qr/\nnginx_http_request_duration_seconds_count 41\n(?:.*\n)?nginx_http_requests_total\{status="2xx"\} 41\n/s,
 qr/\nnginx_http_request_duration_seconds_count 42\n(?:.*\n)?nginx_http_requests_total\{status="2xx"\} 42\n/s]
--- no_error_log
[alert]
[emerg]



=== TEST 2: both workers served requests (X-Pid differs at least once)
--- config
    location = /pid { return 200 "$pid\n"; }
    location = /metrics { health_metrics; }
--- request eval
[("GET /pid") x 30]
--- response_body_filters eval
sub { $main::Pids{$_[0]}++; scalar(keys %main::Pids) > 1 ? "many\n" : "one\n" }
--- response_body_like eval
[qr/^(one|many)\n$/, (qr/^(one|many)\n$/) x 28, qr/^many\n$/]
--- no_error_log
[alert]
[emerg]



=== TEST 3: per-peer counts add up across workers
--- http_config
    upstream app { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; }
--- config
    location = /metrics { health_metrics; }
    location = /gif { empty_gif; }
    location /app/ { proxy_pass http://app/gif; }
--- request eval
[("GET /app/") x 20, "GET /metrics"]
--- error_code eval
[(200) x 21]
--- response_body_like eval
[(qr/^GIF/) x 20,
 qr/\nnginx_http_requests_total\{status="2xx"\} 40\n(?:.*\n)*nginx_upstream_peer_requests_total\{upstream="app",peer="127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}"\} 20\n/s]
--- no_error_log
[alert]
[emerg]
