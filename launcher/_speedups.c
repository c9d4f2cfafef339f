/* The access log's default line, formatted and encoded in C: launcher.access_log's optional
 * accelerator.
 *
 * Measured pinned under load, formatting the default line in Python is most of what the access
 * log costs (about 6 % of a hello-world request by itself); this does the same work without
 * running the interpreter a line. It is an exact copy of _DefaultFormat.batch followed by
 * ("\n".join(lines) + "\n").encode("utf-8", "replace"), and gives up (returns None, so the
 * Python loop runs instead) on anything that loop would treat in a way this does not copy: a
 * scope value of an unusual type, a string with a lone surrogate. A unit test holds the two
 * byte-for-byte equal over generated scopes.
 *
 * Built by setup.py as an optional extension: where no C compiler is found, the package
 * installs without it and the Python loop formats every line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Buffer;

static int
reserve(Buffer *b, Py_ssize_t more)
{
    if (b->size + more <= b->capacity)
        return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + more)
        capacity *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int
put(Buffer *b, const char *text, Py_ssize_t size)
{
    if (reserve(b, size) < 0)
        return -1;
    memcpy(b->data + b->size, text, (size_t)size);
    b->size += size;
    return 0;
}

#define PUT_LITERAL(b, s) put((b), (s), (Py_ssize_t)(sizeof(s) - 1))

/* bytes decoded as latin-1, then encoded as UTF-8: a byte above 0x7f becomes two. */
static int
put_latin1(Buffer *b, const char *text, Py_ssize_t size)
{
    if (reserve(b, 2 * size) < 0)
        return -1;
    char *out = b->data + b->size;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            *out++ = (char)c;
        }
        else {
            *out++ = (char)(0xc0 | (c >> 6));
            *out++ = (char)(0x80 | (c & 0x3f));
        }
    }
    b->size = out - b->data;
    return 0;
}

/* A str as UTF-8; 1 (give up) for one with a lone surrogate, which "replace" would alter. */
static int
put_str(Buffer *b, PyObject *text)
{
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    return put(b, utf8, size);
}

/* The decimal digits of a C long. */
static int
put_long(Buffer *b, long value)
{
    char digits[32];
    int size = snprintf(digits, sizeof(digits), "%ld", value);
    return put(b, digits, size);
}

/* The scope keys read, interned once (a key made from a C string for every lookup would cost
 * more than the rest of the line). */
enum { HEADERS, RAW_PATH, PATH, QUERY_STRING, CLIENT, METHOD, HTTP_VERSION, KEYS };
static const char *key_names[KEYS] = {"headers", "raw_path", "path", "query_string", "client",
                                      "method", "http_version"};
static PyObject *keys[KEYS];

/* A scope item: a new reference, NULL when absent. */
static PyObject *
item(PyObject *scope, int key)
{
    PyObject *value = PyDict_GetItemWithError(scope, keys[key]); /* borrowed */
    if (value == NULL)
        PyErr_Clear(); /* an unhashable key cannot be: these are str */
    Py_XINCREF(value);
    return value;
}

#define GIVE_UP 1

/* Referer, user agent and request id (borrowed bytes, or NULL for '-'), as the Python loop
 * finds them: the last of each name wins. */
static int
scan_headers(PyObject *headers, PyObject **found)
{
    static const char *names[3] = {"referer", "user-agent", "x-request-id"};
    PyObject *iterator = PyObject_GetIter(headers);
    if (iterator == NULL) {
        PyErr_Clear();
        return GIVE_UP;
    }
    PyObject *pair;
    int result = 0;
    while ((pair = PyIter_Next(iterator)) != NULL) {
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1))) {
            /* A list pair, bytearray: the Python loop takes them; this gives up. */
            Py_DECREF(pair);
            result = GIVE_UP;
            break;
        }
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        Py_ssize_t size = PyBytes_GET_SIZE(key);
        if (size == 7 || size == 10 || size == 12) {
            const char *k = PyBytes_AS_STRING(key);
            for (int n = 0; n < 3; n++) {
                const char *name = names[n];
                if ((Py_ssize_t)strlen(name) != size)
                    continue;
                Py_ssize_t i = 0;
                while (i < size && Py_TOLOWER((unsigned char)k[i]) == name[i])
                    i++;
                if (i == size) {
                    /* The pair stays alive: the scope's headers hold it. Keep our own
                     * reference anyway, for an iterator that makes pairs as it goes. */
                    Py_XSETREF(found[n], Py_NewRef(PyTuple_GET_ITEM(pair, 1)));
                    break;
                }
            }
        }
        Py_DECREF(pair);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return GIVE_UP;
    }
    return result;
}

