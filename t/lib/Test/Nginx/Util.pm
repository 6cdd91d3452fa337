package Test::Nginx::Util;

# A small re-implementation of the nginx life-cycle half of CPAN's
# Test::Nginx (openresty/test-nginx): settings, nginx.conf generation,
# starting/stopping nginx per test block, error log access.  The HTTP
# client and the per-block checks live in Test::Nginx::Socket.
# Variable, function and environment variable names follow the real module.

use strict;
use warnings;

use base 'Exporter';

use POSIX qw( SIGQUIT SIGKILL SIGTERM :sys_wait_h );
use File::Spec ();
use File::Path qw( make_path remove_tree );
use List::Util qw( shuffle );
use Time::HiRes qw( sleep );
use Scalar::Util qw( looks_like_number );
use Carp qw( croak );
use IO::Socket::INET ();
use Test::More ();
use Test::LongString;

our $VERSION = '0.29';

our $Verbose        = $ENV{TEST_NGINX_VERBOSE};
our $NoLongString;
our $RepeatEach     = 1;
our $NoShuffle      = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoNginxManager = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $LoadModules    = $ENV{TEST_NGINX_LOAD_MODULES};
our $UseValgrind    = $ENV{TEST_NGINX_USE_VALGRIND};
our $UseHup         = $ENV{TEST_NGINX_USE_HUP};       # accepted, not implemented
our $EventType      = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $Timeout        = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckLeak      = $ENV{TEST_NGINX_CHECK_LEAK} || 0;   # accepted, no-op
our $Benchmark      = 0;
our $BenchmarkWarmup = 0;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Randomize      = $ENV{TEST_NGINX_RANDOMIZE};
our $NginxBinary    = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers        = 1;
our $WorkerConnections = 64;
our $LogLevel       = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled  = 'on';
our $ServerAddr     = '127.0.0.1';
our $ServerName     = 'localhost';
our $ServerPort     = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NoRootLocation = 0;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ForceRestartOnTest = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $UseStap;       # never set; exported for compatibility
our $ConfigPreamble = '';
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers);
our ($RunTestHelper, $CheckErrorLog, $CheckShutdownErrorLog, $FilterHttpConfig);
our ($NginxVersion, $NginxRawVersion, $OpenSSLVersion);
our ($PrevConfig, $PrevBlock, $ChildPid, $ErrLogFilePos, $InSubprocess);
our $FirstTime = 1;

if ($Randomize) {
    $ServerPort = $ServerPortForClient = gen_rand_port()
        or die "Cannot find an available listening port number\n";
}

our $ServRoot = $Randomize ? File::Spec->rel2abs("t/servroot_$ServerPort")
              : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ServRoot = File::Spec->rel2abs($ServRoot);
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $ValgrindLog = File::Spec->catfile($LogDir, 'valgrind.log');

our @EXPORT = qw(
    use_http2 use_http3 env_to_nginx is_str check_accum_error_log is_running
    $NoLongString no_long_string $ServerAddr server_addr $ServerName server_name
    parse_time $UseStap verbose sleep_time bail_out add_cleanup_handler
    access_log_data error_log_data setup_server_root write_config_file
    get_canon_version get_nginx_version trim show_all_chars parse_headers
    run_tests get_pid_from_pidfile $ServerPortForClient $ServerPort
    $NginxVersion $PidFile $ServRoot $ConfFile $RunTestHelper $CheckErrorLog
    $CheckShutdownErrorLog $FilterHttpConfig $NoNginxManager $RepeatEach
    $CheckLeak $Benchmark $BenchmarkWarmup add_block_preprocessor timeout
    worker_connections workers master_on master_off config_preamble
    repeat_each master_process_enabled log_level no_shuffle no_root_location
    html_dir server_root server_port server_port_for_client no_nginx_manager
    use_hup error_log_file
);

# ---- simple settings (same prototypes as the real module) ----

sub gen_rand_port {
    for (1 .. 1000) {
        my $port = int(rand 63550) + 1985;
        my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                         LocalPort => $port, Proto => 'tcp');
        if ($sock) { close $sock; return $port }
    }
    return undef;
}

