"""`crypto`: the Web Crypto API over Python's `hashlib`, `hmac` and `os.urandom`.

`crypto.getRandomValues` and `crypto.randomUUID` are complete.
`crypto.subtle` covers what Workers code mostly uses it for: `digest`
(SHA-1/256/384/512, and MD5 as Workers allows) and HMAC keys (`importKey`
and `exportKey` in "raw" format, `generateKey`, `sign`, `verify`). Its
methods are coroutines, awaited like the JavaScript promises; an algorithm,
format or method Taipan lacks raises a NotSupportedError (or
AttributeError) naming it.
"""

import hashlib
import hmac
import os
import uuid

from pyodide.ffi import JsArray, JsObject

from .webapi import ArrayBuffer, DOMException, js_error, to_dict, view

_HASHES = ("SHA-1", "SHA-256", "SHA-384", "SHA-512")
_DIGESTS = (*_HASHES, "MD5")  # Workers' digest also takes MD5, for legacy protocols
_HMAC_USAGES = ("sign", "verify")
_MAX_RANDOM_BYTES = 65536  # the Web Crypto limit per getRandomValues call


class CryptoKey:
    """A secret key from `crypto.subtle`: `type`, `extractable`, `algorithm`
    (e.g. {"name": "HMAC", "hash": {"name": "SHA-256"}, "length": 256}) and `usages`."""

    type = "secret"

    def __init__(self, algorithm: JsObject, extractable: bool, usages, secret: bytes):
        self.algorithm = algorithm
        self.extractable = bool(extractable)
        self.usages = JsArray(usages)
        self._secret = secret

    def __repr__(self) -> str:
        return f"<CryptoKey {self.algorithm.name} {self.algorithm.hash.name} {list(self.usages)}>"


