# The official-image Dockerfile (examples/docker/Dockerfile), built with
# podman as far as this machine allows.  Its base, the official nginx image,
# cannot be pulled here and its build stage downloads nginx's source, so the
# test builds a copy of the Dockerfile with two stand-ins: NGINX_IMAGE is
# the local Debian base plus Debian's nginx (built --with-compat, like the
# official one) and nginx-dev's source tree of that version, and the
# download line becomes a copy of that tree.  Everything else is the
# Dockerfile as shipped: the context its .dockerignore lets through, the
# version read from `nginx -v`, scripts/build.sh with NGINX_SRC, `nginx -t`
# loading the module, the runtime image with libhiredis.
# Every image it made is removed (END).

use strict;
use warnings;
use FindBin;
use Test::More;

our ($work, $repo);
BEGIN {
    require "$FindBin::Bin/helpers/scale.pl";
    require "$FindBin::Bin/helpers/package.pl";
}
our (@podman, @podman_limits, @podman_build);

my $base = 'localhost/debian:bookworm';
my $log  = "$work/t711.log";
podman_skip($log);

my $id = "nginx-scale-t711-$$-" . int(rand(1e6));
my (@images, $base_id);
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { exit 1 };
END {
    local $?;
    podman_remove([], [@images, $base_id ? ($base_id) : ()]);
}

my ($base_ok, $made) = podman_base($base);
$base_id = $made;
ok($base_ok, $made ? "examples/docker/debian-base made $base" : "$base exists: used as it is")
    or do { done_testing(); exit };

# the stand-in for the official image: Debian's nginx, with the host's
# nginx-dev source tree of the same version (its -dev dependencies are not
# needed to build a module, and would double the time)
mkdir "$work/standin";
ok(run_cmd(60, $log, 'cp', '-a', '/usr/share/nginx/src', "$work/standin/nginx-src"),
   "nginx-dev's source tree for the stand-in");
open my $cf, '>', "$work/standin/Containerfile" or die $!;
print $cf <<'_EOF_';
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*
COPY nginx-src /usr/share/nginx/src
_EOF_
close $cf;
my $standin = "localhost/$id-nginx:standin";
ok(run_cmd(900, "$work/build.log", @podman_build, '--build-arg', "BASE_IMAGE=$base",
           '-t', $standin, "$work/standin"),
   'stand-in for the nginx image: Debian nginx + its source')
    or diag(log_tail("$work/build.log", 20));
push @images, image_id($standin) || ();
my ($nv) = out_cmd(60, @podman, 'run', '--rm', '--network=host', @podman_limits,
                   $standin, 'sh', '-c', 'nginx -v 2>&1') =~ m{nginx/([\d.]+)};
my $hv = `/usr/sbin/nginx -v 2>&1` =~ m{nginx/([\d.]+)} ? $1 : '';
ok($nv && $nv eq $hv, "its nginx: " . ($nv // 'none') . ", the source's: $hv");

# the Dockerfile, with the download replaced by that tree
open my $df, '<', "$repo/examples/docker/Dockerfile" or die $!;
my $dockerfile = do { local $/; <$df> };
my $n = $dockerfile =~ s{^\s*curl -fsSL "https://nginx\.org/download/nginx-\$\{version\}\.tar\.gz" -o nginx\.tar\.gz; \\\n\s*tar xzf nginx\.tar\.gz; \\\n}
                        {    cp -a /usr/share/nginx/src "/src/nginx-\${version}"; \\\n}m;
is($n, 1, 'the Dockerfile downloads nginx-${version} source in its build stage (replaced)');
open $df, '>', "$work/Dockerfile" or die $!;
print $df $dockerfile;
close $df;

my $img = "localhost/$id:official";
ok(run_cmd(1200, "$work/build.log", @podman_build,
           '--ignorefile', "$repo/examples/docker/Dockerfile.dockerignore",
           '--build-arg', "NGINX_IMAGE=$standin",
           '-f', "$work/Dockerfile", '-t', $img, $repo),
   'podman build examples/docker/Dockerfile (NGINX_IMAGE=the stand-in)')
    or diag(log_tail("$work/build.log", 30));
push @images, image_id($img) || ();

my $blog = do { open my $f, '<', "$work/build.log"; local $/; <$f> // '' };
like($blog, qr/^\+ version=\Q$nv\E$/m, "the build stage read the image's version ($nv)")
    if $nv;
like($blog, qr{^-rwx\S* .* /src/build/modules/ngx_http_scale_module\.so$}m,
     'scripts/build.sh built the module against that source');
like($blog, qr{^nginx: configuration file /tmp/t\.conf test is successful$}m,
     'the build stage ended with nginx -t loading it');

# the runtime image: the module and its libraries are there, nginx loads it
my $t = out_cmd(60, @podman, 'run', '--rm', '--network=host', @podman_limits,
                '--entrypoint', 'sh', $img, '-c',
                'printf "load_module modules/ngx_http_scale_module.so;\nevents {}\n"'
                . ' >/tmp/t.conf && nginx -t -c /tmp/t.conf 2>&1'
                . ' && ls /etc/nginx/templates');
like($t, qr/test is successful/, 'the runtime image\'s nginx loads the module');
like($t, qr/^nginx\.conf\.template$/m, 'and has the nginx template');

my @made = (@images, $base_id ? ($base_id) : ());
podman_remove([], [@images, $base_id ? ($base_id) : ()]);
$base_id = undef;
my $left = grep { run_cmd(30, $log, @podman, 'image', 'exists', $_) } @made;
is($left, 0, 'no image this test made is left (' . scalar(@made) . ' removed)');

done_testing();