/* One entry's line: 0 written, GIVE_UP, -1 error. ``cache`` is the last second's time text. */
static int
format_entry(Buffer *b, PyObject *entry, double offset, PyObject *now, long long *second,
             PyObject **clock_text, const char *pid, Py_ssize_t pid_size)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) < 5)
        return GIVE_UP;
    PyObject *scope = PyTuple_GET_ITEM(entry, 0);
    PyObject *started = PyTuple_GET_ITEM(entry, 1);
    PyObject *status = PyTuple_GET_ITEM(entry, 2);
    PyObject *size = PyTuple_GET_ITEM(entry, 3);
    PyObject *duration = PyTuple_GET_ITEM(entry, 4);
    if (!PyDict_CheckExact(scope) || !PyFloat_CheckExact(started) || !PyLong_CheckExact(status) ||
        !PyLong_CheckExact(size) || !PyFloat_CheckExact(duration))
        return GIVE_UP;

    int result = GIVE_UP;
    PyObject *found[3] = {NULL, NULL, NULL};
    PyObject *headers = item(scope, HEADERS);
    PyObject *raw = item(scope, RAW_PATH);
    PyObject *path = item(scope, PATH);
    PyObject *query = item(scope, QUERY_STRING);
    PyObject *client = item(scope, CLIENT);
    PyObject *method = item(scope, METHOD);
    PyObject *version = item(scope, HTTP_VERSION);
    char *text = NULL;

    if (headers != NULL && scan_headers(headers, found) != 0)
        goto done;

    /* scope.get("raw_path") or scope["path"]: give up where truth or the type is in doubt. */
    PyObject *target = NULL;
    if (raw != NULL && raw != Py_None) {
        if (PyBytes_CheckExact(raw) || PyUnicode_CheckExact(raw))
            target = PyObject_Length(raw) ? raw : NULL;
        else
            goto done;
    }
    if (target == NULL)
        target = path;
    if (target == NULL || !(PyBytes_CheckExact(target) || PyUnicode_CheckExact(target)))
        goto done;
    if (query != NULL && query != Py_None && !PyBytes_CheckExact(query))
        goto done;
    if ((method != NULL && !PyUnicode_CheckExact(method)) ||
        (version != NULL && !PyUnicode_CheckExact(version)))
        goto done;
    PyObject *host = NULL;
    if (client != NULL && client != Py_None) {
        if (!(PyTuple_CheckExact(client) || PyList_CheckExact(client)) || PySequence_Size(client) == 0)
            goto done;
        host = PySequence_Fast_GET_ITEM(client, 0);
        if (!PyUnicode_CheckExact(host))
            goto done;
    }

    double wall = PyFloat_AS_DOUBLE(started) + offset;
    long long this_second = (long long)wall;
    if (*clock_text == NULL || this_second != *second) {
        PyObject *when = PyFloat_FromDouble(wall);
        if (when == NULL)
            goto error;
        PyObject *formatted = PyObject_CallOneArg(now, when);
        Py_DECREF(when);
        if (formatted == NULL)
            goto error;
        if (!PyUnicode_CheckExact(formatted)) {
            Py_DECREF(formatted);
            goto done;
        }
        Py_XSETREF(*clock_text, formatted);
        *second = this_second;
    }

    int overflow = 0;
    long status_value = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow)
        goto done;
    long size_value = PyLong_AsLongAndOverflow(size, &overflow);
    if (overflow)
        goto done;
    text = PyOS_double_to_string(PyFloat_AS_DOUBLE(duration) * 1000, 'f', 3, 0, NULL);
    if (text == NULL)
        goto error;

    int r;
