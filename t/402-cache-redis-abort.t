# vi:filetype=perl
#
# cache_redis: a client that goes away while its lookup is with Redis, or
# while it waits for another request's lock, leaks nothing (run under
# make test-valgrind) and leaves the lock to its holder; a waiter that
# stays fetches after cache_redis_lock_timeout.  A response cut short is
# not stored.

use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use POSIX ();

repeat_each(1);
no_shuffle();
no_long_string();

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    return $out;
}

# a Redis that accepts connections and never answers
our $Silent = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                    LocalPort => 0, Proto => 'tcp',
                                    ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $Silent->sockport;

# an origin that promises 100 bytes, sends 5 and closes
our $Short = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp',
                                   ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_SHORT_PORT} = $Short->sockport;
our $ShortPid = fork // die "fork: $!";
if ($ShortPid == 0) {
    while (my $c = $Short->accept) {
        my $req = '';
        while (defined(my $line = <$c>)) { last if $line =~ /^\r?\n$/ }
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                 . "Cache-Control: max-age=60\r\n\r\nshort";
        close $c;
    }
    POSIX::_exit(0);
}
END { kill 'KILL', $ShortPid if $ShortPid }

redis('set', 't402_2:/t#lock', 'someone else', 'px', '60000');
redis('set', 't402_3:/t#lock', 'someone else', 'px', '60000');

our $HttpConfig = <<'_EOC_';
    redis_pool main {
        server 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        timeout 1s;
    }
    redis_pool silent {
        server 127.0.0.1:$TEST_NGINX_SILENT_PORT;
        timeout 2s;
    }
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

=== TEST 1: the client goes away while the lookup waits for Redis
--- config
    location /t {
        cache_redis silent;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request
GET /t
--- timeout: 300ms
--- abort
--- ignore_response



=== TEST 2: the client goes away while it waits for the lock
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t402_2:;
        cache_redis_key $uri;
        cache_redis_lock_timeout 5s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request
GET /t
--- timeout: 400ms
--- abort
--- ignore_response



=== TEST 3: the lock is still the holder's; a waiter fetches after the timeout
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t402_3:;
        cache_redis_key $uri;
        cache_redis_lock_timeout 300ms;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]
--- response_body eval
["fetched\n", "fetched\n"]
--- error_log
still held after 300 ms, fetching unstored



=== TEST 4: a response cut short (fewer bytes than Content-Length) is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t402_4:;
        cache_redis_key $uri;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SHORT_PORT;
    }
--- request
GET /t
--- ignore_response
--- error_log
upstream prematurely closed connection



=== TEST 5: so the same key is a MISS for a good origin, then a HIT
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t402_4:;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT"]
--- response_body eval
["fetched\n", "fetched\n"]
