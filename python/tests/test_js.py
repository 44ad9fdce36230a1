"""The JavaScript globals of the `js` module (`_taipan.webapi`, `_taipan.webcrypto`)."""

import asyncio
import unittest

from pyodide.ffi import JsException, to_js
from tests.support import run, run_loop


class ImportTest(unittest.TestCase):
    def test_missing_globals_name_themselves(self):
        with self.assertRaises(ImportError) as caught:
            from js import DoesNotExist  # noqa: F401
        self.assertIn("js.DoesNotExist is not available in Taipan", str(caught.exception))
        # Probing stays an attribute lookup: packages check with hasattr/getattr.
        import js

        self.assertFalse(hasattr(js, "DoesNotExist"))
        self.assertIsNone(getattr(js, "HTMLRewriter", None))

    def test_every_listed_name_imports(self):
        import js

        for name in js.__all__:
            self.assertIsNotNone(getattr(js, name), name)
        self.assertFalse(hasattr(js, "__path__"))

    def test_workers_classes_are_reexported(self):
        import workers
        from js import Blob, File, FormData

        self.assertEqual((Blob, File, FormData), (workers.Blob, workers.File, workers.FormData))


class BufferTest(unittest.TestCase):
    def test_uint8array(self):
        from js import Uint8Array

        self.assertEqual(Uint8Array.new(3), b"\x00\x00\x00")
        u8 = Uint8Array.new([1, 2, 255])
        self.assertEqual((u8.length, u8.byteLength, u8[2]), (3, 3, 255))
        self.assertEqual(u8.to_bytes(), b"\x01\x02\xff")
        self.assertEqual(bytes(u8), bytes(u8.to_py()))  # Pyodide's to_py() is a memoryview
        self.assertEqual(Uint8Array.new(b"abcdef", 1, 3), b"bcd")
        self.assertEqual(getattr(Uint8Array, "from")(range(3), lambda b: b * 2), b"\x00\x02\x04")
        u8.set([9, 9], 1)
        self.assertEqual(u8, b"\x01\x09\x09")
        with self.assertRaises(JsException):
            u8.set([1, 2, 3], 1)

    def test_array_buffer(self):
        from js import ArrayBuffer, Uint8Array

        buffer = ArrayBuffer.new(4)
        self.assertEqual((buffer.byteLength, buffer.to_bytes()), (4, b"\x00" * 4))
        self.assertEqual(Uint8Array.new(buffer).length, 4)


class EncodingTest(unittest.TestCase):
    def test_text_round_trip(self):
        from js import TextDecoder, TextEncoder

        encoded = TextEncoder.new().encode("zoë €𝄞")
        self.assertEqual(encoded.to_bytes(), "zoë €𝄞".encode())
        self.assertEqual(TextDecoder.new().decode(encoded), "zoë €𝄞")
        self.assertEqual(TextDecoder.new("utf-8").decode(b"\xef\xbb\xbfbom"), "bom")
        self.assertEqual(TextEncoder.new().encode("a\ud800b"), b"a\xef\xbf\xbdb")

    def test_decoder_replaces_or_raises(self):
        from js import TextDecoder

        self.assertEqual(TextDecoder.new().decode(b"a\xffb"), "a\ufffdb")
        with self.assertRaises(JsException):
            TextDecoder.new("utf-8", {"fatal": True}).decode(b"a\xffb")
        with self.assertRaises(JsException):
            TextDecoder.new("latin-2")

    def test_decoder_stream(self):
        from js import TextDecoder

        decoder = TextDecoder.new()
        euro = "€".encode()
        self.assertEqual(decoder.decode(euro[:1], {"stream": True}), "")
        self.assertEqual(decoder.decode(euro[1:]), "€")

    def test_base64(self):
        from js import atob, btoa

        self.assertEqual(btoa("hello"), "aGVsbG8=")
        binary = "".join(map(chr, range(256)))
        self.assertEqual(atob(btoa(binary)), binary)
        self.assertEqual(atob(" aGVs\nbG8 "), "hello")  # whitespace skipped, padding optional
        with self.assertRaises(JsException) as caught:
            btoa("€")
        self.assertEqual(caught.exception.name, "InvalidCharacterError")
        for bad in ("a", "aGVsbG8*", "aGVsbG8==="):
            with self.assertRaises(JsException, msg=bad):
                atob(bad)


