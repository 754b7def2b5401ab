import pytest
import redis
from django.conf import settings
from django.core.cache import cache


def test_cache_clear_leaves_other_redis_keys_alone():
    if not settings.REDIS_URL:
        pytest.skip("the shared cache is Redis only when REDIS_URL is set (CI)")
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    client.set("not-the-cache:celery-queue-stand-in", "keep me")
    try:
        cache.set("throttle", 3)
        assert cache.get("throttle") == 3
        cache.clear()
        assert cache.get("throttle") is None
        assert client.get("not-the-cache:celery-queue-stand-in") == b"keep me"
    finally:
        client.delete("not-the-cache:celery-queue-stand-in")
