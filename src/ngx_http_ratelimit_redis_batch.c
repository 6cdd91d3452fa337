
/*
 * The batcher: the requests that need Redis during one event loop
 * iteration are decided by one script call on their pool, in the order
 * they arrived.  Redis pays its per-call cost (and TIME, and per zone an
 * HMGET and an HSET) once per batch instead of once per request, and the
 * answers are exactly those that one call per request would have given.
 */


#include "ngx_http_ratelimit_redis_batch.h"
#include "ngx_http_scale_redis.h"


/* requests in one script call; run lengths are kept in u_char */
#define NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX  64

#if (NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX > 255)
#error NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX must fit in u_char
#endif

/*
 * Batches a pool has unanswered; the requests that come meanwhile wait
 * for one to be answered and go together: Redis pays a call's fixed cost
 * once for all of them, and the wait is shorter than a round trip
 */
#define NGX_HTTP_RATELIMIT_REDIS_SENT_MAX  1

/* (run, zone) pairs of a batch at most; indexes kept in u_short */
#define NGX_HTTP_RATELIMIT_REDIS_APPS                                         \
    (NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX * NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX)


struct ngx_http_ratelimit_redis_batcher_s {
    ngx_http_scale_redis_pool_t     *pool;
    ngx_http_ratelimit_redis_decide_pt   decide;
    ngx_queue_t                      pending;      /* of ctx */
    ngx_event_t                      flush;        /* posted */
    ngx_uint_t                       sent;         /* batches unanswered */
};


struct ngx_http_ratelimit_redis_batch_s {
    ngx_queue_t                      inflight;
    ngx_http_ratelimit_redis_batcher_t  *batcher;
    ngx_http_scale_redis_cmd_t      *cmd;          /* NULL: answered */
    ngx_uint_t                       waiting;      /* requests not gone */
    ngx_http_ratelimit_redis_ctx_t **ctxs;         /* NULL: request gone */
    ngx_uint_t                       nruns;
    ngx_uint_t                       nz;           /* distinct zones */
    u_char                          *runs;         /* requests per run */
    u_char                          *nzones;       /* zones per run */
    u_short                         *slots;        /* per run and zone:
                                                      2 * zone + dry run */
    ngx_uint_t                       sent;         /* counted in batcher */
    int                              argc;
    const char                     **argv;
    size_t                          *argvlen;
};


static void ngx_http_ratelimit_redis_batch_flush(ngx_event_t *ev);
static void ngx_http_ratelimit_redis_batch_answered(
    ngx_http_ratelimit_redis_batcher_t *b);
static ngx_http_ratelimit_redis_batch_t *ngx_http_ratelimit_redis_batch_build(
    ngx_http_ratelimit_redis_batcher_t *b);
static ngx_uint_t ngx_http_ratelimit_redis_batch_same(
    ngx_http_ratelimit_redis_ctx_t *a, ngx_http_ratelimit_redis_ctx_t *b);
static void ngx_http_ratelimit_redis_batch_reply(void *data, ngx_int_t rc,
    redisReply *reply);
static ngx_int_t ngx_http_ratelimit_redis_batch_check(
    ngx_http_ratelimit_redis_batch_t *batch, redisReply *reply);
static void ngx_http_ratelimit_redis_batch_verdict(redisReply **e,
    redisReply **resets, u_short *slots, ngx_uint_t nzones, ngx_uint_t m,
    ngx_uint_t q, ngx_http_ratelimit_redis_verdict_t *v);
static void ngx_http_ratelimit_redis_batch_cleanup(void *data);


static ngx_http_ratelimit_redis_batcher_t  *ngx_http_ratelimit_redis_batchers;
static ngx_queue_t                          ngx_http_ratelimit_redis_inflight;
static ngx_uint_t                           ngx_http_ratelimit_redis_batch_gen;