class SubtleCrypto:
    """`crypto.subtle`."""

    async def digest(self, algorithm, data) -> ArrayBuffer:
        """The hash of `data`; `algorithm` is "SHA-256" or {"name": "SHA-256"}."""
        name = _hash_name(algorithm, _DIGESTS)
        return ArrayBuffer(hashlib.new(_hashlib_name(name), view(data)).digest())

    async def importKey(self, format: str, keyData, algorithm, extractable: bool, keyUsages) -> CryptoKey:
        """An HMAC key from raw bytes:
        `importKey("raw", key, {"name": "HMAC", "hash": "SHA-256"}, False, ["sign", "verify"])`."""
        params = _hmac_params(algorithm, "importKey")
        _check_format(format, "importKey")
        secret = bytes(view(keyData))
        if not secret:
            raise DOMException("importKey: an HMAC key cannot be empty", "DataError")
        return _hmac_key(params, secret, extractable, keyUsages)

    async def generateKey(self, algorithm, extractable: bool, keyUsages) -> CryptoKey:
        """A random HMAC key, as long as the hash's block size unless `length` (bits) says otherwise."""
        params = _hmac_params(algorithm, "generateKey")
        hash_name = _hmac_hash(params)
        bits = params.get("length") or hashlib.new(_hashlib_name(hash_name)).block_size * 8
        return _hmac_key(params, os.urandom((int(bits) + 7) // 8), extractable, keyUsages)

    async def exportKey(self, format: str, key: CryptoKey) -> ArrayBuffer:
        _check_format(format, "exportKey")
        if not key.extractable:
            raise DOMException("exportKey: the key is not extractable", "InvalidAccessError")
        return ArrayBuffer(key._secret)

    async def sign(self, algorithm, key: CryptoKey, data) -> ArrayBuffer:
        """The HMAC of `data` under `key`."""
        return ArrayBuffer(_hmac(algorithm, key, "sign", data))

    async def verify(self, algorithm, key: CryptoKey, signature, data) -> bool:
        """Whether `signature` is the HMAC of `data` under `key` (compared in constant time)."""
        return hmac.compare_digest(_hmac(algorithm, key, "verify", data), bytes(view(signature)))

    def __getattr__(self, name: str):
        # encrypt, deriveBits, wrapKey...: say what is missing, not just "no attribute".
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"crypto.subtle.{name} is not available in Taipan yet: crypto.subtle has "
            "digest, and importKey, exportKey, generateKey, sign and verify for HMAC"
        )


class Crypto:
    """The `crypto` global: `getRandomValues`, `randomUUID` and `subtle`."""

    def __init__(self):
        self.subtle = SubtleCrypto()

    def getRandomValues(self, array):
        """Fill `array` (a `Uint8Array`, a bytearray or any writable buffer)
        with random bytes, in place, and return it."""
        try:
            target = memoryview(array).cast("B")
        except TypeError:
            raise js_error("TypeError", f"getRandomValues needs a typed array, got {type(array).__name__}") from None
        if target.readonly:
            raise js_error("TypeError", "getRandomValues needs a writable array (bytes are read-only; use Uint8Array.new(n))")
        if target.nbytes > _MAX_RANDOM_BYTES:
            raise DOMException(
                f"getRandomValues: {target.nbytes} bytes asked for, more than the {_MAX_RANDOM_BYTES} allowed",
                "QuotaExceededError",
            )
        target[:] = os.urandom(target.nbytes)
        return array

    def randomUUID(self) -> str:
        """A random (version 4) UUID string."""
        return str(uuid.uuid4())


crypto = Crypto()


def _algorithm(algorithm) -> tuple[str, dict]:
    """An algorithm identifier ("SHA-256", {"name": ...} or a `to_js` object)
    as its upper-cased name (Web Crypto names are case-insensitive) and parameters."""
    params = {"name": algorithm} if isinstance(algorithm, str) else to_dict(algorithm)
    name = params.get("name")
    if not isinstance(name, str):
        raise js_error("TypeError", f"an algorithm is a name or has one, got {algorithm!r}")
    return name.upper(), params


def _hash_name(algorithm, supported) -> str:
    name, _ = _algorithm(algorithm)
    if name not in supported:
        message = f'the hash algorithm "{name}" is not supported in Taipan (it has {", ".join(supported)})'
        raise DOMException(message, "NotSupportedError")
    return name


def _hashlib_name(name: str) -> str:
    return name.replace("-", "").lower()  # "SHA-256" -> "sha256"


def _hmac_params(algorithm, method: str) -> dict:
    name, params = _algorithm(algorithm)
    if name != "HMAC":
        message = f'crypto.subtle.{method}: the algorithm "{name}" is not supported in Taipan yet (HMAC is)'
        raise DOMException(message, "NotSupportedError")
    return params


def _hmac_hash(params: dict) -> str:
    if params.get("hash") is None:
        raise js_error("TypeError", 'an HMAC key needs a hash, e.g. {"name": "HMAC", "hash": "SHA-256"}')
    return _hash_name(params["hash"], _HASHES)


def _check_format(format: str, method: str) -> None:
    if format != "raw":
        message = f'crypto.subtle.{method}: the key format "{format}" is not supported in Taipan yet (use "raw")'
        raise DOMException(message, "NotSupportedError")


def _hmac_key(params: dict, secret: bytes, extractable: bool, usages) -> CryptoKey:
    hash_name = _hmac_hash(params)
    usages = list(usages or ())
    if not usages or any(usage not in _HMAC_USAGES for usage in usages):
        raise DOMException(f'an HMAC key\'s usages are "sign" and/or "verify", got {usages!r}', "SyntaxError")
    algorithm = JsObject({"name": "HMAC", "hash": JsObject({"name": hash_name}), "length": len(secret) * 8})
    return CryptoKey(algorithm, extractable, usages, secret)


def _hmac(algorithm, key: CryptoKey, usage: str, data) -> bytes:
    _hmac_params(algorithm, usage)
    if not isinstance(key, CryptoKey):
        raise js_error("TypeError", f"{usage}: expected a CryptoKey, got {type(key).__name__}")
    if key.algorithm.name != "HMAC" or usage not in key.usages:
        raise DOMException(f"{usage}: the key's usages are {list(key.usages)}", "InvalidAccessError")
    return hmac.new(key._secret, view(data), _hashlib_name(key.algorithm.hash.name)).digest()
