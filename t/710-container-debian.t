# The Debian-based image (examples/docker/debian.Dockerfile), built and run
# here with podman.  No registry is reachable, so the base is made locally:
# examples/docker/debian-base debootstraps bookworm (minbase, apt's own
# mirror; one tarball a day in /var/tmp/nginx-scale-debootstrap) and imports
# it as localhost/debian:bookworm.  The test builds the nginx image from the
# package `make deb` built and a Redis image from the same base, runs Redis
# and two nginx containers on host networking (all traffic on 127.0.0.1,
# free test ports) in front of the example app, and proves through them
# what the demo proves: a limit exact across both instances, a session
# valid on both, /api/ready and /api/metrics answering.  Every container and
# image it made is removed, also on failure (END).
#
# podman settings found to work on this machine: --runtime runc,
# --network=host, --ulimit nofile=1024:1024 --ulimit nproc=1024:1024.

use strict;
use warnings;
use FindBin;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

our ($work, $repo, $build);
BEGIN {
    require "$FindBin::Bin/helpers/scale.pl";
    require "$FindBin::Bin/helpers/package.pl";
}

our (@podman, @podman_limits, @podman_build);
my @limits = @podman_limits;
my $base   = 'localhost/debian:bookworm';
my $log    = "$work/t710.log";

# skipped only where podman cannot run at all
podman_skip($log);

my $id   = "nginx-scale-t710-$$-" . int(rand(1e6));
my $img  = "localhost/$id:debian";
my $rimg = "localhost/$id-redis:latest";
my (@containers, @images, $base_id, $app1, $app2);

$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { exit 1 };
END {
    local $?;
    kill 'TERM', grep { $_ } $app1, $app2;
    remove_all();
}

sub remove_all {
    podman_remove(\@containers, [@images, $base_id ? ($base_id) : ()]);
    @images = ();
    $base_id = undef;
}

# ---------------------------------------------------------- the package --
my $deb = package_deb(0, $log);
ok($deb, 'the package is built') or diag(log_tail($log, 30));
unless ($deb) { done_testing(); exit }
my $version = code_version();

# ------------------------------------------------------------- the base --
my ($base_ok, $made) = podman_base($base);
$base_id = $made;
ok($base_ok, $made ? "examples/docker/debian-base made $base" : "$base exists: used as it is")
    or do { done_testing(); exit };

# ----------------------------------------------------------- the images --
my @build = (@podman_build, '--format', 'docker', '--build-arg', "BASE_IMAGE=$base");
ok(run_cmd(900, "$work/build.log", @build,
           '--ignorefile', "$repo/examples/docker/debian.Dockerfile.dockerignore",
           '-f', "$repo/examples/docker/debian.Dockerfile", '-t', $img, $repo),
   "podman build examples/docker/debian.Dockerfile from $base")
    or diag(log_tail("$work/build.log", 30));
push @images, image_id($img) || ();

mkdir "$work/redis";
open my $cf, '>', "$work/redis/Containerfile" or die $!;
print $cf <<'_EOF_';
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
_EOF_
close $cf;
ok(run_cmd(900, "$work/build.log", @build, '-t', $rimg, "$work/redis"),
   "podman build a Redis image from $base")
    or diag(log_tail("$work/build.log", 30));
push @images, image_id($rimg) || ();
unless (@images == 2) { done_testing(); exit }

my $pv = out_cmd(60, @podman, 'run', '--rm', '--network=host', @limits,
                 '--entrypoint', 'dpkg-query', $img,
                 '-W', '-f=${Version} ${Status}\n', 'libnginx-mod-http-scale', 'nginx');
like($pv, qr/^\Q$version\E install ok installed$/m,
     "the image has libnginx-mod-http-scale $version installed");
like($pv, qr/^1\.22\.\S+ install ok installed$/m, "with Debian's nginx 1.22");

# --------------------------------------------------------------- Redis --
my $rp = free_port();
my $rname = "$id-redis";
push @containers, $rname;
ok(run_cmd(60, $log, @podman, 'run', '-d', '--name', $rname, '--network=host',
           @limits, $rimg, 'redis-server', '--port', $rp, '--bind', '127.0.0.1',
           '--save', '', '--appendonly', 'no'),
   "Redis container on 127.0.0.1:$rp") or diag(log_tail($log));
my $pong = 0;
for (1 .. 100) { $pong = 1, last if out_cmd(5, 'redis-cli', '-p', $rp, 'ping') =~ /PONG/; sleep 0.1 }
ok($pong, 'Redis in its container answers');

# ------------------------------------------------- the app, on the host --
my $app_dir = "$repo/examples/app";
my $secret  = "t710 secret $$";
unless (-d "$app_dir/node_modules") {
    run_cmd(300, "$work/npm.log", 'sh', '-c',
            "cd '$app_dir' && npm ci --omit=dev --no-audit --no-fund")
        or diag('npm ci failed: ' . log_tail("$work/npm.log", 5));
}
my ($ap1, $ap2) = (free_port(), free_port());
sub start_app {
    my ($port, $name) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>', "$work/$name.log"; open STDERR, '>&', \*STDOUT;
        $ENV{PORT} = $port; $ENV{INSTANCE_ID} = $name;
        $ENV{SESSION_SECRET} = $secret; $ENV{REDIS_URL} = "redis://127.0.0.1:$rp";
        { exec 'timeout', '600', 'node', "$app_dir/server.js" }
        POSIX::_exit(1);
    }
    return $pid;
}
$app1 = start_app($ap1, 'app1');
$app2 = start_app($ap2, 'app2');
my $apps = 0;
for (1 .. 100) {
    $apps = grep { (get("http://127.0.0.1:$_/healthz", 1))[0] == 200 } $ap1, $ap2;
    last if $apps == 2;
    sleep 0.1;
}
is($apps, 2, 'two app instances answer on the host') or diag(log_tail("$work/app1.log"));

