/* The access log's and the metrics' per-request work in C: the core's optional accelerator.
 *
 * Recorder: the send the app is given, recording the response's status, size and headers with
 * no Python frame a message (a closure doing it cost more than everything else the layer does).
 *
 * AccessLayer: launcher.access_log.AccessLog's request path. With the default or the JSON
 * layout it formats each request's line as the request ends, into its own buffer, and writes
 * a full batch itself (whole lines, at most a pipe's atomic write at a time); nothing of a
 * request is held after it. With metrics on it counts the request into a Tally.
 *
 * Tally: requests counted into histogram buckets by (method label, status), for
 * launcher.metrics (launcher.tally.PyTally is its Python twin).
 *
 * format_lines: the line code over a batch, as the tests see it.
 *
 * Each line is an exact copy of what the Python formatter writes (_DefaultFormat.batch,
 * _JsonFormat), and the C code gives up (the entry goes to the Python formatter) on anything
 * that formatter would treat in a way this does not copy: a scope value of an unusual type, a
 * string with a lone surrogate in a UTF-8 line. Unit tests hold the two byte-for-byte equal
 * over generated scopes, and Tally to PyTally.
 *
 * Built by setup.py as an optional extension: where no C compiler is found, the package
 * installs without it and the Python code does all of this.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>

/* Bytes one write(2) may carry and stay atomic on a pipe (PIPE_BUF): launcher.access_log's. */
#define ATOMIC_WRITE 4096

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
enum { HEADERS, RAW_PATH, PATH, QUERY_STRING, CLIENT, METHOD, HTTP_VERSION, TYPE, KEYS };
static const char *key_names[KEYS] = {"headers", "raw_path", "path", "query_string", "client",
                                      "method", "http_version", "type"};
static PyObject *keys[KEYS];
/* What the formatters write for an absent method, HTTP version and client. */
enum { DEFAULT_METHOD, DEFAULT_VERSION, NO_CLIENT, DEFAULTS };
static const char *default_texts[DEFAULTS] = {"GET", "1.1", "-"};
static PyObject *defaults[DEFAULTS];

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

/* What a line reads of a request's scope (new references, or NULL when absent), as the Python
 * formatters read it; ``gather`` gives up where a value's type or truth is in doubt. */
typedef struct {
    PyObject *found[3]; /* referer, user agent, request id (bytes), or NULL */
    PyObject *headers, *raw, *path, *query, *client, *method, *version, *kind;
    PyObject *target; /* borrowed: scope.get("raw_path") or scope["path"] */
    PyObject *host;   /* borrowed: client[0], a str, or "-" when there is no client */
} Fields;

static void
release(Fields *f)
{
    for (int n = 0; n < 3; n++)
        Py_XDECREF(f->found[n]);
    Py_XDECREF(f->headers);
    Py_XDECREF(f->raw);
    Py_XDECREF(f->path);
    Py_XDECREF(f->query);
    Py_XDECREF(f->client);
    Py_XDECREF(f->method);
    Py_XDECREF(f->version);
    Py_XDECREF(f->kind);
}

/* Fill ``f`` (release() it in every case): 0, or GIVE_UP. ``want_path``: scope["path"] and
 * scope["type"] are wanted too (the JSON line's url.path and protocol name), both str. */
static int
gather(PyObject *scope, Fields *f, int want_path)
{
    memset(f, 0, sizeof(*f));
    f->headers = item(scope, HEADERS);
    f->raw = item(scope, RAW_PATH);
    f->query = item(scope, QUERY_STRING);
    f->client = item(scope, CLIENT);
    f->method = item(scope, METHOD);
    f->version = item(scope, HTTP_VERSION);
    if (f->headers != NULL && scan_headers(f->headers, f->found) != 0)
        return GIVE_UP;
    if (f->raw != NULL && f->raw != Py_None) {
        if (PyBytes_CheckExact(f->raw) || PyUnicode_CheckExact(f->raw))
            f->target = PyObject_Length(f->raw) ? f->raw : NULL;
        else
            return GIVE_UP;
    }
    if (f->target == NULL || want_path) {
        f->path = item(scope, PATH);
        if (f->target == NULL)
            f->target = f->path;
    }
    if (f->target == NULL || !(PyBytes_CheckExact(f->target) || PyUnicode_CheckExact(f->target)))
        return GIVE_UP;
    if (want_path) {
        f->kind = item(scope, TYPE);
        if (f->path == NULL || !PyUnicode_CheckExact(f->path) || f->kind == NULL || !PyUnicode_CheckExact(f->kind))
            return GIVE_UP;
    }
    if (f->query != NULL && f->query != Py_None && !PyBytes_CheckExact(f->query))
        return GIVE_UP;
    if ((f->method != NULL && !PyUnicode_CheckExact(f->method)) ||
        (f->version != NULL && !PyUnicode_CheckExact(f->version)))
        return GIVE_UP;
    if (f->client != NULL && f->client != Py_None) {
        if (!(PyTuple_CheckExact(f->client) || PyList_CheckExact(f->client)) || PySequence_Size(f->client) == 0)
            return GIVE_UP;
        f->host = PySequence_Fast_GET_ITEM(f->client, 0);
        if (!PyUnicode_CheckExact(f->host))
            return GIVE_UP;
    }
    else {
        Py_CLEAR(f->client);
        f->host = defaults[NO_CLIENT];
    }
    if (f->method == NULL)
        f->method = Py_NewRef(defaults[DEFAULT_METHOD]);
    if (f->version == NULL)
        f->version = Py_NewRef(defaults[DEFAULT_VERSION]);
    return 0;
}

/* The clock's text for ``wall``'s second, formatted by ``now`` once a second: 0, GIVE_UP, -1. */
static int
clock_for(double wall, PyObject *now, long long *second, PyObject **clock_text)
{
    long long this_second = (long long)wall;
    if (*clock_text != NULL && this_second == *second)
        return 0;
    PyObject *when = PyFloat_FromDouble(wall);
    if (when == NULL)
        return -1;
    PyObject *formatted = PyObject_CallOneArg(now, when);
    Py_DECREF(when);
    if (formatted == NULL)
        return -1;
    if (!PyUnicode_CheckExact(formatted)) {
        Py_DECREF(formatted);
        return GIVE_UP;
    }
    Py_XSETREF(*clock_text, formatted);
    *second = this_second;
    return 0;
}

#define TRY(call)                      \
    if ((r = (call)) != 0) {           \
        result = r > 0 ? GIVE_UP : -1; \
        goto done;                     \
    }

