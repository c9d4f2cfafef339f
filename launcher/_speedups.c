/* The access log's per-request work in C: launcher.access_log's optional accelerator.
 *
 * Recorder: the send the app is given, recording the response's status, size and headers with
 * no Python frame a message (a closure doing it cost more than everything else the layer does).
 *
 * format_default: the default line, formatted and encoded a batch at a time.
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
#include <stddef.h>
#include <math.h>

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

static inline int
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

/* The decimal digits of a C long (printf's machinery costs more than the rest of a line). */
static int
put_long(Buffer *b, long value)
{
    char digits[24];
    char *end = digits + sizeof(digits), *p = end;
    unsigned long magnitude = value < 0 ? 0UL - (unsigned long)value : (unsigned long)value;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *--p = '-';
    return put(b, p, end - p);
}

/* ``f"{ms:.3f}"``: the digits of the nearest thousandth, where that is certain from the double
 * product (not within a millionth of a half, below a million seconds, not negative); else 1 (the
 * caller formats it as Python does). */
static int
put_milliseconds(Buffer *b, double ms)
{
    if (!(ms >= 0.0) || signbit(ms) || ms >= 1e9)
        return 1;
    double scaled = ms * 1000.0;
    double whole = floor(scaled);
    double fraction = scaled - whole;
    if (fabs(fraction - 0.5) < 1e-3)
        return 1;
    long long thousandths = (long long)whole + (fraction > 0.5);
    char digits[32];
    char *end = digits + sizeof(digits), *p = end;
    for (int i = 0; i < 3; i++) {
        *--p = (char)('0' + thousandths % 10);
        thousandths /= 10;
    }
    *--p = '.';
    do {
        *--p = (char)('0' + thousandths % 10);
        thousandths /= 10;
    } while (thousandths);
    return put(b, p, end - p);
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
    PyObject *path = NULL; /* looked up only when raw_path is absent or empty */
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
        target = path = item(scope, PATH);
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
    double ms = PyFloat_AS_DOUBLE(duration) * 1000;
    if ((r = put_milliseconds(b, ms)) < 0) {
        result = -1;
        goto done;
    }
    if (r > 0) {
        text = PyOS_double_to_string(ms, 'f', 3, 0, NULL);
        if (text == NULL)
            goto error;
        TRY(put(b, text, (Py_ssize_t)strlen(text)));
    }
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

/* ---- Recorder: what a response was, seen on its way to the server's send ------------------ */

/* Message keys and types, interned once. */
enum { M_TYPE, M_STATUS, M_HEADERS, M_BODY, M_BYTES, M_TEXT, MKEYS };
static const char *message_key_names[MKEYS] = {"type", "status", "headers", "body", "bytes", "text"};
static PyObject *message_keys[MKEYS];
enum { T_START, T_BODY, T_ACCEPT, T_SEND, T_CLOSE, TYPES };
static const char *type_names[TYPES] = {"http.response.start", "http.response.body", "websocket.accept",
                                        "websocket.send", "websocket.close"};
static PyObject *types[TYPES];
static PyObject *empty_tuple;
static PyObject *zero;
static PyObject *status_101;
static PyObject *status_403;

typedef struct {
    PyObject_HEAD
    PyObject *send;
    PyObject *status;
    PyObject *headers;
    Py_ssize_t size;
    vectorcallfunc vectorcall;
} Recorder;

static PyTypeObject RecorderType;

/* message[key], as the Python code's message[key]: KeyError when absent. */
static PyObject *
get_required(PyObject *message, int key)
{
    if (PyDict_CheckExact(message)) {
        PyObject *value = PyDict_GetItemWithError(message, message_keys[key]);
        if (value == NULL && !PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, message_keys[key]);
        Py_XINCREF(value);
        return value;
    }
    return PyObject_GetItem(message, message_keys[key]);
}

/* message.get(key): a new reference, or NULL with no error when absent. */
static PyObject *
get_optional(PyObject *message, int key)
{
    if (PyDict_CheckExact(message)) {
        PyObject *value = PyDict_GetItemWithError(message, message_keys[key]);
        Py_XINCREF(value);
        return value;
    }
    PyObject *value = PyObject_CallMethod(message, "get", "O", message_keys[key]);
    if (value == Py_None) {
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

/* len(message.get(key) or b""), or for str values len(value.encode()): -1 on error. */
static Py_ssize_t
length_of(PyObject *message, int key, int encode)
{
    PyObject *value = get_optional(message, key);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t size;
    int truth = PyObject_IsTrue(value);
    if (truth <= 0) {
        size = truth; /* 0 for a falsy value (b"", None, ""), -1 on error */
    }
    else if (encode) {
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute 'encode'",
                         Py_TYPE(value)->tp_name);
            size = -1;
        }
        else if (PyUnicode_AsUTF8AndSize(value, &size) == NULL) {
            size = -1;
        }
    }
    else {
        size = PyObject_Size(value);
    }
    Py_DECREF(value);
    return size;
}

static int
record(Recorder *self, PyObject *message)
{
    PyObject *kind = get_required(message, M_TYPE);
    if (kind == NULL)
        return -1;
    int which = -1;
    for (int t = 0; t < TYPES; t++) {
        if (kind == types[t]) { /* the usual case: a literal, interned like ours */
            which = t;
            break;
        }
    }
    if (which < 0 && PyUnicode_Check(kind)) {
        /* The five names differ in length: one comparison at most. */
        Py_ssize_t length = PyUnicode_GET_LENGTH(kind);
        for (int t = 0; t < TYPES; t++) {
            if (PyUnicode_GET_LENGTH(types[t]) == length) {
                if (PyUnicode_Compare(kind, types[t]) == 0)
                    which = t;
                break;
            }
        }
    }
    Py_DECREF(kind);
    Py_ssize_t size;
    switch (which) {
    case T_START: {
        PyObject *status = get_required(message, M_STATUS);
        if (status == NULL)
            return -1;
        Py_SETREF(self->status, status);
        PyObject *headers = get_optional(message, M_HEADERS);
        if (headers == NULL) {
            if (PyErr_Occurred())
                return -1;
            headers = Py_NewRef(empty_tuple);
        }
        Py_SETREF(self->headers, headers);
        return 0;
    }
    case T_BODY:
        if ((size = length_of(message, M_BODY, 0)) < 0)
            return -1;
        self->size += size;
        return 0;
    case T_ACCEPT:
        Py_SETREF(self->status, Py_NewRef(status_101));
        return 0;
    case T_SEND: {
        Py_ssize_t binary = length_of(message, M_BYTES, 0);
        if (binary < 0)
            return -1;
        Py_ssize_t text = length_of(message, M_TEXT, 1);
        if (text < 0)
            return -1;
        self->size += binary + text;
        return 0;
    }
    case T_CLOSE: {
        int truth = PyObject_IsTrue(self->status);
        if (truth < 0)
            return -1;
        if (!truth)
            Py_SETREF(self->status, Py_NewRef(status_403));
        return 0;
    }
    default:
        return 0;
    }
}

static PyObject *
Recorder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Recorder *self = (Recorder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Recorder() takes one message");
        return NULL;
    }
    if (record(self, args[0]) < 0)
        return NULL;
    return PyObject_Vectorcall(self->send, args, 1, NULL);
}

