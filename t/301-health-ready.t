# vi:filetype=perl
#
# health_ready: redis pools (the core's per-worker PING), upstream peers
# (nginx's passive checks), the drain file, ?verbose.  Tests that need a
# Redis to go away start their own on another port and never touch the
# shared one.  Ready checks the pools in use: each pool here is used by a
# session_redis location (t/185 has the pools that are not).

use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;

no_shuffle();

our $RedisPort = free_port();
our $RedisDir = ($ENV{TEST_NGINX_WORK} || '/tmp') . "/redis-301-$$";

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub start_redis {
    mkdir $RedisDir;
    system("redis-server --port $RedisPort --bind 127.0.0.1 --save '' "
           . "--appendonly no --daemonize yes --dir $RedisDir "
           . "--pidfile $RedisDir/redis.pid --logfile $RedisDir/redis.log") == 0
        or die "redis-server did not start";
    for (1 .. 50) {
        last if `redis-cli -p $RedisPort ping 2>/dev/null` =~ /PONG/;
        Time::HiRes::sleep(0.1);
    }
}

sub stop_redis {
    system("redis-cli -p $RedisPort shutdown nosave >/dev/null 2>&1");
    Time::HiRes::sleep(0.3);
}

END { stop_redis() if -d $RedisDir; system("rm -rf $RedisDir"); }

add_block_preprocessor(sub {
    my $block = shift;
    for my $s (qw(http_config init)) {
        my $v = $block->$s;
        next unless defined $v;
        $v =~ s/\$RedisPort\b/$RedisPort/g;
        $block->set_value($s, $v);
    }
});

run_tests();

__DATA__