/* One request's default line: 0 written, GIVE_UP, -1 error. ``clock_text`` is the last
 * second's time text. ``started`` is the request's monotonic start; ``offset`` turns it into
 * wall-clock time. */
static int
format_values(Buffer *b, PyObject *scope, double started, PyObject *status, long long size_value,
              double duration, double offset, PyObject *now, long long *second, PyObject **clock_text,
              const char *pid, Py_ssize_t pid_size)
{
    if (!PyDict_CheckExact(scope) || !PyLong_CheckExact(status))
        return GIVE_UP;
    int result = GIVE_UP, r;
    char *text = NULL;
    Fields fields;
    Fields *f = &fields;
    PyObject *host, *method, *target, *query, *version, **found;
    TRY(gather(scope, f, 0));
    TRY(clock_for(started + offset, now, second, clock_text));
    host = f->host, method = f->method, target = f->target, query = f->query, version = f->version;
    found = f->found;
    int overflow = 0;
    long status_value = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow)
        goto done;

    TRY(put_str(b, host));
    TRY(PUT_LITERAL(b, " - - "));
    TRY(put_str(b, *clock_text));
    TRY(PUT_LITERAL(b, " \""));
    TRY(put_str(b, method));
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
    TRY(put_str(b, version));
    TRY(PUT_LITERAL(b, "\" "));
    TRY(put_long(b, status_value));
    TRY(PUT_LITERAL(b, " "));
    if (size_value) {
        TRY(put_long(b, (long)size_value));
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
    double ms = duration * 1000;
    if ((r = put_milliseconds(b, ms)) < 0) {
        result = -1;
        goto done;
    }
    if (r > 0) {
        text = PyOS_double_to_string(ms, 'f', 3, 0, NULL);
        if (text == NULL) {
            result = -1;
            goto done;
        }
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
    result = 0;
done:
    if (text != NULL)
        PyMem_Free(text);
    release(f);
    return result;
}

/* A str as a JSON string in ASCII, quotes included, as json's encode_basestring_ascii gives it. */
static int
put_json_codepoint(char *out, Py_UCS4 c)
{
    static const char hex[] = "0123456789abcdef";
    if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '\\';
    switch (c) {
    case '\\': out[1] = '\\'; return 2;
    case '"': out[1] = '"'; return 2;
    case '\b': out[1] = 'b'; return 2;
    case '\f': out[1] = 'f'; return 2;
    case '\n': out[1] = 'n'; return 2;
    case '\r': out[1] = 'r'; return 2;
    case '\t': out[1] = 't'; return 2;
    }
    int n = 0;
    if (c >= 0x10000) {
        Py_UCS4 v = c - 0x10000;
        Py_UCS4 high = 0xd800 | ((v >> 10) & 0x3ff);
        out[1] = 'u';
        out[2] = hex[(high >> 12) & 0xf];
        out[3] = hex[(high >> 8) & 0xf];
        out[4] = hex[(high >> 4) & 0xf];
        out[5] = hex[high & 0xf];
        out[6] = '\\';
        n = 6;
        c = 0xdc00 | (v & 0x3ff);
    }
    out[n + 1] = 'u';
    out[n + 2] = hex[(c >> 12) & 0xf];
    out[n + 3] = hex[(c >> 8) & 0xf];
    out[n + 4] = hex[(c >> 4) & 0xf];
    out[n + 5] = hex[c & 0xf];
    return n + 6;
}

/* Whether ``size`` bytes are all printable ASCII other than a quote or a backslash: written
 * as they are (the usual method, path, version and user agent). */
static int
plain_ascii(const unsigned char *data, Py_ssize_t size)
{
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = data[i];
        if (c < ' ' || c > '~' || c == '\\' || c == '"')
            return 0;
    }
    return 1;
}