static PyObject *
Recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *send;
    if (!PyArg_ParseTuple(args, "O:Recorder", &send))
        return NULL;
    Recorder *self = PyObject_GC_New(Recorder, type);
    if (self == NULL)
        return NULL;
    self->send = Py_NewRef(send);
    self->status = Py_NewRef(zero);
    self->headers = Py_NewRef(empty_tuple);
    self->size = 0;
    self->vectorcall = Recorder_vectorcall;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* Recorder(send) as the layer makes it, once a request: no argument tuple. */
static PyObject *
Recorder_vectorcall_new(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Recorder(send) takes one argument");
        return NULL;
    }
    Recorder *self = PyObject_GC_New(Recorder, (PyTypeObject *)type);
    if (self == NULL)
        return NULL;
    self->send = Py_NewRef(args[0]);
    self->status = Py_NewRef(zero);
    self->headers = Py_NewRef(empty_tuple);
    self->size = 0;
    self->vectorcall = Recorder_vectorcall;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
Recorder_traverse(Recorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->send);
    Py_VISIT(self->status);
    Py_VISIT(self->headers);
    return 0;
}

static int
Recorder_clear(Recorder *self)
{
    Py_CLEAR(self->send);
    Py_CLEAR(self->status);
    Py_CLEAR(self->headers);
    return 0;
}