class CryptoTest(unittest.TestCase):
    def test_sha256(self):
        from js import crypto

        digest = run(crypto.subtle.digest("SHA-256", b"abc"))
        self.assertEqual(digest.byteLength, 32)
        self.assertEqual(digest.to_bytes().hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        sha1 = run(crypto.subtle.digest({"name": "sha-1"}, b"abc"))
        self.assertEqual(sha1.to_bytes().hex(), "a9993e364706816aba3e25717850c26c9cd0d89d")

    def test_hmac_rfc4231_case_1(self):
        from js import Object, TextEncoder, crypto

        algorithm = to_js({"name": "HMAC", "hash": {"name": "SHA-256"}}, dict_converter=Object.fromEntries)
        key = run(crypto.subtle.importKey("raw", b"\x0b" * 20, algorithm, False, ["sign", "verify"]))
        data = TextEncoder.new().encode("Hi There")
        signature = run(crypto.subtle.sign("HMAC", key, data))
        expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        self.assertEqual(signature.to_bytes().hex(), expected)
        self.assertTrue(run(crypto.subtle.verify({"name": "HMAC"}, key, signature, data)))
        self.assertFalse(run(crypto.subtle.verify("HMAC", key, signature, b"Hi there")))
        self.assertEqual(key.algorithm.hash.name, "SHA-256")
        with self.assertRaises(JsException):
            run(crypto.subtle.exportKey("raw", key))  # not extractable

    def test_unsupported_algorithms_are_named(self):
        from js import crypto

        with self.assertRaisesRegex(JsException, "SHA-3"):
            run(crypto.subtle.digest("SHA-3", b""))
        with self.assertRaisesRegex(JsException, "RSA-PSS"):
            run(crypto.subtle.importKey("raw", b"k", {"name": "RSA-PSS", "hash": "SHA-256"}, False, ["sign"]))
        with self.assertRaisesRegex(AttributeError, "crypto.subtle.encrypt"):
            crypto.subtle.encrypt

    def test_random(self):
        from js import Uint8Array, crypto

        array = Uint8Array.new(32)
        self.assertIs(crypto.getRandomValues(array), array)
        self.assertEqual(array.length, 32)
        self.assertNotEqual(array, bytes(32))  # 2**-256 odds of a false failure
        uuid = crypto.randomUUID()
        self.assertRegex(uuid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertNotEqual(uuid, crypto.randomUUID())


class TimerTest(unittest.TestCase):
    def test_timeouts_fire_in_order_and_clear(self):
        from js import clearTimeout, setTimeout

        async def main():
            seen = []
            setTimeout(seen.append, 20, "late")
            first = setTimeout(seen.append, 0, "soon")
            cleared = setTimeout(seen.append, 10, "never")
            clearTimeout(cleared)
            self.assertIsInstance(first, int)
            await asyncio.sleep(0.05)
            return seen

        self.assertEqual(run_loop(main()), ["soon", "late"])

    def test_a_requests_timers_end_with_it(self):
        from _taipan import webapi
        from js import setInterval, setTimeout

        seen = []

        async def request():
            setTimeout(seen.append, 5, "after the request")
            setInterval(seen.append, 5, "tick")

        async def later():
            await asyncio.sleep(0.03)

        run_loop(request())
        webapi.cancel_timers()  # what the dispatcher does when a request ends
        run_loop(later())
        self.assertEqual(seen, [])

    def test_interval_until_cleared(self):
        from js import clearInterval, setInterval

        async def main():
            ticks, done = [], asyncio.get_running_loop().create_future()

            def tick(step):
                ticks.append(step)
                if len(ticks) == 3:
                    clearInterval(interval)
                    done.set_result(None)

            interval = setInterval(tick, 1, "t")
            await done
            await asyncio.sleep(0.01)
            return ticks

        self.assertEqual(run_loop(main()), ["t", "t", "t"])

    def test_async_callbacks_run(self):
        from js import setTimeout

        async def main():
            done = asyncio.get_running_loop().create_future()

            async def callback():
                done.set_result("ran")

            setTimeout(callback)
            return await done

        self.assertEqual(run_loop(main()), "ran")

    def test_needs_a_running_loop(self):
        from js import setTimeout

        with self.assertRaisesRegex(RuntimeError, "setTimeout needs a running event loop"):
            setTimeout(lambda: None, 1)


class AbortTest(unittest.TestCase):
    def test_abort_controller(self):
        from js import AbortController

        controller = AbortController.new()
        events = []
        controller.signal.addEventListener("abort", lambda event: events.append(event.type))
        self.assertFalse(controller.signal.aborted)
        controller.signal.throwIfAborted()
        controller.abort("stop")
        controller.abort("again")  # only the first abort counts
        self.assertTrue(controller.signal.aborted)
        self.assertEqual((controller.signal.reason, events), ("stop", ["abort"]))
        with self.assertRaises(JsException):
            controller.signal.throwIfAborted()
        default = AbortController()
        default.abort()
        self.assertEqual(default.signal.reason.name, "AbortError")

    def test_timeout_signal(self):
        from js import AbortSignal

        async def main():
            signal = AbortSignal.timeout(1)
            self.assertFalse(signal.aborted)
            await asyncio.sleep(0.02)
            return signal

        signal = run_loop(main())
        self.assertTrue(signal.aborted)
        self.assertEqual(signal.reason.name, "TimeoutError")


class GlobalsTest(unittest.TestCase):
    def test_date(self):
        from js import JSON, Date

        date = Date.new(0)
        self.assertEqual((date.getTime(), date.toISOString()), (0, "1970-01-01T00:00:00.000Z"))
        self.assertEqual(Date.new("2024-05-01T12:00:00.250Z").getTime(), 1714564800250)
        self.assertLess(abs(Date.new().getTime() - Date.now()), 5000)
        self.assertEqual(JSON.stringify({"at": Date.new(1)}), '{"at":"1970-01-01T00:00:00.001Z"}')
        with self.assertRaises(JsException):
            Date.new("not a date").toISOString()

    def test_array(self):
        from js import Array

        self.assertEqual(Array.from_("ab"), ["a", "b"])
        self.assertEqual(getattr(Array, "from")([1, 2], lambda x: x * 10), [10, 20])
        self.assertEqual((Array.new(2), Array.new(1, 2), Array.of(3)), ([None, None], [1, 2], [3]))
        self.assertTrue(Array.isArray(to_js([1])))
        self.assertFalse(Array.isArray("a"))

    def test_url_search_params(self):
        from js import URLSearchParams

        params = URLSearchParams.new("?a=1&b=x+y&a=2")
        self.assertEqual((params.get("b"), params.getAll("a"), params.size), ("x y", ["1", "2"], 3))
        params.append("c", "~*é")
        params.set("a", "3")
        params.delete("b")
        self.assertEqual(list(params.entries()), [("a", "3"), ("c", "~*é")])
        self.assertEqual((list(params.keys()), list(params.values())), (["a", "c"], ["3", "~*é"]))
        self.assertEqual(params.toString(), "a=3&c=%7E*%C3%A9")
        self.assertEqual(str(URLSearchParams({"q": "a b"})), "q=a+b")
        self.assertTrue(URLSearchParams([("k", "v")]).has("k"))