/* The characters of a str, or of bytes read as latin-1, JSON-escaped (no quotes). */
static int
put_json_chars(Buffer *b, PyObject *text)
{
    if (PyBytes_CheckExact(text)) {
        Py_ssize_t size = PyBytes_GET_SIZE(text);
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(text);
        if (plain_ascii(data, size))
            return put(b, (const char *)data, size);
        if (reserve(b, 6 * size) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < size; i++)
            b->size += put_json_codepoint(b->data + b->size, data[i]);
        return 0;
    }
    if (PyUnicode_IS_ASCII(text)) {
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        const unsigned char *ascii = PyUnicode_1BYTE_DATA(text);
        if (plain_ascii(ascii, length))
            return put(b, (const char *)ascii, length);
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (reserve(b, 12 * size) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < size; i++)
        b->size += put_json_codepoint(b->data + b->size, PyUnicode_READ(kind, data, i));
    return 0;
}

static int
put_json(Buffer *b, PyObject *text)
{
    if (put(b, "\"", 1) < 0 || put_json_chars(b, text) < 0)
        return -1;
    return put(b, "\"", 1);
}

/* One request's JSON line (launcher.access_log.json_formatter's): 0 written, GIVE_UP, -1. */
static int
format_json(Buffer *b, PyObject *scope, double started, PyObject *status, long long size_value,
            double duration, double offset, PyObject *now, long long *second, PyObject **clock_text,
            const char *pid, Py_ssize_t pid_size)
{
    if (!PyDict_CheckExact(scope) || !PyLong_CheckExact(status))
        return GIVE_UP;
    int result = GIVE_UP, r;
    Fields fields;
    Fields *f = &fields;
    TRY(gather(scope, f, 1));
    double wall = started + offset;
    double nanoseconds = duration * 1e9;
    if (!isfinite(wall) || wall < 0 || !isfinite(nanoseconds) || fabs(nanoseconds) >= 9e18)
        goto done;
    TRY(clock_for(wall, now, second, clock_text));
    PyObject *port = NULL; /* client[1], when it is neither None nor "" */
    if (f->client != NULL) {
        if (PySequence_Size(f->client) < 2)
            goto done;
        port = PySequence_Fast_GET_ITEM(f->client, 1);
        if (port == Py_None || (PyUnicode_CheckExact(port) && PyUnicode_GET_LENGTH(port) == 0))
            port = NULL;
        else if (!PyLong_CheckExact(port))
            goto done;
    }
    int overflow = 0;
    long status_value = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow)
        goto done;
    long port_value = port ? PyLong_AsLongAndOverflow(port, &overflow) : 0;
    if (overflow)
        goto done;

    TRY(PUT_LITERAL(b, "{\"@timestamp\":\""));
    TRY(put_str(b, *clock_text));
    int thousandths = (int)(fmod(wall, 1.0) * 1000); /* int(wall % 1 * 1000), wall >= 0 */
    char millis[5] = {'.', (char)('0' + thousandths / 100 % 10), (char)('0' + thousandths / 10 % 10),
                      (char)('0' + thousandths % 10), 'Z'};
    TRY(put(b, millis, 5));
    TRY(PUT_LITERAL(b, "\",\"log.level\":\"info\",\"log.logger\":\"asgi_launcher.access\","
                       "\"event.dataset\":\"asgi.access\",\"message\":\""));
    TRY(put_json_chars(b, f->method));
    TRY(PUT_LITERAL(b, " "));
    TRY(put_json_chars(b, f->target));
    int has_query = f->query != NULL && f->query != Py_None && PyBytes_GET_SIZE(f->query);
    if (has_query) {
        TRY(PUT_LITERAL(b, "?"));
        TRY(put_json_chars(b, f->query));
    }
    TRY(PUT_LITERAL(b, " HTTP/"));
    TRY(put_json_chars(b, f->version));
    TRY(PUT_LITERAL(b, " "));
    TRY(put_long(b, status_value));
    TRY(PUT_LITERAL(b, "\",\"client.address\":"));
    TRY(put_json(b, f->host));
    if (port != NULL) {
        TRY(PUT_LITERAL(b, ",\"client.port\":"));
        TRY(put_long(b, port_value));
    }
    TRY(PUT_LITERAL(b, ",\"http.request.method\":"));
    TRY(put_json(b, f->method));
    TRY(PUT_LITERAL(b, ",\"url.path\":"));
    TRY(put_json(b, f->path));
    if (has_query) {
        TRY(PUT_LITERAL(b, ",\"url.query\":"));
        TRY(put_json(b, f->query));
    }
    TRY(PUT_LITERAL(b, ",\"network.protocol.version\":"));
    TRY(put_json(b, f->version));
    TRY(PUT_LITERAL(b, ",\"http.response.status_code\":"));
    TRY(put_long(b, status_value));
    TRY(PUT_LITERAL(b, ",\"http.response.body.bytes\":"));
    TRY(put_long(b, (long)size_value));
    TRY(PUT_LITERAL(b, ",\"event.duration\":"));
    TRY(put_long(b, (long)nanoseconds));
    static const char *header_keys[3] = {",\"http.request.referrer\":", ",\"user_agent.original\":",
                                         ",\"http.request.id\":"};
    for (int n = 0; n < 3; n++) {
        PyObject *value = f->found[n];
        /* '-' stands for no header in the Python formatter: a header of "-" is left out too. */
        if (value == NULL || (PyBytes_GET_SIZE(value) == 1 && PyBytes_AS_STRING(value)[0] == '-'))
            continue;
        TRY(put(b, header_keys[n], (Py_ssize_t)strlen(header_keys[n])));
        TRY(put_json(b, value));
    }
    TRY(PUT_LITERAL(b, ",\"process.pid\":"));
    TRY(put(b, pid, pid_size));
    if (PyUnicode_CompareWithASCIIString(f->kind, "websocket") == 0) {
        TRY(PUT_LITERAL(b, ",\"network.protocol.name\":\"websocket\""));
    }
    TRY(PUT_LITERAL(b, "}\n"));
    result = 0;
done:
    release(f);
    return result;
}
#undef TRY

/* One entry's line (the access log's Entry tuple): format_values over its fields. */
typedef int (*line_format)(Buffer *, PyObject *, double, PyObject *, long long, double, double, PyObject *,
                           long long *, PyObject **, const char *, Py_ssize_t);

static int
format_entry(Buffer *b, PyObject *entry, double offset, PyObject *now, long long *second,
             PyObject **clock_text, const char *pid, Py_ssize_t pid_size, line_format format)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) < 5)
        return GIVE_UP;
    PyObject *started = PyTuple_GET_ITEM(entry, 1);
    PyObject *size = PyTuple_GET_ITEM(entry, 3);
    PyObject *duration = PyTuple_GET_ITEM(entry, 4);
    if (!PyFloat_CheckExact(started) || !PyLong_CheckExact(size) || !PyFloat_CheckExact(duration))
        return GIVE_UP;
    int overflow = 0;
    long long size_value = PyLong_AsLongLongAndOverflow(size, &overflow);
    if (overflow || size_value > LONG_MAX || size_value < LONG_MIN)
        return GIVE_UP;
    return format(b, PyTuple_GET_ITEM(entry, 0), PyFloat_AS_DOUBLE(started), PyTuple_GET_ITEM(entry, 2),
                  size_value, PyFloat_AS_DOUBLE(duration), offset, now, second, clock_text, pid, pid_size);
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

/* A Recorder in front of ``send``. */
static Recorder *
new_recorder(PyTypeObject *type, PyObject *send)
{
    Recorder *self = PyObject_GC_New(Recorder, type);
    if (self == NULL)
        return NULL;
    self->send = Py_NewRef(send);
    self->status = Py_NewRef(zero);
    self->headers = Py_NewRef(empty_tuple);
    self->size = 0;
    self->vectorcall = Recorder_vectorcall;
    PyObject_GC_Track(self);
    return self;
}

static PyObject *
Recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *send;
    if (!PyArg_ParseTuple(args, "O:Recorder", &send))
        return NULL;
    return (PyObject *)new_recorder(type, send);
}

/* Recorder(send) as a Python layer makes it, once a request: no argument tuple. */
static PyObject *
Recorder_vectorcall_new(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Recorder(send) takes one argument");
        return NULL;
    }
    return (PyObject *)new_recorder((PyTypeObject *)type, args[0]);
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

/* ---- AccessLayer: the access log's layer, a request at a time ------------------------------ */

/* time.perf_counter(), as Python computes it (CLOCK_MONOTONIC in nanoseconds, over 1e9). */
/* ---- Tally: requests counted into histogram buckets, by (method label, status) -------------- */

/* One (label, status)'s requests since the last take(). */
typedef struct {
    PyObject *label;  /* the method, or ``other`` for one outside ``methods`` */
    PyObject *status;
    Py_ssize_t count;
    double duration_sum;
    long long size_sum;
    Py_ssize_t *buckets; /* the duration buckets (bounds + 1), then the size buckets */
} Group;

typedef struct {
    PyObject_HEAD
    PyObject *methods; /* the labels kept as they are (a frozenset of str) */
    PyObject *other;   /* the label of any other method */
    double *bounds;    /* the duration bounds, then the size bounds */
    Py_ssize_t durations, sizes;
    Group *groups;
    Py_ssize_t ngroups, capacity;
} Tally;

