# nginx -t is the operator's safety net: every configuration mistake of the
# project's directives is refused with exactly one [emerg] line that names
# the directive (or its block) and the bad value, and points at the right
# line.  A second table lists edge values that are right and must still be
# accepted.
#
# Each case is the inside of http { }.  A line ending in "#<-" is the line
# the [emerg] must point at (default: the case's first line).  Messages are
# compared whole, without nginx's " in FILE:LINE" suffix.

use strict;
use warnings;
use FindBin;
use Test::More;
use POSIX qw(sysconf _SC_PAGESIZE);

our ($work, $nginx, $so);
require "$FindBin::Bin/helpers/scale.pl";
plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module' unless $so;

my $P = 'redis_pool m { server 127.0.0.1:6379; }';
my $Z = "$P ratelimit_redis_zone \$arg_k zone=z rate=10r/s pool=m;";
my $max = '9007199254740992';            # 2^53: Lua numbers are doubles
my $zone_min = 8 * sysconf(_SC_PAGESIZE);

# sun_path holds 107 bytes and the NUL
my $path107 = '/tmp/' . ('p' x 97) . '.sock';
my $path108 = '/tmp/' . ('p' x 98) . '.sock';

# a location: its closing braces on a line of their own, after any "#<-"
sub loc { my ($pre, $in) = @_; return "$pre server { listen 127.0.0.1:1; location / { $in\n} }"; }

