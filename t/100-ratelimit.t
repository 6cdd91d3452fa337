# ratelimit_redis: admission, zones, headers, keys, failures.
# Needs Redis at 127.0.0.1:$TEST_NGINX_REDIS_PORT (make test starts one).

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    redis_pool main {
        server 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        timeout 1s;
    }
    ratelimit_redis_zone $arg_k zone=five rate=5r/m pool=main;
    ratelimit_redis_zone $arg_k zone=one rate=1r/m pool=main;
    ratelimit_redis_zone $arg_k zone=two rate=2r/m pool=main;
    ratelimit_redis_zone $arg_k zone=three rate=3r/m pool=main;
    ratelimit_redis_zone $arg_k zone=ten rate=10r/m pool=main;
    ratelimit_redis_zone $binary_remote_addr$arg_k zone=bin rate=2r/m pool=main;
    ratelimit_redis_zone $http_x_key zone=long rate=1r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z1 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z2 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z3 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z4 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z5 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z6 rate=10r/m pool=main;
    ratelimit_redis_zone $arg_k zone=z7 rate=10r/m pool=main;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $HttpConfig)
        unless defined $block->http_config;
    $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a zone admits its limit, then answers 429
--- config
    location = /t { ratelimit_redis zone=five; empty_gif; }
--- request eval
["GET /t?k=t1", "GET /t?k=t1", "GET /t?k=t1", "GET /t?k=t1", "GET /t?k=t1"]
--- error_code eval
[200, 200, 200, 200, 200]
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 2: the next request of that key is rejected
--- config
    location = /t { ratelimit_redis zone=five; empty_gif; }
--- request
GET /t?k=t1
--- error_code: 429
--- error_log
limiting requests by zone "five"



=== TEST 3: keys are counted separately
--- config
    location = /t { ratelimit_redis zone=one; empty_gif; }
--- request eval
["GET /t?k=t2a", "GET /t?k=t2b", "GET /t?k=t2a", "GET /t?k=t2c"]
--- error_code eval
[200, 200, 429, 200]