static PyTypeObject TallyType;

static int
bounds_of(PyObject *sequence, double *into, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        into[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(sequence, i));
        if (into[i] == -1.0 && PyErr_Occurred())
            return -1;
        if (i && into[i] <= into[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "Tally: bounds must increase");
            return -1;
        }
    }
    return 0;
}

static PyObject *
Tally_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"duration_bounds", "size_bounds", "methods", "other", NULL};
    PyObject *durations, *sizes, *methods, *other;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!U:Tally", names, &durations, &sizes,
                                     &PyFrozenSet_Type, &methods, &other))
        return NULL;
    PyObject *d = PySequence_Fast(durations, "Tally: duration_bounds must be a sequence");
    if (d == NULL)
        return NULL;
    PyObject *s = PySequence_Fast(sizes, "Tally: size_bounds must be a sequence");
    if (s == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    Tally *self = PyObject_GC_New(Tally, type);
    if (self == NULL)
        goto fail;
    self->methods = Py_NewRef(methods);
    self->other = Py_NewRef(other);
    self->durations = PySequence_Fast_GET_SIZE(d);
    self->sizes = PySequence_Fast_GET_SIZE(s);
    self->groups = NULL;
    self->ngroups = self->capacity = 0;
    self->bounds = PyMem_New(double, (size_t)(self->durations + self->sizes + 1));
    PyObject_GC_Track(self);
    if (self->bounds == NULL) {
        PyErr_NoMemory();
        goto fail_self;
    }
    if (bounds_of(d, self->bounds, self->durations) < 0 || bounds_of(s, self->bounds + self->durations, self->sizes) < 0)
        goto fail_self;
    Py_DECREF(d);
    Py_DECREF(s);
    return (PyObject *)self;
fail_self:
    Py_DECREF(self);
fail:
    Py_DECREF(d);
    Py_DECREF(s);
    return NULL;
}

/* The bucket of ``value``: the first bound it does not exceed (``le`` is inclusive, as in
 * Histogram.observe), else the last bucket (+Inf). */
static Py_ssize_t
bucket_of(const double *bounds, Py_ssize_t count, double value)
{
    Py_ssize_t low = 0, high = count;
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        if (value <= bounds[mid])
            high = mid;
        else
            low = mid + 1;
    }
    return low;
}

static int
same(PyObject *a, PyObject *b)
{
    return a == b ? 1 : PyObject_RichCompareBool(a, b, Py_EQ);
}

/* Count one request: 0, or -1 with an exception set. */
static int
tally_add(Tally *self, PyObject *method, PyObject *status, long long size, double duration)
{
    int known = PyUnicode_CheckExact(method) ? PySet_Contains(self->methods, method) : 0;
    if (known < 0)
        return -1;
    PyObject *label = known ? method : self->other;
    Group *group = NULL;
    for (Py_ssize_t g = 0; g < self->ngroups; g++) {
        int r = same(self->groups[g].status, status);
        if (r > 0)
            r = same(self->groups[g].label, label);
        if (r < 0)
            return -1;
        if (r) {
            group = &self->groups[g];
            break;
        }
    }
    if (group == NULL) {
        if (self->ngroups == self->capacity) {
            Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 4;
            Group *groups = PyMem_Resize(self->groups, Group, (size_t)capacity);
            if (groups == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->groups = groups;
            self->capacity = capacity;
        }
        Py_ssize_t width = self->durations + self->sizes + 2;
        Py_ssize_t *buckets = PyMem_New(Py_ssize_t, (size_t)width);
        if (buckets == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(buckets, 0, sizeof(Py_ssize_t) * (size_t)width);
        group = &self->groups[self->ngroups++];
        group->label = Py_NewRef(label);
        group->status = Py_NewRef(status);
        group->count = 0;
        group->duration_sum = 0.0;
        group->size_sum = 0;
        group->buckets = buckets;
    }
    group->count++;
    group->duration_sum += duration;
    group->size_sum += size;
    group->buckets[bucket_of(self->bounds, self->durations, duration)]++;
    group->buckets[self->durations + 1 + bucket_of(self->bounds + self->durations, self->sizes, (double)size)]++;
    return 0;
}

static PyObject *
Tally_add(Tally *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "add expected 4 arguments, got %zd", nargs);
        return NULL;
    }
    long long size = PyLong_AsLongLong(args[2]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    double duration = PyFloat_AsDouble(args[3]);
    if (duration == -1.0 && PyErr_Occurred())
        return NULL;
    if (tally_add(self, args[0], args[1], size, duration) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
counts_list(const Py_ssize_t *counts, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyLong_FromSsize_t(counts[i]);
        if (value == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, value);
    }
    return list;
}

static void
tally_forget(Tally *self)
{
    for (Py_ssize_t g = 0; g < self->ngroups; g++) {
        Py_CLEAR(self->groups[g].label);
        Py_CLEAR(self->groups[g].status);
        PyMem_Free(self->groups[g].buckets);
    }
    self->ngroups = 0;
}

static PyObject *
Tally_take(Tally *self, PyObject *unused)
{
    PyObject *result = PyList_New(self->ngroups);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t g = 0; g < self->ngroups; g++) {
        Group *group = &self->groups[g];
        PyObject *durations = counts_list(group->buckets, self->durations + 1);
        PyObject *sizes = durations ? counts_list(group->buckets + self->durations + 1, self->sizes + 1) : NULL;
        PyObject *row = sizes ? Py_BuildValue("(OOnNdNL)", group->label, group->status, group->count, durations,
                                              group->duration_sum, sizes, group->size_sum)
                              : NULL;
        if (row == NULL) {
            if (sizes == NULL)
                Py_XDECREF(durations);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, g, row);
    }
    tally_forget(self);
    return result;
}

static int
Tally_traverse(Tally *self, visitproc visit, void *arg)
{
    Py_VISIT(self->methods);
    Py_VISIT(self->other);
    for (Py_ssize_t g = 0; g < self->ngroups; g++) {
        Py_VISIT(self->groups[g].label);
        Py_VISIT(self->groups[g].status);
    }
    return 0;
}

static int
Tally_clear(Tally *self)
{
    Py_CLEAR(self->methods);
    Py_CLEAR(self->other);
    tally_forget(self);
    return 0;
}

static void
Tally_dealloc(Tally *self)
{
    PyObject_GC_UnTrack(self);
    Tally_clear(self);
    PyMem_Free(self->groups);
    PyMem_Free(self->bounds);
    PyObject_GC_Del(self);
}

static PyMethodDef Tally_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Tally_add, METH_FASTCALL,
     "add(method, status, size, duration): count one request."},
    {"take", (PyCFunction)Tally_take, METH_NOARGS,
     "The groups counted since the last take, as (label, status, count, duration buckets, "
     "duration sum, size buckets, size sum) tuples, and forget them."},
    {NULL},
};