sub no_long_string ()      { $NoLongString = 1 }
sub no_shuffle ()          { $NoShuffle = 1 }
sub no_root_location ()    { $NoRootLocation = 1 }
sub no_nginx_manager ()    { $NoNginxManager = 1 }
sub use_hup ()             { $UseHup = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on ()           { $MasterProcessEnabled = 'on' }
sub master_off ()          { $MasterProcessEnabled = 'off' }
sub config_preamble ($)    { $ConfigPreamble = shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }
sub use_http2 ($)          { undef }
sub use_http3 ($)          { undef }
sub verbose                { $Verbose }
sub sleep_time             { $TestNginxSleep }
sub html_dir ()            { $HtmlDir }
sub server_root ()         { $ServRoot }
sub error_log_file ()      { $ErrLogFile }   # not in the real module

# getter/setter helpers: f() returns the value, f($v) sets it
sub repeat_each (@)        { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@)            { @_ ? ($Workers = shift) : $Workers }
sub worker_connections (@) { @_ ? ($WorkerConnections = shift) : $WorkerConnections }
sub log_level (@)          { @_ ? ($LogLevel = shift) : $LogLevel }
sub timeout (@)            { @_ ? ($Timeout = shift) : $Timeout }
sub server_addr (@)        { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@)        { @_ ? ($ServerName = shift) : $ServerName }
sub server_port (@)        { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client (@) {
    @_ ? ($ServerPortForClient = shift) : $ServerPortForClient;
}
sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_string($got, $expected, $desc);
}

# alive and not a zombie (an exited daemon may wait a while to be reaped)
sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        return 0 if $stat =~ /\)\s+Z/;
    }
    return 1;
}

sub parse_time ($) {
    my $tm = shift;
    if (defined $tm) {
        if ($tm =~ s/([^_a-zA-Z])ms$/$1/) { $tm /= 1000 }
        else { $tm =~ s/([^_a-zA-Z])s$/$1/ }
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/gs; $s =~ s/\r/\\r/gs; $s =~ s/\t/\\t/gs;
    return $s;
}

# "X: v" lines -> { X => 'v' }; "!X" -> { X => undef } (header must be absent)
sub parse_headers ($) {
    my $s = shift;
    my %headers;
    for (split /\n/, $s // '') {
        s/^\s+|\s+$//g;
        next if $_ eq '';
        if (s/^!\s*//) { $headers{$_} = undef; next }
        my ($key, $val) = split /\s*:\s*/, $_, 2;
        $headers{$key} = $val;
    }
    return \%headers;
}

sub get_canon_version (@) { sprintf "%d.%03d%03d", $_[0], $_[1], $_[2] }

sub get_nginx_version () {
    my $out = `$NginxBinary -V 2>&1`;
    bail_out("Failed to get the version of the Nginx in PATH: " . ($out // ''))
        if !defined $out || $? != 0;
    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)}s) {
        $OpenSSLVersion = get_canon_version($1, $2, $3);
    }
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pid_from_pidfile ($) {
    my ($name) = @_;
    open my $in, '<', $PidFile
        or bail_out("$name - Failed to open the pid file $PidFile for reading: $!");
    my $pid = do { local $/; <$in> } // '';
    close $in;
    chomp $pid;
    return $pid;
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub _read_lines ($$) {
    my ($file, $pos_ref) = @_;
    sleep $TestNginxSleep * 3;    # let nginx finish log-phase writes
    open my $in, '<', $file or return [];
    seek $in, $$pos_ref, 0 if $pos_ref && $$pos_ref;
    my @lines = <$in>;
    $$pos_ref = tell($in) if $pos_ref;
    close $in;
    return \@lines;
}

# error.log lines written since the last call (or since the block began)
sub error_log_data () {
    $ErrLogFilePos //= 0;
    return _read_lines($ErrLogFile, $CheckAccumErrLog ? undef : \$ErrLogFilePos);
}

sub access_log_data () { _read_lines($AccLogFile, undef) }

# ---- server root / config ----

sub setup_server_root () {
    if (-d $ServRoot) {
        # only remove what we create, never arbitrary user data
        remove_tree($ConfDir, $HtmlDir, $LogDir,
                    glob("$ServRoot/*_cache"), glob("$ServRoot/*_temp"));
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        make_path($d) or bail_out("Failed to do mkdir $d\n");
    }
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't open $HtmlDir/index.html for writing: $!\n");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub expand_env_in_text ($$) {
    my ($text, $name) = @_;
    return undef unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : bail_out("$name - No environment $1 defined.\n")
    }eg;
    return $text;
}

sub write_user_files ($) {
    my ($block) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {      # ">>> path [touch -t date]" followed by the body
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }
    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out expand_env_in_text($body // '', $name);
        close $out;
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("$name - failed to touch $path\n");
        }
    }
}

sub gen_config_text ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;
    my $http_config = expand_env_in_text($block->http_config, $name) // '';
    my $main_config = expand_env_in_text($block->main_config, $name) // '';
    my $post_main_config = expand_env_in_text($block->post_main_config, $name) // '';
    my $err_log_file = $block->error_log_file || $ErrLogFile;
    my $server_name = $block->server_name // $ServerName;
    $config //= '';

    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;

    # load_module must precede any directive of the module, so put it first
    my $load = '';
    for my $m (grep { $_ ne '' } split /\s+/, $LoadModules // '') {
        $load .= "load_module $m;\n";
    }

    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;

    # Temp paths: a distro nginx compiles in absolute paths (/var/lib/nginx/...)
    # which may not exist; keep them inside the server root unless set.
    my $temps = '';
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if "$http_config\n$config" =~ /\b${t}_temp_path\b/;
        $temps .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }

    my $extra_http = '';
    if (defined $PostponeOutput && $http_config !~ /\bpostpone_output\b/) {
        bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $PostponeOutput\n")
            if $PostponeOutput !~ /^\d+$/;
        $extra_http = "    postpone_output $PostponeOutput;\n";
    }

    my $root_loc = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $use_event = $EventType ? "    use $EventType;\n" : '';
    my $user = $> == 0 ? "user root;\n" : '';
    my $daemon = $UseValgrind ? 'off' : $DaemonEnabled;   # valgrind: foreground

    return <<_EOC_;
