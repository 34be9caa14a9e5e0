/*
 * Batches of small regular files written without the GIL.
 *
 * Unpacking a layer of many small files costs four syscalls per file
 * (openat, pwrite, futimens, close), about 17 us in the kernel, and the
 * Python around them costs as much again. Here a batch of files, all in
 * one directory, is created by a worker thread that never holds the GIL,
 * while the interpreter parses the next tar headers: the layer tar is read
 * and the files are written at the same time, on two cores.
 *
 * Only the syscalls live here. Every decision (which entries may be
 * batched, the path checks, owners and modes, what to do when a name is
 * taken) stays in extract.py, which falls back to its own code when this
 * module is not built.
 *
 *   w = Writer()           # starts the worker thread (a plain pthread)
 *   w.submit(dir_fd, [(name, data, mode, uid, gid, mtime_ns, flags), ...])
 *   done, err = w.wait()   # files created; errno of the next one, or 0
 *   w.close()              # joins the thread
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLAG_CHOWN 1 /* fchown to uid:gid */
#define FLAG_CHMOD 2 /* fchmod to mode (the umask filtered it, or chown cleared set-id bits) */
#define HOLE_BLOCK 4096

enum state { IDLE, SUBMITTED, DONE };

struct file {
    const char *name;
    const unsigned char *data;
    Py_ssize_t size;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
    int flags;
};

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum state state;
    int closing;
    int started; /* the thread exists, to be joined */
    pthread_t thread;
    /* the batch: valid from submit() to wait() */
    int dir_fd;
    Py_ssize_t count;
    struct file *files;
    Py_buffer *buffers;
    Py_ssize_t buffered;
    char *names;
    /* its outcome */
    Py_ssize_t done;
    int err;
} Writer;

static int is_zero(const unsigned char *p, size_t n)
{
    /* Ordinary data differs from zero in its first bytes: this returns
     * at once for nearly every block. */
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        if (word)
            return 0;
        p += 8;
        n -= 8;
    }
    while (n--)
        if (*p++)
            return 0;
    return 1;
}

