# The README is the reference: its complete configuration must pass
# nginx -t, and every directive the modules define must be documented.

use strict;
use warnings;
use FindBin;
use Test::More;
use File::Temp qw(tempdir);

my $root = "$FindBin::Bin/..";
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($so) = grep { /ngx_http_scale_module\.so$/ } split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module' unless $so;

open my $f, '<', "$root/README.md" or die "README.md: $!";
my $readme = do { local $/; <$f> };

# the Synopsis configuration, as a user would copy it
my ($synopsis) = $readme =~ /^## Synopsis\n.*?^```nginx\n(.*?)^```$/ms;
ok($synopsis, 'README has a Synopsis configuration');

my $dir = tempdir('readme.XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/logs";
(my $conf = $synopsis) =~ s{load_module modules/ngx_http_scale_module\.so;}{load_module $so;};
$conf =~ s{health_drain_file \S+;}{health_drain_file $dir/drain;};
open my $c, '>', "$dir/nginx.conf" or die; print $c $conf; close $c;
my $out = `$nginx -t -p $dir -c $dir/nginx.conf -g 'pid $dir/nginx.pid; error_log $dir/logs/error.log;' 2>&1`;
is($?, 0, 'nginx -t accepts the Synopsis configuration') or diag($out);
unlike($out, qr/\[(warn|emerg|alert)\]/, 'without warnings');

# every directive of every module, with its Syntax line
my @directives;
for my $src (glob "$root/ngx_http_*.c") {
    open my $s, '<', $src or die; my $code = do { local $/; <$s> };
    while ($code =~ /ngx_command_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_null_command/gs) {
        push @directives, $1 =~ /ngx_string\("([a-z0-9_]+)"\)/g;
    }
}
ok(@directives >= 20, scalar(@directives) . ' directives found in the sources');
for my $d (@directives) {
    ok($readme =~ /Syntax:\s+\Q$d\E\b/, "$d is documented with Syntax/Default/Context");
}

# the redis_pool block's own directives are documented in its table
for my $d (qw(server username password database connect_timeout timeout connections)) {
    like($readme, qr/^\| `\Q$d\E /m, "redis_pool $d is documented");
}

done_testing();
