
/*
 * The batcher: the requests that need Redis during one event loop
 * iteration are decided by one script call on their pool, in the order
 * they arrived.  Redis pays its per-call cost (and one TIME, one MGET)
 * once per batch instead of once per request, and the answers are exactly
 * those that one call per request would have given.
 */


#include "ngx_http_ratelimit_redis.h"
#include "ngx_http_scale_redis.h"


/* requests in one script call; run lengths are kept in u_char */
#define NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX  64

#if (NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX > 255)
#error NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX must fit in u_char
#endif


struct ngx_http_ratelimit_redis_batcher_s {
    ngx_http_scale_redis_pool_t     *pool;
    ngx_queue_t                      pending;      /* of ctx */
    ngx_event_t                      flush;        /* posted */
};


struct ngx_http_ratelimit_redis_batch_s {
    ngx_queue_t                      inflight;
    ngx_http_ratelimit_redis_batcher_t  *batcher;
    ngx_http_scale_redis_cmd_t      *cmd;          /* NULL: answered */
    ngx_uint_t                       waiting;      /* requests not gone */
    ngx_http_ratelimit_redis_ctx_t **ctxs;         /* NULL: request gone */
    ngx_uint_t                       nruns;
    u_char                          *runs;         /* requests per run */
    u_char                          *nzones;       /* zones per run */
    int                              argc;
    const char                     **argv;
    size_t                          *argvlen;
};


static void ngx_http_ratelimit_redis_batch_flush(ngx_event_t *ev);
static ngx_http_ratelimit_redis_batch_t *ngx_http_ratelimit_redis_batch_build(
    ngx_http_ratelimit_redis_batcher_t *b);
static ngx_uint_t ngx_http_ratelimit_redis_batch_same(
    ngx_http_ratelimit_redis_ctx_t *a, ngx_http_ratelimit_redis_ctx_t *b);
static void ngx_http_ratelimit_redis_batch_reply(void *data, ngx_int_t rc,
    redisReply *reply);
static ngx_int_t ngx_http_ratelimit_redis_batch_check(
    ngx_http_ratelimit_redis_batch_t *batch, redisReply *reply);
static void ngx_http_ratelimit_redis_batch_verdict(redisReply **e,
    ngx_uint_t nzones, ngx_uint_t q, ngx_http_ratelimit_redis_verdict_t *v);
static void ngx_http_ratelimit_redis_batch_cleanup(void *data);


static ngx_http_ratelimit_redis_batcher_t  *ngx_http_ratelimit_redis_batchers;
static ngx_queue_t                          ngx_http_ratelimit_redis_inflight;

static const char  *ngx_http_ratelimit_redis_digits[] = {
    "0", "1", "2", "3", "4", "5", "6", "7", "8"
};


/*
 * Consecutive requests with the same zones and keys travel as one run:
 * their keys and arguments are sent once and their answers come back as
 * one (a global limit or a flood from one client is a single run however
 * many requests it holds).
 * KEYS: a base key per (run, zone), run by run.
 * ARGV: per run, its number of requests and of zones, then per zone:
 * limit, window (ms), dry run (0/1).
 * Per run it returns how many of its requests are admitted (the first
 * ones), then per zone: how many requests it admits (the first ones),
 * remaining before the run, retry (ms until this zone would admit: the
 * first whole millisecond at which it would) and reset (ms to the window's
 * end).  Within a run every answer follows from these: a request's count
 * grows by one for each admitted request before it, and once a zone or
 * the run rejects, the counts stop moving and every later request gets
 * the same answer.  ngx_http_ratelimit_redis_batch_verdict() unfolds them.
 * Sliding window: the current window's count plus the previous one's
 * weighted by how much of it the last window length still covers.  Time
 * comes from Redis, so nginx hosts need not agree on the clock.  A request
 * is counted only if all its zones admit it.  Key names and numbers are
 * worked out once per distinct key and window, not once per request.
 */

