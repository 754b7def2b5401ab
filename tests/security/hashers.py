"""A password hasher that counts its work, so a test can compare what two requests did."""

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingHasher(MD5PasswordHasher):
    algorithm = "counting_md5"
    encodings = 0

    def encode(self, password, salt):
        CountingHasher.encodings += 1
        return super().encode(password, salt)
