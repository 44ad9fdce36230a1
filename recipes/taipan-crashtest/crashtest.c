/* taipan_crashtest: a tiny CPython extension whose functions fail on purpose, for
 * Taipan's sandbox tests (see recipe.toml beside this file).
 *
 *   answer()   -> 42                      it loads and runs
 *   abort()    C abort()                  wasi-libc: `unreachable` -> wasm trap
 *   trap()     __builtin_trap()           `unreachable` -> wasm trap
 *   grow(n_mb) mallocs and touches n MiB, never frees; returns n
 *              (MemoryError if malloc fails, i.e. memory.grow was refused)
 *   spin()     never returns (CPU time limit)
 *   boom()     raises RuntimeError("boom from C"), no crash
 *
 * Stable ABI (Py_LIMITED_API 3.14): the headers used to build it (Debian's 3.14.x) need
 * not be the exact patch release of componentize-py's CPython (3.14.0).
 */
#define Py_LIMITED_API 0x030E0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

static PyObject *
ct_answer(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(42);
}

static PyObject *
ct_abort(PyObject *self, PyObject *unused)
{
    abort();
}

static PyObject *
ct_trap(PyObject *self, PyObject *unused)
{
    __builtin_trap();
}

/* Chunks are chained through their first word from a global head, so they stay
 * reachable and the compiler cannot drop the malloc/memset pairs. */
static void *volatile grown;

static PyObject *
ct_grow(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n_mb must be >= 0");
        return NULL;
    }
    const size_t chunk = 1024 * 1024;
    for (Py_ssize_t i = 0; i < n; i++) {
        void **p = malloc(chunk);
        if (p == NULL)
            return PyErr_NoMemory();
        memset(p, 0xA5, chunk);  /* touch every page */
        p[0] = grown;
        grown = p;
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *
ct_spin(PyObject *self, PyObject *unused)
{
    volatile unsigned long long i = 0;
    for (;;)
        i++;
}

static PyObject *
ct_boom(PyObject *self, PyObject *unused)
{
    PyErr_SetString(PyExc_RuntimeError, "boom from C");
    return NULL;
}

static PyMethodDef methods[] = {
    {"answer", ct_answer, METH_NOARGS, "answer() -> 42"},
    {"abort", ct_abort, METH_NOARGS, "abort(): C abort() (a wasm trap)"},
    {"trap", ct_trap, METH_NOARGS, "trap(): __builtin_trap() (a wasm trap)"},
    {"grow", ct_grow, METH_O, "grow(n_mb): malloc and touch n MiB, never freed; returns n_mb"},
    {"spin", ct_spin, METH_NOARGS, "spin(): an infinite loop in C"},
    {"boom", ct_boom, METH_NOARGS, "boom(): raises RuntimeError('boom from C')"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "taipan_crashtest",
    .m_doc = "Functions that fail on purpose, for Taipan's sandbox tests.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit_taipan_crashtest(void)
{
    return PyModule_Create(&module);
}
