"""Randomness asked for by the worker's own top-level code while the snapshot
is taken raises (`_taipan.entropy`); a package being imported may seed itself."""

import os
import random
import unittest

from _taipan.entropy import TopLevelEntropy

WORKER = "entropy_test_worker"
PACKAGE = "entropy_test_package"


def _run_module(name, source, namespace=None):
    """Execute `source` as the body of module `name` (a `<module>` frame)."""
    namespace = dict(namespace or {}, __name__=name)
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace


def _guard():
    return TopLevelEntropy(lambda name: name.partition(".")[0] == WORKER)


class TopLevelEntropyTest(unittest.TestCase):
    def test_the_workers_top_level_is_refused_each_source_of_randomness(self):
        for source in (
            "import os\nos.urandom(8)",
            "import uuid\nuuid.uuid4()",
            "import secrets\nsecrets.token_hex(8)",
            "import random\nrandom.random()",
            "import random\nrandom.choice([1, 2])",
            "import random\nrandom.SystemRandom().random()",
            "import random\nrandom.seed()\nrandom.random()",
        ):
            with self.subTest(source=source), _guard():
                with self.assertRaises(RuntimeError) as caught:
                    _run_module(WORKER, source)
                self.assertIn("top-level code while the snapshot was taken", str(caught.exception))
                self.assertIn('snapshot = "imports"', str(caught.exception))

    def test_a_package_being_imported_may_use_randomness(self):
        with _guard():
            ns = _run_module(PACKAGE, "import os, random\nkey = os.urandom(4)\nx = random.random()")
        self.assertEqual(len(ns["key"]), 4)

    def test_a_package_function_called_from_the_top_level_is_refused(self):
        with _guard():
            helper = _run_module(PACKAGE, "import os\ndef token():\n    return os.urandom(4)\n")
            with self.assertRaises(RuntimeError):
                _run_module(WORKER, "token()", {"token": helper["token"]})

    def test_a_generator_the_worker_seeded_is_its_choice(self):
        with _guard():
            ns = _run_module(WORKER, "import random\nrandom.seed(7)\nx = random.random()")
        random.seed(7)
        self.assertEqual(ns["x"], random.random())

    def test_a_wrapper_copied_while_the_guard_was_on_works_after_it(self):
        with _guard():
            ns = _run_module(PACKAGE, "from os import urandom\nfrom random import choice\n")
        # A worker module imported lazily at request time calls them at its top level.
        out = _run_module(WORKER, "key = urandom(4)\npick = choice([1, 2])", ns)
        self.assertEqual(len(out["key"]), 4)

    def test_everything_is_restored_and_handlers_are_not_affected(self):
        urandom, draw = os.urandom, random.random
        with _guard():
            # Not under a module body of the worker: a request-time call.
            self.assertEqual(len(os.urandom(4)), 4)
        self.assertIs(os.urandom, urandom)
        self.assertIs(random.random, draw)


if __name__ == "__main__":
    unittest.main()
