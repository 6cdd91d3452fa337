# vi:filetype=perl
#
# Self-test of the test runner (t/lib/Test/Nginx/Socket.pm); uses only stock
# nginx features so it needs no module (no TEST_NGINX_LOAD_MODULES).  It must
# also pass under CPAN's Test::Nginx::Socket.

use Test::Nginx::Socket;

repeat_each(2);

# 17 blocks; per repetition: 2 (no_error_log [alert] [emerg]) per log check,
# +1 status code per response, +1 per body / header / error_log pattern.
plan tests => repeat_each() * 84;

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

log_level('info');
run_tests();

__DATA__

=== TEST 1: return with body, status and headers
--- config
    location = /hello {
        add_header X-Foo bar;
        return 200 "hello\n";
    }
--- request
GET /hello
--- response_body
hello
--- error_code: 200
--- response_headers
X-Foo: bar
Content-Type: text/plain
!X-Bar
--- no_error_log
[alert]
[emerg]



=== TEST 2: more_headers reach nginx
--- config
    location = /t {
        return 200 "[$http_x_foo] [$http_x_bar]\n";
    }
--- request
GET /t
--- more_headers
X-Foo: blah
X-Bar: baz qux
--- response_body
[blah] [baz qux]
--- response_headers_like
Server: nginx.*
--- no_error_log
[alert]
[emerg]



=== TEST 3: 404 on a missing file logs open() failed at error level
--- config
    location /missing/ {
        root $TEST_NGINX_HTML_DIR;
    }
--- request
GET /missing/nope.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log eval
[qr/open\(\) "[^"]+nope\.txt" failed/, "No such file or directory"]
--- no_error_log
[alert]
[emerg]



=== TEST 4: grep_error_log
--- config
    location /missing/ {
        root $TEST_NGINX_HTML_DIR;
    }
--- request
GET /missing/a.txt
--- error_code: 404
--- grep_error_log eval: qr/missing\/a\.txt" failed/
--- grep_error_log_out
missing/a.txt" failed
--- no_error_log
[alert]
[emerg]



=== TEST 5: must_die on a bad directive (its [emerg] is the point here)
--- config
    this_directive_does_not_exist on;
--- must_die
--- error_log
[emerg]
unknown directive "this_directive_does_not_exist"
--- no_error_log
[alert]



=== TEST 6: pipelined requests on one connection
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 201 "bb\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["a\n", "bb\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 7: raw_request, sent as is
--- config
    location = /raw { return 200 "raw $server_protocol\n"; }
--- raw_request eval
"GET /raw HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_body
raw HTTP/1.0
--- no_error_log
[alert]
[emerg]



=== TEST 8: --- wait, then the access log line is there
--- config
    location = /w { return 200 "w\n"; }
--- request
GET /w
--- wait: 0.1
--- response_body
w
--- access_log
"GET /w HTTP/1.1" 200
--- no_error_log
[alert]
[emerg]



=== TEST 9: user_files are served from the html dir
--- user_files
>>> foo.txt
hello file
>>> sub/bar.txt
bar
--- config
    location = /t { return 200 "unused\n"; }
--- request
GET /sub/bar.txt
--- response_body
bar
--- response_headers
Content-Length: 4
--- no_error_log
[alert]
[emerg]



=== TEST 10: eval sections, chomp, $ServerPort and $TEST_NGINX_SERVER_PORT
--- config
    location = /port { return 200 "port=$TEST_NGINX_SERVER_PORT"; }
--- request eval
"GET " . "/port"
--- response_body chomp
port=$ServerPort
--- no_error_log
[alert]
[emerg]



=== TEST 11: request body gets a Content-Length (body trimmed)
--- config
    location = /post { return 200 "len=$http_content_length\n"; }
--- request
POST /post
hello body
--- response_body
len=10
--- no_error_log
[alert]
[emerg]



=== TEST 12: HEAD request has no body
--- config
    location = /hello { return 200 "hello\n"; }
--- request
HEAD /hello
--- response_body
--- response_headers
Content-Length: 6
--- no_error_log
[alert]
[emerg]



=== TEST 13: chunked response is decoded
--- user_files
>>> c.txt
hello world
--- config
    location = /c.txt {
        root $TEST_NGINX_HTML_DIR;
        sub_filter_types text/plain;
        sub_filter 'world' 'chunks';
    }
--- request
GET /c.txt
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
hello chunks
--- no_error_log
[alert]
[emerg]



=== TEST 14: client timeout with --- abort is not a failure
--- config
    location = /slow {
        limit_rate 1;
        return 200 "slow response\n";
    }
--- request
GET /slow
--- timeout: 300ms
--- abort
--- ignore_response
--- no_error_log
[alert]
[emerg]



=== TEST 15: skip_nginx that does not skip
--- skip_nginx: 3: < 1.0.0
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- no_error_log
[alert]
[emerg]



=== TEST 16: skip_nginx that skips
--- skip_nginx: 3: > 1.0.0
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
not ok
--- no_error_log
[alert]
[emerg]



=== TEST 17: array of requests, several connections
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 404; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^a\$", "404 Not Found"]
--- no_error_log
[alert]
[emerg]