${load}worker_processes  $Workers;
daemon $daemon;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
env MOCKEAGAIN_VERBOSE;
env MOCKEAGAIN;
env MOCKEAGAIN_WRITE_TIMEOUT_PATTERN;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
$env
$main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;
$temps$extra_http
$http_config

    server {
        listen          $ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_loc    }
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
$use_event}
env ASAN_OPTIONS;
$user
_EOC_
}

sub write_config_file ($$) {
    my ($block, $text) = @_;
    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out $text;
    close $out;
}

# ---- process control ----

# QUIT (graceful), then TERM, then KILL; reaps the process if it is our child
sub kill_process ($$$) {
    my ($pid, $wait, $name) = @_;
    return unless $pid;
    if ($wait) {
        kill SIGQUIT, $pid;
        my $left = timeout();
        $left *= 10 if $UseValgrind;
        while ($left > 0 && is_running($pid)) {
            last if waitpid($pid, WNOHANG) == $pid;
            sleep 0.02;
            $left -= 0.02;
        }
    }
    for my $i (1 .. 20) {
        return if !is_running($pid) || waitpid($pid, WNOHANG) == $pid;
        kill SIGTERM, $pid;
        sleep 0.05 * $i;
    }
    warn "$name - WARNING: killing the child process $pid with force...\n";
    kill SIGKILL, $pid;
    waitpid($pid, 0);
}

sub stop_nginx ($) {
    my ($name) = @_;
    my $pid = -f $PidFile ? get_pid_from_pidfile($name) : $ChildPid;
    if ($pid && is_running($pid)) {
        kill_process($pid, 1, $name);
    }
    if ($ChildPid) {        # valgrind mode: nginx runs as our child
        kill_process($ChildPid, 1, $name) if is_running($ChildPid);
        waitpid($ChildPid, WNOHANG);
        undef $ChildPid;
    }
    unlink $PidFile if -f $PidFile;
}

sub cleanup () {
    $_->() for @CleanupHandlers;
    if (defined $ChildPid) {
        kill_process($ChildPid, 1, "cleanup");
        undef $ChildPid;
    }
}

sub port_is_listening ($) {
    my $hex = sprintf ':%04X ', shift;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        while (<$in>) {
            my @f = split ' ';
            return 1 if @f > 3 && "$f[1] " =~ /\Q$hex\E$/ && $f[3] eq '0A';
        }
    }
    return 0;
}

