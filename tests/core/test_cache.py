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


def test_every_thread_shares_one_redis_client_and_connection_pool():
    """Django's cache objects are per thread and ASGI runs each request in a new thread: without
    sharing, every request would connect to Redis anew."""
    if not settings.REDIS_URL:
        pytest.skip("the shared cache is Redis only when REDIS_URL is set (CI)")
    from concurrent.futures import ThreadPoolExecutor

    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    first = caches["default"]._cache.get_client(None, write=True)
    before = first.connection_pool._created_connections

    def roundtrip(n: int) -> tuple[int, int, int]:
        backend = caches["default"]  # this thread's own cache object
        assert isinstance(backend, RedisCache)
        backend.set(f"shared-client-{n}", n)
        client = backend._cache.get_client(None, write=True)
        return backend.get(f"shared-client-{n}"), id(client), id(backend)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(roundtrip, range(64)))
    assert [value for value, _, _ in results] == list(range(64))
    assert len({backend for _, _, backend in results}) > 1  # Django's per-thread cache objects...
    assert {client for _, client, _ in results} == {id(first)}  # ...share one client
    assert first.connection_pool._created_connections - before <= 8  # at most one per thread at once
    cache.delete_many([f"shared-client-{n}" for n in range(64)])