my @refused = (

    # rate
    [ 'rate above 2^53',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=9007199254740993r/s pool=m;",
      "invalid rate \"rate=9007199254740993r/s\", at most ${max}r/s" ],
    [ 'rate 2^60 per minute',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=1152921504606846976r/m pool=m;",
      "invalid rate \"rate=1152921504606846976r/m\", at most ${max}r/m" ],
    [ 'rate beyond 64 bits',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=99999999999999999999r/h pool=m;",
      "invalid rate \"rate=99999999999999999999r/h\", at most ${max}r/h" ],
    [ 'rate of zero',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=0r/s pool=m;",
      'invalid rate "rate=0r/s"' ],
    [ 'negative rate',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=-5r/s pool=m;",
      'invalid rate "rate=-5r/s"' ],
    [ 'a rate unit that does not exist',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=5r/d pool=m;",
      'invalid rate "rate=5r/d"' ],
    [ 'a rate without a unit',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=5 pool=m;",
      'invalid rate "rate=5"' ],
    [ 'a rate without a number',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=r/s pool=m;",
      'invalid rate "rate=r/s"' ],
    [ 'a fractional rate',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=1.5r/s pool=m;",
      'invalid rate "rate=1.5r/s"' ],

    # ratelimit_redis_zone parameters
    [ 'rate= twice',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=1r/s rate=2r/s pool=m;",
      'duplicate parameter "rate=2r/s" in "ratelimit_redis_zone"' ],
    [ 'zone= twice',
      "$P ratelimit_redis_zone \$arg_k zone=a rate=1r/s zone=b pool=m;",
      'duplicate parameter "zone=b" in "ratelimit_redis_zone"' ],
    [ 'pool= twice',
      "$P redis_pool n { server 127.0.0.1:6379; } ratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=m pool=n;",
      'duplicate parameter "pool=n" in "ratelimit_redis_zone"' ],
    [ 'a constant empty key',
      "$P ratelimit_redis_zone \"\" zone=z rate=1r/s pool=m;",
      'empty key in ratelimit_redis_zone "z"' ],
    [ 'an unknown parameter',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=1r/s burst=5 pool=m;",
      'invalid parameter "burst=5"' ],
    [ 'a zone without a rate',
      "$P ratelimit_redis_zone \$arg_k zone=z pool=m;",
      '"ratelimit_redis_zone" must have "zone", "rate" and "pool" parameters' ],
    [ 'an empty zone name',
      "$P ratelimit_redis_zone \$arg_k zone= rate=1r/s pool=m;",
      'invalid zone name "zone="' ],
    [ 'an empty pool name',
      "$P ratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=;",
      'invalid pool "pool="' ],
    [ 'a zone defined twice',
      "$Z\nratelimit_redis_zone \$arg_a zone=z rate=1r/s pool=m; #<-",
      'duplicate zone "z"' ],
    [ 'pool= naming a pool that is never defined',
      "$P\nratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=nowhere; #<-\nserver { listen 127.0.0.1:1; }",
      'unknown redis_pool "nowhere"' ],

    # ratelimit_redis
    [ 'ratelimit_redis naming an undefined zone',
      loc($Z, 'ratelimit_redis zone=nope;'),
      'unknown ratelimit_redis zone "nope"' ],
    [ 'the same zone twice in one location',
      loc($Z, "ratelimit_redis zone=z;\nratelimit_redis zone=z; #<-"),
      '"ratelimit_redis" directive is duplicate' ],
    [ 'ratelimit_redis without zone=',
      loc($Z, 'ratelimit_redis dry_run;'),
      '"ratelimit_redis" must have "zone" parameter' ],
    [ 'ratelimit_redis with zone= twice',
      loc("$Z ratelimit_redis_zone \$arg_a zone=y rate=1r/s pool=m;",
          'ratelimit_redis zone=z zone=y;'),
      'duplicate parameter "zone=y" in "ratelimit_redis"' ],
    [ 'ratelimit_redis with dry_run twice',
      loc($Z, 'ratelimit_redis dry_run dry_run;'),
      'duplicate parameter "dry_run" in "ratelimit_redis"' ],
    [ 'ratelimit_redis with an unknown parameter',
      loc($Z, 'ratelimit_redis zone=z nodelay;'),
      'invalid parameter "nodelay"' ],
    [ 'a status that is not an error',
      loc($Z, 'ratelimit_redis_status 200;'),
      'value must be between 400 and 599' ],

    # redis_pool
    [ 'username without password',
      "redis_pool m {\n    server 127.0.0.1:6379;\n    username app;\n} #<-",
      'no "password" is defined for username "app" in redis_pool "m"' ],
    [ 'an empty password',
      'redis_pool m { server 127.0.0.1:6379; password ""; }',
      'invalid password ""' ],
    [ 'an empty username',
      'redis_pool m { server 127.0.0.1:6379; username ""; password pw; }',
      'invalid username ""' ],
    (map { [ "$_->[0] twice in redis_pool",
             "redis_pool m {\n"
             . ($_->[0] eq 'server' ? '' : "    server 127.0.0.1:6379;\n")
             . "    $_->[0] $_->[1];\n    $_->[0] $_->[2]; #<-\n}",
             "\"$_->[0]\" directive is duplicate in redis_pool \"m\"" ] }
         [ 'server', '127.0.0.1:6380', '127.0.0.1:6381' ],
         [ 'username', 'a', 'b' ],
         [ 'password', 'a', 'b' ],
         [ 'database', '1', '2' ],
         [ 'connect_timeout', '1s', '2s' ],
         [ 'timeout', '1s', '2s' ],
         [ 'connections', '2', '3' ]),
    [ 'a unix path one byte longer than sun_path',
      "redis_pool m { server unix:$path108; }",
      "too long path in the unix domain socket in redis_pool server \"unix:$path108\"" ],
    [ 'an empty unix path',
      'redis_pool m { server unix:; }',
      'no path in the unix domain socket in redis_pool server "unix:"' ],
    [ 'port 0',
      'redis_pool m { server 127.0.0.1:0; }',
      'invalid port in redis_pool server "127.0.0.1:0"' ],
    [ 'port 65536',
      'redis_pool m { server 127.0.0.1:65536; }',
      'invalid port in redis_pool server "127.0.0.1:65536"' ],
    [ 'a server with a path',
      'redis_pool m { server 127.0.0.1:6379/0; }',
      'invalid host in redis_pool server "127.0.0.1:6379/0"' ],
    [ 'a redis_pool without a server',
      "redis_pool m {\n    timeout 1s;\n} #<-",
      'no "server" or "sentinel" in redis_pool "m"' ],
    [ 'a redis_pool without a name',
      'redis_pool "" { server 127.0.0.1:6379; }',
      'invalid redis_pool name ""' ],
    [ 'a redis_pool defined twice',
      "$P\nredis_pool m { server 127.0.0.1:6380; } #<-",
      'duplicate redis_pool "m"' ],
    [ 'database -1',
      'redis_pool m { server 127.0.0.1:6379; database -1; }',
      'invalid database "-1", must be 0 to 2147483647' ],
    [ 'database 2^31',
      'redis_pool m { server 127.0.0.1:6379; database 2147483648; }',
      'invalid database "2147483648", must be 0 to 2147483647' ],
    [ 'database 2^32',
      'redis_pool m { server 127.0.0.1:6379; database 4294967296; }',
      'invalid database "4294967296", must be 0 to 2147483647' ],
    [ 'connections 0',
      'redis_pool m { server 127.0.0.1:6379; connections 0; }',
      'invalid connections "0", must be 1 to 64' ],
    [ 'connections 65',
      'redis_pool m { server 127.0.0.1:6379; connections 65; }',
      'invalid connections "65", must be 1 to 64' ],
    [ 'timeout 0',
      'redis_pool m { server 127.0.0.1:6379; timeout 0; }',
      'invalid timeout "0"' ],
    [ 'connect_timeout 0ms',
      'redis_pool m { server 127.0.0.1:6379; connect_timeout 0ms; }',
      'invalid connect_timeout "0ms"' ],
    [ 'a timeout that overflows',
      'redis_pool m { server 127.0.0.1:6379; timeout 99999999999999999999s; }',
      'invalid timeout "99999999999999999999s"' ],
    [ 'an unknown directive with two arguments',
      'redis_pool m { server 127.0.0.1:6379; sentinels a b; }',
      'unknown directive "sentinels" in redis_pool' ],
    [ 'a known directive with two arguments',
      'redis_pool m { server 127.0.0.1:6379; timeout 1s 2s; }',
      'invalid number of arguments in "timeout" directive of redis_pool' ],

    # session_redis
    [ 'session_redis naming a pool that is never defined',
      "server { listen 127.0.0.1:1;\nlocation / { session_redis nosuch; } #<-\n}",
      'unknown redis_pool "nosuch"' ],
    [ 'an empty session_redis_secret',
      loc($P, 'session_redis m; session_redis_format express; session_redis_secret "";'),
      'empty session_redis_secret' ],
    [ 'session_redis_touch 0',
      loc($P, 'session_redis m; session_redis_touch 0;'),
      'invalid value "0"' ],

    # health
    [ 'health_zone below 8 pages',
      'health_zone ' . ($zone_min - 1) . ';',
      'health_zone of ' . ($zone_min - 1) . " bytes is too small, at least $zone_min" ],
    [ 'health_zone 0',
      'health_zone 0;',
      "health_zone of 0 bytes is too small, at least $zone_min" ],
    [ 'health_zone twice',
      "health_zone 1m;\nhealth_zone 2m; #<-",
      '"health_zone" directive is duplicate' ],
    [ 'health_ready_upstream min=-1',
      'upstream u { server 127.0.0.1:1; } health_ready_upstream u min=-1;',
      'invalid min "min=-1"' ],
    [ 'health_ready_upstream of an unknown upstream',
      'health_ready_upstream nope;',
      'unknown upstream "nope" in health_ready_upstream' ],
    [ 'health_ready_upstream min= above all peers of the upstream',
      "upstream u { server 127.0.0.1:1; server 127.0.0.1:2 down; }\nhealth_ready_upstream u min=3; #<-",
      'health_ready_upstream "u" min=3 is more than the 2 peers of upstream "u"' ],
);