=== TEST 4: the variable says PASSED
--- config
    location = /t {
        ratelimit_redis zone=one;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request
GET /t?k=t3
--- error_code: 200
--- response_headers
X-RL: PASSED
Content-Type: image/gif



=== TEST 5: rejected: 429, Retry-After, REJECTED (the key of TEST 3)
--- config
    location = /t {
        ratelimit_redis zone=one;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request
GET /t?k=t3
--- error_code: 429
--- response_headers_like
X-RL: REJECTED
Retry-After: \d+
--- error_log eval
qr/limiting requests by zone "one", retry after \d+ ms/



=== TEST 6: ratelimit_redis_status sets the rejection code
--- config
    location = /t {
        ratelimit_redis zone=one;
        ratelimit_redis_status 503;
        empty_gif;
    }
--- request eval
["GET /t?k=t6", "GET /t?k=t6"]
--- error_code eval
[200, 503]



=== TEST 7: several zones: a request counts only if all admit it
zone two rejects the 3rd request; zone three must not have counted it,
so /b (zone three alone) still admits one more.
--- config
    location = /ab { ratelimit_redis zone=two; ratelimit_redis zone=three; empty_gif; }
    location = /b { ratelimit_redis zone=three; empty_gif; }
--- request eval
["GET /ab?k=t7", "GET /ab?k=t7", "GET /ab?k=t7", "GET /ab?k=t7",
 "GET /b?k=t7", "GET /b?k=t7"]
--- error_code eval
[200, 200, 429, 429, 200, 429]



=== TEST 8: limits are inherited from the server level
--- config
    ratelimit_redis zone=one;
    location = /t { empty_gif; }
--- request eval
["GET /t?k=t8", "GET /t?k=t8"]
--- error_code eval
[200, 429]



=== TEST 9: dry_run logs and counts but admits
--- config
    location = /t { ratelimit_redis zone=one dry_run; empty_gif; }
--- request eval
["GET /t?k=t9", "GET /t?k=t9", "GET /t?k=t9"]
--- error_code eval
[200, 200, 200]



=== TEST 10: dry_run status variable (the key of TEST 9)
--- config
    location = /t {
        ratelimit_redis zone=one dry_run;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request
GET /t?k=t9
--- error_code: 200
--- response_headers
X-RL: REJECTED_DRY_RUN
!Retry-After
--- error_log
limiting requests, dry run, by zone "one"



=== TEST 11: legacy headers
--- config
    location = /t { ratelimit_redis zone=ten; ratelimit_redis_headers legacy; empty_gif; }
--- request
GET /t?k=t11
--- error_code: 200
--- response_headers_like
X-RateLimit-Limit: 10
X-RateLimit-Remaining: 9
X-RateLimit-Reset: \d+



=== TEST 12: draft headers
--- config
    location = /t { ratelimit_redis zone=ten; ratelimit_redis_headers draft; empty_gif; }
--- request
GET /t?k=t12
--- error_code: 200
--- response_headers_like
RateLimit-Policy: "ten";q=10;w=60
RateLimit: "ten";r=9;t=\d+



=== TEST 13: headers off by default
--- config
    location = /t { ratelimit_redis zone=ten; empty_gif; }
--- request
GET /t?k=t13
--- error_code: 200
--- response_headers
!X-RateLimit-Limit
!RateLimit-Policy
!RateLimit



=== TEST 14: legacy headers on a rejection
--- config
    location = /t { ratelimit_redis zone=one; ratelimit_redis_headers legacy; empty_gif; }
--- request eval
["GET /t?k=t14", "GET /t?k=t14"]
--- error_code eval
[200, 429]
--- response_headers_like eval
["X-RateLimit-Remaining: 0", "X-RateLimit-Remaining: 0"]



=== TEST 15: an empty key is not limited
--- config
    location = /t {
        ratelimit_redis zone=one;
        add_header X-RL "[$ratelimit_redis_status]" always;
        empty_gif;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-RL: []", "X-RL: []", "X-RL: []", "X-RL: []"]



=== TEST 16: binary keys: $binary_remote_addr holds NUL bytes
127.0.0.1 is 7f 00 00 01: a key cut at the NUL would merge t16a and t16b.
--- config
    location = /t { ratelimit_redis zone=bin; empty_gif; }
--- request eval
["GET /t?k=t16a", "GET /t?k=t16a", "GET /t?k=t16a", "GET /t?k=t16b"]
--- error_code eval
[200, 200, 429, 200]



=== TEST 17: oversized keys are hashed, still limited, nothing lost
--- config
    location = /t { ratelimit_redis zone=long; empty_gif; }
--- more_headers eval
"X-Key: " . ("k" x 6000)
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]



=== TEST 18: keys with braces, quotes and spaces
--- config
    location = /t { ratelimit_redis zone=one; empty_gif; }
--- request eval
["GET /t?k=%7B%7D%22%20}{", "GET /t?k=%7B%7D%22%20}{", "GET /t?k=%7B%7D%22%20}"]
--- error_code eval
[200, 429, 200]



=== TEST 19: Redis down, fail_open on (the default): FAILED_OPEN, admitted
--- http_config
    redis_pool down { server 127.0.0.1:1; timeout 100ms; connect_timeout 100ms; }
    ratelimit_redis_zone $arg_k zone=d rate=1r/m pool=down;
--- config
    location = /t {
        ratelimit_redis zone=d;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request eval
["GET /t?k=t19", "GET /t?k=t19", "GET /t?k=t19"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-RL: FAILED_OPEN", "X-RL: FAILED_OPEN", "X-RL: FAILED_OPEN"]



=== TEST 20: Redis down, fail_open off: 503, FAILED_CLOSED
--- http_config
    redis_pool down { server 127.0.0.1:1; timeout 100ms; connect_timeout 100ms; }
    ratelimit_redis_zone $arg_k zone=d rate=1r/m pool=down;
--- config
    location = /t {
        ratelimit_redis zone=d;
        ratelimit_redis_fail_open off;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request
GET /t?k=t20
--- error_code: 503
--- response_headers
X-RL: FAILED_CLOSED



=== TEST 21: a location without ratelimit_redis is not touched
--- config
    location = /t { ratelimit_redis zone=one; empty_gif; }
    location = /plain { add_header X-RL "[$ratelimit_redis_status]"; empty_gif; }
--- request eval
["GET /plain?k=t21", "GET /plain?k=t21", "GET /plain?k=t21"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-RL: []", "X-RL: []", "X-RL: []"]



=== TEST 22: error_page after a rejection is not limited again
error_page keeps the 429; the page's own location adds the header, both
after a rejection by Redis and one from the deny cache.
--- config
    location = /t {
        ratelimit_redis zone=one;
        error_page 429 /limited;
        empty_gif;
    }
    location = /limited {
        ratelimit_redis zone=one;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request eval
["GET /t?k=t22", "GET /t?k=t22", "GET /t?k=t22"]
--- error_code eval
[200, 429, 429]
--- response_headers eval
["", "X-RL: REJECTED", "X-RL: REJECTED"]



=== TEST 23: the status variable in the access log
--- http_config eval
$::HttpConfig . q{
    log_format rl "rl=$ratelimit_redis_status";
}
--- config
    access_log logs/rl.log rl;
    location = /t { ratelimit_redis zone=one; empty_gif; }
--- request eval
["GET /t?k=t23", "GET /t?k=t23"]
--- error_code eval
[200, 429]



=== TEST 24: eight zones (the most) on one request, the tightest decides
--- config
    location = /t {
        ratelimit_redis zone=z1; ratelimit_redis zone=z2; ratelimit_redis zone=z3;
        ratelimit_redis zone=z4; ratelimit_redis zone=z5; ratelimit_redis zone=z6;
        ratelimit_redis zone=z7; ratelimit_redis zone=two;
        add_header X-RL $ratelimit_redis_status always;
        empty_gif;
    }
--- request eval
["GET /t?k=t8z", "GET /t?k=t8z", "GET /t?k=t8z"]
--- error_code eval
[200, 200, 429]
--- response_headers eval
["X-RL: PASSED", "X-RL: PASSED", "X-RL: REJECTED"]
