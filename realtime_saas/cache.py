"""Django's Redis cache, minus the FLUSHDB in `clear()`, and one connection pool per process.

Our Redis database also holds the Celery broker's queues and the Channels layer: Django's
`cache.clear()` would empty all of it. Here it deletes only this cache's own keys (its prefix).

Django also keeps one cache object per thread (`django.core.cache.caches` is thread-local), each
with its own connection pool; under ASGI every request's sync code runs in a fresh thread, so every
request opened new TCP connections to Redis (and paid redis-py's handshake on each). And it builds a
new `redis.Redis` around the pool for every operation, each filling a table of ~170 response
callbacks. Here the pool and the client are shared by the whole process: both are thread-safe
(a command takes a connection from the pool and gives it back).
"""

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_shared: dict[tuple, object] = {}
_shared_lock = threading.Lock()


class SharedClientRedisCacheClient(RedisCacheClient):
    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        shared_key = (self._servers[index], repr(sorted(self._pool_options.items())))
        client = _shared.get(shared_key)
        if client is None:
            with _shared_lock:
                client = _shared.get(shared_key)
                if client is None:
                    client = _shared[shared_key] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class PrefixedRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient

    # django-stubs: BaseCache.clear() -> None, yet RedisCache.clear() (Django's returns FLUSHDB's answer) -> bool.
    def clear(self) -> bool:  # type: ignore[override]
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
