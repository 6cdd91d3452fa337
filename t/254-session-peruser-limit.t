# The shipped examples/nginx/nginx.conf.template, per-user limit: one
# budget per login, whichever way the client spells the Cookie header.  The
# limit must key on what session_redis validated, never on raw cookie text:
# a client that writes the same session cookie differently (quotes, a
# decoy of the same name, another case, several Cookie headers) must not
# get past the limit while still being served as the user.  The real app;
# the per_user rate is lowered to 5r/m for the test, the rest is as shipped.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);
use IO::Socket::INET;

our ($work, $nginx, $so);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $repo = "$FindBin::Bin/..";
need_example_app();

my $template = "$repo/examples/nginx/nginx.conf.template";
my $text = do { local $/; open my $f, '<', $template or die; <$f> };
ok($text !~ /^[^#]*\$http_cookie/m, 'no limit key made of raw $http_cookie text');
my ($zone) = $text =~ /^\s*(ratelimit_redis_zone \S+ zone=per_user [^;]*;)/m;
ok($zone, "the template has a per_user zone: $zone");

my $rp = free_port();
start_redis($rp);

my $secret = 'per user secret';
my $ap = start_example_app('app-254', $rp, $secret);

# render the template as the demo does
my $port = free_port();
my $d = "$work/tpl";
mkdir $d; mkdir "$d/logs";
open my $sf, '>', "$d/secret.conf" or die;
print $sf "session_redis_secret \"$secret\";\n";
close $sf;
{
    local %ENV = (%ENV,
        SCALE_MODULE => $so, NGINX_WORKERS => 1, NGINX_PID => "$d/logs/nginx.pid",
        NGINX_ACCESS_LOG => "$d/logs/access.log", NGINX_LISTEN => "127.0.0.1:$port",
        NGINX_INSTANCE => 't254', NGINX_RESOLVER => '',
        REDIS_SERVER => "127.0.0.1:$rp",
        APP_SERVERS => "server 127.0.0.1:$ap max_fails=1 fail_timeout=5s;",
        TRUSTED_PROXY => '127.0.0.1', METRICS_ALLOW => '127.0.0.1',
        DRAIN_FILE => "$d/drain", SESSION_SECRET_CONF => "$d/secret.conf");
    my $conf = `$repo/examples/nginx/render`;
    is($?, 0, 'the template renders');
    # test-local: a small per-user budget, the error log in the test dir
    my $n = ($conf =~ s/(zone=per_user rate=)\d+r\/m/${1}5r\/m/);
    is($n, 1, 'per_user rate lowered for the test');
    $conf =~ s/^error_log .*$/error_log $d\/logs\/error.log info;/m;
    $conf =~ s/^http \{/http {\n    client_body_temp_path $d\/body; proxy_temp_path $d\/proxy;\n    fastcgi_temp_path $d\/fcgi; uwsgi_temp_path $d\/uwsgi; scgi_temp_path $d\/scgi;/m;
    open my $f, '>', "$d/nginx.conf" or die;
    print $f $conf;
    close $f;
}
is(system("$nginx -p $d -c $d/nginx.conf -e $d/logs/error.log"), 0, 'nginx starts');
for (1 .. 50) { last if -s "$d/logs/nginx.pid"; sleep 0.1 }
push @main::nginx, $d;
for (1 .. 50) { last if (get("http://127.0.0.1:$port/api/ready"))[0] == 200; sleep 0.1 }

sub raw_get {
    my ($path, @cookies) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or die "connect $port: $!";
    binmode $s;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n"
             . join('', map { "Cookie: $_\r\n" } @cookies)
             . "Connection: close\r\n\r\n";
    my $resp = '';
    local $SIG{ALRM} = sub { die "timeout reading from $port\n" };
    alarm 10;
    while (sysread($s, my $buf, 65536)) { $resp .= $buf }
    alarm 0;
    my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $resp =~ /\r\n\r\n(.*)$/s;
    return ($status // 0, $body // '');
}

my $h = `curl -s -m 5 -D - -o /dev/null -H 'Content-Type: application/json' -d '{"user":"alice"}' http://127.0.0.1:$port/api/login`;
my ($A) = $h =~ /^Set-Cookie: connect\.sid=([^;]+)/mi;
like($A // '', qr/^s%3A/, 'logged in through nginx');
(my $Araw = $A) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;

# a sliding window of one minute: keep away from its boundary
wait_window($rp, 60, 15);

my $T = "\t";
my @spellings;
for my $i (1 .. 3) {
    my $x = "decoy$i$$";
    push @spellings,
        ["connect.sid=$A"],
        ["x=$x; connect.sid=$A"],
        ["connect.sid=\"$A\""],
        ["connect.sid=$A; connect.sid=$x"],
        ["x=1;${T}connect.sid=$A; connect.sid=$x"],
        ["CONNECT.SID=$x; connect.sid=$A"],
        ["x=$x", "connect.sid=$A"],
        ["connect.sid=$Araw"],
        ["x=1, connect.sid=$A; connect.sid=$x"],
        ["CONNECT.SID=$A; x=$x"];
}

my ($as_alice, $limited, $refused, $mismatch) = (0, 0, 0, 0);
for my $c (@spellings) {
    my ($st, $body) = raw_get('/api/profile', @$c);
    if ($st == 200) {
        my ($user) = $body =~ /"user":"([^"]*)"/;
        my ($sess) = $body =~ /"session_user":"([^"]*)"/;
        $as_alice++ if ($user // '') eq 'alice';
        $mismatch++ if ($user // '') ne ($sess // '');
    } elsif ($st == 429) {
        $limited++;
    } elsif ($st == 401) {
        $refused++;
    }
}
is($as_alice, 5, "served as alice exactly as often as the per-user limit allows ($as_alice of " . @spellings . ' requests)');
# 8 of the 10 spellings carry alice's session as express reads it; the
# other 2 carry a decoy there
is($limited, 24 - 5, "the rest of alice's requests were limited");
is($refused, 6, 'the spellings express reads as a decoy were refused (401)');
is($mismatch, 0, 'every answer served as alice came with her session, as the app sees it');

errlog_clean($d, 'template');
done_testing();