my @accepted = (
    [ 'rate exactly 2^53 per second, minute and hour',
      "$P ratelimit_redis_zone \$arg_k zone=s rate=${max}r/s pool=m;"
      . " ratelimit_redis_zone \$arg_k zone=m rate=${max}r/m pool=m;"
      . " ratelimit_redis_zone \$arg_k zone=h rate=${max}r/h pool=m;" ],
    [ 'rate 1r/h', "$P ratelimit_redis_zone \$arg_k zone=z rate=1r/h pool=m;" ],
    [ 'a constant non-empty key (one global limit)',
      "$P ratelimit_redis_zone global zone=z rate=1r/s pool=m;" ],
    [ 'parameters in any order',
      "$P ratelimit_redis_zone \$arg_k pool=m rate=1r/s zone=z;" ],
    [ 'dry_run before zone=', loc($Z, 'ratelimit_redis dry_run zone=z;') ],
    [ 'the same zone in two locations and at server level',
      "$Z server { listen 127.0.0.1:1; ratelimit_redis zone=z;"
      . " location /a { ratelimit_redis zone=z; } location /b { ratelimit_redis zone=z dry_run; } }" ],
    [ 'a pool used before it is defined',
      "ratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=later;"
      . " server { listen 127.0.0.1:1; location / { session_redis later; } }"
      . " redis_pool later { server 127.0.0.1:6379; }" ],
    [ 'a unix path of exactly 107 bytes', "redis_pool m { server unix:$path107; }" ],
    [ 'a unix path written UNIX:', 'redis_pool m { server UNIX:/tmp/redis.sock; }' ],
    [ 'username with password',
      'redis_pool m { server 127.0.0.1:6379; username app; password s3cret; }' ],
    [ 'password alone', 'redis_pool m { server 127.0.0.1:6379; password s3cret; }' ],
    [ 'database 0 and database 2^31-1',
      'redis_pool a { server 127.0.0.1:6379; database 0; }'
      . ' redis_pool b { server 127.0.0.1:6379; database 2147483647; }' ],
    [ 'connections 1 and 64, timeouts of 1ms',
      'redis_pool a { server 127.0.0.1:6379; connections 1; timeout 1ms; connect_timeout 1ms; }'
      . ' redis_pool b { server 127.0.0.1:6379; connections 64; }' ],
    [ 'ports 1 and 65535, no port, IPv6, a host name',
      'redis_pool a { server 127.0.0.1:1; } redis_pool b { server 127.0.0.1:65535; }'
      . ' redis_pool c { server 127.0.0.1; } redis_pool d { server [::1]:6379; }'
      . ' redis_pool e { server localhost:6379; }' ],
    [ 'two pools on one server', "$P redis_pool n { server 127.0.0.1:6379; }" ],
    [ 'session_redis_secret repeated (rotation)',
      loc($P, 'session_redis m; session_redis_format express;'
              . ' session_redis_secret new; session_redis_secret old;') ],
    [ 'health_zone of exactly 8 pages', "health_zone $zone_min;" ],
    [ 'health_ready_upstream min=0 (reports without failing)',
      'upstream u { server 127.0.0.1:1; } health_ready_upstream u min=0;' ],
    [ 'health_ready_upstream min= as large as the peers, backup and down ones too',
      'upstream u { server 127.0.0.1:1; server 127.0.0.1:2 backup; server 127.0.0.1:3 down; }'
      . ' health_ready_upstream u min=3;' ],
);

