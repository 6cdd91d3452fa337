# ratelimit_redis and redis_pool: nginx -t refuses mistakes, naming them.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("config", "    location = /t { empty_gif; }")
        unless defined $block->config;
    $block->set_value("request", "GET /t")
        unless defined $block->request;
});

run_tests();

__DATA__

=== TEST 1: rate without a unit
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=lots pool=main;
--- must_die
--- error_log
invalid rate "rate=lots"



=== TEST 2: rate of zero
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=0r/s pool=main;
--- must_die
--- error_log
invalid rate "rate=0r/s"



=== TEST 3: a zone without a pool
--- http_config
    ratelimit_redis_zone $arg_k zone=z rate=1r/s;
--- must_die
--- error_log
"ratelimit_redis_zone" must have "zone", "rate" and "pool" parameters



=== TEST 4: a pool that is never defined
--- http_config
    ratelimit_redis_zone $arg_k zone=z rate=1r/s pool=nowhere;
--- must_die
--- error_log
unknown redis_pool "nowhere"



=== TEST 5: an unknown zone
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location = /t { ratelimit_redis zone=nope; empty_gif; }
--- must_die
--- error_log
unknown ratelimit_redis zone "nope"



=== TEST 6: a zone defined twice
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=1r/s pool=main;
    ratelimit_redis_zone $arg_a zone=z rate=2r/s pool=main;
--- must_die
--- error_log
duplicate zone "z"



=== TEST 7: the same zone twice in one location
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=1r/s pool=main;
--- config
    location = /t { ratelimit_redis zone=z; ratelimit_redis zone=z; empty_gif; }
--- must_die
--- error_log
"ratelimit_redis" directive is duplicate



=== TEST 8: zones of one location on different pools
--- http_config
    redis_pool a { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool b { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=za rate=1r/s pool=a;
    ratelimit_redis_zone $arg_k zone=zb rate=1r/s pool=b;
--- config
    location = /t { ratelimit_redis zone=za; ratelimit_redis zone=zb; empty_gif; }
--- must_die
--- error_log
ratelimit_redis zones "za" and "zb" use different redis pools



=== TEST 9: a status outside 400-599
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=1r/s pool=main;
--- config
    location = /t { ratelimit_redis zone=z; ratelimit_redis_status 200; empty_gif; }
--- must_die
--- error_log
value must be between 400 and 599



=== TEST 10: an unknown headers mode
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location = /t { ratelimit_redis_headers loud; empty_gif; }
--- must_die
--- error_log
invalid value "loud"



=== TEST 11: dry_run misspelled
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=z rate=1r/s pool=main;
--- config
    location = /t { ratelimit_redis zone=z dryrun; empty_gif; }
--- must_die
--- error_log
invalid parameter "dryrun"



=== TEST 12: redis_pool without a server
--- http_config
    redis_pool main { timeout 1s; }
--- must_die
--- error_log
no "server" or "sentinel" in redis_pool "main"



=== TEST 13: redis_pool with a bad timeout
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; timeout soon; }
--- must_die
--- error_log
invalid timeout "soon"



=== TEST 14: redis_pool with an unknown directive
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; servers 2; }
--- must_die
--- error_log
unknown directive "servers" in redis_pool



=== TEST 15: redis_pool defined twice
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- must_die
--- error_log
duplicate redis_pool "main"



=== TEST 16: redis_pool connections out of range
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; connections 0; }
--- must_die
--- error_log
invalid connections "0", must be 1 to 64



=== TEST 17: a bad server address
--- http_config
    redis_pool main { server 127.0.0.1:99999; }
--- must_die
--- error_log
invalid port in redis_pool server "127.0.0.1:99999"



=== TEST 18: a complete valid configuration starts
--- http_config
    redis_pool main {
        server 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        database 2;
        connect_timeout 500ms;
        timeout 200ms;
        connections 2;
    }
    ratelimit_redis_zone $binary_remote_addr zone=z rate=100r/s pool=main;
--- config
    location = /t {
        ratelimit_redis zone=z;
        ratelimit_redis_status 503;
        ratelimit_redis_fail_open off;
        ratelimit_redis_headers draft;
        ratelimit_redis_log_level warn;
        empty_gif;
    }
--- error_code: 200
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 19: a zone name with a colon (keys of two zones could meet)
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $arg_k zone=a:b rate=1r/s pool=main;
--- must_die
--- error_log
invalid zone name "zone=a:b"
