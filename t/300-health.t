# vi:filetype=perl
#
# health_live, and what all three responders share: content types, methods,
# HEAD, Cache-Control, nginx's own access control, configuration errors.

use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: health_live: 200, health+json, version and uptime
--- config
    location = /health { health_live; }
--- request
GET /health
--- error_code: 200
--- response_headers
Content-Type: application/health+json
Cache-Control: no-store
--- response_body_like chomp
^\{"status":"pass","version":"\d+\.\d+\.\d+","nginx":"1\.\d+\.\d+","uptime_seconds":\d+\}$
--- no_error_log
[alert]
[emerg]



=== TEST 2: health_live: HEAD has the headers and no body
--- config
    location = /health { health_live; }
--- request
HEAD /health
--- error_code: 200
--- response_headers
Content-Type: application/health+json
Cache-Control: no-store
--- response_body
--- no_error_log
[alert]
[emerg]



=== TEST 3: health_live: POST is 405 with Allow
--- config
    location = /health { health_live; }
--- request
POST /health
hello
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- no_error_log
[alert]
[emerg]



=== TEST 4: health_ready: POST and DELETE are 405 with Allow
--- config
    location = /ready { health_ready; }
--- request eval
["POST /ready\nx", "DELETE /ready"]
--- error_code eval
[405, 405]
--- response_headers eval
["Allow: GET, HEAD", "Allow: GET, HEAD"]
--- no_error_log
[alert]
[emerg]



=== TEST 5: health_ready without any check passes; the worker is one
--- config
    location = /ready { health_ready; }
--- request
GET /ready
--- error_code: 200
--- response_headers
Content-Type: application/health+json
Cache-Control: no-store
--- response_body_like chomp
^\{"status":"pass","checks":\{"worker":\[\{"componentType":"system","status":"pass","componentId":"\d+","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}\]\}\}$
--- no_error_log
[alert]
[emerg]



=== TEST 6: health_ready: HEAD, no body
--- config
    location = /ready { health_ready; }
--- request
HEAD /ready
--- error_code: 200
--- response_headers
Content-Type: application/health+json
--- response_body
--- no_error_log
[alert]
[emerg]



=== TEST 7: health_metrics: text format 0.0.4, GET and HEAD, POST 405
--- config
    location = /metrics { health_metrics; }
--- request eval
["GET /metrics", "HEAD /metrics", "POST /metrics\nx"]
--- error_code eval
[200, 200, 405]
--- response_headers eval
["Content-Type: text/plain; version=0.0.4; charset=utf-8",
 "Content-Type: text/plain; version=0.0.4; charset=utf-8",
 "Allow: GET, HEAD"]
--- response_body_like eval
[qr/^# HELP nginx_scale_info .*\n# TYPE nginx_scale_info gauge\nnginx_scale_info\{version="\d+\.\d+\.\d+"\} 1\n/m,
 qr/^$/,
 qr/405/]
--- no_error_log
[alert]
[emerg]



=== TEST 8: access control is nginx's own: allow / deny
--- config
    location = /health { allow 127.0.0.1; deny all; health_live; }
    location = /metrics { deny all; health_metrics; }
--- request eval
["GET /health", "GET /metrics"]
--- error_code eval
[200, 403]
--- no_error_log
[alert]
[emerg]



=== TEST 9: unknown upstream in health_ready_upstream
--- http_config
    health_ready_upstream nope;
--- config
    location = /ready { health_ready; }
--- must_die
--- error_log
unknown upstream "nope" in health_ready_upstream
--- no_error_log
[alert]



=== TEST 10: health_ready_upstream: invalid min
--- http_config
    upstream app { server 127.0.0.1:1; }
    health_ready_upstream app min=two;
--- config
    location = /ready { health_ready; }
--- must_die
--- error_log
invalid min "min=two"
--- no_error_log
[alert]



=== TEST 11: health_ready_upstream: unknown parameter
--- http_config
    upstream app { server 127.0.0.1:1; }
    health_ready_upstream app max=2;
--- config
    location = /ready { health_ready; }
--- must_die
--- error_log
invalid parameter "max=2"
--- no_error_log
[alert]



=== TEST 12: health_ready_upstream: duplicate
--- http_config
    upstream app { server 127.0.0.1:1; }
    health_ready_upstream app;
    health_ready_upstream app min=1;
--- config
    location = /ready { health_ready; }
--- must_die
--- error_log
duplicate health_ready_upstream "app"
--- no_error_log
[alert]



=== TEST 13: two responders in one location
--- config
    location = /x { health_live; health_ready; }
--- must_die
--- error_log
"health_ready" directive is duplicate
--- no_error_log
[alert]



=== TEST 14: health_zone: invalid size, too small, duplicate
--- http_config
    health_zone 1q;
--- config
    location = /metrics { health_metrics; }
--- must_die
--- error_log
invalid health_zone size "1q"
--- no_error_log
[alert]



=== TEST 15: health_zone: too small
--- http_config
    health_zone 1k;
--- config
    location = /metrics { health_metrics; }
--- must_die
--- error_log
health_zone of 1024 bytes is too small
--- no_error_log
[alert]



=== TEST 16: health_zone: duplicate
--- http_config
    health_zone 1m;
    health_zone 2m;
--- config
    location = /metrics { health_metrics; }
--- must_die
--- error_log
"health_zone" directive is duplicate
--- no_error_log
[alert]



=== TEST 17: health_drain_file: duplicate
--- http_config
    health_drain_file /tmp/a;
    health_drain_file /tmp/b;
--- config
    location = /ready { health_ready; }
--- must_die
--- error_log
"health_drain_file" directive is duplicate
--- no_error_log
[alert]



=== TEST 18: responders are location-only
--- http_config
    health_live;
--- config
    location = /x { return 200; }
--- must_die
--- error_log
"health_live" directive is not allowed here
--- no_error_log
[alert]



=== TEST 19: health_zone sizes the zone; metrics are served
--- http_config
    health_zone 64k;
--- config
    location = /metrics { health_metrics; }
--- request
GET /metrics
--- error_code: 200
--- response_body_like
(?m)^nginx_scale_metrics_overflow_total 0$
--- no_error_log
[alert]
[emerg]
