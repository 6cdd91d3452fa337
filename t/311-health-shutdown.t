# vi:filetype=perl
#
# A worker that is shutting down answers ready with 503 while its
# connections drain.  A plain Test::More script: it sends half a request,
# asks nginx to quit (as on "nginx -s quit" or a reload), then finishes the
# request on the connection the old worker still serves.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $so = $ENV{TEST_NGINX_LOAD_MODULES}
    or plan skip_all => 'TEST_NGINX_LOAD_MODULES is not set';

my $base = $ENV{TEST_NGINX_WORK} && -d $ENV{TEST_NGINX_WORK}
           ? $ENV{TEST_NGINX_WORK} : undef;
my $prefix = tempdir('health-shutdown.XXXXXX',
                     $base ? (DIR => $base) : (TMPDIR => 1), CLEANUP => 1);
mkdir "$prefix/logs";

my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                              LocalPort => 0, ReuseAddr => 1) or die $!;
my $port = $s->sockport;
close $s;

open my $conf, '>', "$prefix/nginx.conf" or die $!;
print $conf <<"EOF";
load_module $so;
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /ready { health_ready; }
    }
}
EOF
close $conf;

system("$nginx -p $prefix -c $prefix/nginx.conf") == 0 or BAIL_OUT('nginx did not start');
sleep 0.3;

chomp(my $master = `cat $prefix/nginx.pid`);
END { kill 'TERM', $master if $master && kill 0, $master; }

sub ready {
    my ($sock, $rest) = @_;
    print $sock $rest;
    local $/;
    return <$sock> // '';
}

my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
my $res = ready($c, "GET /ready HTTP/1.0\r\nHost: x\r\n\r\n");
like($res, qr{^HTTP/1\.1 200 }, 'running: ready is 200');
like($res, qr/"worker":\[\{"componentType":"system","status":"pass"/, 'worker check passes');

$c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
print $c "GET /ready?verbose HTTP/1.0\r\nHost: x\r\n";
sleep 0.3;

kill 'QUIT', $master;
sleep 0.5;

$res = ready($c, "\r\n");
like($res, qr{^HTTP/1\.1 503 }, 'shutting down: ready is 503');
like($res, qr/^\[-\]worker failed: worker is shutting down\r?$/m, 'and says why');
like($res, qr/^readyz check failed\r?$/m, 'readyz check failed');

for (1 .. 50) { last unless kill 0, $master; sleep 0.1; }
ok(!kill(0, $master), 'nginx exited: the connection did not hold it');

open my $log, '<', "$prefix/logs/error.log" or die $!;
my @bad = grep { /\[(alert|emerg)\]/ } <$log>;
ok(!@bad, 'no [alert] or [emerg] in error.log') or diag(@bad);

done_testing();