PyDoc_STRVAR(Tally_doc,
"Tally(duration_bounds, size_bounds, methods, other)\n"
"--\n"
"\n"
"launcher.tally.PyTally in C: requests counted into histogram buckets by (method label, status)\n"
"as they end, with no Python object made a request.");

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "launcher._speedups.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = Tally_doc,
    .tp_traverse = (traverseproc)Tally_traverse,
    .tp_clear = (inquiry)Tally_clear,
    .tp_methods = Tally_methods,
    .tp_new = Tally_new,
};

static double
perf_counter(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return (double)ns / 1e9;
}

static PyObject *str_lifespan;
static PyObject *str_http;
static PyObject *str_method;
static PyObject *str_type;
static PyObject *str_throw;
static PyObject *str_close;
static PyObject *status_500;
static PyObject *str_fd;

typedef struct {
    PyObject_HEAD
    PyObject *app;
    PyObject *entries;  /* the Writer's list, appended to in place */
    PyObject *on_add;   /* Writer._added: arms the timer or flushes a full batch */
    PyObject *begun;    /* ServerMetrics' list of methods begun, appended to in place, or None */
    PyObject *on_begin; /* ServerMetrics.begun: after a first method since its last count */
    PyObject *lifespan; /* the Python layer's lifespan handling */
    Py_ssize_t batch;
    vectorcallfunc vectorcall;
    /* With ``now`` (the default layout): each request's line is formatted as it ends, into
     * ``lines``, so nothing of the request is held until the flush (held scopes cost the
     * garbage collector's passes more than formatting does). ``take()`` hands them over. */
    PyObject *now;      /* the clock's function from a wall-clock time to its text, or None */
    PyObject *pid;      /* the worker's pid, as text */
    PyObject *arm;      /* Writer.arm: a batch has begun */
    PyObject *flush;    /* Writer.flush: a batch is full */
    PyObject *tally;    /* ServerMetrics' Tally, counting each HTTP request as it ends, or None */
    PyObject *writer;   /* the Writer: a full batch is written to its ``fd`` from here */
    PyObject *clock_text;
    long long second;
    line_format format; /* the default line's, or the JSON line's */
    Buffer lines;
    Py_ssize_t pending; /* lines and entries since the last take() */
} AccessLayer;

typedef struct {
    PyObject_HEAD
    AccessLayer *layer;
    PyObject *scope;
    Recorder *recorder;
    PyObject *inner;    /* the app's awaitable */
    PyObject *iterator; /* what awaiting it drives */
    PyObject *method;   /* an HTTP request's method, as begun for the metrics, or NULL */
    double started;
    int finished;
} Watch;

static PyTypeObject AccessLayerType;
static PyTypeObject WatchType;

/* The request is over: its entry joins the batch (once). ``failed``: the app raised, so a
 * response that never started is the server's 500. Returns -1 only when the Writer's hook
 * failed and nothing else had. */
static double
wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
call_hook(PyObject *hook)
{
    PyObject *result = PyObject_CallNoArgs(hook);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* ``data`` written to ``fd`` whole, with the GIL released; a write error other than EINTR
 * drops the rest, as Writer._write does (the reader is gone). -1 only if a signal handler
 * raised, as os.write would. */
static int
write_all(int fd, const char *data, Py_ssize_t size)
{
    while (size > 0) {
        ssize_t written;
        Py_BEGIN_ALLOW_THREADS
        written = write(fd, data, (size_t)size);
        Py_END_ALLOW_THREADS
        if (written < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            return 0;
        }
        data += written;
        size -= written;
    }
    return 0;
}

/* Writer._write_lines in C: whole lines in writes of at most ATOMIC_WRITE bytes (a longer
 * line alone), so the lines of workers sharing a pipe never interleave. */
static int
write_lines(int fd, const char *data, Py_ssize_t size)
{
    Py_ssize_t start = 0;
    while (size - start > ATOMIC_WRITE) {
        Py_ssize_t cut = start;
        for (Py_ssize_t i = start + ATOMIC_WRITE - 1; i >= start; i--) {
            if (data[i] == '\n') {
                cut = i + 1;
                break;
            }
        }
        if (cut <= start) {
            const char *newline = memchr(data + start, '\n', (size_t)(size - start));
            cut = newline ? (newline - data) + 1 : size;
        }
        if (write_all(fd, data + start, cut - start) < 0)
            return -1;
        start = cut;
    }
    return start < size ? write_all(fd, data + start, size - start) : 0;
}

/* A full batch: written from here, to the Writer's fd, unless entries the C line code gave up
 * on are waiting (rare): Writer.flush then writes both. The Writer's timer, armed by the
 * batch's first line, stays as it is: it writes whatever is there when it fires. */
static int
write_batch(AccessLayer *layer)
{
    if (layer->writer == Py_None || PyList_GET_SIZE(layer->entries))
        return call_hook(layer->flush);
    PyObject *fd_object = PyObject_GetAttr(layer->writer, str_fd);
    if (fd_object == NULL)
        return -1;
    long fd_value = PyLong_AsLong(fd_object);
    Py_DECREF(fd_object);
    if (fd_value == -1 && PyErr_Occurred())
        return -1;
    if (fd_value < 0 || fd_value > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "AccessLayer: the writer's fd is %ld", fd_value);
        return -1;
    }
    int fd = (int)fd_value;
    /* The buffer is detached while the GIL is released: nothing can grow it under the write. */
    Buffer lines = layer->lines;
    layer->lines.data = NULL;
    layer->lines.size = layer->lines.capacity = 0;
    layer->pending = 0;
    int r = write_lines(fd, lines.data, lines.size);
    if (layer->lines.data == NULL) {
        lines.size = 0;
        layer->lines = lines; /* kept for the next batch */
    }
    else {
        PyMem_Free(lines.data);
    }
    return r;
}

