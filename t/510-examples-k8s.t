# vi:filetype=perl
#
# examples/k8s: every YAML file parses, and the manifests agree with the
# nginx.conf they ship (ConfigMap nginx-conf): probe paths are locations with
# health_live / health_ready, the preStop hook touches health_drain_file,
# container and Service ports match listen, the config mount matches
# `nginx -c`, the session secret file is where nginx includes it.  The
# ConfigMap is what examples/k8s/render makes of the one nginx template, and
# `nginx -t` accepts it with the built module (a test-local copy, cluster
# host names swapped for 127.0.0.1).  The Redis topology has no single point
# of failure: a StatefulSet of 3 Redis nodes with a Sentinel each, started
# by the very scripts of examples/redis-sentinel, and nginx's redis_pool and
# the app both name the Sentinels' Service and the master they monitor.
# docker-compose.yml is checked the same way against the Dockerfile,
# haproxy.cfg and the same scripts.  Plain Test::More.

use strict;
use warnings;
use Test::More;
use File::Basename qw(dirname basename);
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

BEGIN {
    eval { require YAML::XS; YAML::XS->import(qw(LoadFile Load)); 1 }
        or plan skip_all => 'YAML::XS missing (libyaml-libyaml-perl, scripts/deps.sh test)';
}

my $repo  = abs_path(dirname(__FILE__) . '/..');
my $k8s   = "$repo/examples/k8s";
my $so    = $ENV{TEST_NGINX_LOAD_MODULES} || $ENV{SO} || "$repo/build/modules/ngx_http_scale_module.so";
my $nginx = $ENV{TEST_NGINX_BINARY} || $ENV{NGINX} || '/usr/sbin/nginx';

sub slurp { my $f = shift; open my $fh, '<', $f or die "$f: $!"; local $/; <$fh> }

# YAML merge keys (<<: *anchor), which YAML::XS leaves as they are
sub merge_keys {
    my $n = shift;
    if (ref $n eq 'HASH') {
        my %h;
        if (my $m = delete $n->{'<<'}) {
            %h = map { %{ merge_keys($_) } } ref $m eq 'ARRAY' ? @$m : ($m);
        }
        $h{$_} = merge_keys($n->{$_}) for keys %$n;
        return \%h;
    }
    return [map { merge_keys($_) } @$n] if ref $n eq 'ARRAY';
    return $n;
}

# ------------------------------------------------------------- parse all --
my (%obj, @docs);
for my $f (sort glob("$k8s/*.yaml"), sort glob("$k8s/*.yml")) {
    my @d = eval { LoadFile($f) };
    ok(!$@, basename($f) . ' parses') or diag($@);
    for my $d (grep { defined } @d) {
        ok($d->{apiVersion} && $d->{kind}, basename($f) . ": $d->{kind} has apiVersion and kind");
        next if $d->{kind} eq 'Kustomization';
        ok($d->{metadata}{name}, basename($f) . ": $d->{kind} has a name");
        $obj{"$d->{kind}/$d->{metadata}{name}"} = $d;
        push @docs, $d;
    }
}
my $kust = LoadFile("$k8s/kustomization.yaml");
is_deeply([sort @{ $kust->{resources} }],
          [sort map { basename($_) } grep { !/kustomization/ } glob("$k8s/*.yaml")],
          'kustomization lists every manifest');

my $dep   = $obj{'Deployment/nginx'} or BAIL_OUT('no Deployment nginx');
my $app   = $obj{'Deployment/app'}   or BAIL_OUT('no Deployment app');
my $cm    = $obj{'ConfigMap/nginx-conf'} or BAIL_OUT('no ConfigMap nginx-conf');
my $sec   = $obj{'Secret/session-secret'} or BAIL_OUT('no Secret session-secret');
is($app->{spec}{replicas}, 3, 'app: 3 replicas');
is($dep->{spec}{replicas}, 2, 'nginx: 2 replicas');