my $n = 0;

# (exit code, output, path of the config) of nginx -t on an http { } body
sub nginx_t {
    my ($body) = @_;
    my $d = "$work/c" . $n++;
    mkdir $d; mkdir "$d/logs";
    my $conf = "load_module $so;\nerror_log $d/logs/error.log;\n"
             . "pid $d/nginx.pid;\nevents {}\nhttp {\n$body\n}\n";
    open my $f, '>', "$d/nginx.conf" or die;
    print $f $conf;
    close $f;
    my $out = `$nginx -t -p $d -c $d/nginx.conf 2>&1`;
    return ($?, $out, "$d/nginx.conf");
}

# the line of the config that a case's error must point at
sub marked_line {
    my ($body) = @_;
    my @lines = split /\n/, $body;
    for my $i (0 .. $#lines) {
        return 6 + $i if $lines[$i] =~ /#<-$/;
    }
    return 6;
}

for my $case (@refused) {
    my ($name, $body, $want) = @$case;
    my ($rc, $out, $conf) = nginx_t($body);
    my @emerg = $out =~ /\[emerg\] (?:\d+#\d+: )?(.*)$/mg;

    subtest "refused: $name" => sub {
        isnt($rc, 0, 'nginx -t fails');
        unlike($out, qr/\[(alert|crit)\]|signal \d+|core dumped/, 'without a crash');
        is(scalar @emerg, 1, 'one [emerg] line') or diag($out);
        my ($msg, $file, $line) = ($emerg[0] // '') =~ /^(.*?)(?: in (\S+):(\d+))?$/;
        is($msg, $want, 'the message names the directive and the value');
        is($file, $conf, 'in the configuration file');
        is($line, marked_line($body), 'at the line of the mistake');
    };
}

for my $case (@accepted) {
    my ($name, $body) = @$case;
    my ($rc, $out) = nginx_t($body);

    subtest "accepted: $name" => sub {
        is($rc, 0, 'nginx -t succeeds') or diag($out);
        unlike($out, qr/\[(emerg|alert|crit|warn)\]/, 'without complaint');
    };
}

done_testing();