static int
finish(AccessLayer *layer, PyObject *scope, PyObject *method, Recorder *recorder, double started, int failed)
{
    double ended = perf_counter();
    double duration = ended - started;
    PyObject *status = recorder->status;
    if (failed) {
        int truth = PyObject_IsTrue(status);
        if (truth <= 0) {
            PyErr_Clear();
            status = status_500;
        }
    }
    /* Counted under the method it was begun with, so the active gauge comes back down. */
    if (method != NULL && layer->tally != Py_None &&
        tally_add((Tally *)layer->tally, method, status, recorder->size, duration) < 0)
        return -1;
    int r = 1; /* 1: an entry goes to the list, for the Python formatter */
    if (layer->now != Py_None) {
        Py_ssize_t size = layer->lines.size;
        Py_ssize_t pid_size;
        const char *pid = PyUnicode_AsUTF8AndSize(layer->pid, &pid_size);
        if (pid == NULL)
            return -1;
        r = layer->format(&layer->lines, scope, started, status, recorder->size, duration, wall_clock() - ended,
                          layer->now, &layer->second, &layer->clock_text, pid, pid_size);
        if (r != 0)
            layer->lines.size = size; /* nothing of a line given up on */
        if (r < 0)
            return -1;
    }
    if (r > 0) {
        PyObject *entry = Py_BuildValue("(OdOndO)", scope, started, status, recorder->size, duration,
                                        recorder->headers);
        if (entry == NULL)
            return -1;
        int appended = PyList_Append(layer->entries, entry);
        Py_DECREF(entry);
        if (appended < 0)
            return -1;
    }
    if (layer->now == Py_None) {
        Py_ssize_t waiting = PyList_GET_SIZE(layer->entries);
        if (waiting == 1 || waiting >= layer->batch)
            return call_hook(layer->on_add);
        return 0;
    }
    layer->pending++;
    if (layer->pending >= layer->batch)
        return write_batch(layer);
    if (layer->pending == 1)
        return call_hook(layer->arm);
    return 0;
}

/* finish() with the app's exception in flight: it stays the one raised. */
static void
finish_failed(Watch *w)
{
    if (w->finished)
        return;
    w->finished = 1;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (finish(w->layer, w->scope, w->method, w->recorder, w->started, 1) < 0)
        PyErr_WriteUnraisable((PyObject *)w->layer);
    PyErr_Restore(type, value, traceback);
}

static int
finish_ok(Watch *w)
{
    if (w->finished)
        return 0;
    w->finished = 1;
    return finish(w->layer, w->scope, w->method, w->recorder, w->started, 0);
}

static PySendResult
Watch_am_send(Watch *self, PyObject *arg, PyObject **result)
{
    if (self->finished) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited request");
        *result = NULL;
        return PYGEN_ERROR;
    }
    PyObject *value = NULL;
    PySendResult status = PyIter_Send(self->iterator, arg, &value);
    if (status == PYGEN_NEXT) {
        *result = value;
        return PYGEN_NEXT;
    }
    if (status == PYGEN_RETURN) {
        Py_XDECREF(value); /* an ASGI app returns None */
        if (finish_ok(self) < 0) {
            *result = NULL;
            return PYGEN_ERROR;
        }
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    finish_failed(self);
    *result = NULL;
    return PYGEN_ERROR;
}

/* A result of am_send as tp_iternext / send() give it: StopIteration for the return. */
static PyObject *
as_iteration(PySendResult status, PyObject *result, int raise_stop)
{
    if (status == PYGEN_NEXT)
        return result;
    if (status == PYGEN_RETURN) {
        Py_DECREF(result);
        if (raise_stop)
            PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    return NULL;
}

static PyObject *
Watch_iternext(Watch *self)
{
    PyObject *result;
    PySendResult status = Watch_am_send(self, Py_None, &result);
    return as_iteration(status, result, 0);
}

static PyObject *
Watch_send(Watch *self, PyObject *arg)
{
    PyObject *result;
    PySendResult status = Watch_am_send(self, arg, &result);
    return as_iteration(status, result, 1);
}

/* throw() and close() go down to the app's awaitable, as a coroutine's own would. */
static PyObject *
Watch_throw(Watch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    if (self->finished) {
        /* Raise what was thrown, as a finished coroutine does. */
        PyObject *typ = args[0];
        if (PyExceptionInstance_Check(typ))
            PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        else
            PyErr_SetObject(typ, nargs > 1 ? args[1] : NULL);
        return NULL;
    }
    PyObject *method = PyObject_GetAttr(self->iterator, str_throw);
    PyObject *result;
    if (method == NULL) {
        PyErr_Clear();
        PyObject *typ = args[0];
        if (PyExceptionInstance_Check(typ))
            PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        else
            PyErr_SetObject(typ, nargs > 1 ? args[1] : NULL);
        result = NULL;
    }
    else {
        result = PyObject_Vectorcall(method, args, (size_t)nargs, NULL);
        Py_DECREF(method);
    }
    if (result != NULL)
        return result; /* the app caught it and awaits again */
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear(); /* the app caught it and returned */
        if (finish_ok(self) < 0)
            return NULL;
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    finish_failed(self);
    return NULL;
}

static PyObject *
Watch_close(Watch *self, PyObject *unused)
{
    if (!self->finished) {
        PyObject *method = PyObject_GetAttr(self->iterator, str_close);
        if (method == NULL) {
            PyErr_Clear();
        }
        else {
            PyObject *result = PyObject_CallNoArgs(method);
            Py_DECREF(method);
            if (result == NULL) {
                finish_failed(self);
                return NULL;
            }
            Py_DECREF(result);
        }
        /* Closed before the app was done: logged as the Python layer's finally would. */
        PyErr_SetNone(PyExc_GeneratorExit);
        finish_failed(self);
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
Watch_await(Watch *self)
{
    return Py_NewRef(self);
}

static int
Watch_traverse(Watch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->layer);
    Py_VISIT(self->scope);
    Py_VISIT(self->recorder);
    Py_VISIT(self->inner);
    Py_VISIT(self->iterator);
    Py_VISIT(self->method);
    return 0;
}

static int
Watch_clear(Watch *self)
{
    Py_CLEAR(self->layer);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->recorder);
    Py_CLEAR(self->inner);
    Py_CLEAR(self->iterator);
    Py_CLEAR(self->method);
    return 0;
}

static void
Watch_dealloc(Watch *self)
{
    PyObject_GC_UnTrack(self);
    Watch_clear(self);
    PyObject_GC_Del(self);
}

static PyMethodDef Watch_methods[] = {
    {"send", (PyCFunction)Watch_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))Watch_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)Watch_close, METH_NOARGS, NULL},
    {NULL},
};

static PyAsyncMethods Watch_async = {
    .am_await = (unaryfunc)Watch_await,
    .am_send = (sendfunc)Watch_am_send,
};