# --------------------------------------------------------- nginx x 2 --
my %port = (nginx1 => free_port(), nginx2 => free_port());
for my $n (sort keys %port) {
    push @containers, "$id-$n";
    ok(run_cmd(60, $log, @podman, 'run', '-d', '--name', "$id-$n", '--network=host',
               @limits, '--no-healthcheck',
               '-e', "NGINX_LISTEN=127.0.0.1:$port{$n}",
               '-e', "NGINX_INSTANCE=$n",
               '-e', 'NGINX_WORKERS=2',
               '-e', "REDIS_SERVER=127.0.0.1:$rp",
               '-e', "APP_SERVERS=server 127.0.0.1:$ap1 max_fails=1 fail_timeout=5s; "
                     . "server 127.0.0.1:$ap2 max_fails=1 fail_timeout=5s;",
               '-e', 'TRUSTED_PROXY=127.0.0.1',
               '-e', 'METRICS_ALLOW=127.0.0.1',
               '-e', "SESSION_SECRET=$secret",
               $img),
       "$n container on 127.0.0.1:$port{$n}") or diag(log_tail($log));
}

my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 1);
my %up;
for (1 .. 150) {
    for my $n (keys %port) {
        $up{$n} ||= $http->get("http://127.0.0.1:$port{$n}/api/health")->{status} == 200;
    }
    last if keys(%up) == 2 && !grep { !$_ } values %up;
    sleep 0.2;
}
for my $n (sort keys %port) {
    ok($up{$n}, "$n: /api/health 200")
        or diag(out_cmd(30, @podman, 'logs', '--tail', '20', "$id-$n"));
}

# ------------------------------------------------ /api/ready, /api/metrics --
for my $n (sort keys %port) {
    my $r;
    for (1 .. 50) {     # ready once the workers' Redis connections are up
        $r = $http->get("http://127.0.0.1:$port{$n}/api/ready");
        last if $r->{status} == 200;
        sleep 0.2;
    }
    is($r->{status}, 200, "$n: /api/ready 200 (Redis up, apps up)")
        or diag($r->{content});
}

# --------------------------------------------- a limit exact across both --
# api_test: 100 requests a minute per client, shared through Redis; 200
# requests alternate between the two instances, inside one Redis minute
wait_redis_window($rp, 60, 15);
my (%code, %rej);
for my $i (1 .. 200) {
    my $n = $i % 2 ? 'nginx1' : 'nginx2';
    my $r = $http->get("http://127.0.0.1:$port{$n}/api/test");
    $code{$r->{status}}++;
    $rej{$n}++ if $r->{status} == 429;
}
is($code{200} // 0, 100, '100 of 200 requests admitted at 100/min across both nginx');
is($code{429} // 0, 100, 'the other 100 answered 429');
ok(($rej{nginx1} // 0) > 0 && ($rej{nginx2} // 0) > 0,
   "both instances enforce the shared limit (429s: nginx1=" . ($rej{nginx1} // 0)
   . ' nginx2=' . ($rej{nginx2} // 0) . ')');

my $rejected = 0;
for my $n (sort keys %port) {
    my $r = $http->get("http://127.0.0.1:$port{$n}/api/metrics");
    is($r->{status}, 200, "$n: /api/metrics 200");
    like($r->{content}, qr/^nginx_scale_info\{version="\Q$version\E"/m,
         "$n: nginx_scale_info{version=\"$version\"}");
    $rejected += $1 if $r->{content}
        =~ /^nginx_ratelimit_redis_requests_total\{zone="api_test",result="rejected"\} (\d+)$/m;
}
is($rejected, 100, 'the two instances\' metrics add up to the 100 rejections');

# ------------------------------------------------ a session valid on both --
my $r = $http->post("http://127.0.0.1:$port{nginx1}/api/login", {
    headers => { 'Content-Type' => 'application/json' },
    content => '{"user":"alice"}',
});
is($r->{status}, 200, 'login through nginx1');
my $sc = $r->{headers}{'set-cookie'} // '';
my ($cookie) = (ref $sc ? "@$sc" : $sc) =~ /(connect\.sid=[^;]+)/;
ok($cookie, 'the app set connect.sid');
for my $n (sort keys %port) {
    my $p = $http->get("http://127.0.0.1:$port{$n}/api/profile",
                       { headers => { Cookie => $cookie // '' } });
    is($p->{status}, 200, "$n: /api/profile with the cookie: 200");
    like($p->{content} // '', qr/"user":"alice"/, "$n: the app got X-User-Id alice from nginx");
    is($p->{headers}{'x-nginx-instance'}, $n, "$n answered");
    is($http->get("http://127.0.0.1:$port{$n}/api/profile")->{status}, 401,
       "$n: no cookie: 401");
}

# ------------------------------------------------------------ the logs --
for my $n (sort keys %port) {
    my $l = out_cmd(30, @podman, 'logs', "$id-$n");
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal \d+|core dumped/ }
              split /\n/, $l;
    ok(!@bad, "$n: its log has no [alert], [emerg], [crit] or crash")
        or diag(join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
}

# ----------------------------------------------------- nothing left over --
my @made = (@images, $base_id ? ($base_id) : ());
kill 'TERM', $app1, $app2;
remove_all();
is(out_cmd(30, @podman, 'ps', '-a', '-q', '--filter', "name=$id"), '',
   'no container of this test is left');
my $left = grep { run_cmd(30, $log, @podman, 'image', 'exists', $_) } @made;
is($left, 0, 'no image this test made is left (' . scalar(@made) . ' removed)');

done_testing();
