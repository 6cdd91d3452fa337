# vi:filetype=perl
#
# cache_redis configuration mistakes are refused by nginx -t with a message
# that names the directive or the bad value; a complete one starts.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

our $HttpConfig = <<'_EOC_';
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $HttpConfig)
        unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: an unknown pool
--- config
    location /t { cache_redis nosuch; empty_gif; }
--- must_die
--- error_log
unknown redis_pool "nosuch"



=== TEST 2: cache_redis twice in one location
--- config
    location /t { cache_redis main; cache_redis main; empty_gif; }
--- must_die
--- error_log
"cache_redis" directive is duplicate



=== TEST 3: cache_redis_valid with a bad time
--- config
    location /t { cache_redis main; cache_redis_valid 200 soon; empty_gif; }
--- must_die
--- error_log
invalid time value "soon"



=== TEST 4: cache_redis_valid with a bad status
--- config
    location /t { cache_redis main; cache_redis_valid 99 1m; empty_gif; }
--- must_die
--- error_log
invalid status "99"



=== TEST 5: cache_redis_use_stale with an unknown condition
--- config
    location /t { cache_redis main; cache_redis_use_stale sometimes; empty_gif; }
--- must_die
--- error_log
invalid value "sometimes"



=== TEST 6: cache_redis_methods with a method that cannot be cached
--- config
    location /t { cache_redis main; cache_redis_methods DELETE; empty_gif; }
--- must_die
--- error_log
invalid value "DELETE"



=== TEST 7: a zero lock timeout
--- config
    location /t { cache_redis main; cache_redis_lock_timeout 0; empty_gif; }
--- must_die
--- error_log
"cache_redis_lock_timeout" must be positive



=== TEST 8: cache_redis_purge without cache_redis
--- config
    location /t { cache_redis_purge; empty_gif; }
--- must_die
--- error_log
"cache_redis_purge" needs "cache_redis"



=== TEST 9: cache_redis_max_size that is not a size
--- config
    location /t { cache_redis main; cache_redis_max_size lots; empty_gif; }
--- must_die
--- error_log
"cache_redis_max_size" directive invalid value



=== TEST 10: a complete configuration starts and answers
--- config
    location /t {
        cache_redis main;
        cache_redis_key $uri$is_args$args;
        cache_redis_key_prefix t403:;
        cache_redis_methods GET HEAD;
        cache_redis_valid 200 301 10m;
        cache_redis_valid 404 1m;
        cache_redis_valid any 5s;
        cache_redis_bypass $arg_nocache $http_pragma;
        cache_redis_no_store $arg_nostore;
        cache_redis_max_size 512k;
        cache_redis_lock on;
        cache_redis_lock_timeout 2s;
        cache_redis_use_stale updating error timeout http_500 http_502 http_503 http_504;
        cache_redis_stale 1m;
        cache_redis_revalidate on;
        cache_redis_tags "a $arg_tag";
        cache_redis_purge;
        cache_redis_header on;
        empty_gif;
    }
    location /off { cache_redis off; empty_gif; }
--- request
GET /t
--- error_code: 200
--- no_error_log
[emerg]
[alert]