static void
Recorder_dealloc(Recorder *self)
{
    PyObject_GC_UnTrack(self);
    Recorder_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
Recorder_get_size(Recorder *self, void *closure)
{
    return PyLong_FromSsize_t(self->size);
}

static PyObject *
Recorder_get_status(Recorder *self, void *closure)
{
    return Py_NewRef(self->status);
}

static PyObject *
Recorder_get_headers(Recorder *self, void *closure)
{
    return Py_NewRef(self->headers);
}

static PyGetSetDef Recorder_getset[] = {
    {"status", (getter)Recorder_get_status, NULL, "The response's status: 0 before its start, 101 for an "
     "accepted WebSocket, 403 for one closed before it was accepted.", NULL},
    {"size", (getter)Recorder_get_size, NULL, "Body bytes sent (WebSocket: message bytes).", NULL},
    {"headers", (getter)Recorder_get_headers, NULL, "The response's headers, () before its start.", NULL},
    {NULL},
};

PyDoc_STRVAR(Recorder_doc,
"Recorder(send, /)\n"
"--\n"
"\n"
"A send for the app that records each message's part of what the response was (status, body\n"
"bytes, headers) and passes it to ``send``, returning ``send``'s awaitable. The same as\n"
"launcher.access_log.PyRecorder, without a Python frame a message.");

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "launcher._speedups.Recorder",
    .tp_basicsize = sizeof(Recorder),
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_vectorcall_offset = offsetof(Recorder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = Recorder_doc,
    .tp_traverse = (traverseproc)Recorder_traverse,
    .tp_clear = (inquiry)Recorder_clear,
    .tp_getset = Recorder_getset,
    .tp_new = Recorder_new,
    .tp_vectorcall = Recorder_vectorcall_new,
};

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

static int
exec_module(PyObject *m)
{
    return PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "launcher._speedups",
    .m_doc = "The access log's default line in C (see launcher.access_log).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (int k = 0; k < KEYS; k++) {
        if (keys[k] == NULL && (keys[k] = PyUnicode_InternFromString(key_names[k])) == NULL)
            return NULL;
    }
    for (int k = 0; k < MKEYS; k++) {
        if (message_keys[k] == NULL && (message_keys[k] = PyUnicode_InternFromString(message_key_names[k])) == NULL)
            return NULL;
    }
    for (int t = 0; t < TYPES; t++) {
        if (types[t] == NULL && (types[t] = PyUnicode_InternFromString(type_names[t])) == NULL)
            return NULL;
    }
    if ((empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL) ||
        (zero == NULL && (zero = PyLong_FromLong(0)) == NULL) ||
        (status_101 == NULL && (status_101 = PyLong_FromLong(101)) == NULL) ||
        (status_403 == NULL && (status_403 = PyLong_FromLong(403)) == NULL))
        return NULL;
    if (PyType_Ready(&RecorderType) < 0)
        return NULL;
    return PyModuleDef_Init(&module);
}
