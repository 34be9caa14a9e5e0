/*
 * syscall(2) for runtime/syscalls.py, without ctypes.
 *
 * Loading ctypes (libffi, its Python modules, dlopen of libc) costs about
 * 6 ms of every `overlayctl run` on the project's VM, a tenth of the whole
 * run; the syscalls themselves cost microseconds. This module is the one
 * call syscalls.py needs and nothing more: every decision, every struct
 * and every error message stays in syscalls.py, which falls back to ctypes
 * when this module is not built.
 *
 *   syscall(nr, *args) -> int   the result, or -errno when it failed
 *   address(buffer) -> int      where a bytes or bytearray keeps its data,
 *                               for the pointers inside a struct argument
 *
 * An argument is an int (passed as a long: a negative int stays negative,
 * an unsigned value up to 2**64-1 is passed bit for bit), None (NULL), or
 * a bytes-like object (a pointer to its data; a bytearray may be written
 * by the kernel). The caller keeps every buffer alive across the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_ARGS 6

static int to_long(PyObject *obj, long *out, Py_buffer *view, int *has_view)
{
    *has_view = 0;
    if (obj == Py_None) {
        *out = 0;
        return 0;
    }
    if (PyLong_Check(obj)) {
        long value = PyLong_AsLong(obj);
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            unsigned long u = PyLong_AsUnsignedLong(obj);
            if (u == (unsigned long)-1 && PyErr_Occurred())
                return -1;
            value = (long)u;
        }
        *out = value;
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0) {
        *has_view = 1;
        *out = (long)view->buf;
        return 0;
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "syscall argument must be int, None or bytes-like, not %.80s", Py_TYPE(obj)->tp_name);
    return -1;
}

static PyObject *kernel_syscall(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long a[MAX_ARGS] = {0};
    Py_buffer views[MAX_ARGS];
    int has_view[MAX_ARGS] = {0};
    long nr, result;
    Py_ssize_t i, n = nargs - 1;
    int err = 0;

    if (nargs < 1 || n > MAX_ARGS) {
        PyErr_SetString(PyExc_TypeError, "syscall(nr, *args) takes 1 to 7 arguments");
        return NULL;
    }
    nr = PyLong_AsLong(args[0]);
    if (nr == -1 && PyErr_Occurred())
        return NULL;
    for (i = 0; i < n; i++) {
        if (to_long(args[i + 1], &a[i], &views[i], &has_view[i]) < 0) {
            n = i;
            goto release;
        }
    }
    /* Not without the GIL: these calls are short, and a mount that blocks
       blocks the one thread the container's start has. */
    result = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (result == -1)
        err = errno;
    for (i = 0; i < n; i++)
        if (has_view[i])
            PyBuffer_Release(&views[i]);
    return PyLong_FromLong(err ? -err : result);

release:
    for (i = 0; i < n; i++)
        if (has_view[i])
            PyBuffer_Release(&views[i]);
    return NULL;
}

static PyObject *kernel_address(PyObject *self, PyObject *obj)
{
    Py_buffer view;
    void *where;

    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    where = view.buf;
    PyBuffer_Release(&view);
    return PyLong_FromVoidPtr(where);
}

static PyMethodDef kernel_methods[] = {
    {"syscall", (PyCFunction)(void (*)(void))kernel_syscall, METH_FASTCALL,
     "syscall(nr, *args) -> the result, or -errno"},
    {"address", kernel_address, METH_O, "address(buffer) -> the address of its data"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT, "_kernel", "syscall(2) without ctypes", -1, kernel_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    return PyModule_Create(&kernel_module);
}