my $pod  = $dep->{spec}{template}{spec};
my ($c)  = grep { $_->{name} eq 'nginx' } @{ $pod->{containers} };
my %vol  = map { $_->{name} => $_ } @{ $pod->{volumes} };
my @mnt  = @{ $c->{volumeMounts} };

# selectors match their pod templates
my %workload;    # name -> Deployment or StatefulSet
for my $d (grep { $_->{kind} eq 'Deployment' || $_->{kind} eq 'StatefulSet' } @docs) {
    $workload{ $d->{metadata}{name} } = $d;
    is_deeply({ map { $_ => $d->{spec}{template}{metadata}{labels}{$_} } keys %{ $d->{spec}{selector}{matchLabels} } },
              $d->{spec}{selector}{matchLabels}, "$d->{kind} $d->{metadata}{name}: selector matches its pods");
}

# ------------------------------------------------- the config nginx runs --
my %args = @{ $c->{args} }[1 .. $#{ $c->{args} }];
is($c->{args}[0], 'nginx', 'container runs nginx');
my $conf_path = $args{'-c'};
ok($conf_path, "nginx -c $conf_path");
my ($conf_mnt) = grep { $conf_path eq "$_->{mountPath}/" . basename($conf_path)
                        || ($_->{subPath} && $conf_path eq $_->{mountPath}) } @mnt;
ok($conf_mnt, 'the nginx -c path is inside a volume mount');
my $conf_key = $conf_mnt && $conf_mnt->{subPath} ? $conf_mnt->{subPath} : basename($conf_path);
is($vol{$conf_mnt->{name}}{configMap}{name}, 'nginx-conf', 'that mount is the ConfigMap nginx-conf');
my $conf = $cm->{data}{$conf_key};
ok(defined $conf, "ConfigMap has key $conf_key");

# one source of truth: the ConfigMap is the rendered template
my $rendered = `$k8s/render`;
is($?, 0, 'examples/k8s/render runs');
is(slurp("$k8s/nginx-configmap.yaml"), $rendered,
   'nginx-configmap.yaml is up to date with examples/nginx/nginx.conf.template (run examples/k8s/render)');

# --------------------------------------------------- ports and probes --
my @listen = $conf =~ /^\s*listen\s+(?:[^\s;]*:)?(\d+)[\s;]/mg;
ok(@listen, "nginx.conf listens on @listen");
my %cport = map { ($_->{name} // '') => $_->{containerPort} } @{ $c->{ports} };
my %lport = map { $_ => 1 } @listen;
ok($lport{$_}, "containerPort $_ is a listen port") for values %cport;

sub port_of { my $p = shift; return $p =~ /^\d+$/ ? $p : $cport{$p} }

# location path -> its body
my %loc;
while ($conf =~ /^\s*location\s+(?:=\s*)?(\S+)\s*\{(.*?)^\s*\}/msg) { $loc{$1} = $2 }

for my $probe (['livenessProbe', 'health_live'], ['readinessProbe', 'health_ready']) {
    my ($name, $directive) = @$probe;
    my $g = $c->{$name}{httpGet};
    ok($g, "$name is an httpGet") or next;
    ok($lport{ port_of($g->{port}) // -1 }, "$name port $g->{port} is a listen port");
    ok(defined $loc{ $g->{path} }, "$name path $g->{path} is a location");
    like($loc{ $g->{path} } // '', qr/^\s*\Q$directive\E\s*;/m, "$name path $g->{path} has $directive");
}
my %ann = %{ $dep->{spec}{template}{metadata}{annotations} || {} };
if ($ann{'prometheus.io/path'}) {
    like($loc{ $ann{'prometheus.io/path'} } // '', qr/^\s*health_metrics\s*;/m,
         "scrape path $ann{'prometheus.io/path'} has health_metrics");
    ok($lport{ $ann{'prometheus.io/port'} }, 'scrape port is a listen port');
}

# --------------------------------------------------- drain on preStop --
my ($drain) = $conf =~ /^\s*health_drain_file\s+(\S+?);/m;
ok($drain, "health_drain_file $drain");
my $pre = join ' ', @{ $c->{lifecycle}{preStop}{exec}{command} || [] };
like($pre, qr/\btouch\s+\Q$drain\E(\s|;|&|$)/, 'preStop touches the health_drain_file');
like($pre, qr/\bsleep\s+(\d+)/, 'preStop waits');
my ($wait) = $pre =~ /\bsleep\s+(\d+)/;
cmp_ok($wait // 999, '<', $pod->{terminationGracePeriodSeconds} // 30, 'the wait fits in terminationGracePeriodSeconds');
my $rp = $c->{readinessProbe};
cmp_ok(($rp->{periodSeconds} // 10) * ($rp->{failureThreshold} // 3), '<', $wait // 0,
       'readiness notices the drain before preStop ends');
ok((grep { index($drain, "$_->{mountPath}/") == 0 && $vol{ $_->{name} }{emptyDir} && !$_->{readOnly} } @mnt),
   'the drain file is on a writable emptyDir');

# --------------------------------------------------- session secret --
my ($inc) = $conf =~ /^\s*include\s+(\S*secret\S*?);/m;
ok($inc, "session secret include $inc");
my ($sm) = grep { index($inc, "$_->{mountPath}/") == 0 } @mnt;
ok($sm, 'the include is inside a volume mount');
my $sv = $sm ? $vol{ $sm->{name} }{secret} : undef;
is($sv->{secretName}, 'session-secret', 'that mount is the Secret session-secret');
my $rel = substr($inc, length($sm->{mountPath}) + 1);
my ($item) = grep { $_->{path} eq $rel } @{ $sv->{items} || [] };
my $key = $item ? $item->{key} : $rel;
my $secret_conf = $sec->{stringData}{$key};
ok(defined $secret_conf, "Secret has $key");
my @nginx_secrets = ($secret_conf // '') =~ /session_redis_secret\s+"([^"]*)"/g;
my ($env) = grep { $_->{name} eq 'SESSION_SECRET' } @{ $app->{spec}{template}{spec}{containers}[0]{env} };
is($env->{valueFrom}{secretKeyRef}{name}, 'session-secret', 'app reads SESSION_SECRET from the same Secret');
my @app_secrets = split /\s*,\s*/, $sec->{stringData}{ $env->{valueFrom}{secretKeyRef}{key} } // '';
is_deeply([sort @nginx_secrets], [sort @app_secrets], 'nginx verifies with the secret(s) the app signs with');

# --------------------------------------------------- services --
sub svc_ok {
    my ($svc, $deploy, $port_in_conf, $what) = @_;
    my $s = $obj{"Service/$svc"};
    ok($s, "Service $svc") or return;
    my $pods = $workload{$deploy}{spec}{template};
    is_deeply({ map { $_ => $pods->{metadata}{labels}{$_} } keys %{ $s->{spec}{selector} } },
              $s->{spec}{selector}, "Service $svc selects the $deploy pods");
    my %ports = map { ($_->{name} // '') => $_->{containerPort} }
                map { @{ $_->{ports} || [] } } @{ $pods->{spec}{containers} };
    for my $p (@{ $s->{spec}{ports} }) {
        my $t = $p->{targetPort} // $p->{port};
        $t = $ports{$t} if $t !~ /^\d+$/;
        ok(defined $t && grep({ $_ == $t } values %ports), "Service $svc targetPort is a container port of $deploy");
        is($p->{port}, $port_in_conf, "Service $svc port matches $what") if defined $port_in_conf;
    }
    return $s;
}
svc_ok('nginx', 'nginx', undef, '');

# --------------------------------------------------- Redis: no single point of failure --
my ($pool) = $conf =~ /^\s*redis_pool\s+main\s*\{(.*?)\}/ms;
my @sent = ($pool // '') =~ /^\s*sentinel\s+([^\s:;]+):(\d+);/mg;
my ($master) = ($pool // '') =~ /^\s*master\s+(\S+);/m;
ok(@sent >= 2, 'redis_pool main names the Sentinels: ' . join(' ', @sent));
ok(($pool // '') !~ /^\s*server\s/m, 'redis_pool main has no `server`: nothing between nginx and Redis');
my %sent = @sent;
for my $h (sort keys %sent) {
    svc_ok($h, 'redis', $sent{$h}, "redis_pool's sentinel $h");
}
my $rs = $workload{redis};
ok($rs && $rs->{kind} eq 'StatefulSet', 'Redis is a StatefulSet');
is($rs->{spec}{replicas}, 3, 'Redis: 3 pods (1 master + 2 replicas)');
my $hl = $obj{"Service/$rs->{spec}{serviceName}"};
is($hl->{spec}{clusterIP}, 'None', "its governing Service $rs->{spec}{serviceName} is headless");
ok($hl->{spec}{publishNotReadyAddresses}, 'and publishes pod names before they are ready (first start)');
my $rpod = $rs->{spec}{template}{spec};
my %rc = map { $_->{name} => $_ } @{ $rpod->{containers} };
my %rvol = map { $_->{name} => $_ } @{ $rpod->{volumes} };
my %envof;
for my $cn (sort keys %rc) {
    $envof{$cn} = { map { $_->{name} => $_->{value} // $_->{valueFrom} } @{ $rc{$cn}{env} || [] } };
}
my ($sc) = grep { "@{ $_->{command} || [] }" =~ /sentinel-start\.sh/ } values %rc;
my ($rc) = grep { "@{ $_->{command} || [] }" =~ /redis-start\.sh/ } values %rc;
ok($rc, 'a Redis container starts through redis-start.sh');
ok($sc, 'a Sentinel container starts through sentinel-start.sh');
for my $x ([$rc, 'redis-start.sh'], [$sc, 'sentinel-start.sh']) {
    my ($cont, $script) = @$x;
    next unless $cont;
    my ($path) = grep { m{/\Q$script\E$} } @{ $cont->{command} };
    my ($m) = grep { index($path, "$_->{mountPath}/") == 0 } @{ $cont->{volumeMounts} || [] };
    my $cmn = $m ? $rvol{ $m->{name} }{configMap}{name} : undef;
    ok($cmn, "$script is in a ConfigMap volume ($cmn)") or next;
    is($obj{"ConfigMap/$cmn"}{data}{$script}, slurp("$repo/examples/redis-sentinel/$script"),
       "ConfigMap $cmn: $script is examples/redis-sentinel/$script");
    my %e = %{ $envof{ $cont->{name} } };
    is($e{MASTER_NAME} // 'mymaster', $master, "$cont->{name}: MASTER_NAME is the pool's master $master");
    like($e{FIRST_MASTER} // '', qr/^$rs->{metadata}{name}-0\.$rs->{spec}{serviceName}(\.|$)/,
         "$cont->{name}: FIRST_MASTER is pod 0 by its stable name");
    my @asks = map { [split /:/] } split ' ', $e{SENTINELS} // '';
    ok(@asks && !grep({ !defined $sent{ $_->[0] } || $sent{ $_->[0] } != $_->[1] } @asks),
       "$cont->{name}: asks the Sentinels nginx asks ($e{SENTINELS})");
}
my %se = $sc ? %{ $envof{ $sc->{name} } } : ();
is($se{QUORUM}, 2, 'Sentinel quorum 2 (of 3)');
ok(($se{DOWN_AFTER_MS} // 0) >= 1000, "down-after $se{DOWN_AFTER_MS} ms");
my %ae = map { $_->{name} => $_->{value} } @{ $app->{spec}{template}{spec}{containers}[0]{env} };
ok(!defined $ae{REDIS_URL}, 'app: no fixed REDIS_URL');
is(join(' ', sort split /\s*,\s*/, $ae{REDIS_SENTINELS} // ''), join(' ', sort map { "$_:$sent{$_}" } keys %sent),
   'app: REDIS_SENTINELS are the Sentinels nginx asks');
is($ae{REDIS_MASTER_NAME}, $master, "app: REDIS_MASTER_NAME is $master");
my ($upstream) = $conf =~ /^\s*upstream\s+app\s*\{(.*?)\}/ms;
my ($ahost, $aport, $resolve) = ($upstream // '') =~ /^\s*server\s+([^\s:]+):(\d+)([^;]*);/m;
like($ahost // '', qr/^app(\.|$)/, 'upstream app points at the Service app');
my $as = svc_ok('app', 'app', $aport, 'the upstream server port');
is($as->{spec}{clusterIP}, 'None', 'Service app is headless (nginx balances over the pods)')
    if ($resolve // '') =~ /\bresolve\b/;
like($conf, qr/^\s*resolver\s+\S+/m, 'a resolver for `resolve`') if ($resolve // '') =~ /\bresolve\b/;

# --------------------------------------------------- nginx -t --
SKIP: {
    skip "module $so not built", 2 unless -f $so;
    my $d = tempdir(CLEANUP => 1);
    my $t = $conf;
    my $redis = '127.0.0.1:' . ($ENV{TEST_NGINX_REDIS_PORT} || 6379);
    $t =~ s{^(\s*load_module\s+)\S+;}{$1$so;}m;
    $t =~ s{^(\s*sentinel\s+)\Q$_\E:\d+;}{${1}127.0.0.1:26379;}mg for keys %sent;
    $t =~ s{\b\Q$ahost\E:}{127.0.0.1:}g;
    my @v = `$nginx -v 2>&1` =~ m{nginx/(\d+)\.(\d+)\.(\d+)};
    # `server ... resolve` is open source nginx >= 1.27.3
    $t =~ s{(^\s*server\s+\S+)\s+resolve\b}{$1}mg
        if sprintf('%03d%03d%03d', @v) lt '001027003';
    $t =~ s{^(\s*resolver\s+)\S+}{${1}127.0.0.1}m;
    $t =~ s{\Q$inc\E}{$d/session-secret.conf}g;
    $t =~ s{\Q$drain\E}{$d/drain}g;
    $t =~ s{^(\s*pid\s+)\S+;}{$1$d/nginx.pid;}m;
    open my $fh, '>', "$d/session-secret.conf" or die; print $fh $secret_conf; close $fh;
    open $fh, '>', "$d/nginx.conf" or die; print $fh $t; close $fh;
    my $out = `$nginx -t -e stderr -p $d -c $d/nginx.conf 2>&1`;
    is($?, 0, 'nginx -t accepts the ConfigMap nginx.conf (test-local copy)') or diag($out);
    like($out, qr/test is successful/, 'nginx -t: test is successful');
}

# the native Sentinel recipe of examples/redis-sentinel, rendered as its
# README says: nginx -t accepts it
SKIP: {
    skip "module $so not built", 2 unless -f $so;
    my $d = tempdir(CLEANUP => 1);
    local @ENV{qw(SENTINEL1_ADDR SENTINEL2_ADDR SENTINEL3_ADDR)} =
        ('127.0.0.1:26379', '127.0.0.1:26380', '127.0.0.1:26381');
    my $inc = `$repo/examples/nginx/render $repo/examples/redis-sentinel/nginx-sentinel.conf`;
    is($?, 0, 'examples/redis-sentinel/nginx-sentinel.conf renders');
    open my $fh, '>', "$d/nginx.conf" or die;
    print $fh "load_module $so;\npid $d/nginx.pid;\nevents {}\nhttp {\n$inc\n"
        . "ratelimit_redis_zone \$binary_remote_addr zone=z rate=1r/s pool=main;\n}\n";
    close $fh;
    my $out = `$nginx -t -e stderr -p $d -c $d/nginx.conf 2>&1`;
    like($out, qr/test is successful/, 'nginx -t accepts nginx-sentinel.conf') or diag($out);
}

# --------------------------------------------------- docker compose --
my $dc = "$repo/examples/docker/docker-compose.yml";
SKIP: {
    skip 'no docker-compose.yml', 1 unless -f $dc;
    my $y = eval { merge_keys(LoadFile($dc)) };
    ok($y && $y->{services}, 'docker-compose.yml parses') or last;
    my $s = $y->{services};
    ok($s->{$_}, "compose service $_") for qw(redis1 redis2 redis3 sentinel1 sentinel2 sentinel3 app nginx1 nginx2 haproxy);
    ok(!$s->{redis}, 'no single Redis service');
    for my $n (qw(redis1 redis2 redis3 sentinel1 sentinel2 sentinel3)) {
        my $script = $n =~ /^redis/ ? 'redis-start.sh' : 'sentinel-start.sh';
        my ($v) = grep { m{/\Q$script\E:} } @{ $s->{$n}{volumes} || [] };
        my ($src, $dst) = split /:/, $v // '';
        ok($src && -f "$repo/examples/docker/$src" && $src =~ m{redis-sentinel/\Q$script\E$},
           "$n runs examples/redis-sentinel/$script");
        like("@{ $s->{$n}{entrypoint} || [] }", qr/\Q$dst\E/, "$n: its entrypoint is that script") if $dst;
        is($s->{$n}{environment}{FIRST_MASTER}, 'redis1', "$n: redis1 is master on the first start");
        is($s->{$n}{environment}{SENTINELS}, 'sentinel1:26379 sentinel2:26379 sentinel3:26379',
           "$n: asks the three Sentinels");
    }
    for my $n (qw(nginx1 nginx2)) {
        my $rs = $s->{$n}{environment}{REDIS_SERVERS} // '';
        is(join(' ', $rs =~ /sentinel\s+(\S+);/g), 'sentinel1:26379 sentinel2:26379 sentinel3:26379',
           "$n: redis_pool names the three Sentinels");
        like($rs, qr/\bmaster\s+mymaster;/, "$n: master mymaster");
        unlike($rs, qr/\bserver\s/, "$n: no `server` (nothing between nginx and Redis)");
    }
    is($s->{app}{environment}{REDIS_SENTINELS}, 'sentinel1:26379,sentinel2:26379,sentinel3:26379',
       'app: REDIS_SENTINELS');
    my $df = slurp("$repo/examples/docker/Dockerfile");
    my ($listen) = $df =~ /NGINX_LISTEN=(\d+)/;
    ok($listen, "Dockerfile: nginx listens on $listen");
    my %he = %{ $s->{haproxy}{environment} || {} };
    for my $n (1, 2) {
        like($he{"NGINX${n}_ADDR"} // '', qr/^nginx$n:\Q$listen\E$/, "haproxy NGINX${n}_ADDR is nginx$n:$listen");
    }
    my ($cfg) = grep { /haproxy\.cfg/ } @{ $s->{haproxy}{volumes} || [] };
    my ($src) = split /:/, $cfg // '';
    ok($src && -f "$repo/examples/docker/$src", "haproxy.cfg mounted from $src");
    like(slurp("$repo/examples/haproxy/haproxy.cfg"), qr/option httpchk GET \/api\/ready/,
         'haproxy checks /api/ready');
    ok(!$s->{app}{ports} && !$s->{app}{container_name}, 'app has no fixed host port or name (--scale app=3)');
    like($df, qr{COPY\s+examples/nginx/nginx\.conf\.template\s}, 'the image uses the one nginx template');
}

done_testing();