static int pwrite_all(int fd, const unsigned char *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) { /* no progress: say so rather than loop */
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* The file's data but its all-zero blocks, which stay holes (as
 * extract.py's _write_chunk does); the end of the last byte written. */
static int write_data(int fd, const struct file *f, off_t *written)
{
    off_t run = -1, pos = 0, size = (off_t)f->size;
    *written = 0;
    while (pos < size) {
        off_t end = pos + HOLE_BLOCK < size ? pos + HOLE_BLOCK : size;
        if (is_zero(f->data + pos, (size_t)(end - pos))) {
            if (run >= 0) {
                if (pwrite_all(fd, f->data + run, (size_t)(pos - run), run) < 0)
                    return -1;
                *written = pos;
                run = -1;
            }
        } else if (run < 0) {
            run = pos;
        }
        pos = end;
    }
    if (run >= 0) {
        if (pwrite_all(fd, f->data + run, (size_t)(size - run), run) < 0)
            return -1;
        *written = size;
    }
    return 0;
}

/* One file: created (O_EXCL: a name already taken is reported, not
 * replaced), written, owned, moded, dated, closed. */
static int write_file(int dir_fd, const struct file *f)
{
    int fd = openat(dir_fd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode & 0777);
    if (fd < 0)
        return -1;
    off_t written;
    struct timespec times[2] = {f->mtime, f->mtime};
    /* chown clears setuid/setgid, so it goes before chmod. */
    if (write_data(fd, f, &written) < 0 || (written != (off_t)f->size && ftruncate(fd, (off_t)f->size) < 0) ||
        ((f->flags & FLAG_CHOWN) && fchown(fd, f->uid, f->gid) < 0) ||
        ((f->flags & FLAG_CHMOD) && fchmod(fd, f->mode) < 0) || futimens(fd, times) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

static void write_batch(Writer *w)
{
    w->done = 0;
    w->err = 0;
    for (Py_ssize_t i = 0; i < w->count; i++) {
        if (write_file(w->dir_fd, &w->files[i]) < 0) {
            w->err = errno ? errno : EIO;
            return;
        }
        w->done++;
    }
}

static void release_batch(Writer *w)
{
    for (Py_ssize_t i = 0; i < w->buffered; i++)
        PyBuffer_Release(&w->buffers[i]);
    PyMem_Free(w->files);
    PyMem_Free(w->buffers);
    PyMem_Free(w->names);
    w->files = NULL;
    w->buffers = NULL;
    w->names = NULL;
    w->count = w->buffered = 0;
}

static void *worker(void *arg)
{
    Writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->state != SUBMITTED && !w->closing)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->state != SUBMITTED)
            break;
        pthread_mutex_unlock(&w->mu);
        write_batch(w);
        pthread_mutex_lock(&w->mu);
        w->state = DONE;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Let the worker finish the batch in flight (its directory fd and buffers
 * must outlive it), then stop and join it. Called with the GIL released. */
static void stop_worker(Writer *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->state == SUBMITTED)
        pthread_cond_wait(&w->cv, &w->mu);
    w->closing = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

static int Writer_init(Writer *w, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Writer", kwlist))
        return -1;
    return 0;
}

static PyObject *Writer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Writer *w = (Writer *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->state = IDLE;
    int rc = pthread_create(&w->thread, NULL, worker, w);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(w);
        return NULL;
    }
    w->started = 1;
    return (PyObject *)w;
}

static void Writer_dealloc(Writer *w)
{
    if (w->started) {
        Py_BEGIN_ALLOW_THREADS
        stop_worker(w);
        Py_END_ALLOW_THREADS
    }
    release_batch(w);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static int timespec_from_ns(PyObject *obj, struct timespec *ts)
{
    long long ns = PyLong_AsLongLong(obj);
    if (ns == -1 && PyErr_Occurred())
        return -1;
    long long sec = ns / 1000000000LL, rem = ns % 1000000000LL;
    if (rem < 0) { /* before 1970: the nanoseconds count forwards */
        rem += 1000000000LL;
        sec -= 1;
    }
    ts->tv_sec = (time_t)sec;
    ts->tv_nsec = (long)rem;
    return 0;
}

static int id_from(PyObject *obj, unsigned int *out)
{
    unsigned long v = PyLong_AsUnsignedLong(obj);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v >= 0xFFFFFFFFUL) { /* (uid_t)-1 would mean "leave it" to fchown */
        PyErr_SetString(PyExc_OverflowError, "owner id out of range");
        return -1;
    }
    *out = (unsigned int)v;
    return 0;
}

static PyObject *Writer_submit(Writer *w, PyObject *args)
{
    int dir_fd;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "iO!:submit", &dir_fd, &PyList_Type, &list))
        return NULL;
    pthread_mutex_lock(&w->mu);
    int busy = w->state != IDLE || w->closing;
    pthread_mutex_unlock(&w->mu);
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "the writer is closed, or its batch was not waited for");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list), names_len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 7 || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "a file is (name: bytes, data, mode, uid, gid, mtime_ns, flags)");
            return NULL;
        }
        names_len += PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0)) + 1;
    }
    w->files = PyMem_Calloc(n ? n : 1, sizeof(struct file));
    w->buffers = PyMem_Calloc(n ? n : 1, sizeof(Py_buffer));
    w->names = PyMem_Malloc(names_len ? names_len : 1);
    if (!w->files || !w->buffers || !w->names) {
        release_batch(w);
        return PyErr_NoMemory();
    }
    char *name_at = w->names;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        struct file *f = &w->files[i];
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        Py_ssize_t len = PyBytes_GET_SIZE(name);
        const char *raw = PyBytes_AS_STRING(name);
        if (len == 0 || memchr(raw, '/', len) || memchr(raw, '\0', len) || strcmp(raw, ".") == 0 ||
            strcmp(raw, "..") == 0) {
            PyErr_SetString(PyExc_ValueError, "a file name must be one path component");
            goto fail;
        }
        memcpy(name_at, raw, len + 1);
        f->name = name_at;
        name_at += len + 1;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 1), &w->buffers[i], PyBUF_SIMPLE) < 0)
            goto fail;
        w->buffered = i + 1;
        f->data = w->buffers[i].buf;
        f->size = w->buffers[i].len;
        long mode = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
        if (mode == -1 && PyErr_Occurred())
            goto fail;
        if (mode < 0 || mode > 07777) {
            PyErr_SetString(PyExc_ValueError, "mode out of range");
            goto fail;
        }
        f->mode = (mode_t)mode;
        unsigned int uid, gid;
        if (id_from(PyTuple_GET_ITEM(item, 3), &uid) < 0 || id_from(PyTuple_GET_ITEM(item, 4), &gid) < 0)
            goto fail;
        f->uid = uid;
        f->gid = gid;
        if (timespec_from_ns(PyTuple_GET_ITEM(item, 5), &f->mtime) < 0)
            goto fail;
        f->flags = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 6));
        if (f->flags == -1 && PyErr_Occurred())
            goto fail;
    }
    pthread_mutex_lock(&w->mu);
    w->dir_fd = dir_fd;
    w->count = n;
    w->state = SUBMITTED;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    Py_RETURN_NONE;
fail:
    release_batch(w);
    return NULL;
}

static PyObject *Writer_wait(Writer *w, PyObject *unused)
{
    Py_ssize_t done = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&w->mu);
    while (w->state == SUBMITTED)
        pthread_cond_wait(&w->cv, &w->mu);
    if (w->state == DONE) {
        done = w->done;
        err = w->err;
        w->state = IDLE;
    }
    pthread_mutex_unlock(&w->mu);
    Py_END_ALLOW_THREADS
    release_batch(w);
    return Py_BuildValue("(ni)", done, err);
}

static PyObject *Writer_close(Writer *w, PyObject *unused)
{
    Py_BEGIN_ALLOW_THREADS
    stop_worker(w);
    Py_END_ALLOW_THREADS
    release_batch(w);
    Py_RETURN_NONE;
}

static PyMethodDef Writer_methods[] = {
    {"submit", (PyCFunction)Writer_submit, METH_VARARGS,
     "submit(dir_fd, files): start writing files, a list of (name, data, mode, uid, gid, mtime_ns, flags), "
     "in the directory dir_fd. The fd and data must stay valid until wait()."},
    {"wait", (PyCFunction)Writer_wait, METH_NOARGS,
     "Wait for the submitted batch: (files written, errno of the file after them or 0)."},
    {"close", (PyCFunction)Writer_close, METH_NOARGS, "Finish the batch in flight, then stop the worker thread."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "overlayctl.layer._batchwrite.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Creates batches of small files in one directory on a thread that does not hold the GIL.",
    .tp_new = Writer_new,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "overlayctl.layer._batchwrite",
    .m_doc = "Batches of small regular files written without the GIL (see extract.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__batchwrite(void)
{
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0 ||
        PyModule_AddIntConstant(m, "CHOWN", FLAG_CHOWN) < 0 || PyModule_AddIntConstant(m, "CHMOD", FLAG_CHMOD) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
