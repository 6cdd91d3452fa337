# Helpers for the package and container scenarios (t/70x, t/71x): external
# commands under a time limit, the .deb that `make deb` builds, the
# project's version.  Loaded after scale.pl, in a BEGIN block so that the
# test's own END blocks (restoring the machine) run before the helpers'
# (which remove the temp dir):
#   BEGIN { require "$FindBin::Bin/helpers/scale.pl";
#           require "$FindBin::Bin/helpers/package.pl"; }

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Find;
use POSIX ();

our ($so, $work);
our $repo  = abs_path(dirname(__FILE__) . '/../..');
# `make test` names the module under its BUILD dir; the package goes there too
our $build = $so ? dirname(dirname($so)) : "$repo/build";

# run_cmd(SECONDS, LOG, CMD...): true when CMD exited 0 within SECONDS;
# its output is appended to LOG
sub run_cmd {
    my ($secs, $log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        # END blocks may run after the test's temp dir is gone
        open STDOUT, '>>', $log or open STDOUT, '>', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        { exec 'timeout', '-k', '10', $secs, @cmd }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $? == 0;
}

# out_cmd(SECONDS, CMD...): CMD's standard output (stderr discarded)
sub out_cmd {
    my ($secs, @cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>', '/dev/null';
        { exec 'timeout', '-k', '10', $secs, @cmd }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# machine_lock(NAME, SECONDS): an exclusive lock held until the test ends,
# for scenarios that change the machine (two runs from two work trees
# installing and removing the same package would trip over each other)
my @locks;
sub machine_lock {
    my ($name, $secs) = @_;
    my $fh;
    open $fh, '>', "/run/lock/$name.lock" or open $fh, '>', "/tmp/$name.lock"
        or return 0;
    my $until = time + $secs;
    until (flock $fh, 2 | 4) {          # LOCK_EX | LOCK_NB
        return 0 if time > $until;
        select undef, undef, undef, 0.5;
    }
    push @locks, $fh;
    return 1;
}

# redis_time(PORT): Redis' clock in seconds, or undef
sub redis_time {
    my ($t) = out_cmd(5, 'redis-cli', '-p', shift, 'time') =~ /^(\d+)/;
    return $t;
}

# keep at least MARGIN seconds away from a boundary of WIN-second windows
# on Redis' clock (limits count in Redis-time windows)
sub wait_redis_window {
    my ($port, $win, $margin) = @_;
    for (1 .. 240) {
        my $t = redis_time($port) // return;
        my $pos = $t % $win;
        return if $pos >= 1 && $win - $pos > $margin;
        select undef, undef, undef, 0.5;
    }
}

# installed(PACKAGE): dpkg has it installed
sub installed {
    return out_cmd(30, 'dpkg-query', '-W', '-f=${Status}', shift)
        =~ /install ok installed/;
}

# podman as it works on this machine: the runc runtime, host networking
# (all traffic on 127.0.0.1), explicit ulimits
our @podman = ('podman', '--runtime', 'runc');
our @podman_limits = ('--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024');
our @podman_build = (@podman, 'build', '--pull=never', '--network=host',
                     @podman_limits, '--layers=false');

# podman_skip(LOG): skips the whole test where podman cannot run at all
sub podman_skip {
    my $log = shift;
    plan skip_all => 'podman not found (scripts/deps.sh test installs it on Debian)'
        if system('command -v podman >/dev/null') != 0;
    plan skip_all => 'podman cannot run here: ' . log_tail($log, 3)
        unless run_cmd(60, $log, @podman, 'info');
}

sub image_id {
    my $i = out_cmd(30, @podman, 'image', 'inspect', '--format', '{{.Id}}', shift);
    chomp $i;
    return $i;
}

# podman_base(IMAGE): IMAGE as it is when present, else made by
# examples/docker/debian-base; returns (ok, id of an image this made)
sub podman_base {
    my $image = shift;
    return (1, undef) if run_cmd(30, '/dev/null', @podman, 'image', 'exists', $image);
    my ($id) = out_cmd(1500, "$repo/examples/docker/debian-base", $image)
               =~ /([0-9a-f]{64})\s*$/;
    return ($id ? 1 : 0, $id);
}

# podman_remove(CONTAINERS, IMAGES): removes them; images by id, so that a
# tag another run moved meanwhile is not touched
sub podman_remove {
    my ($c, $i) = @_;
    run_cmd(60, '/dev/null', @podman, 'rm', '-f', '-t', '5', $_) for @$c;
    run_cmd(120, '/dev/null', @podman, 'rmi', $_) for @$i;
    @$c = ();
    @$i = ();
}

# the last lines of a log, for diag
sub log_tail {
    my ($log, $n) = @_;
    open my $f, '<', $log or return "($log: $!)";
    my @l = <$f>;
    return join '', @l[($#l >= ($n || 20) ? $#l - ($n || 20) + 1 : 0) .. $#l];
}

# the version the module reports (nginx_scale_info{version}, /ready JSON)
sub code_version {
    my @h = (glob("$repo/*.h"), glob("$repo/src/*.h"));
    for my $h (@h) {
        open my $f, '<', $h or next;
        while (<$f>) {
            return $1 if /^#define\s+NGX_HTTP_SCALE_VERSION\s+"([^"]+)"/;
        }
    }
    return undef;
}

# the files the package is built from
sub package_sources {
    my @f = grep { -f } ("$repo/config", "$repo/README.md",
                         glob("$repo/*.c"), glob("$repo/*.h"));
    for my $d ("$repo/src", "$repo/debian") {
        find({ wanted => sub { push @f, $File::Find::name if -f }, no_chdir => 1 },
             $d) if -d $d;
    }
    return @f;
}

# the package in $build, or undef
sub package_file {
    my ($deb) = grep { !/-dbgsym_/ }
                sort { -M $a <=> -M $b } glob("$build/libnginx-mod-http-scale_*.deb");
    return $deb;
}

# package_deb(FORCE): runs `make deb` unless FORCE is false and the package
# is newer than every file it is built from; returns the .deb or undef
sub package_deb {
    my ($force, $log) = @_;
    my $deb = package_file();
    if (!$force && $deb) {
        my $t = (stat $deb)[9];
        return $deb unless grep { (stat $_)[9] > $t } package_sources();
    }
    run_cmd(1200, $log, 'make', '--no-print-directory', '-C', $repo,
            "BUILD=$build", 'deb') or return undef;
    return package_file();
}

1;
