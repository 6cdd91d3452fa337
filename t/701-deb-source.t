# debian/ and examples/docker agree with the code, without building
# anything: the package version is the module's, the binary package is the
# one dh_nginx recognises, the snippet loads the module by the path users
# write, both Dockerfiles take their base image as a build ARG and copy what
# `config` names, docker-compose.yml parses.

use strict;
use warnings;
use FindBin;
use Test::More;

our ($repo);
BEGIN {
    require "$FindBin::Bin/helpers/scale.pl";
    require "$FindBin::Bin/helpers/package.pl";
}

sub slurp {
    open my $f, '<', "$repo/$_[0]" or return '';
    local $/;
    return <$f>;
}

my $version = code_version();
ok($version, "the code's version: " . ($version // 'none'));
my ($cl) = slurp('debian/changelog') =~ /^nginx-scale \(([^)]+)\)/;
is($cl, $version, 'debian/changelog is at the code\'s version (NGX_HTTP_SCALE_VERSION)');

my $control = slurp('debian/control');
like($control, qr/^Source: nginx-scale$/m, 'source package nginx-scale');
like($control, qr/^Package: libnginx-mod-http-scale$/m, 'binary package libnginx-mod-http-scale');
for my $bd (qw(nginx-dev libhiredis-dev libssl-dev)) {
    like($control, qr/^Build-Depends:.*?\b\Q$bd\E\b/ms, "Build-Depends $bd");
}
like($control, qr/^Depends:.*\$\{misc:Depends\}.*\$\{shlibs:Depends\}/m,
     'Depends from dh_nginx (nginx ABI) and shlibs');
like(slurp('debian/rules'), qr/^\tdh \$@ --with nginx$/m, 'debian/rules: dh $@ --with nginx');
is(slurp('debian/mod-http-scale.conf'), "load_module modules/ngx_http_scale_module.so;\n",
   'the snippet loads modules/ngx_http_scale_module.so');
like(slurp('debian/libnginx-mod-http-scale.nginx'), qr/^mod debian\/mod-http-scale\.conf$/m,
     'dh_nginx installs that snippet');

# every build dependency is installed by `make deb` first (scripts/deps.sh deb)
my ($bds) = $control =~ /^Build-Depends:(.*?)\n(?=\S)/ms;
my @bds = map { /^\s*([a-z0-9.+-]+)/ ? $1 : () } split /,/, $bds;
my $deps = slurp('scripts/deps.sh');
my ($deb_list) = $deps =~ /^deb=\(([^)]*)\)/m;
for my $bd (grep { $_ ne 'debhelper-compat' } @bds) {
    like($deb_list // '', qr/(^|\s)\Q$bd\E(\s|$)/, "scripts/deps.sh deb installs $bd");
}
like($deb_list // '', qr/(^|\s)debhelper(\s|$)/, 'and debhelper');

# both images take their base as a build ARG
like(slurp('examples/docker/Dockerfile'), qr/^ARG NGINX_IMAGE=.*?^FROM \$\{NGINX_IMAGE\}/ms,
     'Dockerfile: FROM ${NGINX_IMAGE}');
like(slurp('examples/docker/debian.Dockerfile'), qr/^ARG BASE_IMAGE=.*?^FROM \$\{BASE_IMAGE\}/ms,
     'debian.Dockerfile: FROM ${BASE_IMAGE}');

# the official-image build copies every source file `config` names
my $ignore = slurp('examples/docker/Dockerfile.dockerignore');
my @keep = map { /^!(.*)$/ ? $1 : () } split /\n/, $ignore;
my @srcs = slurp('config') =~ /\$ngx_addon_dir\/(\S+?\.[ch])\b/g;
ok(@srcs >= 10, scalar(@srcs) . ' files named in config');
my @out = grep {
    my $s = $_;
    !grep { $s eq $_ || $s =~ m{^\Q$_\E/}
            || (/^\*(\.\w+)$/ && $s !~ m{/} && $s =~ /\Q$1\E$/) } @keep
} @srcs;
is("@out", '', 'Dockerfile.dockerignore lets every one of them through');

SKIP: {
    skip 'YAML::XS not installed', 2 unless eval { require YAML::XS; 1 };
    my $y = eval { YAML::XS::Load(slurp('examples/docker/docker-compose.yml')) };
    ok($y && $y->{services}, 'docker-compose.yml parses') or diag($@);
    # YAML::XS leaves merge keys (<<: *nginx) as they are
    my @df = grep { defined } map { $_->{build}{dockerfile} }
             grep { ref $_->{build} }
             map { ($_, ref $_->{'<<'} ? $_->{'<<'} : ()) }
             values %{ $y->{services} || {} };
    my %u = map { $_ => 1 } @df;
    @df = sort keys %u;
    ok(@df && !grep({ !-f "$repo/$_" } @df),
       'every Dockerfile it builds exists: ' . join(' ', sort @df));
}

done_testing();
