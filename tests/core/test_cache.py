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


def test_cache_operations_share_one_redis_client_across_threads():
    if not settings.REDIS_URL:
        pytest.skip("the shared cache is Redis only when REDIS_URL is set (CI)")
    from concurrent.futures import ThreadPoolExecutor

    backend = cache._cache  # Django's per-backend client wrapper
    first = backend.get_client(None, write=True)

    def roundtrip(n: int) -> tuple[int, int]:
        cache.set(f"shared-client-{n}", n)
        return cache.get(f"shared-client-{n}"), id(backend.get_client(None, write=True))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(roundtrip, range(64)))
    assert [value for value, _ in results] == list(range(64))
    assert {client for _, client in results} == {id(first)}
    cache.delete_many([f"shared-client-{n}" for n in range(64)])
