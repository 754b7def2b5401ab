"""Django's Redis cache, minus the FLUSHDB in `clear()`.

Our Redis database also holds the Celery broker's queues and the Channels layer: Django's
`cache.clear()` would empty all of it. Here it deletes only this cache's own keys (its prefix).
"""

from django.core.cache.backends.redis import RedisCache


class PrefixedRedisCache(RedisCache):
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