/*
 * Consecutive requests with the same zones and keys travel as one run:
 * their keys and arguments are sent once and their answers come back as
 * one (a global limit or a flood from one client is a single run however
 * many requests it holds).
 *
 * Layout: one hash per zone and generation of K = 4 windows,
 * "rl:{ZONE}:GENERATION_START", a field per limited key, whose record
 * holds the key's counts of window N of the generation (from 0), CUR, and
 * of the window before it, PREV: the integer (PREV * 2^25 + CUR) * K + N
 * where the zone's limit is below 2^25 (counts never pass the limit): one
 * tonumber() and some arithmetic to read, and as short as the text for a
 * key seen once.  The text "N:PREV:CUR" for a limit from 2^25, or where
 * string.format("%d") cuts the integer (a Redis whose C long has 32
 * bits).  Either is read whatever the limit, so a reload that changes a
 * rate keeps the counts.  A batch costs Redis one HMGET and one HSET per
 * zone however many distinct keys it holds; in the first window
 * of a generation a key not yet in it is looked up in the previous
 * generation's hash too (one more HMGET).  The field "" (a key is never
 * empty) marks a hash that has its expiry: "0" while the previous
 * generation's hash is still read, "1" once it is not.  The batch that
 * creates a generation's hash gives it a TTL to the end of the next
 * generation's first window plus one window and UNLINKs the hash of two
 * generations ago; the first batch after the generation's first window
 * UNLINKs the previous one, which nothing reads any more.  A background
 * thread frees them, not Redis' main one.  The TTL is for a zone that
 * goes quiet.
 *
 * KEYS: "rl:{ZONE}:" per zone of the batch.
 * ARGV: the number of zones; per zone its limit, window (ms) and number
 * of distinct keys; the distinct keys, zone by zone; then the runs in one
 * string of bytes: per run its number of requests and of zones, and per
 * zone 2 * (the key's place among the distinct keys, from 0) + dry run
 * (0/1) in two bytes, most significant first.
 *
 * It returns per zone the ms to its window's end (reset), then per run:
 * for a run of one request, per zone the remaining before the request if
 * the zone admits it, else minus the retry (ms until the zone would: the
 * first whole millisecond at which it would); for a longer run, how many
 * of its requests are admitted (the first ones), then per zone how many
 * requests it admits (the first ones), remaining before the run and
 * retry.  Within a run every answer follows from these: a request's count
 * grows by one for each admitted request before it, and once a zone or
 * the run rejects, the counts stop moving and every later request gets
 * the same answer.  ngx_http_ratelimit_redis_batch_verdict() unfolds them.
 *
 * Sliding window: the current window's count plus the previous one's
 * weighted by how much of it the last window length still covers.  Time
 * comes from Redis, so nginx hosts need not agree on the clock.  A request
 * is counted only if all its zones admit it.
 */