#define TRY(call)                   \
    if ((r = (call)) != 0) {        \
        result = r > 0 ? GIVE_UP : -1; \
        goto done;                  \
    }
    if (host != NULL) {
        TRY(put_str(b, host));
    }
    else {
        TRY(PUT_LITERAL(b, "-"));
    }
    TRY(PUT_LITERAL(b, " - - "));
    TRY(put_str(b, *clock_text));
    TRY(PUT_LITERAL(b, " \""));
    if (method != NULL) {
        TRY(put_str(b, method));
    }
    else {
        TRY(PUT_LITERAL(b, "GET"));
    }
    TRY(PUT_LITERAL(b, " "));
    if (PyUnicode_CheckExact(target)) {
        TRY(put_str(b, target));
    }
    else {
        TRY(put_latin1(b, PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target)));
    }
    if (query != NULL && query != Py_None && PyBytes_GET_SIZE(query)) {
        TRY(PUT_LITERAL(b, "?"));
        TRY(put_latin1(b, PyBytes_AS_STRING(query), PyBytes_GET_SIZE(query)));
    }
    TRY(PUT_LITERAL(b, " HTTP/"));
    if (version != NULL) {
        TRY(put_str(b, version));
    }
    else {
        TRY(PUT_LITERAL(b, "1.1"));
    }
    TRY(PUT_LITERAL(b, "\" "));
    TRY(put_long(b, status_value));
    TRY(PUT_LITERAL(b, " "));
    if (size_value) {
        TRY(put_long(b, size_value));
    }
    else {
        TRY(PUT_LITERAL(b, "-"));
    }
    for (int n = 0; n < 2; n++) {
        TRY(PUT_LITERAL(b, " \""));
        if (found[n] != NULL) {
            TRY(put_latin1(b, PyBytes_AS_STRING(found[n]), PyBytes_GET_SIZE(found[n])));
        }
        else {
            TRY(PUT_LITERAL(b, "-"));
        }
        TRY(PUT_LITERAL(b, "\""));
    }
    TRY(PUT_LITERAL(b, " "));
    TRY(put(b, text, (Py_ssize_t)strlen(text)));
    TRY(PUT_LITERAL(b, "ms pid="));
    TRY(put(b, pid, pid_size));
    TRY(PUT_LITERAL(b, " rid="));
    if (found[2] != NULL) {
        TRY(put_latin1(b, PyBytes_AS_STRING(found[2]), PyBytes_GET_SIZE(found[2])));
    }
    else {
        TRY(PUT_LITERAL(b, "-"));
    }
    TRY(PUT_LITERAL(b, "\n"));
#undef TRY
    result = 0;
    goto done;
error:
    result = -1;
done:
    if (text != NULL)
        PyMem_Free(text);
    for (int n = 0; n < 3; n++)
        Py_XDECREF(found[n]);
    Py_XDECREF(headers);
    Py_XDECREF(raw);
    Py_XDECREF(path);
    Py_XDECREF(query);
    Py_XDECREF(client);
    Py_XDECREF(method);
    Py_XDECREF(version);
    return result;
}

PyDoc_STRVAR(format_default_doc,
"format_default(entries, offset, now, pid, /)\n"
"--\n"
"\n"
"The default access lines of ``entries`` (a list of the access log's Entry tuples), each\n"
"ending in a newline, as UTF-8 bytes; None where the Python loop must format the batch.\n"
"``offset``: wall-clock time less time.perf_counter(); ``now``: the clock's function from a\n"
"wall-clock time to its bracketed text, called once a second; ``pid``: the worker's pid.");

static PyObject *
format_default(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "format_default expected 4 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *entries = args[0];
    if (!PyList_CheckExact(entries)) {
        PyErr_SetString(PyExc_TypeError, "format_default: entries must be a list");
        return NULL;
    }
    double offset = PyFloat_AsDouble(args[1]);
    if (offset == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *now = args[2];
    Py_ssize_t pid_size;
    const char *pid = PyUnicode_AsUTF8AndSize(args[3], &pid_size);
    if (pid == NULL)
        return NULL;

    Buffer b = {NULL, 0, 0};
    PyObject *clock_text = NULL;
    long long second = 0;
    PyObject *result = NULL;
    Py_ssize_t count = PyList_GET_SIZE(entries);
    for (Py_ssize_t i = 0; i < count; i++) {
        int r = format_entry(&b, PyList_GET_ITEM(entries, i), offset, now, &second, &clock_text, pid,
                             pid_size);
        if (r < 0)
            goto done;
        if (r == GIVE_UP) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(b.data ? b.data : "", b.size);
done:
    Py_XDECREF(clock_text);
    PyMem_Free(b.data);
    return result;
}

static PyMethodDef methods[] = {
    {"format_default", (PyCFunction)(void (*)(void))format_default, METH_FASTCALL, format_default_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "launcher._speedups",
    .m_doc = "The access log's default line in C (see launcher.access_log).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (int k = 0; k < KEYS; k++) {
        if (keys[k] == NULL && (keys[k] = PyUnicode_InternFromString(key_names[k])) == NULL)
            return NULL;
    }
    return PyModuleDef_Init(&module);
}