sub nginx_cmd () {
    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile";
    return $cmd unless $UseValgrind;
    my $opts;
    if ($UseValgrind =~ /^\d+$/) {
        $opts = "--num-callers=100 -q --tool=memcheck --leak-check=full"
              . " --show-possibly-lost=no --gen-suppressions=all";
        for my $f ('valgrind.suppress', 't/valgrind.suppress') {
            if (-f $f) { $opts .= " --suppressions=$f"; last }
        }
    } else {
        $opts = "-q $UseValgrind";
    }
    return "valgrind $opts --log-file=$ValgrindLog $cmd";
}

# Start nginx; returns the startup status (0 = ok). Startup stderr (config
# parse errors go there with a distro nginx) is appended to error.log, so
# --- error_log can match it (e.g. with --- must_die), as it would when
# nginx's compiled-in error log lives under the prefix.
sub start_nginx ($$) {
    my ($block, $must_die) = @_;
    my $name = $block->name;
    my $errfile = "$LogDir/startup.stderr";

    if ($UseValgrind && !defined $must_die) {
        warn "$name\n";
        my $cmd = nginx_cmd();
        my $pid = fork() // bail_out("$name - fork() failed: $!");
        if ($pid == 0) {
            $InSubprocess = 1;
            setpgrp;
            exec "exec $cmd > /dev/null 2>>$errfile";
        }
        $ChildPid = $pid;
        my $left = 60;
        while ($left > 0 && !port_is_listening($ServerPort)) {
            if (waitpid($pid, WNOHANG) == $pid) {
                undef $ChildPid;
                last;
            }
            sleep 0.1;
            $left -= 0.1;
        }
        append_startup_stderr($errfile);
        bail_out("$name - nginx (under valgrind) did not start; see $ErrLogFile")
            unless $ChildPid;
        return 0;
    }

    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile > /dev/null 2>>$errfile";
    warn "starting nginx: $cmd\n" if $Verbose;
    my $waited = 0;
    while (1) {
        system($cmd);
        my $status = $?;
        append_startup_stderr($errfile);
        return $status if $status == 0 || defined $must_die;
        # the previous instance may still hold the port: retry for a while
        my $log = do { local $/; open my $in, '<', $ErrLogFile; $in ? <$in> : '' } // '';
        if ($log =~ /Address already in use/ && $waited < 30) {
            sleep 0.5;
            $waited += 0.5;
            next;
        }
        my @tail = (split /\n/, $log)[-5 .. -1];
        bail_out("$name - Cannot start nginx using command \"$cmd\" "
                 . "(status code $status): " . join("\n", grep { defined } @tail));
    }
}

sub append_startup_stderr ($) {
    my $errfile = shift;
    return unless -s $errfile;
    open my $in, '<', $errfile or return;
    my $data = do { local $/; <$in> };
    close $in;
    unlink $errfile;
    open my $out, '>>', $ErrLogFile or return;
    print $out $data;
    close $out;
}

# Stop nginx at the end of a valgrind block and report memory errors.
sub finish_valgrind ($) {
    my ($block) = @_;
    my $name = $block->name;
    stop_nginx($name);
    return unless -s $ValgrindLog;
    open my $in, '<', $ValgrindLog or return;
    my $out = do { local $/; <$in> };
    close $in;
    unlink $ValgrindLog;
    print STDERR $out;
    for my $pat ('definitely lost', 'Invalid read', 'Invalid write', 'Invalid free') {
        if ($out =~ /^(==\d+==\s+.*\Q$pat\E.*)$/m) {
            Test::More->builder->no_ending(1);
            Test::More::fail("$name - valgrind: $pat: $1");
        }
    }
}

sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock or return;
    return unless defined $block->shutdown_error_log
               || defined $block->no_shutdown_error_log;
    $CheckShutdownErrorLog->($block, $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0);
}

# ---- driver ----

sub run_tests () {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    warn "WARNING: TEST_NGINX_CHECK_LEAK is not supported by this runner; ignored\n"
        if $CheckLeak;

    for my $block ($NoShuffle ? Test::Base::blocks() : shuffle Test::Base::blocks()) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value("name", $0 . " " . $block->name);
        run_test($block);
        $PrevBlock = $block;
    }
    cleanup();
}

