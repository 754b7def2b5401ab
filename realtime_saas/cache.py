"""Django's Redis cache, minus the FLUSHDB in `clear()` and a client object per operation.

Our Redis database also holds the Celery broker's queues and the Channels layer: Django's
`cache.clear()` would empty all of it. Here it deletes only this cache's own keys (its prefix).

Django builds a new `redis.Redis` around its connection pool for every operation, and each one
fills a table of ~170 response callbacks (measured: ~4% of a call start's CPU, three cache
operations per request). A `redis.Redis` is safe to share between threads (connections come from
the pool per command), so we keep one per pool.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class PrefixedRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient

    def clear(self) -> bool:
        client = self._cache.get_client(None, write=True)
        # Django's keys are "<prefix>:<version>:<key>" (an empty prefix still leaves the colon).
        pattern = f"{self.key_prefix}:*"
        deleted = 0
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
        return bool(deleted)
