# A series is found in health_zone by its whole name and labels, not by a
# hash of them: the ratelimit zones "uablaijhsa" and "pfcxpytzcn" have the
# same CRC32 (so do their series names) and still count apart, before and
# after a reload.  The names live in the zone itself; a reload that keeps
# the series finds them again instead of taking more room, so a zone that
# holds a configuration once holds it across any number of reloads.

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

sub rewrite {
    my ($d, $body) = @_;
    local $/;
    open my $in, '<', "$d/nginx.conf" or die;
    my $text = <$in>;
    close $in;
    $text =~ s/(http \{.*?scgi_temp_path[^\n]*\n).*\}\s*$/$1$body}\n/s or die "config layout";
    open my $out, '>', "$d/nginx.conf" or die;
    print $out $text;
    close $out;
}

sub reload {
    my $d = shift;
    my $before = errlog_has($d, qr/gracefully shutting down/);
    nginx_signal($d, 'reload');
    for (1 .. 100) {
        last if errlog_has($d, qr/gracefully shutting down/) > $before;
        sleep 0.05;
    }
    sleep 0.2;
}

sub metrics {
    my $port = shift;
    return scalar `curl -s -m 5 http://127.0.0.1:$port/metrics`;
}

sub metric {
    my ($m, $re) = @_;
    return $m =~ /^$re (\d+)$/m ? $1 : undef;
}

sub zone_conf {
    my ($port, $zone, @zones) = @_;
    my $z = join '', map {
        "    ratelimit_redis_zone \$arg_k zone=$_ rate=1000r/s pool=main;\n"
    } @zones;
    my $l = join '', map {
        "        location = /$_ { ratelimit_redis zone=$_; empty_gif; }\n"
    } @zones;
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
    health_zone $zone;
$z
    server {
        listen 127.0.0.1:$port;
$l
        location = /metrics { health_metrics; }
    }
_EOC_
}

my $A = 'nginx_ratelimit_redis_requests_total\{zone="uablaijhsa",result="passed"\}';
my $B = 'nginx_ratelimit_redis_requests_total\{zone="pfcxpytzcn",result="passed"\}';


# --- two zones whose series names have the same CRC32

my $port = free_port();
my $d = start_nginx('collide', zone_conf($port, '1m', 'uablaijhsa', 'pfcxpytzcn'), workers => 2);

get("http://127.0.0.1:$port/uablaijhsa?k=x") for 1 .. 3;
get("http://127.0.0.1:$port/pfcxpytzcn?k=x");
my $m = metrics($port);
is(metric($m, $A), 3, 'zone uablaijhsa counts its own 3 requests');
is(metric($m, $B), 1, 'zone pfcxpytzcn counts its own 1 request');
is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="uablaijhsa",result="rejected"\}'), 0,
   'and the other results of the zones are apart too');

# a reload that swaps the order in which they are registered
rewrite($d, zone_conf($port, '1m', 'pfcxpytzcn', 'uablaijhsa'));
reload($d);
get("http://127.0.0.1:$port/pfcxpytzcn?k=x") for 1 .. 2;
$m = metrics($port);
is(metric($m, $A), 3, 'after a reload, uablaijhsa keeps 3');
is(metric($m, $B), 3, 'after a reload, pfcxpytzcn counts on: 3');

# a reload where only one of them is left: it must find its own series
rewrite($d, zone_conf($port, '1m', 'pfcxpytzcn'));
reload($d);
$m = metrics($port);
is(metric($m, $B), 3, 'alone, pfcxpytzcn keeps its 3');
ok(!defined metric($m, $A), 'the dropped zone is not shown');
rewrite($d, zone_conf($port, '1m', 'uablaijhsa'));
reload($d);
is(metric(metrics($port), $A), 3, 'alone, uablaijhsa keeps its 3 (not the 3 of the other)');
errlog_clean($d, 'collide');
stop_nginx($d);


# --- a small zone holds the same configuration across many reloads

my @zones = map { "zone_with_a_rather_long_name_$_" } 1 .. 30;
$port = free_port();
$d = start_nginx('small', zone_conf($port, '32k', @zones));
$m = metrics($port);
is(metric($m, 'nginx_scale_metrics_overflow_total'), 0, '32k holds 30 zones (150 series)');
get("http://127.0.0.1:$port/zone_with_a_rather_long_name_7?k=x") for 1 .. 2;
for my $n (1 .. 12) {
    rewrite($d, zone_conf($port, '32k', $n % 2 ? reverse @zones : @zones));
    reload($d);
}
get("http://127.0.0.1:$port/zone_with_a_rather_long_name_7?k=x");
$m = metrics($port);
is(metric($m, 'nginx_scale_metrics_overflow_total'), 0, 'after 12 reloads, still no overflow');
is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="zone_with_a_rather_long_name_7",result="passed"\}'),
   3, 'and the counts went on: 3');
ok(!errlog_has($d, qr/health_zone is too small/), 'no "too small" warning');
errlog_clean($d, 'small');

# the same zone, too small for twice as many zones: overflow, no crash
my @more = map { "zone_with_a_rather_long_name_$_" } 1 .. 400;
rewrite($d, zone_conf($port, '32k', @more));
reload($d);
get("http://127.0.0.1:$port/zone_with_a_rather_long_name_399?k=x") for 1 .. 2;
get("http://127.0.0.1:$port/zone_with_a_rather_long_name_7?k=x");
$m = metrics($port);
cmp_ok(metric($m, 'nginx_scale_metrics_overflow_total') // 0, '>=', 2,
       'series that do not fit are counted in the overflow series');
is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="zone_with_a_rather_long_name_7",result="passed"\}'),
   4, 'series that fit count on');
ok(errlog_has($d, qr/health_zone is too small for \d+ of \d+ series/), 'a warning says how many did not fit');
errlog_clean($d, 'small, overflowing');
stop_nginx($d);

done_testing();
