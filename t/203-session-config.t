# vi:filetype=perl
#
# session_redis configuration: nginx refuses mistakes with a message that
# names the directive or the bad value.  The blocks where nginx must refuse
# to start (must_die) expect an [emerg]: their no_error_log is [alert] and
# [crit].

use Test::Nginx::Socket 'no_plan';
use FindBin;
require "$FindBin::Bin/helpers/blocks.pl";

repeat_each(1);
no_shuffle();
log_level('info');

our $HttpConfig = <<'_EOC_';
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
_EOC_

block_defaults(http_config  => $HttpConfig,
               no_error_log => sub {
                   defined $_[0]->must_die ? "[alert]\n[crit]"
                                           : "[alert]\n[emerg]\n[error]"
               });

run_tests();

__DATA__

=== TEST 1: express format without a secret
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        empty_gif;
    }
--- must_die
--- error_log
no "session_redis_secret" is defined for the "express" session_redis_format



=== TEST 2: an unknown format
--- config
    location /t {
        session_redis main;
        session_redis_format jwt;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "jwt"



=== TEST 3: a bad touch time
--- config
    location /t {
        session_redis main;
        session_redis_touch soon;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "soon"



=== TEST 4: session_redis twice
--- config
    location /t {
        session_redis main;
        session_redis main;
        empty_gif;
    }
--- must_die
--- error_log
"session_redis" directive is duplicate



=== TEST 5: a cookie name that is not a token
--- config
    location /t {
        session_redis main;
        session_redis_cookie "my;cookie";
        empty_gif;
    }
--- must_die
--- error_log
invalid cookie name "my;cookie"



=== TEST 6: session_redis_set with a bad variable or path
--- config
    location /t {
        session_redis main;
        session_redis_set $user user..id;
        empty_gif;
    }
--- must_die
--- error_log
invalid JSON path "user..id"



=== TEST 7: session_redis_set needs a variable
--- config
    location /t {
        session_redis main;
        session_redis_set user user.id;
        empty_gif;
    }
--- must_die
--- error_log
invalid variable name "user"



=== TEST 8: an empty secret
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



=== TEST 9: a pool that is not defined
--- config
    location /t {
        session_redis nosuchpool;
        empty_gif;
    }
--- must_die
--- error_log
nosuchpool



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
