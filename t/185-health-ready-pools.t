# vi:filetype=perl
#
# health_ready checks the redis pools in use: a pool that some location
# uses (through a ratelimit_redis zone that a ratelimit_redis directive
# applies, or session_redis POOL).  A pool that is only defined, or only
# named by a zone no location applies, does not make the instance unready.

use Test::Nginx::Socket 'no_plan';

no_shuffle();

run_tests();

__DATA__

=== TEST 1: an unused pool at a dead port does not make ready 503
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool spare { server 127.0.0.1:1; connect_timeout 100ms; }
    ratelimit_redis_zone $arg_k zone=z rate=100r/s pool=main;
--- config
    location = /t { ratelimit_redis zone=z; empty_gif; }
    location = /ready { health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]redis:main ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 2: a zone that no location applies: its pool is not in use
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool spare { server 127.0.0.1:1; connect_timeout 100ms; }
    ratelimit_redis_zone $arg_k zone=z rate=100r/s pool=main;
    ratelimit_redis_zone $arg_k zone=later rate=100r/s pool=spare;
--- config
    location = /t { ratelimit_redis zone=z; empty_gif; }
    location = /ready { health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]redis:main ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 3: a pool used by ratelimit_redis at a dead port: 503, named
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
    ratelimit_redis_zone $arg_k zone=z rate=100r/s pool=main;
    ratelimit_redis_zone $arg_k zone=g rate=100r/s pool=gone;
--- config
    location = /t { ratelimit_redis zone=z; empty_gif; }
    location = /g { ratelimit_redis zone=g; empty_gif; }
    location = /ready { health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 503
--- response_body_like chomp
^\[\+\]redis:main ok
\[-\]redis:gone failed: .+
\[\+\]worker ok
readyz check failed
$
--- no_error_log
[alert]
[emerg]



=== TEST 4: a pool used by session_redis at a dead port: 503, named
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
    redis_pool spare { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location = /s { session_redis gone; empty_gif; }
    location = /ready { health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 503
--- response_body_like chomp
^\[-\]redis:gone failed: .+
\[\+\]worker ok
readyz check failed
$
--- no_error_log
[alert]
[emerg]



=== TEST 5: session_redis in the http block uses the pool; off elsewhere
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
    session_redis main;
--- config
    location = /ready { session_redis off; health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]redis:main ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 6: JSON: only the pools in use are listed
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool spare { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location = /s { session_redis main; empty_gif; }
    location = /ready { health_ready; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready
--- error_code: 200
--- response_body_like chomp
^\{"status":"pass","checks":\{"redis:main":\[\{"componentType":"datastore","status":"pass",[^]]*\}\],"worker":\[
--- no_error_log
[alert]
[emerg]