static ngx_http_scale_redis_script_t  ngx_http_ratelimit_redis_script = {
    ngx_string(
"local t = redis.call('TIME')\n"
"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
"local floor, fmt, match = math.floor, string.format, string.match\n"
"local tonumber = tonumber\n"
"local K = 4\n"
"local B = 33554432\n"
"local KBB = K * B * B\n"
"local wide = fmt('%d', KBB) == '4503599627370496'\n"
"local function record(v)\n"
"  local x = tonumber(v)\n"
"  if x and x >= 0 and x < KBB and x % 1 == 0 then\n"
"    local n = x % K\n"
"    x = (x - n) / K\n"
"    local c = x % B\n"
"    return n, (x - c) / B, c\n"
"  end\n"
"  local n, p, c = match(v, '^(%d+):(%d+):(%d+)$')\n"
"  if n then return tonumber(n), tonumber(p), tonumber(c) end\n"
"  return -2, 0, 0\n"
"end\n"
"local function presized()\n"
"  return {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,\n"
"          nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,\n"
"          nil, nil, nil, nil, nil, nil, nil, nil}\n"
"end\n"
"local nz = tonumber(ARGV[1])\n"
"local a, g, f0 = 2 + 3 * nz, 0, 1 + 3 * nz\n"
"local zw, zr, zk, zm, zs, zn, zg, zt = {}, {}, {}, {}, {}, {}, {}, {}\n"
"local cc, pp, pw, fz = presized(), presized(), presized(), presized()\n"
"local lm, dirty, out = presized(), presized(), presized()\n"
"for z = 1, nz do\n"
"  local l, w = tonumber(ARGV[3 * z - 1]), tonumber(ARGV[3 * z])\n"
"  local nf = tonumber(ARGV[3 * z + 1])\n"
"  local e = now % w\n"
"  local r, s = w - e, now - now % (K * w)\n"
"  local n = (now - e - s) / w\n"
"  local key = KEYS[z] .. s\n"
"  local c = redis.call('HMGET', key, '',\n"
"                       unpack(ARGV, a, a + nf - 1))\n"
"  local miss, mg, nm = nil, nil, 0\n"
"  zs[z] = g + 1\n"
"  for i = 1, nf do\n"
"    local v, cv, pv = c[i + 1], 0, 0\n"
"    g = g + 1\n"
"    if v then\n"
"      -- record() inlined for the integer form: a call per key costs\n"
"      local x = tonumber(v)\n"
"      local vn, vp, vc\n"
"      if x and x >= 0 and x < KBB and x % 1 == 0 then\n"
"        vn = x % K\n"
"        x = (x - vn) / K\n"
"        vc = x % B\n"
"        vp = (x - vc) / B\n"
"      else\n"
"        vn, vp, vc = record(v)\n"
"      end\n"
"      if vn >= n then\n"
"        cv, pv = vc, vp\n"
"      elseif vn == n - 1 then\n"
"        pv = vc\n"
"      end\n"
"    elseif n == 0 then\n"
"      if nm == 0 then miss, mg = {}, {} end\n"
"      nm = nm + 1\n"
"      miss[nm], mg[nm] = ARGV[a + i - 1], g\n"
"    end\n"
"    cc[g], pp[g], pw[g], fz[g], lm[g] = cv, pv, pv * r / w, z, l\n"
"  end\n"
"  if nm > 0 then\n"
"    local p = redis.call('HMGET', KEYS[z] .. (s - K * w), unpack(miss))\n"
"    for j = 1, nm do\n"
"      if p[j] then\n"
"        local vn, vp, vc = record(p[j])\n"
"        if vn == K - 1 then\n"
"          local g = mg[j]\n"
"          pp[g], pw[g] = vc, vc * r / w\n"
"        end\n"
"      end\n"
"    end\n"
"  end\n"
"  zw[z], zr[z], zn[z], zg[z] = w, r, n, s\n"
"  zt[z] = l >= B or not wide\n"
"  zk[z], zm[z] = key, c[1]\n"
"  out[z] = r\n"
"  a = a + nf\n"
"end\n"
"local function retry(g)\n"
"  local z = fz[g]\n"
"  local c, p, l, w, r = cc[g], pp[g], lm[g], zw[z], zr[z]\n"
"  if c + 1 > l then\n"
"    return r + w - floor((l - 1) * w / c)\n"
"  end\n"
"  return w - floor((l - c - 1) * w / p) - (w - r)\n"
"end\n"
"local o, rg, rd, ok = nz, {}, {}, {}\n"
"local b = {string.byte(ARGV[a], 1, -1)}\n"
"a = 1\n"
"while b[a] do\n"
"  local m, n = b[a], b[a + 1]\n"
"  if m == 1 and n == 1 then\n"
"    local s = b[a + 2] * 256 + b[a + 3]\n"
"    local g = (s - s % 2) / 2 + 1\n"
"    local c, l = cc[g], lm[g]\n"
"    local est = pw[g] + c\n"
"    if est + 1 <= l then\n"
"      out[o + 1] = floor(l - est)\n"
"      cc[g], dirty[g] = c + 1, true\n"
"    else\n"
"      local rt = retry(g)\n"
"      out[o + 1] = rt > 0 and -rt or -1\n"
"    end\n"
"    o, a = o + 1, a + 4\n"
"  elseif m == 1 then\n"
"    local admit = true\n"
"    for j = 1, n do\n"
"      local s = b[a + 2 * j] * 256 + b[a + 2 * j + 1]\n"
"      local d = s % 2\n"
"      local g = (s - d) / 2 + 1\n"
"      local est = pw[g] + cc[g]\n"
"      local l = lm[g]\n"
"      rg[j], ok[j] = g, est + 1 <= l\n"
"      if ok[j] then\n"
"        out[o + j] = floor(l - est)\n"
"      else\n"
"        local rt = retry(g)\n"
"        out[o + j] = rt > 0 and -rt or -1\n"
"        if d == 0 then admit = false end\n"
"      end\n"
"    end\n"
"    if admit then\n"
"      for j = 1, n do\n"
"        if ok[j] then\n"
"          local g = rg[j]\n"
"          cc[g], dirty[g] = cc[g] + 1, true\n"
"        end\n"
"      end\n"
"    end\n"
"    o, a = o + n, a + 2 + 2 * n\n"
"  else\n"
"    for j = 1, n do\n"
"      local s = b[a + 2 * j] * 256 + b[a + 2 * j + 1]\n"
"      local d = s % 2\n"
"      local g = (s - d) / 2 + 1\n"
"      local left = floor(lm[g] - (pw[g] + cc[g]))\n"
"      rg[j], rd[j] = g, d == 1\n"
"      out[o + 3 * j - 1] = 0\n"
"      out[o + 3 * j] = left > 0 and left or 0\n"
"      out[o + 3 * j + 1] = 0\n"
"    end\n"
"    local admitted = 0\n"
"    while admitted < m do\n"
"      local admit = true\n"
"      for j = 1, n do\n"
"        local g = rg[j]\n"
"        ok[j] = pw[g] + cc[g] + 1 <= lm[g]\n"
"        if not ok[j] then\n"
"          local rt = retry(g)\n"
"          out[o + 3 * j + 1] = rt > 0 and rt or 1\n"
"          if not rd[j] then admit = false end\n"
"        end\n"
"      end\n"
"      if not admit then break end\n"
"      admitted = admitted + 1\n"
"      for j = 1, n do\n"
"        if ok[j] then\n"
"          local g = rg[j]\n"
"          cc[g], dirty[g] = cc[g] + 1, true\n"
"          out[o + 3 * j - 1] = admitted\n"
"        end\n"
"      end\n"
"    end\n"
"    out[o + 1] = admitted\n"
"    if admitted < m then\n"
"      for j = 1, n do\n"
"        if ok[j] then out[o + 3 * j - 1] = m end\n"
"      end\n"
"    end\n"
"    o, a = o + 1 + 3 * n, a + 2 + 2 * n\n"
"  end\n"
"end\n"
"zs[nz + 1] = g + 1\n"
"for z = 1, nz do\n"
"  local h, k, n, m = presized(), 0, zn[z], zm[z]\n"
"  local w, s, text = zw[z], zg[z], zt[z]\n"
"  if m ~= '1' and (n > 0 or not m) then\n"
"    h[1], h[2], k = '', n > 0 and '1' or '0', 2\n"
"  end\n"
"  for g = zs[z], zs[z + 1] - 1 do\n"
"    if dirty[g] then\n"
"      h[k + 1] = ARGV[f0 + g]\n"
"      if text then\n"
"        h[k + 2] = fmt('%d:%d:%d', n, pp[g], cc[g])\n"
"      else\n"
"        h[k + 2] = fmt('%d', (pp[g] * B + cc[g]) * K + n)\n"
"      end\n"
"      k = k + 2\n"
"    end\n"
"  end\n"
"  if k > 0 then\n"
"    redis.call('HSET', zk[z], unpack(h))\n"
"  end\n"
"  if not m then\n"
"    redis.call('PEXPIRE', zk[z], s + (K + 2) * w - now)\n"
"    redis.call('UNLINK', KEYS[z] .. (s - 2 * K * w))\n"
"  end\n"
"  if m ~= '1' and n > 0 then\n"
"    redis.call('UNLINK', KEYS[z] .. (s - K * w))\n"
"  end\n"
"end\n"
"return out\n"),
    { 0 }
};