static PyTypeObject WatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "launcher._speedups.Watch",
    .tp_basicsize = sizeof(Watch),
    .tp_dealloc = (destructor)Watch_dealloc,
    .tp_as_async = &Watch_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One request under AccessLayer: awaiting it awaits the app, then logs the request.",
    .tp_traverse = (traverseproc)Watch_traverse,
    .tp_clear = (inquiry)Watch_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Watch_iternext,
    .tp_methods = Watch_methods,
};

/* What ``await awaitable`` iterates: a coroutine itself, else its __await__(). */
static PyObject *
awaitable_iterator(PyObject *awaitable)
{
    if (PyCoro_CheckExact(awaitable))
        return Py_NewRef(awaitable);
    PyAsyncMethods *am = Py_TYPE(awaitable)->tp_as_async;
    if (am == NULL || am->am_await == NULL) {
        PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
                     Py_TYPE(awaitable)->tp_name);
        return NULL;
    }
    PyObject *iterator = am->am_await(awaitable);
    if (iterator != NULL && !PyIter_Check(iterator)) {
        PyErr_Format(PyExc_TypeError, "__await__() returned non-iterator of type '%.100s'",
                     Py_TYPE(iterator)->tp_name);
        Py_CLEAR(iterator);
    }
    return iterator;
}