=== TEST 1: the shared Redis is up: pass, observed latency in ms
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location = /ready { health_ready; }
    location = /uses-main { session_redis main; empty_gif; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready
--- error_code: 200
--- response_headers
Content-Type: application/health+json
Cache-Control: no-store
--- response_body_like chomp
^\{"status":"pass","checks":\{"redis:main":\[\{"componentType":"datastore","status":"pass","observedValue":\d+,"observedUnit":"ms","time":"[-0-9T:]+Z"\}\],"worker":\[
--- no_error_log
[alert]
[emerg]



=== TEST 2: a pool nobody listens for: 503, names the pool, says why
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location = /ready { health_ready; }
    location = /uses-main { session_redis main; empty_gif; }
    location = /uses-gone { session_redis gone; empty_gif; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready
--- error_code: 503
--- response_headers
Content-Type: application/health+json
--- response_body_like chomp
^\{"status":"fail","checks":\{"redis:main":\[\{[^]]*"status":"pass"[^]]*\}\],"redis:gone":\[\{"componentType":"datastore","status":"fail",[^]]*"output":"[^"]+"\}\]
--- no_error_log
[alert]
[emerg]



=== TEST 3: ?verbose: kube-apiserver style lines for people
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool gone { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location = /ready { health_ready; }
    location = /uses-main { session_redis main; empty_gif; }
    location = /uses-gone { session_redis gone; empty_gif; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?verbose
--- error_code: 503
--- response_headers
Content-Type: text/plain; charset=utf-8
Cache-Control: no-store
--- response_body_like chomp
^\[\+\]redis:main ok
\[-\]redis:gone failed: .+
\[\+\]worker ok
readyz check failed
$
--- no_error_log
[alert]
[emerg]



=== TEST 4: ?verbose=1 among other arguments, all passing
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location = /ready { health_ready; }
    location = /uses-main { session_redis main; empty_gif; }
--- init
Time::HiRes::sleep(1.2);
--- request
GET /ready?a=b&verbose=1
--- error_code: 200
--- response_body
[+]redis:main ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 5: ?verbosely is not ?verbose
--- config
    location = /ready { health_ready; }
--- request
GET /ready?verbosely
--- error_code: 200
--- response_headers
Content-Type: application/health+json
--- no_error_log
[alert]
[emerg]



=== TEST 6: upstream min: a peer marked down counts against min
--- http_config
    upstream app { server 127.0.0.1:1; server 127.0.0.1:2 down; }
    upstream two { server 127.0.0.1:1; server 127.0.0.1:2 down; }
    health_ready_upstream app min=1;
    health_ready_upstream two min=2;
--- config
    location = /ready { health_ready; }
--- request eval
["GET /ready", "GET /ready?verbose"]
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/"upstream:app":\[\{"componentType":"component","status":"pass","observedValue":1,"observedUnit":"peers","time":"[^"]+"\}\],"upstream:two":\[\{"componentType":"component","status":"fail","observedValue":1,"observedUnit":"peers","time":"[^"]+","output":"1 of 2 peers up, min=2"\}\]/,
 qr/^\[\+\]upstream:app ok\n\[-\]upstream:two failed: 1 of 2 peers up, min=2\n\[\+\]worker ok\nreadyz check failed\n$/]
--- no_error_log
[alert]
[emerg]



=== TEST 7: upstream min: peers failing nginx's passive checks are down
--- http_config
    upstream app {
        server 127.0.0.1:1 max_fails=1 fail_timeout=60s;
        server 127.0.0.1:2 max_fails=1 fail_timeout=60s;
    }
    health_ready_upstream app;
--- config
    location = /ready { health_ready; }
    location /app { proxy_pass http://app; }
--- request eval
["GET /ready", "GET /app", "GET /ready?verbose"]
--- error_code eval
[200, 502, 503]
--- response_body_like eval
[qr/"upstream:app":\[\{[^]]*"status":"pass","observedValue":2,/,
 qr/502/,
 qr/^\[-\]upstream:app failed: 0 of 2 peers up, min=1\n/]
--- no_error_log
[alert]
[emerg]



=== TEST 8: upstream min=0 only reports
--- http_config
    upstream app { server 127.0.0.1:1 down; }
    health_ready_upstream app min=0;
--- config
    location = /ready { health_ready; }
--- request
GET /ready
--- error_code: 200
--- response_body_like chomp
"upstream:app":\[\{"componentType":"component","status":"pass","observedValue":0,
--- no_error_log
[alert]
[emerg]



=== TEST 9: drain file present: 503 (the preStop hook)
--- http_config
    health_drain_file drain;
--- config
    location = /ready { health_ready; }
--- init
open my $f, '>', Test::Nginx::Util::server_root() . '/drain' or die $!; close $f;
--- request eval
["GET /ready", "GET /ready?verbose"]
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/^\{"status":"fail","checks":\{"drain":\[\{"componentType":"system","status":"fail","time":"[^"]+","output":"drain file exists"\}\],"worker":\[\{[^]]*"status":"pass"/,
 qr/^\[-\]drain failed: drain file exists\n\[\+\]worker ok\nreadyz check failed\n$/]
--- no_error_log
[alert]
[emerg]



=== TEST 10: drain file removed: 200 again within a second (stat cached)
--- init
unlink Test::Nginx::Util::server_root() . '/drain';
Time::HiRes::sleep(1.1);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]drain ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 11: ready follows a Redis of its own: up
--- http_config
    redis_pool own { server 127.0.0.1:$RedisPort; timeout 100ms; connect_timeout 100ms; }
--- config
    location = /ready { health_ready; }
    location = /uses-own { session_redis own; empty_gif; }
--- init
main::start_redis(); Time::HiRes::sleep(1.5);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]redis:own ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]



=== TEST 12: that Redis stops: 503, names the pool
--- init
main::stop_redis(); Time::HiRes::sleep(2.5);
--- request eval
["GET /ready", "GET /ready?verbose"]
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/^\{"status":"fail","checks":\{"redis:own":\[\{"componentType":"datastore","status":"fail",.*"output":"[^"]+"\}\]/,
 qr/^\[-\]redis:own failed: .+\n\[\+\]worker ok\nreadyz check failed\n$/]
--- no_error_log
[alert]
[emerg]



=== TEST 13: and starts again: 200
--- init
main::start_redis(); Time::HiRes::sleep(2.5);
--- request
GET /ready?verbose
--- error_code: 200
--- response_body
[+]redis:own ok
[+]worker ok
readyz check passed
--- no_error_log
[alert]
[emerg]