/* the pool of a zone that some location applies runs the script */

ngx_int_t
ngx_http_ratelimit_redis_batch_script(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool)
{
    return ngx_http_scale_redis_script_init(cf, pool,
                                            &ngx_http_ratelimit_redis_script);
}


/* one batcher per pool the zones use, per worker */

ngx_int_t
ngx_http_ratelimit_redis_batch_init(ngx_cycle_t *cycle, ngx_array_t *zones,
    ngx_http_ratelimit_redis_decide_pt decide)
{
    ngx_uint_t                           i, k, n;
    ngx_http_ratelimit_redis_zone_t    **zp;
    ngx_http_ratelimit_redis_batcher_t  *b;

    ngx_queue_init(&ngx_http_ratelimit_redis_inflight);

    b = ngx_pcalloc(cycle->pool,
                    zones->nelts * sizeof(ngx_http_ratelimit_redis_batcher_t));
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_http_ratelimit_redis_batchers = b;

    zp = zones->elts;
    n = 0;

    for (i = 0; i < zones->nelts; i++) {
        for (k = 0; k < n; k++) {
            if (b[k].pool == zp[i]->pool) {
                break;
            }
        }

        if (k == n) {
            b[k].pool = zp[i]->pool;
            b[k].decide = decide;
            ngx_queue_init(&b[k].pending);
            b[k].flush.handler = ngx_http_ratelimit_redis_batch_flush;
            b[k].flush.data = &b[k];
            b[k].flush.log = cycle->log;
            n++;
        }

        zp[i]->batcher = &b[k];
    }

    return NGX_OK;
}


void
ngx_http_ratelimit_redis_batch_exit(void)
{
    ngx_queue_t                       *q;
    ngx_http_ratelimit_redis_batch_t  *batch;

    if (ngx_http_ratelimit_redis_batchers == NULL) {
        return;
    }

    /* the Redis client has already dropped their replies */

    while (!ngx_queue_empty(&ngx_http_ratelimit_redis_inflight)) {
        q = ngx_queue_head(&ngx_http_ratelimit_redis_inflight);
        ngx_queue_remove(q);
        batch = ngx_queue_data(q, ngx_http_ratelimit_redis_batch_t, inflight);
        ngx_free(batch);
    }

    ngx_http_ratelimit_redis_batchers = NULL;
}


