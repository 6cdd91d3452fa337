
/*
 * The deny cache, per worker: an rbtree on a hash of (zone, key) with an
 * LRU queue that bounds it.  No locks, no shared memory: each worker asks
 * Redis once per rejected key and window, then answers locally.
 */


#include "ngx_http_ratelimit_redis_cache.h"


#define NGX_HTTP_RATELIMIT_REDIS_CACHE_MAX  16384


typedef struct {
    ngx_rbtree_node_t                node;         /* key: hash */
    ngx_queue_t                      queue;
    ngx_uint_t                       zone;
    ngx_msec_t                       until;
    size_t                           len;
    u_char                           data[1];
} ngx_http_ratelimit_redis_cache_node_t;


static ngx_http_ratelimit_redis_cache_node_t *
    ngx_http_ratelimit_redis_cache_find(ngx_uint_t zone, ngx_str_t *key,
    uint32_t hash);
static void ngx_http_ratelimit_redis_cache_delete(
    ngx_http_ratelimit_redis_cache_node_t *cn);
static void ngx_http_ratelimit_redis_cache_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);


static ngx_rbtree_t       ngx_http_ratelimit_redis_cache_tree;
static ngx_rbtree_node_t  ngx_http_ratelimit_redis_cache_sentinel;
static ngx_queue_t        ngx_http_ratelimit_redis_cache_lru;
static ngx_uint_t         ngx_http_ratelimit_redis_cache_size;
static ngx_uint_t         ngx_http_ratelimit_redis_cache_ready;


ngx_int_t
ngx_http_ratelimit_redis_cache_init(ngx_cycle_t *cycle, ngx_uint_t nzones)
{
    ngx_rbtree_init(&ngx_http_ratelimit_redis_cache_tree,
                    &ngx_http_ratelimit_redis_cache_sentinel,
                    ngx_http_ratelimit_redis_cache_insert_value);
    ngx_queue_init(&ngx_http_ratelimit_redis_cache_lru);

    ngx_http_ratelimit_redis_cache_size = 0;
    ngx_http_ratelimit_redis_cache_ready = 1;

    return NGX_OK;
}


void
ngx_http_ratelimit_redis_cache_free(void)
{
    ngx_queue_t  *q;

    if (!ngx_http_ratelimit_redis_cache_ready) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_ratelimit_redis_cache_lru)) {
        q = ngx_queue_head(&ngx_http_ratelimit_redis_cache_lru);
        ngx_http_ratelimit_redis_cache_delete(
            ngx_queue_data(q, ngx_http_ratelimit_redis_cache_node_t, queue));
    }

    ngx_http_ratelimit_redis_cache_ready = 0;
}


ngx_msec_t
ngx_http_ratelimit_redis_cache_lookup(ngx_uint_t zone, ngx_str_t *key)
{
    ngx_msec_int_t                          left;
    ngx_http_ratelimit_redis_cache_node_t  *cn;

    if (ngx_http_ratelimit_redis_cache_size == 0) {
        return 0;
    }

    cn = ngx_http_ratelimit_redis_cache_find(zone, key,
                                       ngx_crc32_short(key->data, key->len));
    if (cn == NULL) {
        return 0;
    }

    left = (ngx_msec_int_t) (cn->until - ngx_current_msec);

    if (left <= 0) {
        ngx_http_ratelimit_redis_cache_delete(cn);
        return 0;
    }

    return (ngx_msec_t) left;
}


void
ngx_http_ratelimit_redis_cache_insert(ngx_uint_t zone, ngx_str_t *key,
    ngx_msec_t until)
{
    uint32_t                                hash;
    ngx_queue_t                            *q;
    ngx_http_ratelimit_redis_cache_node_t  *cn;

    if (!ngx_http_ratelimit_redis_cache_ready) {
        return;
    }

    hash = ngx_crc32_short(key->data, key->len);

    cn = ngx_http_ratelimit_redis_cache_find(zone, key, hash);

    if (cn) {
        cn->until = until;
        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&ngx_http_ratelimit_redis_cache_lru, &cn->queue);
        return;
    }

    if (ngx_http_ratelimit_redis_cache_size
        >= NGX_HTTP_RATELIMIT_REDIS_CACHE_MAX)
    {
        q = ngx_queue_last(&ngx_http_ratelimit_redis_cache_lru);
        ngx_http_ratelimit_redis_cache_delete(
            ngx_queue_data(q, ngx_http_ratelimit_redis_cache_node_t, queue));
    }

    cn = ngx_alloc(offsetof(ngx_http_ratelimit_redis_cache_node_t, data)
                   + key->len, ngx_cycle->log);
    if (cn == NULL) {
        return;
    }

    cn->node.key = hash;
    cn->zone = zone;
    cn->until = until;
    cn->len = key->len;
    ngx_memcpy(cn->data, key->data, key->len);

    ngx_rbtree_insert(&ngx_http_ratelimit_redis_cache_tree, &cn->node);
    ngx_queue_insert_head(&ngx_http_ratelimit_redis_cache_lru, &cn->queue);
    ngx_http_ratelimit_redis_cache_size++;
}


/* ordered by hash, then zone, then key bytes: no walking of collisions */

static ngx_int_t
ngx_http_ratelimit_redis_cache_cmp(ngx_http_ratelimit_redis_cache_node_t *cn,
    ngx_uint_t zone, u_char *data, size_t len)
{
    if (zone != cn->zone) {
        return (zone < cn->zone) ? -1 : 1;
    }

    return ngx_memn2cmp(data, cn->data, len, cn->len);
}


static void
ngx_http_ratelimit_redis_cache_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                     **p;
    ngx_http_ratelimit_redis_cache_node_t  *cn;

    cn = (ngx_http_ratelimit_redis_cache_node_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_http_ratelimit_redis_cache_cmp(
                     (ngx_http_ratelimit_redis_cache_node_t *) temp,
                     cn->zone, cn->data, cn->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_ratelimit_redis_cache_node_t *
ngx_http_ratelimit_redis_cache_find(ngx_uint_t zone, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                               rc;
    ngx_rbtree_node_t                      *node, *sentinel;
    ngx_http_ratelimit_redis_cache_node_t  *cn;

    node = ngx_http_ratelimit_redis_cache_tree.root;
    sentinel = ngx_http_ratelimit_redis_cache_tree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        cn = (ngx_http_ratelimit_redis_cache_node_t *) node;
        rc = ngx_http_ratelimit_redis_cache_cmp(cn, zone, key->data, key->len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_ratelimit_redis_cache_delete(ngx_http_ratelimit_redis_cache_node_t *cn)
{
    ngx_rbtree_delete(&ngx_http_ratelimit_redis_cache_tree, &cn->node);
    ngx_queue_remove(&cn->queue);
    ngx_free(cn);
    ngx_http_ratelimit_redis_cache_size--;
}
