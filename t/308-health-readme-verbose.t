# The README's health_ready ?verbose example is what nginx answers: the
# configuration it describes (pool main up and used by a location, upstream
# app with min=2 and two of its three peers down, a drain file that does
# not exist) is run, and
# the body compared line by line.

use strict;
use warnings;
use FindBin;
use Test::More;

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

open my $f, '<', "$FindBin::Bin/../README.md" or die "README.md: $!";
my $readme = do { local $/; <$f> };

my ($example) = $readme =~ /^#### health_ready\n.*?`\?verbose`[^\n]*\n(?:[^\n]*\n)*?\n((?: {4}\S[^\n]*\n)+)/ms;
ok($example, 'the health_ready section has a ?verbose example');
$example =~ s/^ {4}//mg;

my $rp = free_port();
start_redis($rp);
my ($port, $a, $b, $c) = map { free_port() } 1 .. 4;

my $d = start_nginx('verbose', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; }
    upstream app { server 127.0.0.1:$a; server 127.0.0.1:$b down; server 127.0.0.1:$c down; }
    health_ready_upstream app min=2;
    health_drain_file $work/verbose/drain;
    server {
        listen 127.0.0.1:$port;
        location = /ready { health_ready; }
        location /app { session_redis main; proxy_pass http://app; }
    }
_EOC_
sleep 1;

my $body = `curl -s -m 5 'http://127.0.0.1:$port/ready?verbose'`;
is($body, $example, 'the README shows what /ready?verbose answers');
my $code = `curl -s -m 5 -o /dev/null -w '%{http_code}' 'http://127.0.0.1:$port/ready?verbose'`;
is($code, 503, 'with a failed check: 503');

errlog_clean($d, 'verbose');
done_testing();
