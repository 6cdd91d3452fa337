# The Grafana dashboard and the Prometheus rules against a live /metrics of
# a configuration that uses every module (a ratelimit zone, session_redis,
# health_ready_upstream with an upstream, a redis pool; cache_redis when the
# built module knows it):
# - the dashboard is a Grafana JSON model (schemaVersion, a Prometheus
#   datasource variable, an instance variable, panels with gridPos and
#   unique ids, every target on the datasource variable), one row per module;
# - every expression names only families /metrics serves, and every family
#   served is on a panel; the rules read only served families too;
# - every panel expression and recording rule is valid PromQL that returns
#   series when evaluated (promtool) over two real scrapes;
# - the p99 recording rule, evaluated on the module's real bucket boundaries
#   (the `le` labels of /metrics), gives histogram_quantile's answer; the
#   rules' unit tests use those boundaries; the "Redis slow" threshold is one.

use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

our ($work, $nginx, $so);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

chomp(my $promtool = `command -v promtool 2>/dev/null` // '');
plan skip_all => 'promtool not installed (package prometheus; scripts/deps.sh test installs it)'
    unless $promtool;
# scripts/deps.sh test installs it (libyaml-libyaml-perl): missing is a failure
require YAML::XS;

my $root = "$FindBin::Bin/..";
my $dash_file = "$root/examples/grafana/nginx-scale.json";
my $rules_file = "$root/examples/prometheus/nginx-scale.rules.yml";

# DESIGN.md's cache_redis families: served once the module has cache_redis
my @cache_families = qw(nginx_cache_redis_requests_total nginx_cache_redis_stored_total
                        nginx_cache_redis_stored_bytes_total);

# ------------------------------------------------------------ cache_redis?
my $has_cache = do {
    my $d = "$work/probe";
    mkdir $d; mkdir "$d/logs";
    open my $f, '>', "$d/nginx.conf" or die;
    print $f <<"_EOC_";
load_module $so;
events { }
http {
    redis_pool main { server 127.0.0.1:1; }
    server { listen 127.0.0.1:1; location / { cache_redis main; empty_gif; } }
}
_EOC_
    close $f;
    my $out = `$nginx -t -p $d -c $d/nginx.conf -g 'pid $d/nginx.pid; error_log $d/logs/error.log;' 2>&1`;
    if ($? == 0) {
        1;
    } elsif ($out =~ /unknown directive "cache_redis"/) {
        0;
    } else {
        BAIL_OUT("nginx -t of the cache_redis probe failed otherwise:\n$out");
    }
};
diag('this build has no cache_redis: the nginx_cache_redis_* families are left out '
     . 'of the "only served families" checks') unless $has_cache;

# ------------------------------------------------------------ live /metrics
my $rp = free_port();
start_redis($rp);
my ($port, $app1, $app2) = (free_port(), free_port(), free_port());
my $cache = $has_cache
    ? "location /c/ { cache_redis main; proxy_pass http://app; }"
    : '';
my $d = start_nginx('live', <<"_EOC_", workers => 2);
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
    ratelimit_redis_zone \$arg_k zone=z rate=1000r/m pool=main;
    upstream app { server 127.0.0.1:$app1; server 127.0.0.1:$app2; }
    health_ready_upstream app;
    server {
        listen 127.0.0.1:$port;
        location = /metrics { health_metrics; }
        location = /ready { health_ready; }
        location /s/ { session_redis main; proxy_pass http://app; }
        $cache
        location / { ratelimit_redis zone=z; proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:$app1;
        listen 127.0.0.1:$app2;
        location / { add_header Cache-Control "max-age=60"; return 200 "ok\\n"; }
    }
_EOC_

sub traffic {
    get("http://127.0.0.1:$port/x?k=$_") for 1 .. 6;
    get("http://127.0.0.1:$port/s/profile");
    `curl -s -o /dev/null -m 5 -H 'Cookie: sid=nope' http://127.0.0.1:$port/s/profile`;
    get("http://127.0.0.1:$port/c/page") for 1 .. 3;
    get("http://127.0.0.1:$port/ready");
}

sub scrape {
    my $m = `curl -s -m 5 http://127.0.0.1:$port/metrics`;
    my (%types, %samples, @order);
    for (split /\n/, $m) {
        if (/^# TYPE (\S+) (\S+)/) { $types{$1} = $2; next }
        next if /^#/ || !/\S/;
        my ($series, $v) = /^(\S+(?:\{.*\})?) (\S+)$/ or next;
        push @order, $series unless exists $samples{$series};
        $samples{$series} = $v;
    }
    return (\%types, \%samples, \@order);
}

my ($t1, $s1);
for (1 .. 20) {
    traffic();
    ($t1, $s1) = scrape();
    last if $s1->{'nginx_redis_up{pool="main"}'};
    sleep 0.25;
}
is($s1->{'nginx_redis_up{pool="main"}'}, 1, 'the pool is up');
sleep 0.3;
traffic();
my ($types, $s2, $order) = scrape();
my %served = %$types;
my @fams = sort keys %served;
ok(@fams >= 15, scalar(@fams) . ' families served: ' . join(' ', @fams));
for my $f (qw(nginx_ratelimit_redis_requests_total nginx_session_redis_requests_total
              nginx_upstream_peer_requests_total nginx_upstream_peer_up nginx_redis_up
              nginx_redis_command_duration_seconds)) {
    ok($served{$f}, "$f is served (every module is in use)");
}
if ($has_cache) {
    ok($served{$_}, "$_ is served (cache_redis is built)") for @cache_families;
}
my %allowed = %served;
unless ($has_cache) { $allowed{$_} = 'future' for @cache_families }

sub base_family {
    my $n = shift;
    (my $b = $n) =~ s/_(bucket|count|sum)$//;
    return ($b ne $n && ($allowed{$b} // '') eq 'histogram') ? $b : $n;
}

# ------------------------------------------------------------ dashboard model
open my $jf, '<', $dash_file or die "$dash_file: $!";
my $dash = eval { decode_json(do { local $/; <$jf> }) };
ok($dash, 'the dashboard is JSON') or BAIL_OUT("$dash_file: $@");

ok(($dash->{schemaVersion} // 0) =~ /^\d+$/ && $dash->{schemaVersion} >= 36,
   "schemaVersion $dash->{schemaVersion} (datasource references as objects)");
ok($dash->{title} && $dash->{uid}, 'it has a title and a uid');

my %var = map { $_->{name} => $_ } @{ $dash->{templating}{list} || [] };
my $dsv = $var{datasource};
ok($dsv && $dsv->{type} eq 'datasource' && $dsv->{query} eq 'prometheus',
   'a datasource variable of type datasource, plugin prometheus');
my $iv = $var{instance};
ok($iv && $iv->{type} eq 'query', 'an instance variable of type query');
my $ds_ok = sub {
    my $ds = shift;
    return ref $ds eq 'HASH' && ($ds->{type} // '') eq 'prometheus'
        && ($ds->{uid} // '') =~ /^\$\{?datasource\}?$/;
};
ok($iv && $ds_ok->($iv->{datasource}), 'the instance variable queries the datasource variable');
my $iq = ref $iv->{query} ? $iv->{query}{query} : $iv->{query};
my ($ivfam) = ($iq // '') =~ /^label_values\((\w+),\s*instance\)$/;
ok($ivfam && $served{$ivfam}, "the instance variable lists instance of a served family ($iq)");

my (@all, @rows);
for my $p (@{ $dash->{panels} || [] }) {
    push @all, $p;
    push @rows, $p if $p->{type} eq 'row';
    push @all, @{ $p->{panels} || [] };      # a collapsed row holds its panels
}
my %ids;
my @boxes;
my (@exprs, $bad_ds, $bad_gp, $bad_inst);
for my $p (@all) {
    my $what = "panel $p->{id} \"$p->{title}\"";
    $ids{ $p->{id} // 'none' }++;
    my $g = $p->{gridPos} || {};
    unless ((grep { ($g->{$_} // '') =~ /^\d+$/ } qw(h w x y)) == 4
            && $g->{w} >= 1 && $g->{x} + $g->{w} <= 24 && $g->{h} >= 1) {
        $bad_gp++;
        diag("$what: gridPos " . encode_json($g));
    }
    push @boxes, [$what, $g];
    next if $p->{type} eq 'row';
    my @t = @{ $p->{targets} || [] };
    unless (@t && $ds_ok->($p->{datasource}) && !grep { !$ds_ok->($_->{datasource}) } @t) {
        $bad_ds++;
        diag("$what: its targets do not all use the datasource variable");
    }
    my %ref;
    for my $t (@t) {
        if ($ref{ $t->{refId} // '' }++) {
            $bad_ds++;
            diag("$what: refId $t->{refId} twice");
        }
        push @exprs, { panel => $p, expr => $t->{expr} // '' };
        # each selector of a module family filters on the instance variable
        while ($t->{expr} =~ /\b(nginx_\w+)(\{[^}]*\})?/g) {
            my ($n, $m) = ($1, $2 // '');
            next if $m =~ /instance=~"\$instance"/;
            $bad_inst++;
            diag("$what: $n$m does not filter on instance=~\"\$instance\"");
        }
    }
}
ok(!grep({ $ids{$_} > 1 } keys %ids) && !$ids{none}, scalar(@all) . ' panels, ids unique');
ok(!$bad_gp, 'every panel has a gridPos inside the 24 columns');
my $overlap = 0;
for my $i (0 .. $#boxes) {
    for my $j ($i + 1 .. $#boxes) {
        my ($a, $b) = ($boxes[$i][1], $boxes[$j][1]);
        next if $a->{x} + $a->{w} <= $b->{x} || $b->{x} + $b->{w} <= $a->{x}
             || $a->{y} + $a->{h} <= $b->{y} || $b->{y} + $b->{h} <= $a->{y};
        $overlap++;
        diag("$boxes[$i][0] overlaps $boxes[$j][0]");
    }
}
ok(!$overlap, 'no two panels overlap');
ok(!$bad_ds, "every panel's targets use the datasource variable, refIds unique");
ok(!$bad_inst, 'every selector filters on the instance variable');
ok(@exprs >= 20, scalar(@exprs) . ' expressions');

# one row per module; the panels under a row are about that module
my %module = (
    'ratelimit_redis' => qr/^nginx_ratelimit_redis_/,
    'session_redis'   => qr/^nginx_session_redis_/,
    'cache_redis'     => qr/^nginx_cache_redis_/,
    'redis'           => qr/^nginx_redis_/,
    'upstream'        => qr/^nginx_upstream_/,
);
my @top = @{ $dash->{panels} };
for my $mod (sort keys %module) {
    my ($i) = grep { $top[$_]{type} eq 'row' && $top[$_]{title} =~ /\b\Q$mod\E/i } 0 .. $#top;
    ok(defined $i, "a row for $mod") or next;
    my @under = @{ $top[$i]{panels} || [] };
    for (my $j = $i + 1; $j <= $#top && $top[$j]{type} ne 'row'; $j++) { push @under, $top[$j] }
    my @f = map { $_->{expr} =~ /\b(nginx_\w+)/g } map { @{ $_->{targets} || [] } } @under;
    ok(@f && !grep({ $_ !~ $module{$mod} } @f), "the $mod row shows only its families (@{[ scalar @f ]} uses)")
        or diag(join ' ', grep { $_ !~ $module{$mod} } @f);
}

# ------------------------------------------------------------ both directions
my %used;
my $unserved = 0;
for my $e (@exprs) {
    for my $n ($e->{expr} =~ /\b(nginx_[a-z_]+)/g) {
        my $b = base_family($n);
        if (!$allowed{$b}) {
            $unserved++;
            diag("panel \"$e->{panel}{title}\": $n is not served by health_metrics");
        }
        $used{$b} = 1;
    }
}
ok(!$unserved, 'every dashboard expression names only families /metrics serves');
my @missing = grep { !$used{$_} } sort keys %allowed;
ok(!@missing, 'every family /metrics serves is on a panel') or diag("not on a panel: @missing");
ok($used{$_}, "the dashboard shows $_ (DESIGN's cache_redis family)") for @cache_families;

my $rules = YAML::XS::LoadFile($rules_file);
my @rules = map { @{ $_->{rules} } } @{ $rules->{groups} };
my %record = map { $_->{record} => 1 } grep { $_->{record} } @rules;
my $runserved = 0;
for my $r (@rules) {
    (my $e = $r->{expr}) =~ s/"(?:[^"\\]|\\.)*"//g;
    for my $id ($e =~ /([a-zA-Z_:][a-zA-Z0-9_:]*)/g) {
        next if $record{$id} || $id !~ /^nginx_/;
        next if $allowed{ base_family($id) };
        $runserved++;
        diag(($r->{alert} // $r->{record}) . ": $id is not served by health_metrics");
    }
}
ok(!$runserved, 'the rules read only families /metrics serves');

# ------------------------------------------------------------ evaluated
# both scrapes as promtool input series, one minute apart
my $inst = "127.0.0.1:$port";
sub with_target {
    my $s = shift;
    my $l = qq{job="nginx-scale",instance="$inst"};
    return $s =~ /\}$/ ? substr($s, 0, -1) . ",$l}" : "$s\{$l}";
}
my $input = join '', map {
    my $v1 = $s1->{$_} // $s2->{$_};
    "      - series: '" . with_target($_) . "'\n        values: '$v1 $s2->{$_}'\n"
} @$order;

my $ev = "$work/eval";
mkdir $ev;
system("cp $rules_file $ev/") == 0 or die;
my (@checks, %what);
my $n = 0;
for my $e (@exprs) {
    next if !$has_cache && $e->{expr} =~ /nginx_cache_redis_/;
    (my $x = $e->{expr}) =~ s/\$instance/.*/g;
    $x =~ s/\$__rate_interval|\$__interval/5m/g;
    $x =~ s/\$__range/1h/g;
    my $name = 'P' . ++$n;
    $what{$name} = "panel \"$e->{panel}{title}\": $e->{expr}";
    push @checks, [$name, $x];
}
for my $r (grep { $_->{record} } @rules) {
    next if !$has_cache && $r->{expr} =~ /nginx_cache_redis_/;
    my $name = 'R' . ++$n;
    $what{$name} = "record $r->{record}";
    push @checks, [$name, $r->{record}];      # recorded by the real rule file
}
{
    open my $f, '>', "$ev/exprs.yml" or die;
    print $f "groups:\n  - name: exprs\n    rules:\n";
    for my $c (@checks) {
        (my $x = $c->[1]) =~ s/\n/ /g;
        $x =~ s/'/''/g;
        print $f "      - alert: $c->[0]\n        expr: 'count($x) > 0'\n";
    }
    close $f;
    # promtool evaluates the groups of an evaluation time in random order
    # unless told: exprs reads the recorded series at 1m, the first time
    # rate() has two samples, so the rules' groups go first (a dashboard
    # reads what Prometheus recorded earlier)
    my $eval_order = join ', ', (map { $_->{name} } @{ $rules->{groups} }), 'exprs';
    open $f, '>', "$ev/test.yml" or die;
    print $f "rule_files: [nginx-scale.rules.yml, exprs.yml]\nevaluation_interval: 1m\n"
        . "group_eval_order: [$eval_order]\ntests:\n"
        . "  - interval: 1m\n    input_series:\n$input    alert_rule_test:\n";
    print $f "      - eval_time: 1m\n        alertname: $_->[0]\n"
           . "        exp_alerts: [{exp_labels: {}}]\n" for @checks;
    close $f;
}
my $out = `cd $ev && $promtool check rules exprs.yml 2>&1`;
is($?, 0, 'every panel expression is valid PromQL') or diag($out);
$out = `cd $ev && $promtool test rules test.yml 2>&1`;
is($?, 0, scalar(@checks) . ' panel expressions and recording rules return series on the live scrapes')
    or diag(join "\n", map { "$_: $what{$_}" } $out =~ /alertname: (\w+)/g), diag($out);

# ------------------------------------------------------------ p99 on the real buckets
my @le = map { /le="([^"]+)"/ ? $1 : () }
         grep { /^nginx_redis_command_duration_seconds_bucket\{pool="main",/ } @$order;
ok(@le >= 5 && $le[-1] eq '+Inf', "the Redis histogram's buckets: @le");
my @http_le = map { /le="([^"]+)"/ ? $1 : () }
              grep { /^nginx_http_request_duration_seconds_bucket\{/ } @$order;
ok(@http_le >= 5, "the request histogram's buckets: @http_le");

my $tests = YAML::XS::LoadFile("$root/examples/prometheus/nginx-scale.rules.test.yml");
my (%test_le, $bad_le);
for my $ti (0 .. $#{ $tests->{tests} }) {
    for my $s (@{ $tests->{tests}[$ti]{input_series} }) {
        next unless $s->{series} =~ /^(nginx_\w+_seconds)_bucket\{(.*)\}$/;
        my ($fam, $l) = ($1, $2);
        my ($le) = $l =~ /le="([^"]+)"/;
        (my $key = $l) =~ s/,?le="[^"]+"//;
        push @{ $test_le{"$fam $key (unit test $ti)"} }, $le;
    }
}
ok(%test_le, 'the unit tests have histogram series');
for my $k (sort keys %test_le) {
    my $want = $k =~ /^nginx_http/ ? \@http_le : \@le;
    is_deeply($test_le{$k}, $want, "unit test histogram $k uses the module's buckets");
}

my ($slow) = grep { ($_->{alert} // '') eq 'NginxScaleRedisSlow' } @rules;
my ($thr) = $slow->{expr} =~ />\s*([\d.]+)\s*$/;
ok(defined $thr && grep({ $_ eq $thr } @le),
   "the NginxScaleRedisSlow threshold $thr s is a bucket boundary: p99 above it means more "
   . "than 1% of the commands were slower");
open my $rf, '<', "$root/README.md" or die;
my ($timeout) = do { local $/; <$rf> } =~ /^\| `timeout TIME;` \| `(\d+)ms` \|/m;
ok($timeout && $thr == $timeout / 2000, "that is half the default pool timeout (${\($timeout // '?')} ms)");

# histogram_quantile by hand: the rank's bucket, linear inside it; in +Inf:
# the highest finite boundary
sub p99 {
    my ($cum) = @_;                  # cumulative counts, one per @le
    my $rank = 0.99 * $cum->[-1];
    for my $i (0 .. $#le) {
        next if $cum->[$i] < $rank;
        return $le[$i - 1] if $le[$i] eq '+Inf';
        my ($lo, $below) = $i ? ($le[$i - 1], $cum->[$i - 1]) : (0, 0);
        return $lo + ($le[$i] - $lo) * ($rank - $below) / ($cum->[$i] - $below);
    }
}
sub round6 { my $v = shift; my $inv = 1 / 0.000001; return int($v * $inv + 0.5) / $inv }

# one pool per bucket: 1000 commands a minute, the 99th percentile inside
# that bucket (985 in the first bucket, the rest up to it)
my ($series, $samples) = ('', '');
my $rec = 'instance_pool:nginx_redis_command_duration_seconds:p99_rate5m';
for my $k (0 .. $#le) {
    my @cum = map { $_ < $k ? 985 : 1000 } 0 .. $#le;
    my $pool = "b$k";
    for my $i (0 .. $#le) {
        $series .= qq{      - series: 'nginx_redis_command_duration_seconds_bucket}
                 . qq{{job="nginx-scale",instance="$inst",pool="$pool",le="$le[$i]"}'\n}
                 . qq{        values: '0+${\ $cum[$i]}x10'\n};
    }
    $samples .= qq{          - labels: '{job="nginx-scale",instance="$inst",pool="$pool"}'\n}
              . sprintf("            value: %.17g\n", round6(p99(\@cum)));
}
{
    open my $f, '>', "$ev/p99.yml" or die;
    print $f "rule_files: [nginx-scale.rules.yml]\nevaluation_interval: 1m\ntests:\n"
           . "  - interval: 1m\n    input_series:\n$series"
           . "    promql_expr_test:\n      - expr: 'round($rec, 0.000001)'\n"
           . "        eval_time: 10m\n        exp_samples:\n$samples";
    close $f;
}
$out = `cd $ev && $promtool test rules p99.yml 2>&1`;
is($?, 0, "the p99 rule on the real buckets: p99 inside each of the " . scalar(@le)
   . " buckets as histogram_quantile puts it") or diag($out);

errlog_clean($d, 'live nginx');
done_testing();
