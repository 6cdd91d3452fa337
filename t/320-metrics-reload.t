# Counters live in shared memory and keep their values across a reload,
# also one that adds and removes series; the old workers' late updates land
# on their own series (slots never move).

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);
my $port = free_port();

sub conf {
    my @zones = @_;
    my $z = join '', map { "    ratelimit_redis_zone \$arg_k zone=$_ rate=1000r/s pool=main;\n" } @zones;
    my $l = join '', map { "        location = /$_ { ratelimit_redis zone=$_; empty_gif; }\n" } @zones;
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
$z
    server {
        listen 127.0.0.1:$port;
$l
        location = /metrics { health_metrics; }
    }
_EOC_
}

sub metric {
    my ($re) = @_;
    my $m = `curl -s -m 5 http://127.0.0.1:$port/metrics`;
    return $m =~ /^$re (\d+)$/m ? $1 : undef;
}

my $d = start_nginx('reload', conf('a', 'b'), workers => 2);
get("http://127.0.0.1:$port/a?k=x") for 1 .. 5;
get("http://127.0.0.1:$port/b?k=x") for 1 .. 3;
is(metric('nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'), 5, 'zone a: 5 passed');

# a reload that drops zone b and adds zone c
{
    local $/;
    open my $in, '<', "$d/nginx.conf" or die;
    my $text = <$in>;
    my $new = conf('c', 'a');
    $text =~ s/(http \{.*?scgi_temp_path[^\n]*\n).*\}\s*$/$1$new}\n/s or die "config layout";
    open my $out, '>', "$d/nginx.conf" or die;
    print $out $text;
}
nginx_signal($d, 'reload');
sleep 1.5;

is(metric('nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'), 5,
   'after a reload that changed the series, zone a still counts 5');
is(metric('nginx_ratelimit_redis_requests_total\{zone="c",result="passed"\}'), 0,
   'the new zone c starts at 0');
ok(!defined metric('nginx_ratelimit_redis_requests_total\{zone="b",result="passed"\}'),
   'the dropped zone b is gone from the output');
get("http://127.0.0.1:$port/a?k=x") for 1 .. 2;
get("http://127.0.0.1:$port/c?k=x") for 1 .. 4;
is(metric('nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'), 7, 'zone a goes on: 7');
is(metric('nginx_ratelimit_redis_requests_total\{zone="c",result="passed"\}'), 4, 'zone c counts: 4');
cmp_ok(metric('nginx_http_requests_total\{status="2xx"\}'), '>=', 14, 'request totals survive too');

errlog_clean($d, 'reload');
done_testing();