# "N: <op> x.y.z [: reason]" -> (N, skip?, reason)
sub parse_skip_nginx ($$) {
    my ($name, $spec) = @_;
    $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$}
        or bail_out("$name - Invalid --- skip_nginx spec: $spec");
    my ($n, $op, $reason) = ($1, $2, $6 || "nginx version $2 $3.$4.$5");
    my $ver = get_canon_version($3, $4, $5);
    return ($n, scalar eval("$NginxVersion $op $ver"), $reason);
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;

    local $LogLevel = $block->log_level || $LogLevel;
    my $must_die = $block->must_die;
    local $UseValgrind = defined $must_die ? undef : $UseValgrind;

    my $config = expand_env_in_text($block->config, $name);
    my $dry_run = 0;

    my ($tests_to_skip, $should_skip, $skip_reason);
    if (defined(my $s = $block->skip_nginx)) {
        ($tests_to_skip, $should_skip, $skip_reason) = parse_skip_nginx($name, $s);
    }
    if (defined(my $s = $block->skip_eval)) {
        if ($s =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $tests_to_skip = $1;
            $skip_reason = "skip_eval";
            $should_skip = eval $2;
            bail_out("$name - skip_eval - failed to eval the Perl code \"$2\": $@") if $@;
        }
    }
    $skip_reason //= "various reasons";

    # restart policy, as in the real module: a block without --- config
    # reuses the running nginx; otherwise restart (always by default, or
    # only on a config change with TEST_NGINX_FORCE_RESTART_ON_TEST=0)
    my ($conf_text, $should_restart);
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not get previous one.")
            if !$NoNginxManager && !defined $PrevConfig;
        # under valgrind the previous block's nginx was stopped to read
        # valgrind's report: start it again with the same configuration
        $conf_text = $PrevConfig;
        $should_restart = $UseValgrind && !$NoNginxManager ? 1 : 0;
    } elsif ($NoNginxManager) {
        $should_restart = 0;
    } else {
        $conf_text = gen_config_text($block, $config);
        $should_restart = $ForceRestartOnTest || !defined $PrevConfig
            || $conf_text ne $PrevConfig || !-f $PidFile || $UseValgrind;
    }

    my $restarted;
    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $PrevConfig = $conf_text;
        stop_nginx($name);
        check_prev_block_shutdown_error_log();
        setup_server_root();
        write_user_files($block);
        write_config_file($block, $conf_text);
        $ErrLogFilePos = 0;
        $restarted = 1;

        if (defined $must_die) {
            for my $i (0 .. $RepeatEach - 1) {
                my $status = start_nginx($block, $must_die);
                my $exit_code = $status >> 8;
                if ($status == -1) {
                    Test::More::fail("$name - failed to execute the nginx command line");
                } elsif ($status & 128) {
                    Test::More::fail("$name - nginx core dumped");
                } elsif (looks_like_number($must_die)) {
                    Test::More::is($must_die, $exit_code, "$name - die with the expected exit code");
                } else {
                    Test::More::isnt($status, 0, "$name - die as expected");
                }
                $CheckErrorLog->($block, undef, $dry_run, $i, 0);
                if ($status == 0) {
                    warn "WARNING: $name - nginx must die but it does not; killing it (req $i)\n";
                    sleep $TestNginxSleep * 5 unless -f $PidFile;
                    stop_nginx($name);
                }
            }
            return;
        }
        start_nginx($block, undef);
        sleep $TestNginxSleep;
    } elsif (!$should_skip) {
        # nginx keeps running: the block only sees its own error log lines
        write_user_files($block);
        $ErrLogFilePos = -s $ErrLogFile || 0;
    }

    if ($block->init) {
        eval $block->init;
        bail_out("$name - init failed: $@") if $@;
    }

    for my $i (1 .. $RepeatEach) {
        write_user_files($block) if $i > 1 && !$should_skip;
        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        } else {
            $RunTestHelper->($block, $dry_run, $i - 1);
        }
    }

    if (my $total_errlog = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $total_errlog) {
            print $out "\n=== $0 $name\n";
            close $out;
            system("cat $ErrLogFile >> $total_errlog");
        }
    }

    finish_valgrind($block) if $UseValgrind && $restarted;
}

END {
    return if $InSubprocess;
    local $?;     # do not confuse Test::Builder's exit status
    cleanup();
    if ($UseValgrind || !$ENV{TEST_NGINX_NO_CLEAN}) {
        stop_nginx("END") if -f $PidFile || $ChildPid;
    }
    check_prev_block_shutdown_error_log();
    if ($Randomize && -d $ServRoot && $ServRoot =~ m{/t/servroot_\d+$}) {
        remove_tree($ServRoot);
    }
}

1;