static PyObject *
AccessLayer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    AccessLayer *self = (AccessLayer *)callable;
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "an ASGI app takes (scope, receive, send)");
        return NULL;
    }
    PyObject *scope = args[0];
    PyObject *kind = PyDict_CheckExact(scope) ? Py_XNewRef(PyDict_GetItemWithError(scope, str_type))
                                              : PyObject_GetItem(scope, str_type);
    if (kind == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, str_type);
        return NULL;
    }
    int lifespan = PyUnicode_Check(kind) && PyUnicode_Compare(kind, str_lifespan) == 0;
    int http = !lifespan && PyUnicode_Check(kind) && PyUnicode_Compare(kind, str_http) == 0;
    Py_DECREF(kind);
    if (lifespan)
        return PyObject_Vectorcall(self->lifespan, args, 3, NULL);
    PyObject *method = NULL; /* with metrics on, an HTTP request's: begun now, counted at the end */
    if (http && self->begun != Py_None) {
        method = PyObject_GetItem(scope, str_method);
        if (method == NULL)
            return NULL;
        if (PyList_Append(self->begun, method) < 0) {
            Py_DECREF(method);
            return NULL;
        }
        if (PyList_GET_SIZE(self->begun) == 1 && call_hook(self->on_begin) < 0) {
            Py_DECREF(method);
            return NULL;
        }
    }
    Recorder *recorder = new_recorder(&RecorderType, args[2]);
    if (recorder == NULL) {
        Py_XDECREF(method);
        return NULL;
    }

    double started = perf_counter();
    PyObject *inner_args[3] = {scope, args[1], (PyObject *)recorder};
    PyObject *inner = PyObject_Vectorcall(self->app, inner_args, 3, NULL);
    PyObject *iterator = inner != NULL ? awaitable_iterator(inner) : NULL;
    if (iterator == NULL) {
        /* The app raised before it had an awaitable to give: logged, then raised. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (finish(self, scope, method, recorder, started, 1) < 0)
            PyErr_WriteUnraisable(callable);
        PyErr_Restore(type, value, traceback);
        Py_XDECREF(inner);
        Py_DECREF(recorder);
        Py_XDECREF(method);
        return NULL;
    }
    Watch *watch = PyObject_GC_New(Watch, &WatchType);
    if (watch == NULL) {
        Py_DECREF(inner);
        Py_DECREF(iterator);
        Py_DECREF(recorder);
        Py_XDECREF(method);
        return NULL;
    }
    watch->layer = (AccessLayer *)Py_NewRef(callable);
    watch->scope = Py_NewRef(scope);
    watch->recorder = recorder;
    watch->inner = inner;
    watch->iterator = iterator;
    watch->method = method;
    watch->started = started;
    watch->finished = 0;
    PyObject_GC_Track(watch);
    return (PyObject *)watch;
}

static PyObject *
AccessLayer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"app", "entries", "on_add", "begun", "on_begin", "lifespan", "batch",
                            "now", "pid", "arm", "flush", "tally", "writer", "json", NULL};
    PyObject *app, *entries, *on_add, *begun, *on_begin, *lifespan;
    PyObject *now = Py_None, *pid = Py_None, *arm = Py_None, *flush = Py_None, *tally = Py_None,
             *writer = Py_None;
    Py_ssize_t batch;
    int json = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOOOn|$OOOOOOp:AccessLayer", names, &app,
                                     &PyList_Type, &entries, &on_add, &begun, &on_begin, &lifespan,
                                     &batch, &now, &pid, &arm, &flush, &tally, &writer, &json))
        return NULL;
    if (begun != Py_None && !PyList_CheckExact(begun)) {
        PyErr_SetString(PyExc_TypeError, "AccessLayer: begun must be a list or None");
        return NULL;
    }
    if (tally != Py_None && !PyObject_TypeCheck(tally, &TallyType)) {
        PyErr_SetString(PyExc_TypeError, "AccessLayer: tally must be a launcher._speedups.Tally or None");
        return NULL;
    }
    if (now != Py_None && !PyUnicode_Check(pid)) {
        PyErr_SetString(PyExc_TypeError, "AccessLayer: pid must be a str");
        return NULL;
    }
    AccessLayer *self = PyObject_GC_New(AccessLayer, type);
    if (self == NULL)
        return NULL;
    self->app = Py_NewRef(app);
    self->entries = Py_NewRef(entries);
    self->on_add = Py_NewRef(on_add);
    self->begun = Py_NewRef(begun);
    self->on_begin = Py_NewRef(on_begin);
    self->lifespan = Py_NewRef(lifespan);
    self->batch = batch > 0 ? batch : 1;
    self->vectorcall = AccessLayer_vectorcall;
    self->now = Py_NewRef(now);
    self->pid = Py_NewRef(pid);
    self->arm = Py_NewRef(arm);
    self->flush = Py_NewRef(flush);
    self->tally = Py_NewRef(tally);
    self->writer = Py_NewRef(writer);
    self->clock_text = NULL;
    self->second = 0;
    self->format = json ? format_json : format_values;
    self->lines.data = NULL;
    self->lines.size = self->lines.capacity = 0;
    self->pending = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
AccessLayer_traverse(AccessLayer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->app);
    Py_VISIT(self->entries);
    Py_VISIT(self->on_add);
    Py_VISIT(self->begun);
    Py_VISIT(self->on_begin);
    Py_VISIT(self->now);
    Py_VISIT(self->pid);
    Py_VISIT(self->arm);
    Py_VISIT(self->flush);
    Py_VISIT(self->tally);
    Py_VISIT(self->writer);
    Py_VISIT(self->clock_text);
    Py_VISIT(self->lifespan);
    return 0;
}

static int
AccessLayer_clear(AccessLayer *self)
{
    Py_CLEAR(self->app);
    Py_CLEAR(self->entries);
    Py_CLEAR(self->on_add);
    Py_CLEAR(self->begun);
    Py_CLEAR(self->on_begin);
    Py_CLEAR(self->now);
    Py_CLEAR(self->pid);
    Py_CLEAR(self->arm);
    Py_CLEAR(self->flush);
    Py_CLEAR(self->tally);
    Py_CLEAR(self->writer);
    Py_CLEAR(self->clock_text);
    Py_CLEAR(self->lifespan);
    return 0;
}

static void
AccessLayer_dealloc(AccessLayer *self)
{
    PyObject_GC_UnTrack(self);
    AccessLayer_clear(self);
    PyMem_Free(self->lines.data);
    PyObject_GC_Del(self);
}

static PyObject *
AccessLayer_get_app(AccessLayer *self, void *closure)
{
    return Py_NewRef(self->app);
}

static PyObject *
AccessLayer_take(AccessLayer *self, PyObject *unused)
{
    PyObject *data = PyBytes_FromStringAndSize(self->lines.data ? self->lines.data : "", self->lines.size);
    if (data == NULL)
        return NULL;
    self->lines.size = 0;
    self->pending = 0;
    return data;
}

static PyMethodDef AccessLayer_methods[] = {
    {"take", (PyCFunction)AccessLayer_take, METH_NOARGS,
     "The lines formatted since the last take (UTF-8, each ending in a newline), and forget them."},
    {NULL},
};

static PyGetSetDef AccessLayer_getset[] = {
    {"app", (getter)AccessLayer_get_app, NULL, "The app inside.", NULL},
    {NULL},
};

PyDoc_STRVAR(AccessLayer_doc,
"AccessLayer(app, entries, on_add, begun, on_begin, lifespan, batch)\n"
"--\n"
"\n"
"launcher.access_log.AccessLog's request path in C: each request is served through a Recorder\n"
"and, once the app is done (or has raised: a 500 if no response began), its Entry is appended\n"
"to ``entries`` (the Writer's list); ``on_add()`` is called for the first entry of a batch and\n"
"a full one. As an HTTP request starts its method joins ``begun`` (ServerMetrics' list, or\n"
"None), ``on_begin()`` called for the first since the list was emptied; lifespan scopes go to\n"
"``lifespan``.\n"
"\n"
"Keywords: ``now``, ``pid``, ``arm``, ``flush`` and ``writer`` (the default or, with\n"
"``json=True``, the JSON line formatted as each request ends, a full batch written to\n"
"``writer.fd``, ``take()`` giving the rest); ``tally``: the metrics' Tally, each HTTP request\n"
"counted into it as it ends.");

static PyTypeObject AccessLayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "launcher._speedups.AccessLayer",
    .tp_basicsize = sizeof(AccessLayer),
    .tp_dealloc = (destructor)AccessLayer_dealloc,
    .tp_vectorcall_offset = offsetof(AccessLayer, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = AccessLayer_doc,
    .tp_traverse = (traverseproc)AccessLayer_traverse,
    .tp_clear = (inquiry)AccessLayer_clear,
    .tp_getset = AccessLayer_getset,
    .tp_methods = AccessLayer_methods,
    .tp_new = AccessLayer_new,
};

PyDoc_STRVAR(format_lines_doc,
"format_lines(entries, offset, now, pid, json=False, /)\n"
"--\n"
"\n"
"The C line formatter over a batch, as the tests see it (AccessLayer formats each line as its\n"
"request ends, with the same code): the default access lines of ``entries`` (a list of the\n"
"access log's Entry tuples), each\n"
"ending in a newline, as UTF-8 bytes; None where the Python loop must format the batch.\n"
"``offset``: wall-clock time less time.perf_counter(); ``now``: the clock's function from a\n"
"wall-clock time to its bracketed text, called once a second; ``pid``: the worker's pid;\n"
"``json``: the JSON line's (launcher.access_log.json_formatter) instead.");

static PyObject *
format_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 && nargs != 5) {
        PyErr_Format(PyExc_TypeError, "format_lines expected 4 or 5 arguments, got %zd", nargs);
        return NULL;
    }
    int json = nargs == 5 ? PyObject_IsTrue(args[4]) : 0;
    if (json < 0)
        return NULL;
    PyObject *entries = args[0];
    if (!PyList_CheckExact(entries)) {
        PyErr_SetString(PyExc_TypeError, "format_lines: entries must be a list");
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
                             pid_size, json ? format_json : format_values);
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
    {"format_lines", (PyCFunction)(void (*)(void))format_lines, METH_FASTCALL, format_lines_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *m)
{
    if (PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType) < 0 ||
        PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0 ||
        PyModule_AddIntConstant(m, "ATOMIC_WRITE", ATOMIC_WRITE) < 0)
        return -1;
    return PyModule_AddObjectRef(m, "AccessLayer", (PyObject *)&AccessLayerType);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "launcher._speedups",
    .m_doc = "The access log's request path and lines, and the metrics' counts, in C.",
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
    for (int d = 0; d < DEFAULTS; d++) {
        if (defaults[d] == NULL && (defaults[d] = PyUnicode_InternFromString(default_texts[d])) == NULL)
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
    if (PyType_Ready(&RecorderType) < 0 || PyType_Ready(&WatchType) < 0 || PyType_Ready(&AccessLayerType) < 0 ||
        PyType_Ready(&TallyType) < 0)
        return NULL;
    if ((str_lifespan = PyUnicode_InternFromString("lifespan")) == NULL ||
        (str_http = PyUnicode_InternFromString("http")) == NULL ||
        (str_method = PyUnicode_InternFromString("method")) == NULL ||
        (str_type = PyUnicode_InternFromString("type")) == NULL ||
        (str_throw = PyUnicode_InternFromString("throw")) == NULL ||
        (str_close = PyUnicode_InternFromString("close")) == NULL ||
        (str_fd = PyUnicode_InternFromString("fd")) == NULL ||
        (status_500 = PyLong_FromLong(500)) == NULL)
        return NULL;
    return PyModuleDef_Init(&module);
}
