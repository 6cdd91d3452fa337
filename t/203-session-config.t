# vi:filetype=perl
#
# session_redis configuration: nginx refuses mistakes with a message that
# names the directive or the bad value.  These blocks expect an [emerg]
# (that is what they test), so their no_error_log lists [alert] and [crit].

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
log_level('info');

run_tests();

__DATA__

=== TEST 1: express format without a secret
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        empty_gif;
    }
--- must_die
--- error_log
no "session_redis_secret" is defined for the "express" session_redis_format
--- no_error_log
[alert]
[crit]



=== TEST 2: an unknown format
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_format jwt;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "jwt"
--- no_error_log
[alert]
[crit]



=== TEST 3: a bad touch time
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_touch soon;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "soon"
--- no_error_log
[alert]
[crit]



=== TEST 4: session_redis twice
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis main;
        empty_gif;
    }
--- must_die
--- error_log
"session_redis" directive is duplicate
--- no_error_log
[alert]
[crit]



=== TEST 5: a cookie name that is not a token
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_cookie "my;cookie";
        empty_gif;
    }
--- must_die
--- error_log
invalid cookie name "my;cookie"
--- no_error_log
[alert]
[crit]



=== TEST 6: session_redis_set with a bad variable or path
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_set $user user..id;
        empty_gif;
    }
--- must_die
--- error_log
invalid JSON path "user..id"
--- no_error_log
[alert]
[crit]



=== TEST 7: session_redis_set needs a variable
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_set user user.id;
        empty_gif;
    }
--- must_die
--- error_log
invalid variable name "user"
--- no_error_log
[alert]
[crit]



=== TEST 8: an empty secret
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret "";
        empty_gif;
    }
--- must_die
--- error_log
empty session_redis_secret
--- no_error_log
[alert]
[crit]



=== TEST 9: a pool that is not defined
--- config
    location /t {
        session_redis nosuchpool;
        empty_gif;
    }
--- must_die
--- error_log
nosuchpool
--- no_error_log
[alert]
[crit]



=== TEST 10: a configuration without session_redis works as before
--- config
    location /t {
        add_header X-Session "[$session_redis_status][$session_redis_id]";
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_headers
X-Session: [][]
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 11: session_redis at http level, off where not wanted
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    session_redis main;
    session_redis_format express;
    session_redis_secret s3cret;
--- config
    location /t {
        session_redis off;
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- no_error_log
[alert]
[emerg]
[error]