static ngx_http_scale_redis_script_t  ngx_http_ratelimit_redis_script = {
    ngx_string(
"local t = redis.call('TIME')\n"
"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
"local zk, zp, zl, zw, ze, zd = {}, {}, {}, {}, {}, {}\n"
"local rn, nz, names, seen, win, num = {}, {}, {}, {}, {}, {}\n"
"local a, k = 1, 1\n"
"while a <= #ARGV do\n"
"  local n = tonumber(ARGV[a + 1])\n"
"  rn[#rn + 1], nz[#nz + 1] = tonumber(ARGV[a]), n\n"
"  for j = 1, n do\n"
"    local ws = ARGV[a + 3 * j]\n"
"    local s = win[ws]\n"
"    if not s then\n"
"      local w = tonumber(ws)\n"
"      local e = now % w\n"
"      s = {w, e, tostring(now - e), tostring(now - e - w)}\n"
"      win[ws] = s\n"
"    end\n"
"    local base = KEYS[k]\n"
"    local id = base .. ws\n"
"    local cur = seen[id]\n"
"    if not cur then\n"
"      cur = {base .. s[3], base .. s[4]}\n"
"      seen[id] = cur\n"
"      names[#names + 1] = cur[1]\n"
"      names[#names + 1] = cur[2]\n"
"    end\n"
"    local ls = ARGV[a + 3 * j - 1]\n"
"    local l = num[ls]\n"
"    if not l then l = tonumber(ls); num[ls] = l end\n"
"    zk[k], zp[k], zw[k], ze[k] = cur[1], cur[2], s[1], s[2]\n"
"    zl[k], zd[k] = l, ARGV[a + 3 * j + 1] == '1'\n"
"    k = k + 1\n"
"  end\n"
"  a = a + 2 + 3 * n\n"
"end\n"
"local count, incr, ttl, out, ok = {}, {}, {}, {}, {}\n"
"local v = redis.call('MGET', unpack(names))\n"
"for i, name in ipairs(names) do count[name] = tonumber(v[i]) or 0 end\n"
"k = 1\n"
"for r = 1, #nz do\n"
"  local n, m, o = nz[r], rn[r], #out + 1\n"
"  for z = k, k + n - 1 do\n"
"    local c, p, l, w, e = count[zk[z]], count[zp[z]], zl[z], zw[z], ze[z]\n"
"    local left = math.floor(l - (p * (w - e) / w + c))\n"
"    out[o + 4 * (z - k) + 1] = 0\n"
"    out[o + 4 * (z - k) + 2] = left > 0 and left or 0\n"
"    out[o + 4 * (z - k) + 3] = 0\n"
"    out[o + 4 * (z - k) + 4] = w - e\n"
"  end\n"
"  local admitted = 0\n"
"  while admitted < m do\n"
"    local admit = true\n"
"    for z = k, k + n - 1 do\n"
"      local c, p, l, w, e = count[zk[z]], count[zp[z]], zl[z], zw[z], ze[z]\n"
"      ok[z] = p * (w - e) / w + c + 1 <= l\n"
"      if not ok[z] then\n"
"        local retry\n"
"        if c + 1 > l then\n"
"          retry = w - e + w - math.floor((l - 1) * w / c)\n"
"        else\n"
"          retry = w - math.floor((l - c - 1) * w / p) - e\n"
"        end\n"
"        out[o + 4 * (z - k) + 3] = retry > 0 and retry or 1\n"
"        if not zd[z] then admit = false end\n"
"      end\n"
"    end\n"
"    if not admit then break end\n"
"    admitted = admitted + 1\n"
"    for z = k, k + n - 1 do\n"
"      if ok[z] then\n"
"        local key = zk[z]\n"
"        count[key] = count[key] + 1\n"
"        incr[key] = (incr[key] or 0) + 1\n"
"        ttl[key] = 2 * zw[z]\n"
"        out[o + 4 * (z - k) + 1] = admitted\n"
"      end\n"
"    end\n"
"  end\n"
"  out[o] = admitted\n"
"  if admitted < m then\n"
"    for z = k, k + n - 1 do\n"
"      if ok[z] then out[o + 4 * (z - k) + 1] = m end\n"
"    end\n"
"  end\n"
"  k = k + n\n"
"end\n"
"for key, d in pairs(incr) do\n"
"  redis.call('INCRBY', key, d)\n"
"  if count[key] == d then redis.call('PEXPIRE', key, ttl[key]) end\n"
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
ngx_http_ratelimit_redis_batch_init(ngx_cycle_t *cycle, ngx_array_t *zones)
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

    if (!b->flush.posted) {
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

    while (!ngx_queue_empty(&b->pending)) {

        batch = ngx_http_ratelimit_redis_batch_build(b);

        if (batch == NULL) {
            /* out of memory: these requests fail, the next ones may not */
            rc = NGX_HTTP_SCALE_REDIS_PROTOCOL;

        } else {
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
            ngx_queue_insert_tail(&ngx_http_ratelimit_redis_inflight,
                                  &batch->inflight);
            ngx_http_ratelimit_redis_batch_reply(batch, rc, NULL);

        } else {
            /* the first request of the queue, alone */
            ctx = ngx_queue_data(ngx_queue_head(&b->pending),
                                 ngx_http_ratelimit_redis_ctx_t, queue);
            ngx_queue_remove(&ctx->queue);
            ctx->batcher = NULL;

            ngx_http_ratelimit_redis_decide(ctx->request, ctx, rc, NULL);
            ngx_http_scale_resume(ctx->request);
        }
    }
}


/* takes up to BATCH_MAX requests off the queue; one allocation */

static ngx_http_ratelimit_redis_batch_t *
ngx_http_ratelimit_redis_batch_build(ngx_http_ratelimit_redis_batcher_t *b)
{
    u_char                            *p;
    size_t                             size, keys, *lens;
    ngx_uint_t                         n, nkeys, nruns, i, j, r;
    ngx_queue_t                       *q;
    const char                       **argv;
    ngx_http_ratelimit_redis_ctx_t    *ctx, *prev;
    ngx_http_ratelimit_redis_zone_t   *zone;
    ngx_http_ratelimit_redis_batch_t  *batch;
    u_char                             runs[NGX_HTTP_RATELIMIT_REDIS_BATCH_MAX];

    n = 0;
    nkeys = 0;
    nruns = 0;
    keys = 0;
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

        for (j = 0; j < ctx->nzones; j++) {
            keys += ctx->keys[j].len;
        }

        nkeys += ctx->nzones;
        runs[nruns++] = 1;
        prev = ctx;
    }

    /* numkeys, the keys, then per run its sizes and 3 per zone */
    size = 1 + nkeys + 2 * nruns + 3 * nkeys;

    batch = ngx_alloc(sizeof(ngx_http_ratelimit_redis_batch_t)
                      + n * sizeof(ngx_http_ratelimit_redis_ctx_t *)
                      + size * (sizeof(char *) + sizeof(size_t))
                      + 2 * nruns + NGX_INT_T_LEN + nruns * NGX_INT_T_LEN
                      + keys,
                      ngx_cycle->log);
    if (batch == NULL) {
        return NULL;
    }

    batch->batcher = b;
    batch->cmd = NULL;
    batch->waiting = n;
    batch->argc = size;
    batch->ctxs = (ngx_http_ratelimit_redis_ctx_t **) (batch + 1);
    batch->argv = (const char **) (batch->ctxs + n);
    batch->argvlen = (size_t *) (batch->argv + size);
    batch->nruns = nruns;
    batch->runs = (u_char *) (batch->argvlen + size);
    batch->nzones = batch->runs + nruns;
    p = batch->nzones + nruns;

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
    *lens = ngx_sprintf(p, "%ui", nkeys) - p;
    p += *lens++;

    /* keys are copied: a request may go away while the batch is out */

    for (r = 0, i = 0; r < nruns; i += runs[r++]) {
        ctx = batch->ctxs[i];

        for (j = 0; j < ctx->nzones; j++) {
            *argv++ = (const char *) p;
            *lens++ = ctx->keys[j].len;
            p = ngx_cpymem(p, ctx->keys[j].data, ctx->keys[j].len);
        }
    }

    for (r = 0, i = 0; r < nruns; i += runs[r++]) {
        ctx = batch->ctxs[i];

        *argv++ = (const char *) p;
        *lens = ngx_sprintf(p, "%ui", (ngx_uint_t) runs[r]) - p;
        p += *lens++;

        *argv++ = ngx_http_ratelimit_redis_digits[ctx->nzones];
        *lens++ = 1;

        for (j = 0; j < ctx->nzones; j++) {
            zone = ctx->limits[j]->zone;

            *argv++ = (const char *) zone->limit_arg.data;
            *lens++ = zone->limit_arg.len;
            *argv++ = (const char *) zone->window_arg.data;
            *lens++ = zone->window_arg.len;
            *argv++ = ctx->limits[j]->dry_run ? "1" : "0";
            *lens++ = 1;
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

    ngx_uint_t                           i, k, q, r;
    ngx_http_ratelimit_redis_ctx_t      *ctx;
    ngx_http_ratelimit_redis_verdict_t   v[NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX];

    ngx_queue_remove(&batch->inflight);

    /* the requests that resuming one ends must not free the batch */
    batch->cmd = NULL;

    if (rc == NGX_HTTP_SCALE_REDIS_OK
        && ngx_http_ratelimit_redis_batch_check(batch, reply) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ratelimit_redis: unexpected reply from redis pool "
                      "\"%V\"", ngx_http_scale_redis_pool_name(
                                                    batch->batcher->pool));

        ngx_http_scale_redis_count_error(batch->batcher->pool,
                                         NGX_HTTP_SCALE_REDIS_PROTOCOL);
        rc = NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    k = 0;
    i = 0;

    for (r = 0; r < batch->nruns; r++) {

        for (q = 0; q < batch->runs[r]; q++, i++) {

            /* read ctxs[] afresh each time: resuming one may end another */

            ctx = batch->ctxs[i];
            if (ctx == NULL) {
                continue;
            }

            if (rc == NGX_HTTP_SCALE_REDIS_OK) {
                ngx_http_ratelimit_redis_batch_verdict(reply->element + k,
                                                       batch->nzones[r], q, v);
            }

            ctx->batch = NULL;

            ngx_http_ratelimit_redis_decide(ctx->request, ctx, rc,
                                     rc == NGX_HTTP_SCALE_REDIS_OK ? v : NULL);
            ngx_http_scale_resume(ctx->request);
        }

        k += 1 + 4 * batch->nzones[r];
    }

    ngx_free(batch);
}


static ngx_int_t
ngx_http_ratelimit_redis_batch_check(ngx_http_ratelimit_redis_batch_t *batch,
    redisReply *reply)
{
    ngx_uint_t    i, j, n, r;
    redisReply  **e;

    n = 0;

    for (r = 0; r < batch->nruns; r++) {
        n += 1 + 4 * batch->nzones[r];
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < 0)
        {
            return NGX_ERROR;
        }
    }

    /* admitted counts are counts of the run's requests */

    e = reply->element;

    for (r = 0; r < batch->nruns; r++) {
        if (e[0]->integer > batch->runs[r]) {
            return NGX_ERROR;
        }

        for (j = 0; j < batch->nzones[r]; j++) {
            if (e[1 + 4 * j]->integer > batch->runs[r]) {
                return NGX_ERROR;
            }
        }

        e += 1 + 4 * batch->nzones[r];
    }

    return NGX_OK;
}


/* the answer to the q-th request (from 0) of a run, from the run's answer */

static void
ngx_http_ratelimit_redis_batch_verdict(redisReply **e, ngx_uint_t nzones,
    ngx_uint_t q, ngx_http_ratelimit_redis_verdict_t *v)
{
    long long   left;
    ngx_uint_t  j, admitted, before;

    admitted = e[0]->integer;
    before = ngx_min(q, admitted);      /* counted before this request */

    for (j = 0, e++; j < nzones; j++, e += 4) {

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

        v[j].reset = e[3]->integer;
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
        ngx_free(batch);
    }
}