ngx_int_t
ngx_http_ratelimit_redis_batch_add(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx)
{
    ngx_pool_cleanup_t                  *cln;
    ngx_http_ratelimit_redis_batcher_t  *b;

    b = ctx->limits[0]->zone->batcher;

    /* a pool that is down fails at once, as a single command would */
    if (!ngx_http_scale_redis_usable(b->pool)) {
        ngx_http_scale_redis_count_error(b->pool,
                                         NGX_HTTP_SCALE_REDIS_CONNECT);
        return NGX_HTTP_SCALE_REDIS_CONNECT;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    cln->handler = ngx_http_ratelimit_redis_batch_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->batcher = b;
    ngx_queue_insert_tail(&b->pending, &ctx->queue);

    if (!b->flush.posted && b->sent < NGX_HTTP_RATELIMIT_REDIS_SENT_MAX) {
        ngx_post_event(&b->flush, &ngx_posted_events);
    }

    /* a client that goes away while we wait is noticed */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


static void
ngx_http_ratelimit_redis_batch_flush(ngx_event_t *ev)
{
    ngx_http_ratelimit_redis_batcher_t *b = ev->data;

    ngx_int_t                          rc;
    ngx_http_ratelimit_redis_ctx_t    *ctx;
    ngx_http_ratelimit_redis_batch_t  *batch;

    while (!ngx_queue_empty(&b->pending)
           && b->sent < NGX_HTTP_RATELIMIT_REDIS_SENT_MAX)
    {
        batch = ngx_http_ratelimit_redis_batch_build(b);

        if (batch == NULL) {
            /* out of memory: these requests fail, the next ones may not */
            rc = NGX_HTTP_SCALE_REDIS_PROTOCOL;

        } else {
            /* counted first: the answer may come at any time after */
            batch->sent = 1;
            b->sent++;

            rc = ngx_http_scale_redis_send_detached(b->pool,
                                         &ngx_http_ratelimit_redis_script,
                                         batch->argc, batch->argv,
                                         batch->argvlen,
                                         ngx_http_ratelimit_redis_batch_reply,
                                         batch, &batch->cmd);
        }

        if (rc == NGX_AGAIN) {
            ngx_queue_insert_tail(&ngx_http_ratelimit_redis_inflight,
                                  &batch->inflight);
            continue;
        }

        if (batch) {
            batch->sent = 0;
            b->sent--;

            ngx_queue_insert_tail(&ngx_http_ratelimit_redis_inflight,
                                  &batch->inflight);
            ngx_http_ratelimit_redis_batch_reply(batch, rc, NULL);

        } else {
            /* the first request of the queue, alone */
            ctx = ngx_queue_data(ngx_queue_head(&b->pending),
                                 ngx_http_ratelimit_redis_ctx_t, queue);
            ngx_queue_remove(&ctx->queue);
            ctx->batcher = NULL;

            b->decide(ctx->request, ctx, rc, NULL);
            ngx_http_scale_resume(ctx->request);
        }
    }
}


/* takes up to BATCH_MAX requests off the queue; one allocation */

static ngx_http_ratelimit_redis_batch_t *
ngx_http_ratelimit_redis_batch_build(ngx_http_ratelimit_redis_batcher_t *b)
{
    u_char                            *p;
    size_t                             size, bytes, *lens;
    ngx_str_t                         *key;
    ngx_uint_t                         n, nkeys, nruns, nz, nf, i, j, k, r, z;
    ngx_queue_t                       *q;
    const char                       **argv;
    ngx_http_ratelimit_redis_ctx_t    *ctx, *prev;
    ngx_http_ratelimit_redis_zone_t   *zone;
    ngx_http_ratelimit_redis_batch_t  *batch;

    /* per run and zone: its key, its zone's next one, its distinct key */
    ngx_str_t                         *keys[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            next[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            field[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            slot[NGX_HTTP_RATELIMIT_REDIS_APPS];

    /* per distinct zone: its first and last run and zone, distinct keys */
    ngx_http_ratelimit_redis_zone_t   *zones[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            head[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            tail[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            nfields[NGX_HTTP_RATELIMIT_REDIS_APPS];
    u_short                            distinct[NGX_HTTP_RATELIMIT_REDIS_APPS];

    u_char                             runs[NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX];

    /* a zone's place in the batch is valid for this batch only */
    ngx_http_ratelimit_redis_batch_gen++;

    n = 0;
    nkeys = 0;
    nruns = 0;
    nz = 0;
    nf = 0;
    bytes = 0;
    prev = NULL;

    for (q = ngx_queue_head(&b->pending);
         q != ngx_queue_sentinel(&b->pending)
         && n < NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX;
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_ratelimit_redis_ctx_t, queue);
        n++;

        if (prev && ngx_http_ratelimit_redis_batch_same(prev, ctx)) {
            runs[nruns - 1]++;
            continue;
        }

        for (j = 0; j < ctx->nzones; j++, nkeys++) {
            zone = ctx->limits[j]->zone;

            if (zone->batch_gen != ngx_http_ratelimit_redis_batch_gen) {
                zone->batch_gen = ngx_http_ratelimit_redis_batch_gen;
                zone->batch_slot = nz;
                zones[nz] = zone;
                head[nz] = nkeys;
                nfields[nz] = 0;
                bytes += zone->prefix.len;
                nz++;

            } else {
                next[tail[zone->batch_slot]] = nkeys;
            }

            z = zone->batch_slot;
            tail[z] = nkeys;
            next[nkeys] = NGX_HTTP_RATELIMIT_REDIS_APPS;
            keys[nkeys] = &ctx->keys[j];
            slot[nkeys] = (u_short) (2 * z + ctx->limits[j]->dry_run);
        }

        runs[nruns++] = 1;
        prev = ctx;
    }

    /*
     * The distinct keys of each zone, numbered zone by zone: the same key
     * in two runs must be one counter in the script.  A zone has at most
     * one key per run, so this compares at most BATCH_MAX^2 / 2 keys.
     */

    for (z = 0; z < nz; z++) {
        for (k = head[z]; k != NGX_HTTP_RATELIMIT_REDIS_APPS; k = next[k]) {
            key = keys[k];

            for (i = nf - nfields[z]; i < nf; i++) {
                if (keys[distinct[i]]->len == key->len
                    && ngx_memcmp(keys[distinct[i]]->data, key->data,
                                  key->len)
                       == 0)
                {
                    break;
                }
            }

            if (i == nf) {
                distinct[nf++] = k;
                nfields[z]++;
                bytes += key->len;
            }

            field[k] = (u_short) i;
        }
    }

    /* numkeys, a key per zone, the number of zones, 3 per zone, the
     * distinct keys, the runs */
    size = 1 + nz + 1 + 3 * nz + nf + 1;

    batch = ngx_alloc(sizeof(ngx_http_ratelimit_redis_batch_t)
                      + n * sizeof(ngx_http_ratelimit_redis_ctx_t *)
                      + size * (sizeof(char *) + sizeof(size_t))
                      + nkeys * sizeof(u_short)
                      + 2 * nruns
                      + (2 + nz) * NGX_INT_T_LEN
                      + 2 * nruns + 2 * nkeys
                      + bytes,
                      ngx_cycle->log);
    if (batch == NULL) {
        return NULL;
    }

    batch->batcher = b;
    batch->cmd = NULL;
    batch->sent = 0;
    batch->waiting = n;
    batch->argc = size;
    batch->ctxs = (ngx_http_ratelimit_redis_ctx_t **) (batch + 1);
    batch->argv = (const char **) (batch->ctxs + n);
    batch->argvlen = (size_t *) (batch->argv + size);
    batch->slots = (u_short *) (batch->argvlen + size);
    batch->nruns = nruns;
    batch->nz = nz;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ratelimit_redis: batch %p built: %ui requests, %ui runs, "
                   "%ui zones", batch, n, nruns, nz);
    batch->runs = (u_char *) (batch->slots + nkeys);
    batch->nzones = batch->runs + nruns;
    p = batch->nzones + nruns;

    ngx_memcpy(batch->slots, slot, nkeys * sizeof(u_short));

    for (i = 0; i < n; i++) {
        q = ngx_queue_head(&b->pending);
        ctx = ngx_queue_data(q, ngx_http_ratelimit_redis_ctx_t, queue);
        ngx_queue_remove(q);

        ctx->batcher = NULL;
        ctx->batch = batch;
        ctx->index = i;

        batch->ctxs[i] = ctx;
    }

    for (r = 0, i = 0; r < nruns; i += runs[r++]) {
        batch->runs[r] = runs[r];
        batch->nzones[r] = (u_char) batch->ctxs[i]->nzones;
    }

    argv = batch->argv;
    lens = batch->argvlen;

    *argv++ = (const char *) p;
    *lens = ngx_sprintf(p, "%ui", nz) - p;
    p += *lens++;

    for (z = 0; z < nz; z++) {
        *argv++ = (const char *) p;
        *lens++ = zones[z]->prefix.len;
        p = ngx_cpymem(p, zones[z]->prefix.data, zones[z]->prefix.len);
    }

    *argv++ = (const char *) p;
    *lens = ngx_sprintf(p, "%ui", nz) - p;
    p += *lens++;

    for (z = 0; z < nz; z++) {
        *argv++ = (const char *) zones[z]->limit_arg.data;
        *lens++ = zones[z]->limit_arg.len;
        *argv++ = (const char *) zones[z]->window_arg.data;
        *lens++ = zones[z]->window_arg.len;

        *argv++ = (const char *) p;
        *lens = ngx_sprintf(p, "%ui", (ngx_uint_t) nfields[z]) - p;
        p += *lens++;
    }

    /* keys are copied: a request may go away while the batch is out */

    for (i = 0; i < nf; i++) {
        key = keys[distinct[i]];

        *argv++ = (const char *) p;
        *lens++ = key->len;
        p = ngx_cpymem(p, key->data, key->len);
    }

    /* the runs, as bytes: the script reads them with one string.byte() */

    *argv++ = (const char *) p;
    *lens++ = 2 * nruns + 2 * nkeys;

    for (r = 0, k = 0; r < nruns; r++) {
        *p++ = runs[r];
        *p++ = batch->nzones[r];

        for (j = 0; j < batch->nzones[r]; j++, k++) {
            i = 2 * (ngx_uint_t) field[k] + (slot[k] & 1);
            *p++ = (u_char) (i >> 8);
            *p++ = (u_char) (i & 0xff);
        }
    }

    return batch;
}


/* the same zones with the same keys: one run in the script */

static ngx_uint_t
ngx_http_ratelimit_redis_batch_same(ngx_http_ratelimit_redis_ctx_t *a,
    ngx_http_ratelimit_redis_ctx_t *b)
{
    ngx_uint_t  j;

    if (a->nzones != b->nzones) {
        return 0;
    }

    for (j = 0; j < a->nzones; j++) {
        if (a->limits[j]->zone != b->limits[j]->zone
            || a->limits[j]->dry_run != b->limits[j]->dry_run
            || a->keys[j].len != b->keys[j].len
            || ngx_memcmp(a->keys[j].data, b->keys[j].data, a->keys[j].len)
               != 0)
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_ratelimit_redis_batch_reply(void *data, ngx_int_t rc,
    redisReply *reply)
{
    ngx_http_ratelimit_redis_batch_t *batch = data;

    u_short                             *slots;
    ngx_uint_t                           i, q, r;
    redisReply                         **e;
    ngx_http_ratelimit_redis_ctx_t      *ctx;
    ngx_http_ratelimit_redis_verdict_t   v[NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX];

    ngx_queue_remove(&batch->inflight);

    if (batch->sent) {
        batch->sent = 0;
        ngx_http_ratelimit_redis_batch_answered(batch->batcher);
    }

    /* the requests that resuming one ends must not free the batch */
    batch->cmd = NULL;

    if (rc == NGX_HTTP_SCALE_REDIS_OK
        && ngx_http_ratelimit_redis_batch_check(batch, reply) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "unexpected reply to the rate limit script "
                      "from redis pool \"%V\"", ngx_http_scale_redis_pool_name(
                                                    batch->batcher->pool));

        ngx_http_scale_redis_count_error(batch->batcher->pool,
                                         NGX_HTTP_SCALE_REDIS_PROTOCOL);
        rc = NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    e = (rc == NGX_HTTP_SCALE_REDIS_OK) ? reply->element + batch->nz : NULL;
    slots = batch->slots;
    i = 0;

    for (r = 0; r < batch->nruns; r++) {

        for (q = 0; q < batch->runs[r]; q++, i++) {

            /* read ctxs[] afresh each time: resuming one may end another */

            ctx = batch->ctxs[i];
            if (ctx == NULL) {
                continue;
            }

            if (rc == NGX_HTTP_SCALE_REDIS_OK) {
                ngx_http_ratelimit_redis_batch_verdict(e, reply->element,
                                                       slots,
                                                       batch->nzones[r],
                                                       batch->runs[r], q, v);
            }

            ctx->batch = NULL;

            batch->batcher->decide(ctx->request, ctx, rc,
                                   rc == NGX_HTTP_SCALE_REDIS_OK ? v : NULL);
            ngx_http_scale_resume(ctx->request);
        }

        if (e) {
            e += (batch->runs[r] == 1) ? batch->nzones[r]
                                       : 1 + 3 * batch->nzones[r];
        }

        slots += batch->nzones[r];
    }

    ngx_free(batch);
}


static ngx_int_t
ngx_http_ratelimit_redis_batch_check(ngx_http_ratelimit_redis_batch_t *batch,
    redisReply *reply)
{
    ngx_uint_t    i, j, n, r, m;
    redisReply  **e;

    n = batch->nz;

    for (r = 0; r < batch->nruns; r++) {
        n += (batch->runs[r] == 1) ? batch->nzones[r]
                                   : 1 + 3 * batch->nzones[r];
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < batch->nz; i++) {
        if (reply->element[i]->integer < 0) {
            return NGX_ERROR;
        }
    }

    /* admitted counts are counts of the run's requests; else no sign */

    e = reply->element + batch->nz;

    for (r = 0; r < batch->nruns; r++) {
        m = batch->runs[r];

        if (m == 1) {
            e += batch->nzones[r];
            continue;
        }

        for (i = 0; i < 1 + 3 * (ngx_uint_t) batch->nzones[r]; i++) {
            if (e[i]->integer < 0) {
                return NGX_ERROR;
            }
        }

        if (e[0]->integer > (long long) m) {
            return NGX_ERROR;
        }

        for (j = 0; j < batch->nzones[r]; j++) {
            if (e[1 + 3 * j]->integer > (long long) m) {
                return NGX_ERROR;
            }
        }

        e += 1 + 3 * batch->nzones[r];
    }

    return NGX_OK;
}


/*
 * The answer to the q-th request (from 0) of a run of m, from the run's
 * answer e, the zones' resets and the run's slots (2 * zone + dry run)
 */

static void
ngx_http_ratelimit_redis_batch_verdict(redisReply **e, redisReply **resets,
    u_short *slots, ngx_uint_t nzones, ngx_uint_t m, ngx_uint_t q,
    ngx_http_ratelimit_redis_verdict_t *v)
{
    long long   x, left;
    ngx_uint_t  j, admitted, before;

    if (m == 1) {
        /* one request: remaining if the zone admits it, else -retry */

        admitted = 1;

        for (j = 0; j < nzones; j++) {
            if (e[j]->integer < 0 && !(slots[j] & 1)) {
                admitted = 0;
            }
        }

        for (j = 0; j < nzones; j++) {
            x = e[j]->integer;

            if (x >= 0) {
                left = x - (long long) admitted;

                v[j].admitted = 1;
                v[j].remaining = left > 0 ? left : 0;
                v[j].retry = 0;

            } else {
                v[j].admitted = 0;
                v[j].remaining = 0;
                v[j].retry = -x;
            }

            v[j].reset = resets[slots[j] >> 1]->integer;
        }

        return;
    }

    admitted = e[0]->integer;
    before = ngx_min(q, admitted);      /* counted before this request */

    for (j = 0, e++; j < nzones; j++, e += 3) {

        if (q < (ngx_uint_t) e[0]->integer) {
            left = e[1]->integer - (long long) before - (q < admitted);

            v[j].admitted = 1;
            v[j].remaining = left > 0 ? left : 0;
            v[j].retry = 0;

        } else {
            v[j].admitted = 0;
            v[j].remaining = 0;
            v[j].retry = e[2]->integer;
        }

        v[j].reset = resets[slots[j] >> 1]->integer;
    }
}


/*
 * The request is freed: out of the queue, or out of the batch in flight.
 * A batch that no request waits for any more is abandoned: its timeout
 * must not keep a worker that shuts down alive.
 */

static void
ngx_http_ratelimit_redis_batch_cleanup(void *data)
{
    ngx_http_ratelimit_redis_ctx_t  *ctx = data;

    ngx_http_ratelimit_redis_batch_t  *batch;

    if (ctx->batcher) {
        ngx_queue_remove(&ctx->queue);
        ctx->batcher = NULL;
    }

    batch = ctx->batch;

    if (batch == NULL) {
        return;
    }

    batch->ctxs[ctx->index] = NULL;
    ctx->batch = NULL;

    if (--batch->waiting == 0 && batch->cmd) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "ratelimit_redis: batch %p abandoned", batch);

        ngx_http_scale_redis_abandon(batch->cmd);
        ngx_queue_remove(&batch->inflight);

        if (batch->sent) {
            ngx_http_ratelimit_redis_batch_answered(batch->batcher);
        }

        ngx_free(batch);
    }
}


/* a batch is answered or abandoned: the requests that waited go */

static void
ngx_http_ratelimit_redis_batch_answered(ngx_http_ratelimit_redis_batcher_t *b)
{
    b->sent--;

    if (!ngx_queue_empty(&b->pending) && !b->flush.posted) {
        ngx_post_event(&b->flush, &ngx_posted_events);
    }
}
